"""How well and how fast an autoencoder reconstructs video: PSNR, SSIM, hue error, temporal
flicker, and encode/decode frames/s and compiled peak memory, one-shot against chunked in time.

The metrics are core/image_metrics.py's, the ones the VAE's training loss uses.

Legend: b batch (clips), t frames, h/w height/width, c channels, p/q rows/columns of SSIM maps.
"""
import pathlib
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from videogen.core import image_metrics
from videogen.core import timing
from videogen.data import footage
from videogen.data import pipeline
from videogen.models import autoencoder_chunks

_MIB = 2 ** 20


@jax.jit
def _clip_metrics(recon_bthwc, target_bthwc):
  return {'psnr_db': image_metrics.psnr(recon_bthwc, target_bthwc).mean(axis=1),
          'ssim': image_metrics.ssim(recon_bthwc, target_bthwc).mean(axis=1),
          'colour_error_8bit': image_metrics.colour_error(recon_bthwc, target_bthwc),
          'flicker_8bit': image_metrics.flicker(recon_bthwc, target_bthwc),
          'motion_8bit': image_metrics.motion(target_bthwc)}


def reconstruction_metrics(vae, videos_bthwc: np.ndarray, batch_size: int = 8) -> dict:
  """Means over clips of per-clip PSNR and SSIM (averaged over frames), colour error (over
  clips with coloured pixels), flicker and motion.

  vae: a `videogen.inference.vae.Autoencoder` (its chunked encode, then decode, clipped to [-1, 1]).
  PSNR is averaged per frame, as video codecs report it.
  """
  per_clip = []
  for start in range(0, len(videos_bthwc), batch_size):
    target = jnp.asarray(videos_bthwc[start:start + batch_size])
    per_clip.append(jax.device_get(_clip_metrics(vae.decode(vae.encode(target)), target)))
  joined = {name: np.concatenate([m[name] for m in per_clip]) for name in per_clip[0]}
  return {'clips': len(videos_bthwc),
          **{name: float(np.nanmean(v)) for name, v in joined.items()}}


def _temp_bytes(jitted, *args) -> int:
  """Scratch bytes XLA plans for jitted(*args) (compiled memory analysis); after a call with
  the same arguments this reads the program that call compiled, compiling nothing."""
  analysis = jitted.lower(*args).compile().memory_analysis()
  return int(analysis.temp_size_in_bytes) if analysis is not None else -1


def _peak_temp_bytes(vae, method: str, x_bthwc, chunk: int) -> int:
  """Peak scratch bytes of one call: one-shot (chunk 0), else the larger of the first chunk's
  program and the longest later chunk's (with the causal cache the first chunk leaves). Reads
  the very programs autoencoder_chunks runs."""
  model, params = vae.model, vae.params
  if not chunk:
    return _temp_bytes(autoencoder_chunks.apply_whole, model, method, params, x_bthwc)
  first_chunk, variables = x_bthwc[:, :1], {'params': params}
  peak = _temp_bytes(autoencoder_chunks.apply_chunk, model, method, variables, first_chunk)
  if x_bthwc.shape[1] > 1:
    _, cache = autoencoder_chunks.apply_chunk(model, method, variables, first_chunk)
    peak = max(peak, _temp_bytes(autoencoder_chunks.apply_chunk, model, method,
                                 {**variables, 'cache': cache}, x_bthwc[:, 1:1 + chunk]))
  return peak


def codec_speed(vae, *, num_frames: int, height: int, width: int, chunked: bool,
                repeats: int = 3) -> list[dict]:
  """Encode and decode of one clip [1, num_frames, height, width, 3]: frames/s (median after
  warm-up) and the compiled peak scratch memory, one-shot or chunked in time as `vae` is."""
  model, params = vae.model, vae.params
  x = jax.random.uniform(jax.random.key(0), (1, num_frames, height, width, 3), minval=-1.0)
  if chunked:
    encode, decode = vae.encode, vae.decode
  else:
    encode = lambda x: autoencoder_chunks.apply_whole(model, 'encode', params, x)[0]
    decode = lambda z: autoencoder_chunks.apply_whole(model, 'decode', params, z)
  z = encode(x)
  mode = f'chunked, {vae.chunk_latent_frames} latent frames/chunk' if chunked else 'one-shot'
  rows = []
  for name, fn, inputs, chunk in (
      ('encode', encode, x, vae.chunk_latent_frames * vae.compression[0]),
      ('decode', decode, z, vae.chunk_latent_frames)):
    seconds = timing.median_seconds(lambda: jax.block_until_ready(fn(inputs)), repeats)
    peak = _peak_temp_bytes(vae, name, inputs, chunk if chunked else 0)
    rows.append({'op': name, 'mode': mode, 'frames': num_frames, 'size': f'{height}x{width}',
                 'frames_per_s': num_frames / seconds, 'temp_MiB': peak / _MIB})
  return rows


def evaluate(vae, config, *, num_clips: int, footage_shape: tuple[int, int, int],
             clips_per_file: int, lengths: tuple[int, ...]) -> tuple[list[dict], list[dict]]:
  """(quality rows, speed rows) of a VAE trained with `config` (its world section).

  Quality: `num_clips` world clips of the held-out split and of the train split at an unseen
  seed, then the real footage (T, H, W = footage_shape). Speed: `codec_speed` of clips of each
  length at the footage's frame size, one-shot and chunked.
  """
  w = config.world
  sets = {'world held_out': pipeline.world_clips(w, seed=config.seed, split='held_out',
                                        num_clips=num_clips),
          'world unseen seed': pipeline.world_clips(w, seed=config.seed + 2, split='train',
                                           num_clips=num_clips)}
  num_frames, height, width = footage_shape
  with tempfile.TemporaryDirectory() as root:
    sets['real footage'] = footage.footage_clips(
        pathlib.Path(root) / 'footage', num_frames=num_frames, height=height, width=width,
        clips_per_file=clips_per_file)
  quality = [{'data': name, 'shape': 'x'.join(map(str, clips.shape[1:4])),
              **reconstruction_metrics(vae, clips)} for name, clips in sets.items()]
  speed = [row for length in lengths for chunked in (False, True)
           for row in codec_speed(vae, num_frames=length, height=height, width=width,
                                  chunked=chunked)]
  return quality, speed
