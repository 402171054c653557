"""Causal 3D VAE laid out like Wan 2.1's (the 'wan' preset is its exact shape, 126,892,531
parameters), so that its weights convert name for name (videogen/convert/wan_vae.py) and compute
what Diffusers' AutoencoderKLWan computes, whole clip or chunked (tests/test_wan_vae.py).

Encoder: causal conv -> per level: residual blocks, then a stride-2 spatial conv and, on the
deepest levels, a causal stride-2 time conv -> mid block (residual, per-frame attention,
residual) -> RMS norm, SiLU, causal conv to 2 x latent channels -> 1x1x1 conv -> (mean, logvar).
The decoder mirrors it with one more residual block per level, a causal time conv that doubles
frames on the first levels and nearest 2x + conv that halves channels.

Frame rule: the first frame is encoded alone and every later latent frame covers r frames, so
1 + r·k frames <-> 1 + k latent frames and an image is a 1-frame video. Every layer is per-frame
or causal in time, so `autoencoder_chunks` can run long videos in chunks exactly. Layer names
(downsamples_i, upsamples_i, middle_i, head_*, conv1, conv2) follow Wan's indices; see
autoencoder_blocks for the rest of the mapping.

Legend: b batch, t frames, h/w height/width, c channels, p latent positions.
"""
from collections.abc import Mapping
import dataclasses
import json
import pathlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from videogen.models import autoencoder_blocks as blocks
from videogen.models.causal_conv import CausalConv3d

PRESETS = {
    # Wan 2.1 VAE: 4x8x8 compression, 16 latent channels, ~127M parameters.
    'wan': dict(base_channels=96, channel_multipliers=(1, 2, 4, 4), num_res_blocks=2,
                latent_channels=16, spatial_downsample=8, temporal_downsample=4),
    # What a CPU can train on 32x32 world clips: 8 latent channels, not Wan's 16, which learned
    # to draw objects far later (docs/vae.md).
    'world': dict(base_channels=32, channel_multipliers=(1, 2, 2, 4), num_res_blocks=1,
                  latent_channels=8, spatial_downsample=8, temporal_downsample=4),
    # Tests.
    'tiny': dict(base_channels=8, channel_multipliers=(1, 2, 2), num_res_blocks=1,
                 latent_channels=4, spatial_downsample=4, temporal_downsample=4),
}
# An export's AutoencoderConfig as JSON (videogen/inference/vae.py); a training run keeps
# config.json.
EXPORT_CONFIG_FILE = 'autoencoder.json'
_DTYPES = ('float32', 'bfloat16', 'float16')


@dataclasses.dataclass(frozen=True)
class AutoencoderConfig:
  """Widths and compression of the VAE; `autoencoder_config` builds one from a preset name."""
  base_channels: int
  channel_multipliers: tuple[int, ...]  # width of each level, in units of base_channels
  num_res_blocks: int  # per encoder level (the decoder has one more)
  latent_channels: int
  spatial_downsample: int  # 2 ** (levels - 1): every level but the last halves h and w
  temporal_downsample: int  # r in 1 + r·k frames -> 1 + k latent frames
  mid_attention: bool = True
  dtype: str = 'float32'  # compute dtype of convs
  param_dtype: str = 'float32'

  def __post_init__(self):
    object.__setattr__(self, 'channel_multipliers', tuple(self.channel_multipliers))
    if self.base_channels < 2 or self.base_channels % 2:
      raise ValueError(f'base_channels {self.base_channels} must be even and positive (the '
                       'decoder halves widths): use e.g. 32.')
    if not self.channel_multipliers or min(self.channel_multipliers) < 1:
      raise ValueError(f'channel_multipliers {self.channel_multipliers} must be positive '
                       'integers, one per level: use e.g. (1, 2, 2, 4).')
    if self.num_res_blocks < 1 or self.latent_channels < 1:
      raise ValueError(f'num_res_blocks {self.num_res_blocks} and latent_channels '
                       f'{self.latent_channels} must be positive.')
    levels = len(self.channel_multipliers)
    if self.spatial_downsample != 2 ** (levels - 1):
      raise ValueError(f'spatial_downsample {self.spatial_downsample} does not match '
                       f'{levels} channel_multipliers (each level but the last halves the size, '
                       f'giving {2 ** (levels - 1)}): give log2(spatial_downsample) + 1 levels.')
    if self.temporal_downsample not in (1, 2, 4) or self.temporal_downsample > 2 ** (levels - 1):
      raise ValueError(f'temporal_downsample {self.temporal_downsample} must be 1, 2 or 4 and '
                       f'at most spatial_downsample {self.spatial_downsample}.')
    for field in ('dtype', 'param_dtype'):
      if getattr(self, field) not in _DTYPES:
        raise ValueError(f'{field} {getattr(self, field)!r} is unknown: use one of {_DTYPES}.')

  @property
  def time_stages(self) -> tuple[bool, ...]:
    """Whether each encoder downsample stage also halves time: the deepest ones do, as in Wan."""
    stages = len(self.channel_multipliers) - 1
    in_time = int(np.log2(self.temporal_downsample))
    return (False,) * (stages - in_time) + (True,) * in_time

  @property
  def compression(self) -> tuple[int, int, int]:
    """(r_t, r_s, r_s): frames and pixels per latent frame and latent pixel."""
    return (self.temporal_downsample, self.spatial_downsample, self.spatial_downsample)

  @property
  def conv_kwargs(self) -> dict:
    return dict(dtype=jnp.dtype(self.dtype), param_dtype=jnp.dtype(self.param_dtype))


