"""Every prompting task run on world clips the model never saw, scored from the pixels.

Each clip is the world's own render of an eval prompt's scene (T frames), so the object, its
colour and its motion are known. Per task:
  image_to_video   given frame 0: frames where the object keeps its colour and size (0.5-2x
                   the given frame's pixels), target >= 90%
  extend_forward   given the first half: videos whose new half moves the way the truth's does
                   (tracker direction from the last given frame on), target >= 75%
  extend_backward  the same, given the last half
  connect          given A's end (frame 0) and B's start (frame T-1): boundaries exact and no
                   frame between without the object, target 100%
  keyframes        given frames 0, T/2 and T-1: exact, and frames with the object
  loop             the clip then a bridge back to its start: bridge frames with the object
  edit             SDEdit to another prompt's caption: mean pixel change at each strength,
                   target strictly increasing
'Given exact' is the largest pixel difference on given frames (pixel space: must be 0).
"""
import dataclasses
import pathlib

import numpy as np

from videogen import generate
from videogen import media
from videogen import prompting
from videogen.data import world
from videogen.evals import motion_classes
from videogen.evals import tracking

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclasses.dataclass
class TaskScore:
  task: str
  measure: str
  value: float      # percent, or for edit 1.0 when increasing
  target: str
  passed: bool
  given_error: int  # max |output - given| over given frames (uint8 levels)
  detail: str = ''


def _colour(scene: world.Scene) -> str:
  return scene.objects[0].colour


def _object_frames(video, colour, reference_pixels=None) -> np.ndarray:
  """bool [T]: frames where the colour is tracked (and, given a reference count, 0.5-2x it)."""
  counts = tracking.colour_mask(video, colour).sum((1, 2))
  present = ~np.isnan(tracking.track(video, colour)[:, 0])
  if reference_pixels is None:
    return present
  return present & (counts >= 0.5 * reference_pixels) & (counts <= 2 * reference_pixels)


def _direction(video, colour) -> str:
  min_px = motion_classes.MIN_DISPLACEMENT * min(video.shape[1:3])
  return tracking.motion_direction(tracking.track(video, colour), min_px)


def _given_error(video, truth, indices) -> int:
  return int(np.abs(video[indices].astype(int) - truth[indices].astype(int)).max())


def score_tasks(gen: generate.Generator, prompts, truths, settings: generate.SampleSettings,
                out: pathlib.Path | None = None) -> list[TaskScore]:
  """Runs every task on each (prompt, truth clip) (a latent model: prompting.LATENT_TASKS);
  writes per-task grids into `out`/tasks."""
  t = truths[0].shape[0]
  latent = gen.parts.vae_config is not None
  half, bridge = t // 2, max(t - 2, 1)  # bridge: new frames of connect and loop
  colours = [_colour(p.scene) for p in prompts]
  outputs = {}

  def wanted(task):  # a latent model is given only a clip's first frames
    return not latent or task in prompting.LATENT_TASKS

  def run(task, fn):
    outputs[task] = [fn(p, truth, i) for i, (p, truth) in enumerate(zip(prompts, truths))]
    return outputs[task]

  scores = []
  videos = run('image_to_video', lambda p, truth, i: prompting.image_to_video(
      gen, truth[0], p.text, seed=p.seed, settings=settings))
  kept = [_object_frames(v, c, tracking.colour_mask(truth[:1], c).sum())
          for v, c, truth in zip(videos, colours, truths)]
  scores.append(_percent('image_to_video', 'frames keeping colour and size', kept, 90,
                         max(_given_error(v, tr, [0]) for v, tr in zip(videos, truths))))

  for direction in ('forward', 'backward'):
    task = f'extend_{direction}'
    if not wanted(task):
      continue
    videos = run(task, lambda p, truth, i, d=direction: prompting.extend(
        gen, truth[:half] if d == 'forward' else truth[half:], p.text, frames=t - half,
        direction=d, context=half, seed=p.seed, settings=settings))
    span = slice(half - 1, t) if direction == 'forward' else slice(0, half + 1)
    given = list(range(half)) if direction == 'forward' else list(range(half, t))
    agree, seen = [], []
    for v, c, truth in zip(videos, colours, truths):
      expected = _direction(truth[span], c)
      if expected != 'still':
        seen.append(f'{expected}→{_direction(v[span], c)}')
        agree.append(seen[-1].split('→')[1] == expected)
    scores.append(_percent(task, 'videos moving on as the truth does', [agree], 75,
                           max(_given_error(v, tr, given) for v, tr in zip(videos, truths)),
                           ', '.join(seen)))

  if wanted('connect'):
    videos = run('connect', lambda p, truth, i: prompting.connect(
        gen, truth[:1], truth[-1:], p.text, frames=bridge, seed=p.seed, settings=settings))
    error = max(max(_given_error(v[:1], tr[:1], [0]), _given_error(v[-1:], tr[-1:], [0]))
                for v, tr in zip(videos, truths))
    present = [_object_frames(v, c) for v, c in zip(videos, colours)]
    scores.append(_percent('connect', 'frames with the object', present, 100, error))

  if wanted('keyframes'):
    keys = sorted({0, half, t - 1})
    videos = run('keyframes', lambda p, truth, i: prompting.keyframes(
        gen, {k: truth[k] for k in keys}, p.text, seed=p.seed, settings=settings))
    present = [_object_frames(v, c) for v, c in zip(videos, colours)]
    scores.append(_percent('keyframes', 'frames with the object', present, 100,
                           max(_given_error(v, tr, keys) for v, tr in zip(videos, truths))))

  if wanted('loop'):
    videos = run('loop', lambda p, truth, i: prompting.loop(
        gen, truth, p.text, frames=bridge, seed=p.seed, settings=settings))
    present = [_object_frames(v[t:], c) for v, c in zip(videos, colours)]
    scores.append(_percent('loop', 'bridge frames with the object', present, 100,
                           max(_given_error(v, tr, list(range(t)))
                               for v, tr in zip(videos, truths))))

  scores.append(_score_edit(gen, prompts, truths, settings, outputs))
  if out is not None:
    _write_grids(out / 'tasks', prompts, truths, outputs, gen.parts.config.world.fps)
  return scores


