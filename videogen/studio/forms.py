"""The studio's form, checked: raw values from the page (or its API) become a `Job`, the prompt,
seed, SampleSettings and prompting.TaskInputs that prompting.run_task takes, or a ValueError of
one sentence that names the value and the fix. Nothing here samples or loads a model.

Uploads arrive as files; each is read once here (media.read_video) so that an unreadable one is
refused before the sampler starts, and handed on by path.
"""
import dataclasses
import math
import numbers
import pathlib
import re

from videogen.core import media
from videogen.inference import generate
from videogen.inference import prompting
from videogen.studio import choices as choices_lib

MAX_STEPS = 200
READABLE = ('.mp4', '.webm', '.mov', '.mkv', '.gif', '.png', '.jpg', '.jpeg')
# The extra fields each task's tab adds to the shared ones, in the page's (and API's) order.
TASK_FIELDS = {
    'text': (),
    'image': ('image',),
    'extend': ('video', 'frames', 'direction', 'context'),
    'loop': ('video', 'frames'),
    'connect': ('video', 'video_b', 'frames'),
    'keyframes': ('keyframes', 'indices'),
    'edit': ('video', 'strength'),
}
_SIZE = re.compile(r'^\s*(\d+)\s*[x×X*]\s*(\d+)')


@dataclasses.dataclass(frozen=True)
class Shared:
  """The fields every tab shares, as the page sends them."""
  prompt: str | None
  negative_prompt: str | None
  seed: float | None
  steps: float | None
  method: str | None
  cfg: float | None
  frame_cfg: float | None
  size: str | None    # 'WIDTHxHEIGHT', e.g. '32x32'
  length: float | str | None  # frames per window


@dataclasses.dataclass(frozen=True)
class Job:
  """One sampling job, ready for prompting.run_task."""
  task: str
  prompt: str
  seed: int
  settings: generate.SampleSettings
  inputs: prompting.TaskInputs
  uploads: dict  # field -> the uploaded file's name (for the sidecar)


def whole(value, name: str, low: int, high: int | None = None, example: int = 1) -> int:
  """`value` as an int in [low, high], or one sentence."""
  if isinstance(value, str):
    value = value.strip()
    value = int(value) if re.fullmatch(r'-?\d+', value) else value
  ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
        and math.isfinite(value) and value == int(value))
  bounds = f'from {low}' + (f' to {high}' if high is not None else ' up')
  if not ok or value < low or (high is not None and value > high):
    raise ValueError(f'{name} {value!r} is not a whole number {bounds}: enter e.g. {example}.')
  return int(value)


def scale(value, name: str) -> float:
  """A guidance scale of at least 1 (1: no guidance), or one sentence."""
  if not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 1:
    raise ValueError(f'{name} {value!r} must be a number of at least 1 (1: no guidance): use '
                     'e.g. 4.')
  return float(value)


def size(text, offered: choices_lib.Choices) -> tuple[int, int]:
  """(height, width) from 'WIDTHxHEIGHT'; the patch check comes with the sampler's shape."""
  match = _SIZE.match(str(text or ''))
  if not match or not int(match[1]) or not int(match[2]):
    raise ValueError(f'size {text!r} is not WIDTHxHEIGHT in pixels: pick one of '
                     f'{", ".join(offered.size_labels)}.')
  return int(match[2]), int(match[1])


def settings(shared: Shared, offered: choices_lib.Choices) -> generate.SampleSettings:
  """The sampler settings of the shared fields."""
  if shared.method not in offered.methods:
    raise ValueError(f'sampler {shared.method!r} is unknown: pick one of '
                     f'{", ".join(offered.methods)}.')
  height, width = size(shared.size, offered)
  return generate.SampleSettings(
      steps=whole(shared.steps, 'steps', 1, MAX_STEPS, 25), method=shared.method,
      cfg_scale=scale(shared.cfg, 'text guidance'), cfg_min_t=offered.cfg_min_t,
      frame_cfg_scale=scale(shared.frame_cfg, 'frame guidance'),
      num_frames=whole(shared.length, 'frames', 2, example=offered.lengths[0]),
      height=height, width=width, negative_prompt=(shared.negative_prompt or '').strip())


