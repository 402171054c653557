"""Objects' pixels in one RGB frame: per palette colour, the blobs of tracking's colour rule.

A blob is a colour's connected pixels, of at least `min_area`, after bridging gaps of up to two
pixels (a small digit's strokes stay one blob) and across the occluder bar (an object the bar
cuts in two). Its mask is then refined by coverage: a pixel belongs to the object when its colour
lies at least half way from the local background to the object's colour, so masks have the same
thickness whatever the colours (the nearest-colour rule cuts a white edge on black at 75%
coverage, where the gray reference takes over). A blob with no pixel inside it (all on its
boundary) whose pixels mostly border another palette colour is the blended edge of that other
object (orange on black blends through red) and is dropped. A blob is whole when it touches no
frame edge, no occluder bar and no other blob.
Legend: H/W frame height/width, h/w blob box height/width.
"""
import dataclasses

import numpy as np
from scipy import ndimage

from videogen.data import world
from videogen.evals import tracking

BAR_FILL = 0.6  # share of a row or column in occluder gray that makes it part of the bar
_PALETTE_SIZE = len(world.PALETTE)
_OCCLUDER = tracking.REFERENCE_NAMES.index('occluder')
_NEIGHBOURS = np.ones((3, 3), bool)


@dataclasses.dataclass(frozen=True, eq=False)  # compared by identity: fields are arrays
class Blob:
  """One colour's object pixels in one frame."""
  centre: np.ndarray  # (x, y) area centroid in pixels; pixel (i, j) spans [j, j+1) x [i, i+1)
  box: np.ndarray  # (x0, y0, x1, y1) pixel edges
  mask_hw: np.ndarray  # bool, the object's pixels inside its box
  whole: bool

  @property
  def area(self) -> int:
    return int(self.mask_hw.sum())


def occluder_bar(labels_hw: np.ndarray) -> np.ndarray:
  """bool [H, W]: rows and columns mostly in occluder gray (the bar spans the whole view)."""
  gray_hw = labels_hw == _OCCLUDER
  return (gray_hw.mean(0) >= BAR_FILL)[None, :] | (gray_hw.mean(1) >= BAR_FILL)[:, None]


def find(frame_hwc: np.ndarray, labels_hw: np.ndarray, bar_hw: np.ndarray,
         min_area: int) -> list[list[Blob]]:
  """Per palette colour, the blobs of one uint8 frame [H, W, 3] with its reference labels."""
  height, width = labels_hw.shape
  palette_hw = (labels_hw >= 0) & (labels_hw < _PALETTE_SIZE)
  found = []  # (colour index, refined pixels [H, W])
  for index in range(_PALETTE_SIZE):
    mask_hw = labels_hw == index
    if mask_hw.sum() < min_area:
      continue
    others_hw = ndimage.binary_dilation(palette_hw & ~mask_hw, _NEIGHBOURS)
    bridged_hw = ndimage.binary_dilation(mask_hw, _NEIGHBOURS) | _across_bar(mask_hw, bar_hw)
    bridged_hw, count = ndimage.label(bridged_hw, _NEIGHBOURS)
    for component in range(1, count + 1):
      pixels_hw = mask_hw & (bridged_hw == component)
      edge_of_another = (others_hw[pixels_hw].mean() >= 0.5
                         and not ndimage.binary_erosion(pixels_hw, _NEIGHBOURS).any())
      if pixels_hw.sum() >= min_area and not edge_of_another:
        found.append((index, _refine(frame_hwc, labels_hw, bar_hw, pixels_hw)))
  owner_hw = np.full((height, width), -1)
  for number, (_, pixels_hw) in enumerate(found):
    owner_hw[pixels_hw] = number
  blobs_cb = [[] for _ in range(_PALETTE_SIZE)]
  for number, (index, pixels_hw) in enumerate(found):
    rows, cols = np.nonzero(pixels_hw)
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    # The bar's edges are whole pixels; between two objects lies a pixel of blended colour.
    touches_bar = bar_hw[ndimage.binary_dilation(pixels_hw, _NEIGHBOURS)].any()
    near_hw = ndimage.binary_dilation(pixels_hw, _NEIGHBOURS, iterations=2)
    alone = not touches_bar and np.isin(owner_hw[near_hw], (-1, number)).all()
    blobs_cb[index].append(Blob(
        centre=np.array([cols.mean() + 0.5, rows.mean() + 0.5]),
        box=np.array([x0, y0, x1, y1], float), mask_hw=pixels_hw[y0:y1, x0:x1],
        whole=bool(alone and x0 > 0 and y0 > 0 and x1 < width and y1 < height)))
  return blobs_cb


def _across_bar(mask_hw: np.ndarray, bar_hw: np.ndarray) -> np.ndarray:
  """bool [H, W]: bar pixels between the mask's pixels on both sides of it (one object that the
  bar cuts in two), along the axis the bar spans."""
  bridge_hw = np.zeros_like(mask_hw)
  for axis in (0, 1):  # 0: a horizontal bar (full rows); 1: a vertical bar (full columns)
    full = bar_hw.all(1 - axis)
    starts = np.nonzero(full & ~np.r_[False, full[:-1]])[0]
    ends = np.nonzero(full & ~np.r_[full[1:], False])[0] + 1
    for start, end in zip(starts, ends):
      if start == 0 or end == len(full):
        continue
      before, after = np.take(mask_hw, start - 1, axis), np.take(mask_hw, end, axis)
      both = ndimage.binary_dilation(before) & ndimage.binary_dilation(after)
      index = [slice(None), slice(None)]
      index[axis] = slice(start, end)
      bridge_hw[tuple(index)] |= np.expand_dims(both, axis)
  return bridge_hw


def _refine(frame_hwc: np.ndarray, labels_hw: np.ndarray, bar_hw: np.ndarray,
            pixels_hw: np.ndarray) -> np.ndarray:
  """bool [H, W]: the blob and its neighbours at least half way from background to its colour."""
  near_hw = ndimage.binary_dilation(pixels_hw, _NEIGHBOURS) & ~bar_hw
  window_hw = ndimage.binary_dilation(pixels_hw, _NEIGHBOURS, iterations=3)
  background_hw = window_hw & (labels_hw >= _PALETTE_SIZE) & (labels_hw != _OCCLUDER)
  if background_hw.sum() < 3:
    return pixels_hw
  rgb = frame_hwc.astype(np.float32)
  background = np.median(rgb[background_hw], axis=0)
  inside_hw = ndimage.binary_erosion(pixels_hw, _NEIGHBOURS)
  colour = rgb[inside_hw if inside_hw.any() else pixels_hw].mean(0)
  direction = colour - background
  coverage_hw = (rgb - background) @ direction / max(float(direction @ direction), 1.0)
  refined_hw = near_hw & (coverage_hw >= 0.5)
  return refined_hw if refined_hw.any() else pixels_hw
