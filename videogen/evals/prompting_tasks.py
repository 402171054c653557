"""Every prompting task run on world clips the model never saw, scored from the pixels.

Each clip is the world's own render of an eval prompt's scene (T frames), so the object, its
colour, kind and motion are known. Only frames the model made are scored; frames it was given
are copies, checked only for being exact. 'The object' is the scene's first object; a made
frame shows it when world_scores.asked_tracks, run on each unbroken stretch of made frames
alone, finds its track there (its colour, and its kind and digit wherever a whole sighting in
the stretch reads them) and the track is seen in that frame. Per task:
  image_to_video   given frame 0; of frames 1..T-1, those showing the object at 0.5-2x its
                   pixel area in frame 0 (any size where frame 0 hides it), target >= 90%
  extend_forward   given frames 0..T/2-1; of the clips whose truth moves, those whose colour
                   centroid moves the truth's way over frames T/2-1..T-1 and steps from frame
                   T/2-1 to T/2 by at most MAX_JUMP_STEPS times the truth's step there plus
                   MAX_JUMP_PX (unchecked where the truth hides it), target >= 75%; a
                   still truth is not judged
  extend_backward  the same mirrored: given frames T/2..T-1, direction over 0..T/2, the step
                   from frame T/2 back to T/2-1
  connect          given frames 0 (A's end) and T-1 (B's start); of frames 1..T-2, those
                   showing the object, target 100%
  keyframes        given frames 0, T/2 and T-1; of the others, those showing it, target 100%
  loop             given the clip, then a bridge back to its start; of the bridge's frames,
                   those showing it, target 100%
  edit             SDEdit to another prompt's caption: mean pixel change at each strength,
                   target strictly increasing
'Given exact' is the largest pixel difference on given frames (pixel space: must be 0); a task
passes only when it is 0 and its share meets the target.
"""
import dataclasses
import pathlib

import numpy as np

from videogen.core import grids
from videogen.data import world
from videogen.evals import motion_classes
from videogen.evals import tracking
from videogen.evals import world_scores
from videogen.inference import generate
from videogen.inference import prompting

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
TASKS = ('image_to_video', 'extend_forward', 'extend_backward', 'connect', 'keyframes', 'loop')
MEASURES = {  # task: (what its share counts, target percent)
    'image_to_video': ('made frames keeping the object and its size', 90),
    'extend_forward': ('videos moving on as the truth does, without a jump', 75),
    'extend_backward': ('videos moving on as the truth does, without a jump', 75),
    'connect': ('bridge frames with the object', 100),
    'keyframes': ('made frames with the object', 100),
    'loop': ('bridge frames with the object', 100)}
MAX_JUMP_STEPS = 2.0  # an extension's first step may be this many of the truth's step there,
MAX_JUMP_PX = 2.0  # plus these pixels: room for a changed speed and a redrawn object's centroid


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


def _given(task: str, t: int) -> list[int]:
  """Indices of the frames a task's output copies from its T-frame truth (the same in both)."""
  half = t // 2
  return {'image_to_video': [0], 'extend_forward': list(range(half)),
          'extend_backward': list(range(half, t)), 'connect': [0, -1],
          'keyframes': sorted({0, half, t - 1}), 'loop': list(range(t))}[task]


def _made(task: str, t: int, length: int) -> np.ndarray:
  """int: indices of the frames the model made in a task's output of `length` frames."""
  given = {i % length for i in _given(task, t)}
  return np.array([i for i in range(length) if i not in given], int)


def _object_areas(video, scene: world.Scene, fps: float, frames: np.ndarray) -> np.ndarray:
  """float [len(frames)]: the first asked object's pixel area in each listed frame, 0 where it
  is not shown; each unbroken run of frames is analysed alone, so no other frame counts."""
  areas = np.zeros(len(frames))
  for run in np.split(np.arange(len(frames)), np.nonzero(np.diff(frames) != 1)[0] + 1):
    if run.size:
      track = world_scores.asked_tracks(video[frames[run]], scene, fps)[0]
      if track is not None:
        areas[run] = [0 if b is None else b.area for b in track.blobs_t]
  return areas


def _direction(video, colour) -> str:
  min_px = motion_classes.MIN_DISPLACEMENT * min(video.shape[1:3])
  return tracking.motion_direction(tracking.track(video, colour), min_px)


def _step(video, colour, frames: tuple[int, int]) -> float:
  """Pixels the colour's centroid moves between two frames (NaN where either lacks it)."""
  track_t2 = tracking.track(video[list(frames)], colour)
  return float(np.linalg.norm(track_t2[1] - track_t2[0]))


def _given_error(video, truth, indices) -> int:
  return int(np.abs(video[indices].astype(int) - truth[indices].astype(int)).max())


