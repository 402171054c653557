"""Find an object of a palette colour in RGB frames and follow it (numpy only).

A pixel belongs to a colour when that palette colour is its nearest reference colour (palette,
world backgrounds and occluder gray) and lies within `tol` in RGB. Model samples are only
approximately the palette colour, so the rule is nearest-colour, not exact match.
Shapes: T frames, H height, W width; track_t2 holds (x, y) pixel centroids per frame.
"""
import numpy as np

from videogen.data import world

DEFAULT_TOL = 100.0  # RGB distance; palette colours are >= 100 apart, backgrounds farther
REFERENCE_NAMES = (*world.PALETTE, *world.BACKGROUNDS, 'occluder')  # what pixels are labelled
_REFERENCES = np.array([*world.PALETTE.values(), *world.BACKGROUNDS.values(),
                        world.OCCLUDER_COLOUR], np.float32)
# Directions by 45-degree sector, counter-clockwise from +x with y pointing up.
_SECTORS = ('right', 'up-right', 'up', 'up-left', 'left', 'down-left', 'down', 'down-right')


def reference_labels(frames: np.ndarray, tol: float = DEFAULT_TOL) -> np.ndarray:
  """int [T, H, W]: per pixel of frames [T, H, W, 3] (uint8), the index in REFERENCE_NAMES of its
  nearest reference colour, or -1 where that colour is farther than `tol` in RGB."""
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f'frames of shape {frames.shape} are not RGB video; pass [T, H, W, 3].')
  labels_thw = np.empty(frames.shape[:3], np.int8)
  squared_norms = (_REFERENCES * _REFERENCES).sum(-1)
  for frame_hwc, labels_hw in zip(frames, labels_thw):  # a frame at a time bounds the memory
    pixels_hwc = frame_hwc.astype(np.float32)
    # |p - c|^2 = |c|^2 - 2 p.c + |p|^2; the last term does not change the nearest reference.
    partial_hwr = squared_norms - 2 * pixels_hwc @ _REFERENCES.T
    labels_hw[:] = partial_hwr.argmin(-1)
    labels_hw[partial_hwr.min(-1) + (pixels_hwc * pixels_hwc).sum(-1) > tol ** 2] = -1
  return labels_thw


def colour_mask(frames: np.ndarray, colour: str, tol: float = DEFAULT_TOL) -> np.ndarray:
  """bool [T, H, W]: pixels of frames [T, H, W, 3] (uint8) whose nearest colour is `colour`."""
  if colour not in world.PALETTE:
    raise ValueError(
        f'colour={colour!r} is not a palette colour; use one of {tuple(world.PALETTE)}.')
  return reference_labels(frames, tol) == REFERENCE_NAMES.index(colour)


def track(frames: np.ndarray, colour: str, min_pixels: int | None = None) -> np.ndarray:
  """[T, 2] centroid (x, y) of the colour's pixels per frame, NaN where fewer than min_pixels.

  Pixel (row i, column j) spans [j, j+1) x [i, i+1), as in world.render's truth. min_pixels
  defaults to one per 1024 pixels of the frame, at least 3.
  """
  mask_thw = colour_mask(frames, colour)
  height, width = mask_thw.shape[1:]
  min_pixels = max(3, height * width // 1024) if min_pixels is None else min_pixels
  count = mask_thw.sum((1, 2))
  x = (mask_thw.sum(1) * (np.arange(width) + 0.5)).sum(1)
  y = (mask_thw.sum(2) * (np.arange(height) + 0.5)).sum(1)
  with np.errstate(invalid='ignore', divide='ignore'):
    track_t2 = np.stack([x, y], axis=1) / count[:, None]
  track_t2[count < min_pixels] = np.nan
  return track_t2


def motion_direction(track_t2: np.ndarray, min_displacement_px: float) -> str:
  """The compass name of a track's motion, or 'still' if it moves less than min_displacement_px.

  Uses the displacement from the first tracked frame to the last one before the track first
  turns back on either axis (by more than half of min_displacement_px), so a bounce off a wall
  or the floor does not cancel the motion before it. NaN frames are skipped; fewer than two
  tracked frames read as 'still'.
  """
  points = np.asarray(track_t2, np.float64)
  points = points[~np.isnan(points).any(axis=1)]
  if len(points) < 2:
    return 'still'
  offset = points - points[0]
  tolerance = min_displacement_px / 2
  end = len(points) - 1
  for axis in range(2):
    moved = np.nonzero(np.abs(offset[:, axis]) > tolerance)[0]
    if not moved.size:
      continue
    along = offset[:, axis] * np.sign(offset[moved[0], axis])
    turned = np.nonzero(np.maximum.accumulate(along) - along > tolerance)[0]
    if turned.size:
      end = min(end, turned[0] - 1)
  dx, dy = offset[end]
  if np.hypot(dx, dy) < min_displacement_px:
    return 'still'
  sector = int(np.round(np.degrees(np.arctan2(-dy, dx)) / 45)) % 8
  return _SECTORS[sector]


def colour_present(frames: np.ndarray, colour: str, min_pixels: int | None = None) -> bool:
  """Whether the colour covers min_pixels (as in `track`) in at least a quarter of the frames."""
  tracked = ~np.isnan(track(frames, colour, min_pixels)[:, 0])
  return bool(tracked.sum() >= max(1, len(tracked) / 4))
