"""What the loaded model can be asked for: the frame sizes and lengths offered in the form, the
samplers, the prompting tasks and whether the world scores apply.

Sizes are the world's clip size, then each aspect of data.sizes at its training size (the
sizes a `packed` or `buckets` run trained on); lengths are the world's frame count and the
data.sizes durations. Every one offered passes the Generator's own check (the patch divides
the shape the model samples); one-frame lengths (images) are left out, since the studio plays
videos.
"""
import dataclasses

import ml_collections

from videogen.data import sizes as sizes_lib
from videogen.diffusion import samplers
from videogen.inference import generate
from videogen.inference import prompting

# The tasks of a latent model, as prompting.run_task names them (its causal VAE takes only a
# clip's first frames as given, so it extends forward only: prompting.LATENT_TASKS).
LATENT_TASKS = ('text', 'image', 'extend', 'edit')


@dataclasses.dataclass(frozen=True)
class Choices:
  sizes: tuple[tuple[int, int], ...]  # (height, width), the world's first
  lengths: tuple[int, ...]            # frames per window, the world's first
  methods: tuple[str, ...]
  tasks: tuple[str, ...]
  world: bool                         # whether the world scores apply
  fps: float
  latent: bool
  cfg_min_t: float = 0.0              # the run's guidance interval (config.sample), kept as is

  @property
  def size_labels(self) -> list[str]:
    return [size_label(*size) for size in self.sizes]


def size_label(height: int, width: int) -> str:
  """'32x32': width x height, as video sizes are written."""
  return f'{width}x{height}'


def is_world_model(config: ml_collections.ConfigDict) -> bool:
  """Whether a run learned the procedural world (its pixels, or their latents), so that world
  scores measure its videos: a config with a world section not trained on a folder of clips."""
  return 'world' in config and config.get('data', {}).get('source', 'world') != 'folder'


def _fits(gen: generate.Generator, num_frames: int, height: int, width: int) -> bool:
  try:
    gen.shape(generate.SampleSettings(num_frames=num_frames, height=height, width=width))
  except ValueError:
    return False
  return True


def of(gen: generate.Generator) -> Choices:
  """The choices of a loaded Generator."""
  config, w = gen.run.config, gen.run.config.world
  sizes, lengths = [(w.height, w.width)], [w.num_frames]
  table = config.get('data', {}).get('sizes')
  if table:
    for aspect in table.aspects:
      sizes.append(sizes_lib.frame_size(sizes_lib.parse_aspect(aspect), table.side,
                                        gen.run.model.config.patch_size))
    lengths += list(table.durations)
  sizes = [s for s in dict.fromkeys(sizes) if _fits(gen, w.num_frames, *s)]
  lengths = [n for n in dict.fromkeys(lengths) if n > 1 and _fits(gen, n, w.height, w.width)]
  latent = gen.run.vae_config is not None
  return Choices(sizes=tuple(sizes), lengths=tuple(lengths), methods=samplers.METHODS,
                 tasks=LATENT_TASKS if latent else prompting.TASKS, world=is_world_model(config),
                 fps=float(w.fps), latent=latent,
                 cfg_min_t=generate.settings_for(config).cfg_min_t)