def score_tasks(gen: generate.Generator, prompts, truths, settings: generate.SampleSettings,
                out: pathlib.Path | None = None) -> list[TaskScore]:
  """Runs every task on each (prompt, truth clip) (a latent model: prompting.LATENT_TASKS) and
  scores the outputs (score_task); writes per-task grids into `out`/tasks."""
  t = truths[0].shape[0]
  latent = gen.run.vae_config is not None
  half, bridge = t // 2, max(t - 2, 1)  # bridge: new frames of connect and loop
  keys = sorted({0, half, t - 1})
  samplers = {
      'image_to_video': lambda p, truth: prompting.image_to_video(
          gen, truth[0], p.text, seed=p.seed, settings=settings),
      'extend_forward': lambda p, truth: prompting.extend(
          gen, truth[:half], p.text, frames=t - half, direction='forward', context=half,
          seed=p.seed, settings=settings),
      'extend_backward': lambda p, truth: prompting.extend(  # T frames: truth[half:] last
          gen, truth[half:], p.text, frames=half, direction='backward', context=half,
          seed=p.seed, settings=settings),
      'connect': lambda p, truth: prompting.connect(
          gen, truth[:1], truth[-1:], p.text, frames=bridge, seed=p.seed, settings=settings),
      'keyframes': lambda p, truth: prompting.keyframes(
          gen, {k: truth[k] for k in keys}, p.text, seed=p.seed, settings=settings),
      'loop': lambda p, truth: prompting.loop(
          gen, truth, p.text, frames=bridge, seed=p.seed, settings=settings)}
  scenes, fps = [p.scene for p in prompts], gen.run.config.world.fps
  outputs, scores = {}, []
  for task in TASKS:
    if latent and task not in prompting.LATENT_TASKS:
      continue  # a latent model is given only a clip's first frames
    outputs[task] = [samplers[task](p, truth) for p, truth in zip(prompts, truths)]
    scores.append(score_task(task, outputs[task], truths, scenes, fps))
  scores.append(_score_edit(gen, prompts, truths, settings, outputs))
  if out is not None:
    _write_grids(out / 'tasks', prompts, truths, outputs, fps)
  return scores


def score_task(task: str, videos, truths, scenes, fps: float) -> TaskScore:
  """One task's score of its outputs (uint8 [T', H, W, 3] each) against the truth clips and
  scenes they were made from, at `fps`; pure: the module docstring says what it counts."""
  if task not in TASKS:
    raise ValueError(f'task {task!r} has no frame score; use one of {TASKS}.')
  error = max(_given_error(v, truth, _given(task, len(truth)))
              for v, truth in zip(videos, truths))
  measure, target = MEASURES[task]
  if task.startswith('extend_'):
    agree, seen = _extension_checks(task == 'extend_forward', videos, truths, scenes)
    return _percent(task, measure, [agree], target, error, ', '.join(seen))
  shown = []
  for v, truth, scene in zip(videos, truths, scenes):
    areas = _object_areas(v, scene, fps, _made(task, len(truth), len(v)))
    reference = 0.0  # image_to_video: the object's area in the given frame, where it shows
    if task == 'image_to_video':
      reference = _object_areas(truth, scene, fps, np.array([0]))[0]
    shown.append((areas >= 0.5 * reference) & (areas <= 2 * reference) if reference
                 else areas > 0)
  return _percent(task, measure, shown, target, error)


def _extension_checks(forward: bool, videos, truths, scenes) -> tuple[list[bool], list[str]]:
  """Per clip whose truth moves: whether the made frames, from the given one next to them, move
  the truth's way and start without a jump; and what was seen."""
  agree, seen = [], []
  for v, truth, scene in zip(videos, truths, scenes):
    half, colour = len(truth) // 2, _colour(scene)
    span = slice(half - 1, None) if forward else slice(0, half + 1)
    expected = _direction(truth[span], colour)
    if expected == 'still':
      continue
    moved = _direction(v[span], colour)
    join = (half - 1, half) if forward else (half, half - 1)  # (given, first made)
    jump, truth_step = _step(v, colour, join), _step(truth, colour, join)
    allowed = MAX_JUMP_STEPS * truth_step + MAX_JUMP_PX
    continuous = bool(np.isnan(truth_step) or jump <= allowed)
    agree.append(moved == expected and continuous)
    note = '' if continuous else ' lost at the join' if np.isnan(jump) else f' jumps {jump:.0f} px'
    seen.append(f'{expected}→{moved}{note}')
  return agree, seen


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
                   'strictly increasing', bool(increasing and change[0] == 0), 0, detail)


def _write_grids(out: pathlib.Path, prompts, truths, outputs, fps) -> None:
  """tasks/<task>.{mp4,png}: each clip's input (the world's render) beside the task's output."""
  for task, videos in outputs.items():
    clips, captions = [], []
    for p, truth, video in list(zip(prompts, truths, videos))[:4]:
      clips += [truth, video]
      captions += [f'input: {p.text}', f'{task}']
    grids.write_grid(out / task, clips, captions, fps=fps)


def table(scores: list[TaskScore]) -> str:
  """A markdown table of the scores."""
  lines = ['| task | measure | score | target | given frames max error | met | detail |',
           '| --- | --- | --- | --- | --- | --- | --- |']
  for s in scores:
    value = ('yes' if s.value else 'no') if s.task == 'edit' else f'{s.value:.0f}%'
    lines.append(f'| {s.task} | {s.measure} | {value} | {s.target} | {s.given_error} | '
                 f'{"yes" if s.passed else "no"} | {s.detail} |')
  return '\n'.join(lines)
