"""Temporal consistency as pass/fail checks: a steady background, steady object sizes, and a
camera pan that moves a textured background the asked way.

Background pixels are those at least two pixels from any palette colour or occluder gray.
Legend: T frames, H/W frame height/width, C colour channels.
"""
import numpy as np
from scipy import ndimage

from videogen.data import world
from videogen.evals import objects
from videogen.evals import tracking

FLICKER = 3.0  # mean absolute change of background pixels between frames, in 0..255 levels
SIZE_RANGE = (0.75, 1.33)  # whole-frame area over the object's median area
PAN_MIN_SHIFT = 3.0  # pixels the camera travels, at least, between the frames a pan compares
PAN_TOL = 1.5  # pixels: measured against asked background shift, per axis
_OCCLUDER = tracking.REFERENCE_NAMES.index('occluder')


def background_mask(analysis: objects.Analysis) -> np.ndarray:
  """bool [T, H, W]: pixels far from any object or the bar."""
  labels_thw = analysis.labels_thw
  busy_thw = (((labels_thw >= 0) & (labels_thw < len(world.PALETTE))) | (labels_thw == _OCCLUDER)
              | analysis.bar_thw)
  return ~ndimage.binary_dilation(busy_thw, np.ones((1, 5, 5), bool))


def flicker_checks(frames_thwc: np.ndarray, background_thw: np.ndarray) -> list[bool]:
  """One check per pair of consecutive frames: background pixels barely change."""
  results = []
  for t in range(len(frames_thwc) - 1):
    both_hw = background_thw[t] & background_thw[t + 1]
    if both_hw.any():
      change = np.abs(frames_thwc[t + 1][both_hw].astype(np.float32) - frames_thwc[t][both_hw])
      results.append(bool(change.mean() <= FLICKER))
  return results


def pan_checks(frames_thwc: np.ndarray, background_thw: np.ndarray,
               shift_per_frame: np.ndarray) -> list[bool]:
  """One check per frame pair k apart: the background's best integer shift between them is the
  camera's asked travel, shift_per_frame (dx, dy pixels) times k; the later frame at (x, y)
  shows what the earlier one showed at (x + dx, y + dy)."""
  speed = float(np.abs(shift_per_frame).max())
  apart = int(np.ceil(PAN_MIN_SHIFT / speed))
  search = int(np.ceil(speed * apart)) + 2
  height, width = background_thw.shape[1:]
  results = []
  for t in range(len(frames_thwc) - apart):
    errors = {}
    for dy in range(-search, search + 1):
      for dx in range(-search, search + 1):
        # later frame at (y, x) against earlier frame at (y + dy, x + dx)
        later = (slice(max(0, -dy), height - max(0, dy)), slice(max(0, -dx), width - max(0, dx)))
        earlier = (slice(max(0, dy), height + min(0, dy)), slice(max(0, dx), width + min(0, dx)))
        both_hw = background_thw[t + apart][later] & background_thw[t][earlier]
        if both_hw.sum() >= 0.1 * height * width:
          errors[dx, dy] = np.abs(frames_thwc[t + apart][later][both_hw].astype(np.float32)
                                  - frames_thwc[t][earlier][both_hw]).mean()
    if errors:
      best = np.array(min(errors, key=errors.get))
      results.append(bool((np.abs(best - shift_per_frame * apart) <= PAN_TOL).all()))
  return results


def size_checks(track: objects.Track) -> list[bool]:
  """One check per whole frame: the object's area is near its median area."""
  areas = np.array([b.area for b, w in zip(track.blobs_t, track.whole()) if w], float)
  if not len(areas):
    return []
  ratio = areas / np.median(areas)
  return ((ratio >= SIZE_RANGE[0]) & (ratio <= SIZE_RANGE[1])).tolist()
