"""The public sampling API: restore a trained run and turn prompts into videos.

  gen = Generator.from_workdir('outputs/run')          # or an export, e.g. reference/world_t2
  prompts, settings = ['A red circle drifts to the right.'], SampleSettings(steps=25)
  videos = gen.generate(prompts, seeds=[0], settings=settings)   # uint8 [B, T, H, W, 3]
  gen.write(videos, prompts, 'outputs/samples', seeds=[0], settings=settings)  # mp4 + sidecars
  settings = SampleSettings(negative_prompt='A blue square.')  # guidance steers away from it
  settings = settings_for(gen.run.config)  # the run's own sampler (config.sample), e.g. its
                                           # guidance interval; SampleSettings() guides always

Sampling runs on one device by default, whatever mesh the run trained on: the checkpoint is
restored onto a 1-device mesh. The sampler loop is compiled once per (shape, steps, method,
guidance) and reused for every batch of prompts of that shape. A latent run samples latents,
which its VAE (config.autoencoder, loaded on first use) decodes; the decoded 1 + r_t·k frames are
trimmed to the frames asked for, as the cache rendered 9 frames for a model of 8. Its given
frames (a clip's first ones) and SDEdit inputs are encoded by the same VAE.
"""
import dataclasses
import functools
import math
import numbers
import os
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from videogen.core import media
from videogen.core import patches
from videogen.data import latent_cache
from videogen.diffusion import conditioning
from videogen.diffusion import samplers
from videogen.inference import vae as vae_lib
from videogen.runtime import checkpoint
from videogen.runtime import dit_run
from videogen.runtime import lora as lora_lib
from videogen.runtime import weights as weights_lib

_BYTES_PER_GIB = 2 ** 30


@dataclasses.dataclass(frozen=True)
class SampleSettings:
  """How a video is sampled; recorded beside every output."""
  steps: int = 25
  method: str = 'heun'
  cfg_scale: float = 4.0          # text guidance
  # ... at times t >= cfg_min_t only (a guidance interval; 0: at every time). Below it the text
  # branch runs alone (frame guidance stays): half the calls on those steps.
  cfg_min_t: float = 0.0
  frame_cfg_scale: float = 1.0    # guidance on given frames (1: none; used only when given)
  strength: float = 1.0           # SDEdit: how far an init video is noised (1: ignore it)
  num_frames: int | None = None   # None: the training clip's size
  height: int | None = None
  width: int | None = None
  # Text guidance steers away from this text's encoding instead of the empty prompt's ('').
  negative_prompt: str = ''
  # The time grid's shift (flow.shift_t); None: the run's training shift for these tokens.
  shift: float | None = None

  def __post_init__(self):
    if not isinstance(self.steps, (int, np.integer)) or self.steps < 1:
      raise ValueError(f'steps {self.steps!r} must be a whole number of at least 1: use e.g. 25 '
                       'sampler steps.')
    if self.method not in samplers.METHODS:
      raise ValueError(f'method {self.method!r} is unknown: use one of {samplers.METHODS}.')
    for name, flag in (('cfg_scale', 'cfg'), ('frame_cfg_scale', 'frame_cfg')):
      _check_guidance(name, getattr(self, name), flag)
    if not (isinstance(self.cfg_min_t, numbers.Real) and 0 <= self.cfg_min_t < 1):
      raise ValueError(f'cfg_min_t {self.cfg_min_t!r} must be in [0, 1): the time below which '
                       'text guidance is off, e.g. 0.5; 0 guides at every time.')
    if not isinstance(self.negative_prompt, str):
      raise ValueError(f'negative_prompt {self.negative_prompt!r} must be a str: pass the text '
                       "to steer away from, or '' for none.")
    if self.shift is not None and not (isinstance(self.shift, numbers.Real) and self.shift > 0):
      raise ValueError(f'shift {self.shift!r} must be a positive number: use 1.0 for an '
                       "unshifted time grid, or None for the run's training shift.")
    for name in ('num_frames', 'height', 'width'):
      if getattr(self, name) is not None and getattr(self, name) < 1:
        raise ValueError(f'{name} {getattr(self, name)} must be at least 1: leave it unset (None) '
                         "for the training clip's size.")

  def guidance(self) -> str:
    """The text guidance in words for reports, e.g. 'guidance 4.0 at t >= 0.5'."""
    interval = f' at t >= {self.cfg_min_t:g}' if self.cfg_min_t else ''
    return f'guidance {self.cfg_scale}{interval}'


