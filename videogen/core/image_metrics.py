"""Image and video quality metrics of videos in [-1, 1] (data range 2): PSNR, SSIM, hue error,
temporal flicker. Jax functions, so the VAE's training loss uses the same SSIM its evaluation
reports. SSIM is Wang et al. (2004): an 11-tap Gaussian window (sigma 1.5), 'valid' borders, per
channel, averaged over each frame.

Legend: b batch (clips), t frames, h/w height/width, c channels, p/q rows/columns of SSIM maps.
"""
import jax
import jax.numpy as jnp
import numpy as np

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
DATA_RANGE = 2.0  # videos in [-1, 1]


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