def autoencoder_config(name: str, **overrides) -> AutoencoderConfig:
  """AutoencoderConfig of a preset ('wan', 'world', 'tiny') with some fields overridden."""
  if name not in PRESETS:
    raise ValueError(f'autoencoder preset {name!r} is unknown: use one of {tuple(PRESETS)}.')
  return AutoencoderConfig(**{**PRESETS[name], **overrides})


def run_model_config(model: Mapping[str, Any]) -> AutoencoderConfig:
  """The AutoencoderConfig of a run's `config.model` section: its preset, with every other
  field that holds a value (not None) overriding the preset's."""
  overrides = {k: v for k, v in model.items() if k != 'preset' and v is not None}
  unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(AutoencoderConfig)})
  if unknown:
    raise ValueError(f'config.model fields {unknown} are not autoencoder settings; use fields of '
                     'AutoencoderConfig (videogen/models/autoencoder.py).')
  return autoencoder_config(model['preset'], **overrides)


def latent_frame_count(num_frames: int, temporal_downsample: int) -> int:
  """1 + k latent frames for 1 + r·k frames; any other count raises, naming the nearest ones."""
  r = temporal_downsample
  if num_frames >= 1 and (num_frames - 1) % r == 0:
    return 1 + (num_frames - 1) // r
  below = 1 + max(num_frames - 1, 0) // r * r
  nearest = f'{below} or {below + r} frames' if num_frames > 1 else '1 frame'
  raise ValueError(f'{num_frames} frames do not fit the causal autoencoder (1 + {r}·k frames): '
                   f'use {nearest}, or pass pad=True to repeat the last frame.')


def pad_frames(x_bthwc, temporal_downsample: int):
  """Repeats the last frame up to the next count 1 + r·k; the caller trims decoded frames."""
  num_frames, r = x_bthwc.shape[1], temporal_downsample
  if num_frames < 1:
    raise ValueError('a clip of 0 frames cannot be padded: pass at least one frame.')
  missing = -(num_frames - 1) % r
  return jnp.concatenate([x_bthwc, jnp.repeat(x_bthwc[:, -1:], missing, axis=1)], axis=1)


def check_video(x_bthwc, config: AutoencoderConfig):
  """Raises unless x is [B, 1 + r·k, H, W, 3] with H and W multiples of the spatial downsample."""
  s = config.spatial_downsample
  if x_bthwc.ndim != 5 or x_bthwc.shape[-1] != 3:
    raise ValueError(f'video shape {x_bthwc.shape} must be [B, T, H, W, 3]: pass channels-last '
                     'RGB clips in [-1, 1].')
  if x_bthwc.shape[2] % s or x_bthwc.shape[3] % s:
    raise ValueError(f'frame size {x_bthwc.shape[2]}x{x_bthwc.shape[3]} is not a multiple of '
                     f'the spatial downsample {s}: crop or resize to multiples of {s}.')
  latent_frame_count(x_bthwc.shape[1], config.temporal_downsample)


def latent_shape(config: AutoencoderConfig, num_frames: int, height: int,
                 width: int) -> tuple[int, int, int, int]:
  """(T', H', W', C) of a clip of (num_frames, height, width); raises for sizes the VAE
  cannot take (frames not 1 + r·k, sides not multiples of r_s)."""
  check_video(jax.ShapeDtypeStruct((1, num_frames, height, width, 3), jnp.float32), config)
  s = config.spatial_downsample
  return (latent_frame_count(num_frames, config.temporal_downsample), height // s, width // s,
          config.latent_channels)


