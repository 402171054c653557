"""Prompting with images and videos: every task is one frame-conditioned sampler call.

  gen = generate.Generator.from_workdir('outputs/demo/run')
  video = prompting.image_to_video(gen, 'still.png', 'A red circle drifts to the right.')
  longer = prompting.extend(gen, video, 'A red circle drifts to the right.', frames=16)
  bridge = prompting.connect(gen, clip_a, clip_b, 'A red circle moves left.')
  looped = prompting.loop(gen, 'A blue square moves up.')
  edited = prompting.edit(gen, video, 'A green circle drifts to the right.', strength=0.6)

Inputs are paths (mp4/webm/gif/png/jpg) or uint8 arrays ([T, H, W, 3] or an image [H, W, 3]),
scaled to cover the model's size and centre-cropped (a warning, or an error with strict=True,
when the aspect ratio differs). Outputs are uint8 [T, H, W, 3]. Given frames come back exactly
(the sampler holds them, diffusion/conditioning.py). A latent model (trained on a VAE's
latents) does image_to_video, extend forward and edit: its VAE is causal, so only a clip's first
frames can be given (see LATENT_TASKS). `settings` picks the sampler, the text
guidance (cfg_scale, steering away from negative_prompt when one is set) and the frame guidance
(frame_cfg_scale); its size fields set the window. `generate.settings_for(gen.run.config)` gives
the run's own sampler (with its guidance interval, cfg_min_t); the default Settings() guides at
every time.
"""
import dataclasses
import os
import pathlib
import warnings

import jax
import numpy as np

from videogen.core import grids
from videogen.core import media
from videogen.core import text_files
from videogen.data import clips
from videogen.inference import generate

Settings = generate.SampleSettings
# The tasks of a latent model: those whose given frames start the clip, plus SDEdit.
LATENT_TASKS = ('image_to_video', 'extend_forward', 'edit')
_ASPECT_TOLERANCE = 0.01


def load_video(source, height: int, width: int, *, strict: bool = False,
               name: str = 'video') -> np.ndarray:
  """uint8 [T, H, W, 3] at (height, width) from a path or array (an image is one frame)."""
  frames = media.read_video(source) if isinstance(source, (str, os.PathLike)) else source
  frames = np.asarray(frames)
  if frames.ndim == 3:
    frames = frames[None]
  if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
    raise ValueError(f'{name} of dtype {frames.dtype} and shape {frames.shape} is not a uint8 '
                     'RGB video [T, H, W, 3] or image [H, W, 3]: pass a path or uint8 frames.')
  source_aspect, aspect = frames.shape[2] / frames.shape[1], width / height
  if abs(source_aspect / aspect - 1) > _ASPECT_TOLERANCE:
    message = (f'{name} is {frames.shape[2]}x{frames.shape[1]} (aspect {source_aspect:.3f}) but '
               f'the model samples {width}x{height} (aspect {aspect:.3f})')
    if strict:
      raise ValueError(f'{message}: crop it to {width}:{height} first, or drop strict.')
    warnings.warn(f'{message}; scaling to cover and cropping the centre.', stacklevel=3)
  return clips.resize_crop(frames, height, width)


def _window(gen: generate.Generator, settings: Settings, num_frames: int | None = None):
  """(settings with the window's frame count, its video's (T, H, W)) checked against the
  patch size."""
  settings = dataclasses.replace(settings, num_frames=num_frames or settings.num_frames)
  gen.shape(settings)
  return settings, gen.clip_size(settings)


def _sample(gen, prompt, seed, settings, frames_thwc, mask_t) -> np.ndarray:
  return gen.generate([prompt], seeds=[seed], settings=settings, frames=frames_thwc[None],
                      frame_mask=np.asarray(mask_t)[None])[0]


