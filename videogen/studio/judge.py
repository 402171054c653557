"""World scores of a studio result against its prompt (world models only).

world_scores.score_video measures a video against the world scene it should show. A prompt the
studio drew from the world (`draw`) comes with its scene. A typed prompt is read back into one
(`scene_of`, through world.parse_prompt): each object needs its colour, kind and motion (with
direction and speed when it moves); what the text leaves out is taken from the run's world when
that allows one value only (the default world moves every object, so 'A red circle drifts right
slowly.' is complete). A prompt that still leaves something out is not scored, and the note
says what it lacks. Sizes only decide whether an occluder bar could hide an object, and the
largest the world draws is assumed; a pan ('The camera pans left.') and a background style
('textured', 'softly graded') are read from the text.
"""
import dataclasses
import re

import ml_collections
import numpy as np

from videogen.data import captions
from videogen.data import world
from videogen.evals import world_scores

_PAN = re.compile(r'\bcamera\s+pans\s+(left|right|up|down)\b')
_STYLES = {phrase: style for style, phrases in captions.STYLE_WORDS.items()
           for phrase in phrases if phrase}
STUDIO_SEED_OFFSET = 40_000  # drawn prompts come from scenes apart from training and evals


@dataclasses.dataclass(frozen=True)
class Judgement:
  """A result's world scores, or None with the reason they could not be measured."""
  scores: world_scores.WorldScores | None
  note: str = ''

  def to_json(self) -> dict:
    return {'scores': dataclasses.asdict(self.scores) if self.scores else None,
            'note': self.note}

  def markdown(self) -> str:
    """A table of the five scores with the analyser's reason beside each one below 1."""
    if self.scores is None:
      return f'**World scores:** not measured: {self.note}'
    rows = ['| score | value | why not 1 |', '| --- | --- | --- |']
    for name in world_scores.CATEGORIES:
      value = getattr(self.scores, name)
      shown = 'n/a' if value is None else f'{value:.0%}'
      rows.append(f'| {name} | {shown} | {self.scores.reasons.get(name, "")} |')
    return '**World scores**\n\n' + '\n'.join(rows)


def draw(config: ml_collections.ConfigDict, index: int) -> tuple[str, world.Scene]:
  """Scene `index` of the run's world (train split, a seed of its own) and its caption."""
  options = world.WorldOptions.from_config(config.world)
  seed = config.seed + STUDIO_SEED_OFFSET
  scene = world.sample_scene(options, seed, index, 'train')
  return world.caption(scene, seed + index), scene


def _only(values, what: str, obj: dict) -> str:
  """The run's world's one value of `what`, or one sentence when it has several."""
  if len(values) == 1:
    return values[0]
  raise ValueError(f'the prompt does not say {what} the {obj["colour"]} object '
                   f'{"is" if what == "what" else "moves"} ({" or ".join(values)})')


def scene_of(prompt: str, config: ml_collections.ConfigDict,
             frames_thwc: np.ndarray) -> world.Scene:
  """The scene a typed prompt asks for, shown at the video's size and length; raises
  ValueError naming what the prompt leaves out."""
  options = world.WorldOptions.from_config(config.world)
  parsed = world.parse_prompt(prompt)
  if not parsed:
    raise ValueError(f'the prompt names no object by a colour of the world '
                     f'({", ".join(options.colours)})')
  size = max(options.sizes, key=world.SIZES.get)
  t, h, w = frames_thwc.shape[:3]
  view = (w / min(h, w), h / min(h, w))
  objects = []
  for obj in parsed:
    kind = obj['kind'] or _only(options.kinds, 'what', obj)
    motion = obj['motion'] or _only(options.motions, 'how', obj)
    direction = speed = None
    if motion == 'move':
      direction = obj['direction'] or _only(options.directions, 'which way', obj)
      speed = obj['speed'] or _only(options.speeds, 'how fast', obj)
    objects.append(world.ObjectSpec(obj['colour'], kind, obj['digit'], 0, size, motion,
                                    direction, speed, view[0] / 2, view[1] / 2))
  text = prompt.lower()
  pan = _PAN.search(text)
  style = next((s for phrase, s in _STYLES.items() if phrase in text), 'plain')
  return world.Scene(view=view, duration=(t - 1) / options.fps, objects=tuple(objects),
                     background=options.backgrounds[0], background_style=style, background_seed=0,
                     occluder=None, pan=pan[1] if pan else None)


def judge(frames_thwc: np.ndarray, prompt: str, config: ml_collections.ConfigDict,
          scene: world.Scene | None = None) -> Judgement:
  """The world scores of a video against its prompt (or the drawn `scene` it captions)."""
  try:
    scene = scene or scene_of(prompt, config, frames_thwc)
  except ValueError as reason:
    return Judgement(None, f'{reason}; the world scores need the colour, kind and motion of '
                     'every object, as the world prompt button writes them.')
  return Judgement(world_scores.score_video(frames_thwc, scene, config.world.fps))