def config_from_workdir(workdir) -> AutoencoderConfig:
  """The AutoencoderConfig of a VAE run (experiments/train_vae.py) or export, weights unread."""
  workdir = pathlib.Path(workdir)
  if (workdir / EXPORT_CONFIG_FILE).is_file():
    return AutoencoderConfig(**json.loads((workdir / EXPORT_CONFIG_FILE).read_text()))
  if not (workdir / 'config.json').is_file():
    raise FileNotFoundError(f'no trained VAE in {str(workdir)!r} (missing config.json): train '
                            f'first with experiments/train_vae.py --workdir {workdir}')
  return run_model_config(json.loads((workdir / 'config.json').read_text())['model'])


def _middle(x_bthwc, config: AutoencoderConfig):
  """Residual, per-frame attention (if configured), residual: Wan's middle.{0,1,2}."""
  kw = config.conv_kwargs
  x_bthwc = blocks.ResidualBlock(x_bthwc.shape[-1], name='middle_0', **kw)(x_bthwc)
  if config.mid_attention:
    x_bthwc = blocks.AttentionBlock(name='middle_1', **kw)(x_bthwc)
  return blocks.ResidualBlock(x_bthwc.shape[-1], name='middle_2', **kw)(x_bthwc)


def _head(x_bthwc, features: int, config: AutoencoderConfig):
  """RMS norm, SiLU, causal conv to `features`: Wan's head.{0,2}."""
  return CausalConv3d(features, name='head_conv', **config.conv_kwargs)(
      nn.silu(blocks.RMSNorm(jnp.dtype(config.param_dtype), name='head_norm')(x_bthwc)))


class Encoder(nn.Module):
  """Pixels [B, 1 + r·k, H, W, 3] -> moments [B, 1 + k, H/s, W/s, 2 x latent]."""
  config: AutoencoderConfig

  @nn.compact
  def __call__(self, x_bthwc):
    cfg = self.config
    x_bthwc = CausalConv3d(cfg.base_channels, name='conv1', **cfg.conv_kwargs)(x_bthwc)
    index = 0
    for level, multiplier in enumerate(cfg.channel_multipliers):
      for _ in range(cfg.num_res_blocks):
        x_bthwc = blocks.ResidualBlock(cfg.base_channels * multiplier, name=f'downsamples_{index}',
                                       **cfg.conv_kwargs)(x_bthwc)
        index += 1
      if level < len(cfg.time_stages):
        x_bthwc = blocks.Downsample(cfg.time_stages[level], name=f'downsamples_{index}',
                                    **cfg.conv_kwargs)(x_bthwc)
        index += 1
    return _head(_middle(x_bthwc, cfg), 2 * cfg.latent_channels, cfg)


class Decoder(nn.Module):
  """Latents [B, 1 + k, h, w, latent] -> pixels [B, 1 + r·k, h·s, w·s, 3]."""
  config: AutoencoderConfig

  @nn.compact
  def __call__(self, z_bthwc):
    cfg = self.config
    multipliers, time_stages = cfg.channel_multipliers[::-1], cfg.time_stages[::-1]
    x_bthwc = CausalConv3d(cfg.base_channels * multipliers[0], name='conv1', **cfg.conv_kwargs)(
        z_bthwc)
    x_bthwc = _middle(x_bthwc, cfg)
    index = 0
    for level, multiplier in enumerate(multipliers):
      for _ in range(cfg.num_res_blocks + 1):
        x_bthwc = blocks.ResidualBlock(cfg.base_channels * multiplier, name=f'upsamples_{index}',
                                       **cfg.conv_kwargs)(x_bthwc)
        index += 1
      if level < len(time_stages):
        x_bthwc = blocks.Upsample(time_stages[level], name=f'upsamples_{index}',
                                  **cfg.conv_kwargs)(x_bthwc)
        index += 1
    return _head(x_bthwc, 3, cfg)


# The posterior's log-variance at init (the bias of its half of conv1): a standard deviation of
# e^-3 = 0.05. At 0 (std 1) the sampling noise drowns the encoder's signal, so the decoder
# ignores the latent and draws only the background (docs/vae.md); the KL's small weight never
# pulls it down.
INITIAL_LOGVAR = -6.0