def keyframes(gen: generate.Generator, images: dict, prompt: str, *, seed: int = 0,
              settings: Settings = Settings(), strict: bool = False) -> np.ndarray:
  """A video through the given frames {index: image}; negative indices count from the end."""
  settings, (t, h, w) = _window(gen, settings)
  if not images:
    raise ValueError('no keyframes given: pass {index: image}, e.g. {0: "first.png"}.')
  frames, mask = np.zeros((t, h, w, 3), np.uint8), np.zeros(t, bool)
  for index, image in images.items():
    position = index + t if index < 0 else index
    if not 0 <= position < t:
      raise ValueError(f'keyframe index {index} is outside a {t}-frame video: use 0 to {t - 1} '
                       f'(or -{t} to -1), or sample more frames with num_frames.')
    if mask[position]:
      raise ValueError(f'keyframe index {index} collides with another at frame {position}: give '
                       'each frame once.')
    picture = load_video(image, h, w, strict=strict, name=f'keyframe {index}')
    if len(picture) != 1:
      raise ValueError(f'keyframe {index} has {len(picture)} frames: pass one image per index.')
    frames[position], mask[position] = picture[0], True
  return _sample(gen, prompt, seed, settings, frames, mask)


def image_to_video(gen: generate.Generator, image, prompt: str, *, seed: int = 0,
                   settings: Settings = Settings(), strict: bool = False) -> np.ndarray:
  """Animates a still: the video's first frame is `image`."""
  return keyframes(gen, {0: image}, prompt, seed=seed, settings=settings, strict=strict)


def extend(gen: generate.Generator, video, prompt: str, *, frames: int,
           direction: str = 'forward', context: int | None = None, seed: int = 0,
           settings: Settings = Settings(), strict: bool = False) -> np.ndarray:
  """`video` with `frames` new frames after it (forward) or before it (backward).

  Each window of the model's length is conditioned on the `context` frames nearest the growing
  end (default: half the window) and adds the rest; windows repeat until `frames` are made, so
  any length works and every window overlaps the one before by `context` frames. On a latent
  model only the first 1 + r·j context frames (whole latent frames; r: the VAE's temporal
  compression) condition the window; the rest come back exactly but the model does not see
  them, so there prefer context = 1 + r·j.
  """
  if direction not in ('forward', 'backward'):
    raise ValueError(f"direction {direction!r} is unknown: use 'forward' or 'backward'.")
  settings, (t, h, w) = _window(gen, settings)
  context = t // 2 if context is None else context
  if not 1 <= context < t:
    raise ValueError(f'context {context} must be in [1, {t - 1}] for a {t}-frame window: keep '
                     'at least one new frame per window.')
  if frames < 1:
    raise ValueError(f'frames {frames} must be at least 1: the number of new frames to add.')
  video = load_video(video, h, w, strict=strict)
  if len(video) < context:
    raise ValueError(f'the video has {len(video)} frames but extending needs at least context='
                     f'{context}: pass a longer video or a smaller context.')
  forward = direction == 'forward'
  mask = np.arange(t) < context if forward else np.arange(t) >= t - context
  made, window = 0, 0
  while made < frames:
    window_frames = np.zeros((t, h, w, 3), np.uint8)
    if forward:
      window_frames[:context] = video[-context:]
    else:
      window_frames[t - context:] = video[:context]
    out = _sample(gen, prompt, seed + window, settings, window_frames, mask)
    new = out[context:] if forward else out[:t - context]
    keep = min(len(new), frames - made)
    new = new[:keep] if forward else new[len(new) - keep:]
    video = np.concatenate([video, new] if forward else [new, video])
    made, window = made + len(new), window + 1
  return video


