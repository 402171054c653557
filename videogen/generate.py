"""The public sampling API: restore a trained run and turn prompts into videos.

  gen = Generator.from_workdir('outputs/run')          # or an export, e.g. reference/world_t2
  prompts, settings = ['A red circle drifts to the right.'], SampleSettings(steps=25)
  videos = gen.generate(prompts, seeds=[0], settings=settings)   # uint8 [B, T, H, W, 3]
  gen.write(videos, prompts, 'outputs/samples', seeds=[0], settings=settings)  # mp4 + sidecars

Sampling runs on one device by default, whatever mesh the run trained on: the checkpoint is
restored onto a 1-device mesh. The sampler loop is compiled once per (shape, steps, method,
guidance) and reused for every batch of prompts of that shape.
"""
import dataclasses
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from videogen import media
from videogen.diffusion import samplers
from videogen.models import patches
from videogen.train import checkpoint
from videogen.train import components

_BYTES_PER_GIB = 2 ** 30


@dataclasses.dataclass(frozen=True)
class SampleSettings:
  """How a video is sampled; recorded beside every output."""
  steps: int = 25
  method: str = 'heun'
  cfg_scale: float = 4.0
  num_frames: int | None = None   # None: the training clip's size
  height: int | None = None
  width: int | None = None


def load_config(workdir) -> ml_collections.ConfigDict:
  """workdir/config.json, or one clear error when the run does not exist."""
  path = pathlib.Path(workdir) / 'config.json'
  if not path.exists():
    raise FileNotFoundError(f'no trained run in {str(workdir)!r} (missing {path.name}): train '
                            f'first with experiments/train.py --workdir {workdir}')
  return ml_collections.ConfigDict(json.loads(path.read_text()))


def available_bytes(device) -> int:
  """Free memory of an accelerator, or the host's available memory for the CPU."""
  stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
  if stats and 'bytes_limit' in stats:
    return stats['bytes_limit'] - stats.get('bytes_in_use', 0)
  return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_AVPHYS_PAGES')