def upload(path, what: str, *, min_frames: int = 1) -> str:
  """The path of an uploaded video or image that media.read_video reads, or one sentence."""
  if not path:
    raise ValueError(f'the {what} is missing: upload a video or image '
                     f'({", ".join(READABLE)}).')
  name = pathlib.Path(path).name
  try:
    frames = media.read_video(path)
  except (ValueError, OSError) as error:
    raise ValueError(f'the {what} {name!r} cannot be read as a video or image: upload a file '
                     f'of {", ".join(READABLE)} that plays.') from error
  if len(frames) < min_frames:
    raise ValueError(f'the {what} {name!r} has {len(frames)} frame: upload a video of at least '
                     f'{min_frames} frames (the image tab animates a still).')
  return str(path)


def keyframe_items(paths, indices) -> tuple[str, ...]:
  """'INDEX:PATH' items (prompting.parse_keyframes) from the uploaded images and a text of
  their frame indices, e.g. '0, -1' (negative counts from the end)."""
  paths = [p for p in (paths or []) if p]
  if not paths:
    raise ValueError('no keyframe images: upload one image per keyframe.')
  given = re.split(r'[\s,]+', str(indices or '').strip())
  if len(given) != len(paths) or not all(re.fullmatch(r'-?\d+', n) for n in given):
    raise ValueError(f'frame indices {indices!r} must be {len(paths)} whole numbers, one per '
                     'image in upload order: write e.g. "0, -1".')
  return tuple(f'{int(n)}:{upload(p, f"keyframe {n}")}' for n, p in zip(given, paths))


def task_inputs(task: str, fields: dict, offered: choices_lib.Choices) -> prompting.TaskInputs:
  """prompting.TaskInputs of a task's own fields (TASK_FIELDS)."""
  get = fields.get
  if task == 'image':
    return prompting.TaskInputs(image=upload(get('image'), 'image to animate'))
  if task == 'extend':
    direction = get('direction') or 'forward'
    if direction not in ('forward', 'backward'):
      raise ValueError(f'direction {direction!r} is unknown: pick forward or backward.')
    if direction == 'backward' and offered.latent:
      raise ValueError('a latent model extends forward only (its causal VAE takes only a '
                       "clip's first frames): pick forward.")
    context = get('context')
    return prompting.TaskInputs(
        video=upload(get('video'), 'video to extend'), direction=direction,
        frames=whole(get('frames'), 'new frames', 1, example=8),
        context=None if context in (None, '', 0) else whole(context, 'context frames', 1))
  if task == 'loop':
    video = get('video')
    return prompting.TaskInputs(video=upload(video, 'video to loop') if video else None,
                                frames=whole(get('frames'), 'new frames', 1, example=4))
  if task == 'connect':
    return prompting.TaskInputs(video=upload(get('video'), 'first video'),
                                video_b=upload(get('video_b'), 'second video'),
                                frames=whole(get('frames'), 'new frames', 1, example=4))
  if task == 'keyframes':
    return prompting.TaskInputs(keyframes=keyframe_items(get('keyframes'), get('indices')))
  if task == 'edit':
    strength = get('strength')
    if not isinstance(strength, numbers.Real) or not 0 <= strength <= 1:
      raise ValueError(f'strength {strength!r} is outside [0, 1]: 0 keeps the video, 1 ignores '
                       'it; use e.g. 0.6.')
    return prompting.TaskInputs(video=upload(get('video'), 'video to edit', min_frames=2),
                                strength=float(strength))
  return prompting.TaskInputs()


def job(task: str, shared: Shared, fields: dict, offered: choices_lib.Choices) -> Job:
  """The checked Job of a tab's submission."""
  if task not in offered.tasks:
    raise ValueError(f'task {task!r} is not one this model does: use one of '
                     f'{", ".join(offered.tasks)}.')
  prompt = (shared.prompt or '').strip()
  if not prompt:
    raise ValueError('the prompt is empty: describe the video, e.g. "A red circle drifts to '
                     'the right."')
  seed = whole(shared.seed, 'seed', 0, 2**31 - 1, 0)
  sampler = settings(shared, offered)
  inputs = task_inputs(task, fields, offered)
  uploads = {name: [pathlib.Path(p).name for p in value] if isinstance(value, list)
             else pathlib.Path(value).name
             for name, value in fields.items() if name in ('image', 'video', 'video_b',
                                                            'keyframes') and value}
  return Job(task, prompt, seed, sampler, inputs, uploads)
