"""Which of the world's motions a followed object shows: 'still', 'falls', or a speed class and
an 8-way direction such as 'slow up-left', as world.ObjectSpec asks for them.

The direction is the one before the first bounce (tracking.motion_direction); the speed is the
median speed between consecutive sightings, read against the world's slow and fast speeds; a
fall bends down with the world's gravity. Positions are pixels in the world's frame (the
camera's pan added back), NaN where unseen. Legend: T frames.
"""
import numpy as np

from videogen.data import world
from videogen.evals import tracking

MIN_DISPLACEMENT = 0.1  # of the frame's shorter side: a track moving less reads as 'still'
STILL_SPEED = 0.15  # world units per second: slower reads as still, half the slow speed
FAST_SPEED = float(np.sqrt(world.SPEEDS['slow'] * world.SPEEDS['fast']))  # faster reads fast
# Travel (of the shorter side) that shows a direction; a bounce shows after half of it.
DIRECTION_MIN_TRAVEL = 0.04
GRAVITY_BAND = (0.5, 2.0)  # a fall's second differences, over the world's gravity


def gravity_px(side: int, fps: float) -> float:
  """The world's gravity in pixels per frame squared, `side` pixels per world unit at `fps`."""
  return world.GRAVITY * side / fps ** 2


def expected(obj: world.ObjectSpec) -> str:
  """The motion the object is asked to show."""
  return {'still': 'still', 'fall': 'falls'}.get(obj.motion, f'{obj.speed} {obj.direction}')


def measured(centres_t2: np.ndarray, side: int, fps: float) -> str:
  """The motion centres [T, 2] show in a video `side` pixels per world unit at `fps`, named as
  `expected` names it ('unmeasured' with fewer than two sightings)."""
  if (~np.isnan(centres_t2[:, 0])).sum() < 2:
    return 'unmeasured'
  steps_k2 = np.diff(centres_t2, axis=0)
  steps_k2 = steps_k2[~np.isnan(steps_k2[:, 0])] * fps / side  # world units per second
  speed = float(np.median(np.linalg.norm(steps_k2, axis=1))) if len(steps_k2) else 0.0
  direction = tracking.motion_direction(centres_t2, DIRECTION_MIN_TRAVEL * side)
  if direction == 'still' or speed < STILL_SPEED:
    return 'still'
  if direction == 'down' and _falls(centres_t2, side, gravity_px(side, fps)):
    return 'falls'
  return f'{"fast" if speed >= FAST_SPEED else "slow"} {direction}'


def _falls(centres_t2: np.ndarray, side: int, gravity: float) -> bool:
  """Whether the track bends down with `gravity` (pixels per frame squared) where first seen or
  in three successive frames (a glide bends only at a wall, over a frame or two), without
  drifting sideways. Second differences span frames far enough apart to beat a pixel's noise."""
  apart = int(np.ceil(np.sqrt(2.5 / gravity)))  # gravity * apart^2 >= 2.5 pixels
  heights = centres_t2[:, 1]
  bends = (heights[2 * apart:] - 2 * heights[apart:-apart] + heights[:-2 * apart]) / apart ** 2
  with np.errstate(invalid='ignore'):
    like_gravity = (bends >= GRAVITY_BAND[0] * gravity) & (bends <= GRAVITY_BAND[1] * gravity)
  measured_k = np.nonzero(~np.isnan(bends))[0]
  sustained = (like_gravity[2:] & like_gravity[1:-1] & like_gravity[:-2]).any()
  drift = np.subtract(*np.nanpercentile(centres_t2[:, 0], [90, 10]))
  return bool(measured_k.size and (like_gravity[measured_k[0]] or sustained)
              and drift <= MIN_DISPLACEMENT * side)