def _percent(task, measure, flags, target, given_error, detail='') -> TaskScore:
  values = np.concatenate([np.asarray(f, bool).ravel() for f in flags]) if flags else []
  value = 100.0 * float(np.mean(values)) if len(values) else float('nan')
  return TaskScore(task, measure, value, f'>= {target}%', bool(value >= target and
                                                                given_error == 0),
                   given_error, detail)


def _score_edit(gen, prompts, truths, settings, outputs) -> TaskScore:
  """Mean |output - input| per strength, averaged over clips, each edited to the next prompt."""
  change = np.zeros(len(STRENGTHS))
  outputs['edit'] = []
  for i, truth in enumerate(truths):
    target = prompts[(i + 1) % len(prompts)]
    for k, strength in enumerate(STRENGTHS):
      video = prompting.edit(gen, truth, target.text, strength=strength, seed=target.seed,
                             settings=settings)
      change[k] += np.abs(video.astype(float) - truth.astype(float)).mean() / len(truths)
      if k == len(STRENGTHS) // 2:
        outputs['edit'].append(video)
  increasing = bool(np.all(np.diff(change) > 0))
  detail = ', '.join(f'{s:g}: {c:.1f}' for s, c in zip(STRENGTHS, change))
  return TaskScore('edit', 'mean pixel change by strength', float(increasing),
                   'strictly increasing', increasing and change[0] == 0, 0, detail)


def _write_grids(out: pathlib.Path, prompts, truths, outputs, fps) -> None:
  """tasks/<task>.{mp4,png}: each clip's input (the world's render) beside the task's output."""
  for task, videos in outputs.items():
    clips, captions = [], []
    for p, truth, video in list(zip(prompts, truths, videos))[:4]:
      clips += [truth, video]
      captions += [f'input: {p.text}', f'{task}']
    media.write_grid(out / task, clips, captions, fps=fps)


def table(scores: list[TaskScore]) -> str:
  """A markdown table of the scores."""
  lines = ['| task | measure | score | target | given frames max error | met | detail |',
           '| --- | --- | --- | --- | --- | --- | --- |']
  for s in scores:
    value = ('yes' if s.value else 'no') if s.task == 'edit' else f'{s.value:.0f}%'
    lines.append(f'| {s.task} | {s.measure} | {value} | {s.target} | {s.given_error} | '
                 f'{"yes" if s.passed else "no"} | {s.detail} |')
  return '\n'.join(lines)
