"""The public autoencoder: restore a trained VAE and move video to and from normalised latents.

  vae = Autoencoder.from_workdir('outputs/vae_world')     # or an export of it
  z = vae.encode(video)       # float32 [B, 1 + 4k, H, W, 3] in [-1, 1] -> [B, 1 + k, H/8, W/8, C]
  video = vae.decode(z)       # back to [-1, 1], clipped
  vae.export('reference/vae_world')                       # config + EMA params + latent stats

Latents are the posterior means normalised per channel with the run's latent statistics, so the
diffusion model sees zero mean and unit variance. Encode and decode run in time chunks through
the causal cache (models/autoencoder_chunks.py): exact, and memory flat in the video's length.
Everything runs on one device, whatever mesh the VAE trained on.

Legend: b batch, t frames, h/w height/width, c channels.
"""
import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from videogen.core import media
from videogen.models import autoencoder
from videogen.models import autoencoder_chunks
from videogen.runtime import checkpoint
from videogen.runtime import vae_run

_EXPORT_INFO = vae_run.EXPORT_INFO_FILE


class Autoencoder:
  """A causal video VAE with fixed weights and latent statistics; see the module docstring."""

  def __init__(self, config: autoencoder.AutoencoderConfig, params, stats: dict, *,
               step: int | None = None, chunk_latent_frames: int = 4):
    """stats: {'mean': [C], 'std': [C]} of posterior means (`autoencoder.latent_stats`).
    chunk_latent_frames: latent frames per time chunk (r times as many pixel frames)."""
    if chunk_latent_frames < 1:
      raise ValueError(f'chunk_latent_frames {chunk_latent_frames} must be positive: e.g. 4.')
    channels = config.latent_channels
    if any(np.shape(stats.get(key)) != (channels,) for key in ('mean', 'std')):
      raise ValueError(f'stats must hold a mean and a std of {channels} values, one per latent '
                       f'channel; got {sorted(stats)}: measure them with '
                       'videogen.runtime.vae_run.measure_latent_stats.')
    self.config, self.params, self.step = config, params, step
    self.model = autoencoder.AutoencoderKL(config)
    self.stats = {key: jnp.asarray(stats[key], jnp.float32) for key in ('mean', 'std')}
    self.chunk_latent_frames = chunk_latent_frames

  @classmethod
  def from_workdir(cls, workdir, step: int | None = None, use_ema: bool = True) -> 'Autoencoder':
    """Restores `step` (default: newest) of a run of experiments/train_vae.py, or an export.

    Latent stats come from the run's latent_stats.json when they were measured for these
    weights, else they are measured now (as the trainer does).
    """
    workdir = pathlib.Path(workdir)
    if (workdir / 'params').is_dir():
      return cls._from_export(workdir)
    params, step, run = vae_run.restore_params(workdir, step=step, use_ema=use_ema)
    stats_path = workdir / vae_run.LATENT_STATS_FILE
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    if (stats.get('step'), stats.get('use_ema')) != (step, use_ema):
      stats = vae_run.measure_latent_stats(run.config, run.model, params)
    return cls(run.model.config, params, stats, step=step)

  @classmethod
  def _from_export(cls, folder: pathlib.Path) -> 'Autoencoder':
    params, step, _ = vae_run.restore_params(folder)
    stats = json.loads((folder / vae_run.LATENT_STATS_FILE).read_text())
    return cls(autoencoder.config_from_workdir(folder), params, stats, step=step)

  def export(self, out_dir, *, dtype: str | None = None, **info) -> pathlib.Path:
    """Writes what the VAE needs and nothing else (no optimizer state): autoencoder.json (its
    AutoencoderConfig), params/ (Orbax, stored as `dtype`, None: as trained; 'bfloat16' halves
    a float32 model), latent_stats.json and export.json (the step, the stored dtype plus `info`,
    e.g. the command and git revision). `from_workdir` reads it back in the config's
    param_dtype."""
    out = pathlib.Path(out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    media.write_json(out / autoencoder.EXPORT_CONFIG_FILE, dataclasses.asdict(self.config))
    checkpoint.save_params(out / 'params', self.params, dtype)
    media.write_json(out / vae_run.LATENT_STATS_FILE,
                     {key: np.asarray(value).tolist() for key, value in self.stats.items()})
    media.write_json(out / _EXPORT_INFO,
                     {'step': self.step, 'stored_dtype': dtype or 'as trained', **info})
    return out

  @property
  def compression(self) -> tuple[int, int, int]:
    """(r_t, r_s, r_s): frames and pixels per latent frame and latent pixel."""
    return self.config.compression

  @property
  def latent_channels(self) -> int:
    return self.config.latent_channels

  def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
    """autoencoder.latent_shape for this VAE."""
    return autoencoder.latent_shape(self.config, num_frames, height, width)

  def encode(self, video_bthwc, pad: bool = False) -> jax.Array:
    """Float video [B, 1 + r·k, H, W, 3] in [-1, 1] -> normalised latents [B, 1 + k, H/r_s,
    W/r_s, C]. pad=True repeats the last frame up to the next 1 + r·k (trim after decoding)."""
    if not jnp.issubdtype(jnp.result_type(video_bthwc), jnp.floating):
      raise ValueError(f'video of dtype {jnp.result_type(video_bthwc)} must be floating point in '
                       '[-1, 1]: convert uint8 frames with x / 127.5 - 1.')
    mean_bthwc, _ = autoencoder_chunks.encode_chunked(
        self.model, self.params, self._on_params_device(jnp.asarray(video_bthwc, jnp.float32)),
        self.chunk_latent_frames * self.config.temporal_downsample, pad=pad)
    return autoencoder.normalize(mean_bthwc, self.stats)

  def decode(self, latents_bthwc) -> jax.Array:
    """Normalised latents [B, 1 + k, h, w, C] -> video float32 [B, 1 + r·k, h·r_s, w·r_s, 3]
    in [-1, 1] (clipped)."""
    z_bthwc = jnp.asarray(latents_bthwc, jnp.float32)
    if z_bthwc.ndim != 5 or z_bthwc.shape[-1] != self.latent_channels:
      raise ValueError(f'latents of shape {z_bthwc.shape} must be [B, T, H, W, '
                       f'{self.latent_channels}]: pass what encode returns.')
    recon_bthwc = autoencoder_chunks.decode_chunked(
        self.model, self.params, autoencoder.denormalize(self._on_params_device(z_bthwc),
                                                         self.stats),
        self.chunk_latent_frames)
    return jnp.clip(recon_bthwc, -1.0, 1.0)

  def _on_params_device(self, x):
    """`x` on the device the VAE's params are on (one): a DiT's samples come sharded over its
    mesh, and jit refuses arguments on different devices. Host (numpy) params: `x` as it is."""
    leaf = jax.tree.leaves(self.params)[0]
    if not isinstance(leaf, jax.Array):
      return x
    return jax.device_put(x, next(iter(leaf.devices())))