def _check_guidance(name: str, scale, flag: str) -> None:
  """A guidance scale of at least 1: below it the guidance pulls away from what it follows."""
  if not isinstance(scale, numbers.Real) or not math.isfinite(scale):
    raise ValueError(f'{name} {scale!r} must be a finite number: use 1 for no guidance or more, '
                     f'e.g. --{flag} 4.')
  if scale < 1:
    raise ValueError(f'{name} {scale!r} is below 1, which steers away from what it guides: use 1 '
                     f'for no guidance or more, e.g. --{flag} 4.')


# Where a run's weights are read (runtime/weights.py), named here for the sampling API's users.
load_config = weights_lib.load_config
saved_steps = weights_lib.saved_steps
sampling_run = dit_run.sampling_run


def available_bytes(device) -> int:
  """Free memory of an accelerator, or the host's available memory for the CPU."""
  stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
  if stats and 'bytes_limit' in stats:
    return stats['bytes_limit'] - stats.get('bytes_in_use', 0)
  return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_AVPHYS_PAGES')


# The sampling fields a run's config.sample may set (settings_for reads them).
CONFIG_FIELDS = ('steps', 'method', 'cfg_scale', 'cfg_min_t')


def settings_for(config, **fields) -> SampleSettings:
  """SampleSettings(**fields), with steps, method, cfg_scale and cfg_min_t taken from the run's
  config.sample wherever `fields` leaves them None (SampleSettings' defaults where the config
  says nothing), e.g. UniPC, 50 steps, guidance 5 for a Wan export."""
  sample = config.get('sample') or {}
  for field in CONFIG_FIELDS:
    if fields.get(field) is None:
      fields[field] = sample.get(field, getattr(SampleSettings, field))
  return SampleSettings(**fields)


def with_sampling_defaults(config, sample: dict):
  """A copy of `config` whose config.sample takes `sample`'s fields (CONFIG_FIELDS) over its own,
  or `config` itself when `sample` is empty; a field or value SampleSettings refuses fails."""
  if not sample:
    return config
  unknown = sorted(set(sample) - set(CONFIG_FIELDS))
  if unknown:
    raise ValueError(f'sample fields {unknown} are not sampling defaults: use '
                     f'{", ".join(CONFIG_FIELDS)}.')
  settings_for(config, **sample)  # a bad value fails here
  config = ml_collections.ConfigDict(config.to_dict())  # a copy: the run's stays as it is
  config.sample = {**config.get('sample', {}), **sample}
  return config


def _as_model_video(video, shape, name: str):
  """uint8 [B, T, H, W, 3] -> float32 in [-1, 1] of exactly `shape`, or a clear error."""
  video = np.asarray(video)
  if video.shape != tuple(shape) or video.dtype != np.uint8:
    raise ValueError(f'{name} of shape {video.shape} and dtype {video.dtype} must be uint8 '
                     f'{tuple(shape)}: resize them with videogen.inference.prompting.load_video.')
  return jnp.asarray(media.from_uint8(video))


def _check_mask(mask, shape):
  """bool [B, T] frame mask of exactly `shape`, or a clear error."""
  if mask is None or np.shape(mask) != tuple(shape):
    raise ValueError(f'frame_mask of shape {np.shape(mask)} must be bool {tuple(shape)}: one '
                     'flag per frame, True where the frame is given.')
  return jnp.asarray(mask, bool)


