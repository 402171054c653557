"""Fixed prompt sets from the world: captions of seeded scenes, with the scenes to score them by."""
import dataclasses

import ml_collections

from videogen.data import world


@dataclasses.dataclass(frozen=True)
class Prompt:
  text: str
  scene: world.Scene
  split: str   # 'train' (a combination seen in training) or 'held_out'
  seed: int


def world_prompts(config: ml_collections.ConfigDict, *, num_train: int,
                 num_held_out: int) -> list[Prompt]:
  """Captions of fixed world scenes that training never rendered (a separate seed)."""
  options = world.WorldOptions.from_config(config.world)
  seed = config.seed + 10_000
  splits = [('train', num_train)] + ([('held_out', num_held_out)] if options.held_out else [])
  prompts = []
  for split, count in splits:
    for index in range(count):
      scene = world.sample_scene(options, seed, index, split)
      prompts.append(Prompt(world.caption(scene, seed + index), scene, split, index))
  return prompts
