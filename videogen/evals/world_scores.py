"""Five scores in [0, 1] of a video against the world scene its prompt was made from.

- adherence: the share of asked objects found with their colour, kind and digit, out of the
  asked or found objects, whichever are more (an unasked object costs like a missing one). An
  object never seen whole cannot have its kind read and passes on its colour;
- motion: the share of asked objects that move as asked (motion_classes.py): 8-way direction
  before any bounce and speed class, still, or falling;
- physics: per moving or falling object, the share of its trajectory checks that pass
  (trajectories.py: steady steps and wall bounces, or flights bent by gravity between bounces
  at the floor with lower and lower apexes; frames where the tracker lost it to a jump fail),
  averaged; None when the scene asks for neither;
- permanence: per object, the share of its vanishing, reappearing and merging checks that pass
  (permanence.py); the video gets its worst object's share, since one broken object breaks it;
  None when no object is seen;
- consistency: the mean of the shares of frames where objects keep their size and, where it
  shows, of steady background frames (pans over a gradient or texture move it: over a texture,
  its shift must be the asked one instead; consistency.py).
Objects come from objects.analyse; asked objects meet found ones colour by colour, by kind, digit
and motion (Hungarian). An asked object never seen where an occluder bar wide enough to hide it
stands in every frame is not judged. Positions are in the world's frame: the asked pan is added
back. A video of another size or length than asked is scored as it is (geometry scales with its
shorter side, time with `fps`); frames short of the asked length count as failures: every score
is scaled by the share of the asked frames that the video has.
Legend: T frames, H/W frame height/width.
"""
import dataclasses

import numpy as np
from scipy import optimize

from videogen.data import world
from videogen.evals import consistency
from videogen.evals import motion_classes
from videogen.evals import objects
from videogen.evals import permanence
from videogen.evals import trajectories

CATEGORIES = ('adherence', 'motion', 'physics', 'permanence', 'consistency')
PRESENT = 0.25  # share of frames an unasked object must be seen in to count as an extra


@dataclasses.dataclass(frozen=True)
class WorldScores:
  """One video's scores (None: does not apply to the scene) and, per score below 1, why."""
  adherence: float | None
  motion: float | None
  physics: float | None
  permanence: float | None
  consistency: float | None
  reasons: dict[str, str]


@dataclasses.dataclass(frozen=True)
class _Video:
  """A video's objects and the geometry that turns pixels into the world's units."""
  frames_thwc: np.ndarray
  analysis: objects.Analysis
  scene: world.Scene
  fps: float

  @property
  def side(self) -> int:
    """Pixels per world unit: the world's unit is the view's shorter side."""
    return min(self.frames_thwc.shape[1:3])

  @property
  def pan_per_frame(self) -> np.ndarray:
    """(dx, dy) pixels the asked pan moves the camera per frame."""
    if not self.scene.pan:
      return np.zeros(2)
    return world.PAN_SPEED * np.array(world.DIRECTIONS[self.scene.pan]) * self.side / self.fps

  @property
  def walled(self) -> tuple[bool, bool]:
    """Per axis (x, y): whether the view's edges are the world's walls (not along a pan)."""
    return (not self.pan_per_frame[0], not self.pan_per_frame[1])

  def could_hide(self, obj: world.ObjectSpec) -> bool:
    """Whether the occluder bar, in every frame, is wide enough to hide the object."""
    bar_thw = self.analysis.bar_thw
    width_t = np.maximum(bar_thw.all(1).sum(-1), bar_thw.all(2).sum(-1))
    return bool(width_t.min() >= world.SIZES[obj.size] * self.side)

  @property
  def gravity(self) -> float:
    """The world's gravity in pixels per frame squared."""
    return motion_classes.gravity_px(self.side, self.fps)

  def to_world(self, centres_t2: np.ndarray) -> np.ndarray:
    """[T, 2] view positions plus the camera's travel (it stops where the scene ends)."""
    frames = np.minimum(np.arange(len(self.frames_thwc)), self.scene.duration * self.fps)
    return centres_t2 + frames[:, None] * self.pan_per_frame