class Generator:
  """A restored model plus its text encoder; see the module docstring."""

  def __init__(self, parts: components.Components, params, step: int):
    self.parts, self.params, self.step = parts, params, step
    self._samplers = {}

  @classmethod
  def from_workdir(cls, workdir, *, step: int | None = None, use_ema: bool = True,
                   devices=None) -> 'Generator':
    """Restores `step` (default: newest) of the run in `workdir` onto `devices` (default: one).

    `workdir` is a training run (config.json + checkpoints/) or a folder written by `export`
    (config.json + params/ + export.json), which holds only the sampling weights.
    """
    config = load_config(workdir)
    config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, context=1, tensor=1))
    config.data.batch_size = 1
    parts = components.build(config, devices=devices or jax.devices()[:1])
    exported = pathlib.Path(workdir) / 'params'
    if exported.is_dir():
      abstract = parts.abstract_state.ema_params
      params = ocp.StandardCheckpointer().restore(exported.absolute(), abstract)
      info = json.loads((pathlib.Path(workdir) / 'export.json').read_text())
      return cls(parts, params, info['step'])
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'))
    step = step if step is not None else ckpt.latest_step()
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {str(workdir)!r}: train first with '
                              f'experiments/train.py --workdir {workdir}')
    state = ckpt.restore(parts.abstract_state, step=step)
    ckpt.close()
    return cls(parts, state.ema_params if use_ema else state.params, step)

  def export(self, out_dir, **info) -> pathlib.Path:
    """Writes the sampling weights alone (no optimizer state): config.json, params/ (Orbax) and
    export.json (the step plus `info`, e.g. the command and git revision). `from_workdir` reads
    it back."""
    out = pathlib.Path(out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    (out / 'config.json').write_text(self.parts.config.to_json_best_effort(indent=1))
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(out / 'params', self.params, force=True)
    checkpointer.wait_until_finished()
    media.write_json(out / 'export.json', {'step': self.step, **info})
    return out

  def shape(self, settings: SampleSettings) -> tuple[int, int, int, int]:
    """(T, H, W, C) to sample; checks the patch size divides it."""
    t, h, w, c = self.parts.shape
    shape = (settings.num_frames or t, settings.height or h, settings.width or w, c)
    patches.check_divisible(shape[:3], self.parts.model.config.patch_size)
    return shape

  def generate(self, prompts: list[str], *, seeds: list[int] | None = None,
               settings: SampleSettings = SampleSettings()) -> np.ndarray:
    """uint8 videos [B, T, H, W, 3], one per prompt; seed i fixes video i's noise."""
    if not prompts:
      raise ValueError('no prompts given: pass at least one prompt (an empty string is the '
                       'unconditional prompt).')
    seeds = list(range(len(prompts))) if seeds is None else list(seeds)
    if len(seeds) != len(prompts):
      raise ValueError(f'{len(seeds)} seeds for {len(prompts)} prompts: give one seed each.')
    shape = self.shape(settings)
    text_bld, mask_bl = self.parts.encoder.encode(prompts)
    null_ld, null_mask_l = self.parts.encoder.unconditional()
    noise = jnp.stack([jax.random.normal(jax.random.key(s), shape) for s in seeds])
    run = self._sampler(settings, noise.shape)
    with jax.set_mesh(self.parts.mesh):
      x0 = run(self.params, noise, text_bld, mask_bl, null_ld[None], null_mask_l[None])
    return media.to_uint8(np.asarray(x0))

  def _sampler(self, settings: SampleSettings, noise_shape):
    """The compiled sampler for this shape and settings; raises if it cannot fit in memory."""
    key = (noise_shape, settings.steps, settings.method, settings.cfg_scale)
    if key not in self._samplers:
      run = samplers.make_sampler(self.parts.apply, steps=settings.steps, method=settings.method,
                                  shift=self.parts.shift(noise_shape[1:]),
                                  cfg_scale=settings.cfg_scale)
      self._check_memory(run, noise_shape)
      self._samplers[key] = run
    return self._samplers[key]

  def _check_memory(self, run, noise_shape) -> None:
    """Compiles ahead of time and fails with the bytes needed when the device lacks them."""
    batch, length, dim = noise_shape[0], self.parts.encoder.max_length, self.parts.encoder.dim
    spec = lambda shape, dtype=jnp.float32: jax.ShapeDtypeStruct(shape, dtype)
    with jax.set_mesh(self.parts.mesh):
      compiled = run.lower(self.params, spec(noise_shape), spec((batch, length, dim)),
                           spec((batch, length), bool), spec((1, length, dim)),
                           spec((1, length), bool)).compile()
    analysis = compiled.memory_analysis()
    if analysis is None:
      return
    need = (analysis.temp_size_in_bytes + analysis.argument_size_in_bytes
            + analysis.output_size_in_bytes)
    have = available_bytes(self.parts.mesh.devices.flat[0])
    if need > have:
      raise MemoryError(
          f'sampling {batch} videos of {noise_shape[1:4]} needs {need / _BYTES_PER_GIB:.2f} GiB '
          f'but {have / _BYTES_PER_GIB:.2f} GiB is free: sample fewer prompts at a time (about '
          f'{max(1, int(batch * have / need))}) or a smaller size.')

  def write(self, videos: np.ndarray, prompts: list[str], out_dir, *, seeds: list[int],
            settings: SampleSettings, fps: float | None = None) -> list[pathlib.Path]:
    """One mp4 per video (png for 1 frame) named from its prompt, each with a JSON sidecar."""
    out = pathlib.Path(out_dir)
    fps = fps or self.parts.config.world.fps
    paths = []
    for i, (video, prompt, seed) in enumerate(zip(videos, prompts, seeds)):
      stem = f'{i:03d}_{media.safe_filename(prompt, max_length=60)}'
      if video.shape[0] == 1:
        paths.append(media.write_image(out / f'{stem}.png', video[0]))
      else:
        paths.append(media.write_video(out / f'{stem}.mp4', video, fps=fps))
      sidecar = {'prompt': prompt, 'seed': seed, 'checkpoint_step': self.step,
                 'shape': list(video.shape), 'fps': fps, **dataclasses.asdict(settings)}
      paths.append(media.write_json(out / f'{stem}.json', sidecar))
    return paths
