"""Whether a followed object moves as the world's physics allows, as a list of pass/fail checks.

A moving object travels in straight lines at constant speed, and a wall bounce reverses only the
velocity component across that wall, at that wall. A falling object drops from rest, bounces on
the floor and rises less each time: between bounces its height is a parabola, each bounce is at
the floor (the lowest point it reaches), and each apex is lower than the one before.
Positions are centroids in pixels of the world's frame (the camera's pan added back), NaN where
the object was not seen whole. Legend: T frames, K steps between consecutive whole frames.
"""
import numpy as np

STEP_TOL = 1.0  # pixels: centroid noise allowed per step, plus STEP_TOL_SHARE of the speed
STEP_TOL_SHARE = 0.25
STATIC = 0.5  # pixels per frame: an axis moving less than this does not move
GRAVITY_TOL_SHARE = 0.3  # of gravity: a flight's second differences may be off by this + STEP_TOL


def bounce_checks(centres_t2: np.ndarray, boxes_t4: np.ndarray, frame_hw: tuple[int, int],
                  walled: tuple[bool, bool]) -> list[bool]:
  """One check per step between consecutive whole frames: on each axis the step keeps the
  median speed, or is next to a turn (the sign flips). A turn passes where the object is beside
  a frame edge on that axis (unless not `walled`: a panned axis, whose walls lie outside the
  view) and has crossed the view since the axis last turned.

  boxes_t4 are the screen boxes (x0, y0, x1, y1).
  """
  steps_k2, starts_k = _steps(centres_t2)
  speed = np.median(np.abs(steps_k2), axis=0) if len(steps_k2) else np.zeros(2)
  tol = STEP_TOL + STEP_TOL_SHARE * speed
  ok_k2 = np.ones((len(steps_k2), 2), bool)
  for axis in (0, 1):
    along = steps_k2[:, axis]
    if speed[axis] < STATIC:
      ok_k2[:, axis] = np.abs(along) <= tol[axis]
      continue
    ok_k2[:, axis] = np.abs(np.abs(along) - speed[axis]) <= tol[axis]
    extent = np.nanmedian(boxes_t4[:, axis + 2] - boxes_t4[:, axis])
    crossing = (frame_hw[1 - axis] - extent) / speed[axis] - 2  # steps from wall to wall
    last_turn = -np.inf
    for k in range(1, len(steps_k2)):
      if starts_k[k] != starts_k[k - 1] + 1 or along[k - 1] * along[k] >= 0:
        continue
      box = boxes_t4[starts_k[k]]  # the frame between the two steps
      reach = speed[axis] / 2 + tol[axis] + 0.25 * extent
      at_wall = box[axis] <= reach or box[axis + 2] >= frame_hw[1 - axis] - reach
      turn_ok = (at_wall or not walled[axis]) and k - last_turn >= crossing
      last_turn = k
      for j in (k - 1, k):
        ok_k2[j, axis] = turn_ok and abs(along[j]) <= speed[axis] + tol[axis]
  return ok_k2.all(axis=1).tolist()


def fall_checks(centres_t2: np.ndarray, gravity: float) -> list[bool]:
  """Checks of a fall under `gravity` (pixels per frame squared): seen from the first frame, it
  drops from rest (its first step is half of gravity); each bounce (down turning up) is at the
  floor, the lowest point seen; in flight, away from the floor, each second difference of height
  equals gravity (a parabola of the world's curvature); each apex is no higher than the last.
  Sideways drift is the motion score's to judge."""
  frames = np.nonzero(~np.isnan(centres_t2[:, 1]))[0]
  if len(frames) < 3:
    return []
  checks = []
  if frames[0] == 0 and frames[1] == 1:
    first_step = centres_t2[1, 1] - centres_t2[0, 1]
    checks.append(bool(abs(first_step - gravity / 2) <= STEP_TOL + GRAVITY_TOL_SHARE * gravity))
  heights = centres_t2[frames, 1]  # y grows downward: the floor is the largest y
  velocity = np.diff(heights) / np.diff(frames)
  floor = heights.max()
  near_floor = heights >= floor - gravity - STEP_TOL
  contacts = [i for i in range(1, len(frames) - 1) if velocity[i - 1] > 0 > velocity[i]]
  for i in contacts:  # the bounce lies between the sightings around it
    travel = max(abs(heights[i] - heights[i - 1]), abs(heights[i + 1] - heights[i]))
    checks.append(bool(heights[i] >= floor - travel - STEP_TOL))
  for i in range(1, len(frames) - 1):
    if frames[i + 1] - frames[i - 1] == 2 and i not in contacts and not near_floor[
        i - 1:i + 2].any():
      bend = velocity[i] - velocity[i - 1]
      checks.append(bool(abs(bend - gravity) <= STEP_TOL + GRAVITY_TOL_SHARE * gravity))
  apexes = [heights[first:last].min() for first, last in zip(
      [0] + [i + 1 for i in contacts], contacts + [len(frames)]) if last > first]
  checks += [bool(later >= earlier - STEP_TOL) for earlier, later in zip(apexes, apexes[1:])]
  return checks


def _steps(centres_t2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Displacements [K, 2] between consecutive whole frames, and the frame each starts at [K]."""
  steps_t2 = np.diff(centres_t2, axis=0)
  starts = np.nonzero(~np.isnan(steps_t2).any(axis=1))[0]
  return steps_t2[starts], starts