def score_video(frames_thwc: np.ndarray, scene: world.Scene, fps: float) -> WorldScores:
  """Scores uint8 frames [T, H, W, 3] played at `fps` against the scene they should show."""
  frames_thwc = np.asarray(frames_thwc)
  if frames_thwc.ndim != 4 or frames_thwc.shape[-1] != 3 or frames_thwc.dtype != np.uint8:
    raise ValueError(f'frames of shape {frames_thwc.shape} and dtype {frames_thwc.dtype} are '
                     'not a video; pass uint8 [T, H, W, 3].')
  if not fps > 0:
    raise ValueError(f'fps={fps}: frames per second must be > 0.')
  asked_frames = int(round(scene.duration * fps)) + 1
  if not len(frames_thwc):
    return WorldScores(0.0, 0.0, 0.0, 0.0, 0.0, dict.fromkeys(CATEGORIES, 'no frames'))
  video = _Video(frames_thwc, objects.analyse(frames_thwc), scene, fps)
  matched = _match(video)
  judged = [(obj, track) for obj, track in zip(scene.objects, matched)
            if track is not None or not video.could_hide(obj)]
  results = {'adherence': _adherence(video, matched, judged), 'motion': _motion(video, judged),
             'physics': _physics(video, matched, judged), 'permanence': _permanence(video, matched),
             'consistency': _consistency(video, matched)}
  share = min(len(frames_thwc), asked_frames) / asked_frames
  values, reasons = {}, {}
  for name, (value, failures) in results.items():
    if value is not None and share < 1:
      value *= share
      failures.append(f'{asked_frames - len(frames_thwc)} of {asked_frames} frames missing')
    values[name] = value
    if failures and value is not None and value < 1:
      reasons[name] = '; '.join(failures)
  return WorldScores(**values, reasons=reasons)


def asked_tracks(frames_thwc: np.ndarray, scene: world.Scene,
                 fps: float) -> list[objects.Track | None]:
  """Per asked object, the track that adherence finds for it in the frames: matched by colour,
  kind and motion, and of its kind and digit (or unreadable); else None."""
  video = _Video(frames_thwc, objects.analyse(frames_thwc), scene, fps)
  return [track if track is not None and _identity_ok(obj, track) else None
          for obj, track in zip(scene.objects, _match(video))]


def summarize(scores: list[WorldScores]) -> dict[str, float]:
  """Mean of each score over the videos where it applies (NaN where it never does)."""
  means = {}
  for name in CATEGORIES:
    values = [getattr(s, name) for s in scores if getattr(s, name) is not None]
    means[name] = float(np.mean(values)) if values else float('nan')
  return means


def _describe(obj: world.ObjectSpec) -> str:
  return f'{obj.colour} {obj.digit if obj.kind == "digit" else obj.kind}'


def _identity_ok(obj: world.ObjectSpec, track: objects.Track) -> bool:
  """Whether the track shows the asked kind and digit (or cannot be read)."""
  return track.identity is None or track.identity == (obj.kind, obj.digit)


def _candidates(video: _Video) -> list[objects.Track]:
  """Tracks seen in two frames or more (a lone sighting is noise), or in an image's one frame."""
  return [t for t in video.analysis.tracks if t.seen().sum() >= min(2, len(video.frames_thwc))]


def _motion_of(video: _Video, track: objects.Track) -> str:
  """The track's motion class, from all its unmerged sightings (some objects are never seen
  whole), cut ones anchored on their uncut side."""
  centres_t2 = video.to_world(track.anchored_centres(video.analysis.bar_thw))
  return motion_classes.measured(centres_t2, video.side, video.fps)


def _match(video: _Video) -> list[objects.Track | None]:
  """Per asked object, the found track that shows it, or None."""
  asked = video.scene.objects
  matched: list[objects.Track | None] = [None] * len(asked)
  for colour in dict.fromkeys(o.colour for o in asked):
    indices = [i for i, o in enumerate(asked) if o.colour == colour]
    found = [t for t in _candidates(video) if t.colour == colour]
    motions = [_motion_of(video, t) for t in found]
    cost = np.array([[(not _identity_ok(asked[i], t))
                      + 0.5 * (motion != motion_classes.expected(asked[i]))
                      - 0.01 * t.seen().mean() for t, motion in zip(found, motions)]
                     for i in indices])
    for row, col in zip(*optimize.linear_sum_assignment(cost.reshape(len(indices), len(found)))):
      matched[indices[row]] = found[col]
  return matched