def connect(gen: generate.Generator, video_a, video_b, prompt: str, *,
            frames: int | None = None, context: int = 1, seed: int = 0,
            settings: Settings = Settings(), strict: bool = False) -> np.ndarray:
  """A transition [A's last `context` frames, `frames` new ones, B's first `context` frames];
  `frames` defaults to what fills the model's window."""
  _, (t, h, w) = _window(gen, settings)
  frames = t - 2 * context if frames is None else frames
  if context < 1 or frames < 1:
    raise ValueError(f'context {context} and frames {frames} must both be at least 1.')
  settings, (length, h, w) = _window(gen, settings, frames + 2 * context)
  a = load_video(video_a, h, w, strict=strict, name='video_a')
  b = load_video(video_b, h, w, strict=strict, name='video_b')
  for name, clip in (('video_a', a), ('video_b', b)):
    if len(clip) < context:
      raise ValueError(f'{name} has {len(clip)} frames, fewer than context={context}: pass a '
                       'longer video or a smaller context.')
  window = np.zeros((length, h, w, 3), np.uint8)
  window[:context], window[length - context:] = a[-context:], b[:context]
  mask = (np.arange(length) < context) | (np.arange(length) >= length - context)
  return _sample(gen, prompt, seed, settings, window, mask)


def loop(gen: generate.Generator, video_or_prompt, prompt: str | None = None, *,
         frames: int | None = None, context: int = 1, seed: int = 0,
         settings: Settings = Settings(), strict: bool = False) -> np.ndarray:
  """A video that plays seamlessly on repeat: the clip (given, or generated from the prompt)
  followed by new frames that lead from its end back to its start (`connect` with itself)."""
  if isinstance(video_or_prompt, str):
    prompt = video_or_prompt if prompt is None else prompt
    video = gen.generate([video_or_prompt], seeds=[seed], settings=settings)[0]
  else:
    if prompt is None:
      raise ValueError('looping a video needs a prompt for the new frames: pass prompt=...')
    video = load_video(video_or_prompt, *_window(gen, settings)[1][1:], strict=strict)
  bridge = connect(gen, video, video, prompt, frames=frames, context=context, seed=seed + 1,
                   settings=settings, strict=strict)
  return np.concatenate([video, bridge[context:len(bridge) - context]])


def edit(gen: generate.Generator, video, prompt: str, *, strength: float, seed: int = 0,
         settings: Settings = Settings(), strict: bool = False) -> np.ndarray:
  """SDEdit: the video noised to t = strength, denoised under `prompt` (0: unchanged, 1: new)."""
  if not 0 <= strength <= 1:
    raise ValueError(f'strength {strength} is outside [0, 1]: 0 returns the input, 1 ignores '
                     'it; use e.g. 0.6.')
  _, (_, h, w) = _window(gen, settings)
  video = load_video(video, h, w, strict=strict)
  settings, _ = _window(gen, dataclasses.replace(settings, strength=strength), len(video))
  return gen.generate([prompt], seeds=[seed], settings=settings, init=video[None])[0]


TASKS = ('text', 'image', 'extend', 'loop', 'connect', 'keyframes', 'edit')


@dataclasses.dataclass(frozen=True)
class TaskInputs:
  """What a task is given beside its prompt (experiments/sample.py's flags)."""
  image: str | None = None        # image: the still to animate
  video: str | None = None        # extend, loop (optional), connect (the first clip), edit
  video_b: str | None = None      # connect: the clip to lead into
  keyframes: tuple[str, ...] = ()  # keyframes: 'INDEX:PATH' items
  frames: int | None = None       # new frames: extend (required), connect and loop
  direction: str = 'forward'      # extend: which end grows
  context: int | None = None      # given frames per window (extend, connect, loop)
  strength: float = 0.6           # edit: SDEdit noise level
  strict: bool = False            # refuse inputs of another aspect ratio


def parse_keyframes(items) -> dict[int, str]:
  """{frame index: image path} from 'INDEX:PATH' items (a negative index counts from the end)."""
  frames = {}
  for item in items:
    index, sep, path = item.partition(':')
    if not sep or not index.lstrip('-').isdigit():
      raise ValueError(f'keyframe {item!r} is not INDEX:PATH, e.g. --keyframe 0:a.png.')
    frames[int(index)] = path
  if not frames:
    raise ValueError('the keyframes task needs at least one keyframe INDEX:PATH.')
  return frames


_NEEDS = {'image': ('image',), 'extend': ('video', 'frames'), 'connect': ('video', 'video_b'),
          'edit': ('video',), 'keyframes': ('keyframes',)}


