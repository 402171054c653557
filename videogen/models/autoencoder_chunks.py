"""Encode and decode long videos and large frames in bounded memory: time chunks, spatial tiles.

Chunks are exact: the first frame (or latent frame) goes alone, then `chunk` frames at a time,
each through one jitted `apply` that carries the causal convolutions' 'cache' collection to the
next, so peak memory depends on the chunk, not on the video's length. Tiles are approximate:
overlapping square tiles are encoded (or decoded) on their own and blended with linear ramps
across the overlaps; a tile that covers the whole frame gives the untiled result exactly.

Legend: b batch, t frames, h/w height/width, c channels.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from videogen.models import autoencoder


@functools.partial(jax.jit, static_argnums=(0, 1))
def apply_chunk(model, method: str, variables, x_bthwc):
  """model.<method>(x) -> (output, cache to pass to the next chunk)."""
  out, state = model.apply(variables, x_bthwc, method=method, mutable=['cache'])
  return out, state['cache']


@functools.partial(jax.jit, static_argnums=(0, 1))
def apply_whole(model, method: str, params, x_bthwc):
  """model.<method>(x) on a whole clip."""
  return model.apply({'params': params}, x_bthwc, method=method)


def _run_chunked(model, method: str, params, x_bthwc, chunk: int):
  """Applies `method` to x[:, :1], then to `chunk` frames at a time, and joins the outputs."""
  bounds = [0, *range(1, x_bthwc.shape[1], chunk), x_bthwc.shape[1]]
  outputs, cache = [], None
  for start, stop in zip(bounds[:-1], bounds[1:]):
    variables = {'params': params} if cache is None else {'params': params, 'cache': cache}
    out, cache = apply_chunk(model, method, variables, x_bthwc[:, start:stop])
    outputs.append(out)
  return jax.tree.map(lambda *parts: jnp.concatenate(parts, axis=1), *outputs)


def encode_chunked(model: autoencoder.AutoencoderKL, params, x_bthwc, chunk_frames: int,
                   pad: bool = False):
  """`model.encode` over time in chunks of `chunk_frames` frames (a multiple of r) after the
  first frame; the same (mean, logvar) as one-shot, in memory flat in the video's length."""
  cfg = model.config
  if chunk_frames < 1 or chunk_frames % cfg.temporal_downsample:
    raise ValueError(f'chunk_frames {chunk_frames} must be a positive multiple of the temporal '
                     f'downsample {cfg.temporal_downsample}: e.g. {cfg.temporal_downsample}.')
  if pad:
    x_bthwc = autoencoder.pad_frames(x_bthwc, cfg.temporal_downsample)
  autoencoder.check_video(x_bthwc, cfg)
  return _run_chunked(model, 'encode', params, x_bthwc, chunk_frames)


def decode_chunked(model: autoencoder.AutoencoderKL, params, z_bthwc, chunk_latent_frames: int):
  """`model.decode` over time: the first latent frame, then `chunk_latent_frames` at a time."""
  if chunk_latent_frames < 1:
    raise ValueError(f'chunk_latent_frames {chunk_latent_frames} must be positive: e.g. 1.')
  return _run_chunked(model, 'decode', params, z_bthwc, chunk_latent_frames)


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
  """First row (or column) of each tile; the last tile ends at the edge."""
  if tile >= size:
    return [0]
  return [*range(0, size - tile, tile - overlap), size - tile]


def _ramp_weights(starts: list[int], tile: int) -> list[np.ndarray]:
  """Per tile, weights along one axis rising linearly across the overlap with the previous tile
  and falling across the overlap with the next (positive everywhere, 1 where unshared)."""
  weights = []
  for i, start in enumerate(starts):
    weight = np.ones(tile, np.float32)
    before = starts[i - 1] + tile - start if i > 0 else 0
    after = start + tile - starts[i + 1] if i + 1 < len(starts) else 0
    weight[:before] = np.arange(1, before + 1) / (before + 1)
    if after:
      weight[-after:] = np.minimum(weight[-after:], np.arange(after, 0, -1) / (after + 1))
    weights.append(weight)
  return weights