class Generator:
  """A restored model plus its text encoder; see the module docstring."""

  def __init__(self, run: dit_run.DitRun, params, step: int):
    self.run, self.params, self.step = run, params, step
    self._samplers = {}

  @classmethod
  def from_workdir(cls, workdir, *, step: int | None = None, use_ema: bool = True,
                   devices=None, lora=None) -> 'Generator':
    """Restores `step` (default: newest) of the run in `workdir` onto `devices` (default: this
    process's first device; in a multi-process job every process restores its own copy).

    `workdir` is a training run (config.json + checkpoints/) or a folder written by `export`
    (config.json + params/ + export.json), which holds only the sampling weights. A LoRA run
    samples its adapters merged onto its base (its config.init_from). lora: a LoRA run whose
    adapters (at `step`) to merge onto the weights in `workdir` instead of onto its own base.
    """
    if lora is None:
      run, params, step = dit_run.restore_params(workdir, step=step, use_ema=use_ema,
                                                 devices=devices)
    else:
      run, params, step = dit_run.restore_params(lora, base=workdir, step=step,
                                                 use_ema=use_ema, devices=devices)
    return cls(run, params, step)

  def export(self, out_dir, *, dtype: str | None = None, sample: dict | None = None,
             **info) -> pathlib.Path:
    """Writes the sampling weights alone (no optimizer state): config.json, params/ (Orbax,
    stored as `dtype`, None: as trained; 'bfloat16' halves a float32 model) and export.json (the
    step, the stored dtype plus `info`, e.g. the command and git revision). `from_workdir` reads
    it back in the config's param_dtype. A LoRA run's export holds its merged weights, a model
    like any other. sample: sampling defaults (CONFIG_FIELDS) stored in the export's
    config.sample over the run's, e.g. a guidance interval chosen after training."""
    config = with_sampling_defaults(lora_lib.merged_config(self.run.config), sample or {})
    out = pathlib.Path(out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    media.write_text(out / 'config.json', config.to_json_best_effort(indent=1))
    checkpoint.save_params(out / 'params', self.params, dtype)
    media.write_json(out / 'export.json',
                     {'step': self.step, 'stored_dtype': dtype or 'as trained', **info})
    return out

  @functools.cached_property
  def vae(self) -> vae_lib.Autoencoder:
    """A latent run's VAE (config.autoencoder), which decodes the samples: at the step that
    encoded its latent cache when the cache is on this machine, else its newest."""
    config, step = self.run.config, None
    if config.data.get('cache_dir'):
      if (pathlib.Path(config.data.cache_dir) / latent_cache.METADATA_FILE).is_file():
        step = latent_cache.read_metadata(config.data.cache_dir)['vae']['step']
    return vae_lib.Autoencoder.from_workdir(config.autoencoder, step=step)

  def clip_size(self, settings: SampleSettings) -> tuple[int, int, int]:
    """(frames, height, width) of the videos: the settings', else the training clip's."""
    w = self.run.config.world
    return (settings.num_frames or w.num_frames, settings.height or w.height,
            settings.width or w.width)

  def shape(self, settings: SampleSettings) -> tuple[int, int, int, int]:
    """(T, H, W, C) to sample (pixels, or a latent run's latents); checks the patch size
    divides it."""
    shape = self.run.model_shape(*self.clip_size(settings))
    patches.check_divisible(shape[:3], self.run.model.config.patch_size)
    return shape

  def generate(self, prompts: list[str], **kwargs) -> np.ndarray:
    """uint8 videos [B, T, H, W, 3], one per prompt: `generate_float`'s, quantised."""
    return media.to_uint8(self.generate_float(prompts, **kwargs))

  def generate_float(self, prompts: list[str], *, seeds: list[int] | None = None,
                     settings: SampleSettings = SampleSettings(), frames=None, frame_mask=None,
                     init=None, noise=None) -> np.ndarray:
    """float32 videos [B, T, H, W, 3] in [-1, 1], one per prompt; seed i fixes video i's noise.

    frames (uint8 [B, T, H, W, 3]) with frame_mask (bool [B, T]) give frames the video must
    contain (a frame-conditioned model; a latent one takes a clip's first frames only); init
    (uint8 [B, T, H, W, 3]) is the video SDEdit starts from at settings.strength. See
    videogen/inference/prompting.py for the tasks built on these. noise (float [B, *shape]), if
    given, replaces the seeds' starting noise, e.g. to reproduce another implementation's run.
    """
    if not prompts:
      raise ValueError('no prompts given: pass at least one prompt (an empty string is the '
                       'unconditional prompt).')
    seeds = list(range(len(prompts))) if seeds is None else list(seeds)
    if len(seeds) != len(prompts):
      raise ValueError(f'{len(seeds)} seeds for {len(prompts)} prompts: give one seed each.')
    if not 0 <= settings.strength <= 1:
      raise ValueError(f'strength {settings.strength} is outside [0, 1]: 0 returns the input, '
                       '1 ignores it; use e.g. 0.6.')
    latent = self.run.vae_config is not None
    shape = self.shape(settings)
    video_shape = (len(prompts), *self.clip_size(settings), 3)
    text = self.run.encoder.encode(prompts)
    null = tuple(a[None] for a in self.run.encoder.unconditional())
    negative = (self.run.encoder.encode([settings.negative_prompt])
                if settings.negative_prompt else None)
    if noise is None:
      noise = jnp.stack([jax.random.normal(jax.random.key(s), shape) for s in seeds])
    elif np.shape(noise) != (len(prompts), *shape):
      raise ValueError(f'noise of shape {np.shape(noise)} must be {(len(prompts), *shape)}: one '
                       'starting point per prompt, of the shape the settings sample.')
    noise = jnp.asarray(noise, jnp.float32)
    given = pixels_given = None
    if frames is not None:
      pixels_given = (_as_model_video(frames, video_shape, 'frames'),
                      _check_mask(frame_mask, video_shape[:2]))
      given = self._encode_given(*pixels_given) if latent else pixels_given
    if init is not None:
      init = _as_model_video(init, video_shape, 'init')
      init = self.vae.encode(init, pad=True) if latent else init
    branches = self._branches(text, null, negative, given)
    weights, low_weights = (samplers.guidance_weights(
        scale, settings.frame_cfg_scale if given else None, negative=negative is not None)
        for scale in (settings.cfg_scale, 1.0))
    kwargs = {}
    if given:
      kwargs.update(frames=given[0], frame_mask=given[1])
    if init is not None:
      kwargs.update(init=init, strength=jnp.float32(settings.strength))
    sampler = self._sampler(settings, (weights, low_weights), noise, branches, kwargs)
    with jax.set_mesh(self.run.mesh):
      x0 = sampler(self.params, noise, branches, **kwargs)
    if latent:
      x0 = self.vae.decode(x0)[:, :video_shape[1]]
      if pixels_given:  # the given frames come back exactly, not as the VAE reconstructs them
        x0 = conditioning.paste_given_frames(x0, *pixels_given)
    return np.asarray(x0)

  def _encode_given(self, frames_bthwc, mask_bt):
    """A latent run's given frames: their latents and the latent frames they fix (a clip's
    first frames only; see conditioning.causal_latent_mask)."""
    latents_bthwc = self.vae.encode(frames_bthwc, pad=True)
    mask = conditioning.causal_latent_mask(mask_bt, self.vae.config.temporal_downsample,
                                           latents_bthwc.shape[1])
    return latents_bthwc, jnp.asarray(mask)

  def _branches(self, text, null, negative, given):
    """Model inputs of the guidance branches (see samplers.guidance_weights), each a (states,
    mask) text plus any given frames: [text, null] without frames, where a negative prompt's
    text stands in for the empty prompt's `null`; with frames [text + frames, (negative +
    frames,) null + frames, nothing], so the frame guidance stays measured without text."""
    if not given:
      return [text, negative or null]
    frames, frame_mask = given
    nothing = (jnp.zeros_like(frames[:1]), jnp.zeros_like(frame_mask[:1]))
    steered = [(*negative, *given)] if negative else []
    return [(*text, *given), *steered, (*null, *given), (*null, *nothing)]

  def _sampler(self, settings: SampleSettings, weights, noise, branches, kwargs):
    """The compiled sampler for these shapes and settings, `weights` the guidance weights above
    and below settings.cfg_min_t; raises if it cannot fit in memory."""
    signature = jax.tree.map(lambda a: (jnp.shape(a), jnp.result_type(a)),
                             (noise, branches, kwargs))
    shift = settings.shift or self.run.shift(noise.shape[1:])
    key = (settings.steps, settings.method, shift, weights, settings.cfg_min_t, str(signature))
    if key not in self._samplers:
      sampler = samplers.make_sampler(self.run.apply, steps=settings.steps,
                                      method=settings.method, shift=shift, weights=weights[0],
                                      low_weights=weights[1], min_t=settings.cfg_min_t)
      self._check_memory(sampler, noise, branches, kwargs)
      self._samplers[key] = sampler
    return self._samplers[key]

  def _check_memory(self, sampler, noise, branches, kwargs) -> None:
    """Compiles ahead of time and fails with the bytes needed when the device lacks them."""
    spec = lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a))
    with jax.set_mesh(self.run.mesh):
      compiled = sampler.lower(self.params, *jax.tree.map(spec, (noise, branches)),
                               **jax.tree.map(spec, kwargs)).compile()
    analysis = compiled.memory_analysis()
    if analysis is None:
      return
    need = (analysis.temp_size_in_bytes + analysis.argument_size_in_bytes
            + analysis.output_size_in_bytes)
    have = available_bytes(self.run.mesh.devices.flat[0])
    batch = noise.shape[0]
    if need > have:
      raise MemoryError(
          f'sampling {batch} videos of {noise.shape[1:4]} needs {need / _BYTES_PER_GIB:.2f} GiB '
          f'but {have / _BYTES_PER_GIB:.2f} GiB is free: sample fewer prompts at a time (about '
          f'{max(1, int(batch * have / need))}) or a smaller size.')

  def write(self, videos: np.ndarray, prompts: list[str], out_dir, *, seeds: list[int],
            settings: SampleSettings, fps: float | None = None, task: str = 'text',
            start: int = 0) -> list[pathlib.Path]:
    """One mp4 per video (png for 1 frame) named from its number (from `start`) and prompt,
    each with a JSON sidecar recording the prompt, seed, task and settings. In a multi-process
    job only process 0 writes; every process gets the paths."""
    out = pathlib.Path(out_dir)
    fps = fps or self.run.config.world.fps
    paths = []
    for i, (video, prompt, seed) in enumerate(zip(videos, prompts, seeds), start):
      stem = f'{i:03d}_{media.safe_filename(prompt, max_length=60)}'
      if jax.process_index() != 0:
        paths += [out / f'{stem}.png' if video.shape[0] == 1 else out / f'{stem}.mp4',
                  out / f'{stem}.json']
        continue
      if video.shape[0] == 1:
        paths.append(media.write_image(out / f'{stem}.png', video[0]))
      else:
        paths.append(media.write_video(out / f'{stem}.mp4', video, fps=fps))
      sidecar = {'prompt': prompt, 'seed': seed, 'task': task, 'checkpoint_step': self.step,
                 'shape': list(video.shape), 'fps': fps, **dataclasses.asdict(settings)}
      paths.append(media.write_json(out / f'{stem}.json', sidecar))
    return paths