def _moments_bias_init(key, shape, dtype=jnp.float32):
  """conv1's bias: 0 for the means, INITIAL_LOGVAR for the log-variances."""
  del key
  half = shape[0] // 2
  return jnp.concatenate([jnp.zeros(half, dtype), jnp.full(shape[0] - half, INITIAL_LOGVAR,
                                                            dtype)])


class AutoencoderKL(nn.Module):
  """Causal video VAE with a diagonal Gaussian posterior; pixels in [-1, 1], channels last.

  Without a 'cache' collection every call is one whole clip (frame rule checked). With 'cache'
  mutable, a call is one chunk of a longer clip, as `autoencoder_chunks` drives it.
  """
  config: AutoencoderConfig

  def setup(self):
    cfg = self.config
    self.encoder = Encoder(cfg)
    self.conv1 = CausalConv3d(2 * cfg.latent_channels, (1, 1, 1), bias_init=_moments_bias_init,
                              **cfg.conv_kwargs)
    self.conv2 = CausalConv3d(cfg.latent_channels, (1, 1, 1), **cfg.conv_kwargs)
    self.decoder = Decoder(cfg)

  def encode(self, x_bthwc, pad: bool = False):
    """[B, 1 + r·k, H, W, 3] -> (mean, logvar), each [B, 1 + k, H/s, W/s, latent] float32.

    pad=True first repeats the last frame up to the next count 1 + r·k (`pad_frames`); trim the
    decoded clip back to the input's frame count yourself.
    """
    if pad:
      x_bthwc = pad_frames(x_bthwc, self.config.temporal_downsample)
    if not self.is_mutable_collection('cache'):
      check_video(x_bthwc, self.config)
    moments_bthwc = self.conv1(self.encoder(x_bthwc)).astype(jnp.float32)
    mean_bthwc, logvar_bthwc = jnp.split(moments_bthwc, 2, axis=-1)
    return mean_bthwc, logvar_bthwc

  def decode(self, z_bthwc):
    """[B, 1 + k, h, w, latent] -> [B, 1 + r·k, h·s, w·s, 3] float32 (not clipped)."""
    if z_bthwc.ndim != 5 or z_bthwc.shape[-1] != self.config.latent_channels:
      raise ValueError(f'latent shape {z_bthwc.shape} must be [B, T, H, W, '
                       f'{self.config.latent_channels}]: pass channels-last latents.')
    return self.decoder(self.conv2(z_bthwc)).astype(jnp.float32)

  def __call__(self, x_bthwc, rng):
    """Training pass: encode, sample the posterior with `rng`, decode -> (recon, mean, logvar)."""
    mean_bthwc, logvar_bthwc = self.encode(x_bthwc)
    logvar_bthwc = jnp.clip(logvar_bthwc, -30.0, 20.0)
    noise_bthwc = jax.random.normal(rng, mean_bthwc.shape, mean_bthwc.dtype)
    z_bthwc = mean_bthwc + jnp.exp(0.5 * logvar_bthwc) * noise_bthwc
    return self.decode(z_bthwc), mean_bthwc, logvar_bthwc


def latent_stats(latent_means) -> dict[str, np.ndarray]:
  """Per-channel mean and std of posterior means (arrays [..., C]) measured on data.

  The result is a plain dict {'mean': [C], 'std': [C]} that the caller saves with the checkpoint.
  """
  count, total_c, squares_c = 0, 0.0, 0.0
  for mean in latent_means:
    values_pc = np.asarray(mean, np.float64).reshape(-1, np.shape(mean)[-1])
    count += values_pc.shape[0]
    total_c = total_c + values_pc.sum(axis=0)
    squares_c = squares_c + np.square(values_pc).sum(axis=0)
  if not count:
    raise ValueError('latent_stats got no latents: pass at least one array of posterior means.')
  mean_c = total_c / count
  std_c = np.sqrt(np.maximum(squares_c / count - np.square(mean_c), 0.0))
  return {'mean': mean_c.astype(np.float32), 'std': std_c.astype(np.float32)}


def normalize(z_bthwc, stats):
  """Latents -> zero mean, unit variance per channel (what the diffusion model sees)."""
  return (z_bthwc - stats['mean']) / stats['std']


def denormalize(z_bthwc, stats):
  """Inverse of `normalize`: diffusion samples -> latents the decoder reads."""
  return z_bthwc * stats['std'] + stats['mean']