def _blend_tiles(fn, x_bthwc, tile: int, overlap: int, scale: int | float):
  """Runs fn on overlapping tiles of x; fn returns a tuple of arrays whose h and w are the
  tile's times `scale`. Returns that tuple for the whole frame, the tiles blended linearly."""
  in_h, in_w = x_bthwc.shape[2:4]
  rows, cols = _tile_starts(in_h, tile, overlap), _tile_starts(in_w, tile, overlap)
  tile_h, tile_w = min(tile, in_h), min(tile, in_w)
  out_h, out_w = int(tile_h * scale), int(tile_w * scale)
  out_rows, out_cols = [int(r * scale) for r in rows], [int(c * scale) for c in cols]
  weights_h, weights_w = _ramp_weights(out_rows, out_h), _ramp_weights(out_cols, out_w)
  totals, weight_sum_hw = None, np.zeros((int(in_h * scale), int(in_w * scale)), np.float32)
  for row, out_row, weight_h in zip(rows, out_rows, weights_h):
    for col, out_col, weight_w in zip(cols, out_cols, weights_w):
      outs = fn(x_bthwc[:, :, row:row + tile_h, col:col + tile_w])
      if totals is None:
        totals = [jnp.zeros((*o.shape[:2], *weight_sum_hw.shape, o.shape[-1]), o.dtype)
                  for o in outs]
      weight_hw = np.outer(weight_h, weight_w)
      window = (slice(None), slice(None), slice(out_row, out_row + out_h),
                slice(out_col, out_col + out_w))
      totals = [t.at[window].add(o * weight_hw[..., None]) for t, o in zip(totals, outs)]
      weight_sum_hw[window[2:]] += weight_hw
  return tuple(t / weight_sum_hw[..., None] for t in totals)


def _check_tiles(tile: int, overlap: int, multiple: int, unit: str):
  if tile < multiple or tile % multiple or overlap % multiple or not 0 <= overlap < tile:
    raise ValueError(f'tile {tile} and overlap {overlap} ({unit}) must be multiples of '
                     f'{multiple} with 0 <= overlap < tile: e.g. tile {4 * multiple}, overlap '
                     f'{multiple}.')


def encode_tiled(model: autoencoder.AutoencoderKL, params, x_bthwc, tile: int, overlap: int,
                 chunk_frames: int | None = None):
  """`model.encode` on square tiles of `tile` pixels overlapping by `overlap` (multiples of the
  spatial downsample), blended in latent space; chunked in time when chunk_frames is given."""
  cfg = model.config
  _check_tiles(tile, overlap, cfg.spatial_downsample, 'pixels')
  autoencoder.check_video(x_bthwc, cfg)
  if chunk_frames:
    encode = lambda x: encode_chunked(model, params, x, chunk_frames)
  else:
    encode = lambda x: apply_whole(model, 'encode', params, x)
  return _blend_tiles(encode, x_bthwc, tile, overlap, 1 / cfg.spatial_downsample)


def decode_tiled(model: autoencoder.AutoencoderKL, params, z_bthwc, tile: int, overlap: int,
                 chunk_latent_frames: int | None = None):
  """`model.decode` on square latent tiles of `tile` overlapping by `overlap` (latent pixels),
  blended in pixel space; chunked in time when chunk_latent_frames is given."""
  _check_tiles(tile, overlap, 1, 'latent pixels')
  if chunk_latent_frames:
    decode = lambda z: (decode_chunked(model, params, z, chunk_latent_frames),)
  else:
    decode = lambda z: (apply_whole(model, 'decode', params, z),)
  return _blend_tiles(decode, z_bthwc, tile, overlap, model.config.spatial_downsample)[0]