def read_prompts(path) -> list[str]:
  """The prompts of a UTF-8 text file, one per line (blank lines skipped)."""
  prompts = [line.strip() for line in text_files.read_utf8(path, 'prompt file').splitlines()]
  prompts = [p for p in prompts if p]
  if not prompts:
    raise ValueError(f'prompt file {str(path)!r} holds no prompts: write one prompt per line.')
  return prompts


def gather_prompts(prompts, prompts_file=None) -> list[str]:
  """`prompts` (--prompt), then those of `prompts_file` (--prompts_file); one sentence when
  there are none."""
  prompts = list(prompts or []) + (read_prompts(prompts_file) if prompts_file else [])
  if not prompts:
    raise ValueError('no prompts given: pass --prompt "..." (repeat for several) or '
                     '--prompts_file with one prompt per line.')
  return prompts


def check_inputs(task: str, inputs: TaskInputs) -> None:
  """Raises ValueError when `task` is unknown or lacks an input it needs."""
  if task not in TASKS:
    raise ValueError(f'task {task!r} is unknown: use one of {TASKS}.')
  for field in _NEEDS.get(task, ()):
    if not getattr(inputs, field):
      flag = 'keyframe INDEX:PATH' if field == 'keyframes' else field
      raise ValueError(f'the {task} task needs --{flag}.')
  if task == 'keyframes':
    parse_keyframes(inputs.keyframes)


def run_task(gen: generate.Generator, task: str, prompt: str, seed: int, settings: Settings,
             inputs: TaskInputs = TaskInputs()) -> np.ndarray:
  """The uint8 video [T, H, W, 3] that `task` (one of TASKS) makes for one prompt."""
  check_inputs(task, inputs)
  common = dict(seed=seed, settings=settings, strict=inputs.strict)
  context = {} if inputs.context is None else {'context': inputs.context}
  if task == 'text':
    return gen.generate([prompt], seeds=[seed], settings=settings)[0]
  if task == 'image':
    return image_to_video(gen, inputs.image, prompt, **common)
  if task == 'extend':
    return extend(gen, inputs.video, prompt, frames=inputs.frames,
                  direction=inputs.direction, **context, **common)
  if task == 'loop':
    video = pathlib.Path(inputs.video) if inputs.video else None  # a path, not a prompt (str)
    return loop(gen, video or prompt, prompt, frames=inputs.frames, **context, **common)
  if task == 'connect':
    return connect(gen, inputs.video, inputs.video_b, prompt, frames=inputs.frames,
                   **context, **common)
  if task == 'keyframes':
    return keyframes(gen, parse_keyframes(inputs.keyframes), prompt, **common)
  return edit(gen, inputs.video, prompt, strength=inputs.strength, **common)


def sample_and_write(gen: generate.Generator, task: str, prompts, seed: int, settings: Settings,
                     out, inputs: TaskInputs = TaskInputs()) -> list:
  """Runs `task` for each prompt (the i-th with seed + i) and saves one video (png for 1 frame)
  + JSON sidecar per prompt and, for several prompts of one shape, a captioned grid in `out`.
  Returns the paths. In a multi-process job every process samples; process 0 writes."""
  if jax.process_index() == 0:
    media.check_writable_folder(out)  # before the sampling, not after
  seeds = [seed + i for i in range(len(prompts))]
  videos = [run_task(gen, task, p, s, settings, inputs) for p, s in zip(prompts, seeds)]
  if task == 'edit':
    settings = dataclasses.replace(settings, strength=inputs.strength)
  paths = []
  for i, (video, prompt, s) in enumerate(zip(videos, prompts, seeds)):
    paths += gen.write(video[None], [prompt], out, seeds=[s], settings=settings, task=task,
                       start=i)
  if len(prompts) > 1 and len({v.shape for v in videos}) == 1 and jax.process_index() == 0:
    paths += grids.write_grid(f'{out}/grid', videos, prompts, fps=gen.run.config.world.fps)
  return paths