def _adherence(video: _Video, matched: list, judged: list) -> tuple[float | None, list[str]]:
  failures, passed = [], 0
  for obj, track in judged:
    if track is None:
      failures.append(f'{_describe(obj)} not found')
    elif not _identity_ok(obj, track):
      kind, digit = track.identity
      failures.append(f'{_describe(obj)} looks like a {digit if kind == "digit" else kind}')
    else:
      passed += 1
  extras = [t for t in _candidates(video) if t.seen().mean() >= PRESENT and not any(
      t is m for m in matched)]
  failures += [f'an unasked {t.colour} object' for t in extras]
  total = len(judged) + len(extras)
  return (passed / total if total else None), failures


def _motion(video: _Video, judged: list) -> tuple[float | None, list[str]]:
  failures = []
  for obj, track in judged:
    seen = _motion_of(video, track) if track is not None else 'not found'
    if seen != motion_classes.expected(obj):
      failures.append(f'{_describe(obj)}: asked {motion_classes.expected(obj)}, seen {seen}')
  return (1 - len(failures) / len(judged) if judged else None), failures


def _physics(video: _Video, matched: list, judged: list) -> tuple[float | None, list[str]]:
  """Per object, the share of its trajectory checks that pass; frames where an unasked track of
  its colour is seen (the object jumped, and the tracker lost it) count as failed checks."""
  shares, failures = [], []
  for obj, track in judged:
    if obj.motion == 'still':
      continue
    if track is None:
      shares.append(0.0)
      failures.append(f'{_describe(obj)} not found')
      continue
    centres_t2 = video.to_world(track.centres())
    checks = (trajectories.fall_checks(centres_t2, video.gravity) if obj.motion == 'fall' else
              trajectories.bounce_checks(centres_t2, track.boxes(), video.frames_thwc.shape[1:3],
                                         video.walled))
    jumps = sum(int(t.seen().sum()) for t in _candidates(video)
                if t.colour == obj.colour and not any(t is m for m in matched))
    checks += [False] * jumps
    if checks:
      shares.append(float(np.mean(checks)))
      if not all(checks):
        failures.append(f'{_describe(obj)}: {len(checks) - sum(checks)} of {len(checks)} '
                        f'{"fall" if obj.motion == "fall" else "step"} checks fail')
  return (float(np.mean(shares)) if shares else None), failures


def _permanence(video: _Video, matched: list) -> tuple[float | None, list[str]]:
  if not _candidates(video):
    return None, []  # nothing seen, nothing to keep: adherence says what is missing
  worst, failures = 1.0, []
  falling = [t for obj, t in zip(video.scene.objects, matched) if obj.motion == 'fall']
  for track in _candidates(video):
    gravity = video.gravity if any(track is t for t in falling) else 0.0
    results = permanence.checks(track, video.analysis, video.walled, gravity)
    if results:
      worst = min(worst, float(np.mean([passed for passed, _ in results])))
      failures += [f'{track.colour} object {what}' for passed, what in results if not passed]
  return worst, failures


def _consistency(video: _Video, matched: list) -> tuple[float | None, list[str]]:
  background_thw = consistency.background_mask(video.analysis)
  parts = {}
  if video.scene.pan and video.scene.background_style == 'texture':
    parts['background pans the asked way'] = consistency.pan_checks(
        video.frames_thwc, background_thw, video.pan_per_frame)
  elif not video.scene.pan or video.scene.background_style == 'plain':
    parts['background is steady'] = consistency.flicker_checks(video.frames_thwc, background_thw)
  parts['objects keep their size'] = [
      check for track in matched if track is not None for check in consistency.size_checks(track)]
  shares = {what: float(np.mean(checks)) for what, checks in parts.items() if checks}
  failures = [f'{what} in {share:.0%} of checks' for what, share in shares.items() if share < 1]
  return (float(np.mean(list(shares.values()))) if shares else None), failures
