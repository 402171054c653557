"""What kind of object a mask shows: circle, square or triangle by template, else a digit.

The world's shapes fill their square box (a triangle's apex touches its top edge, its base the
bottom), so a shape's mask has a square bounding box and, stretched to a grid, overlaps its
template (the world's own large render) almost exactly: intersection over union >= 0.8 at 10
pixels across, where digits, cropped to their ink and mostly taller than wide, reach <= 0.6.
What is not a shape is read by the digit classifier. Below about 10 pixels across (a small object
in a frame under 48 pixels), circles and triangles blur into each other.
Legend: n template grid side, h/w mask height/width.
"""
import functools

import numpy as np

from videogen.evals import digit_classifier
from videogen.evals import mask_grids

SHAPES = ('circle', 'square', 'triangle')
TEMPLATE_GRID = 12
TEMPLATE_SOURCE_SIDE = 128  # frame side the templates are drawn at (a 45-pixel object)
MIN_OVERLAP = 0.7  # intersection over union with the best shape template
MAX_ASPECT = 1.33  # a shape's box is square: width/height within [1/MAX_ASPECT, MAX_ASPECT]


@functools.cache
def _templates() -> dict[str, np.ndarray]:
  """{shape: [n, n] its mask as the world draws it large, on the template grid}."""
  masks = mask_grids.lone_object_masks([(kind, None, 0) for kind in SHAPES],
                                       TEMPLATE_SOURCE_SIDE, 'large', np.zeros((len(SHAPES), 2)))
  return {kind: mask_grids.stretched_grid(mask_hw, TEMPLATE_GRID)
          for kind, mask_hw in zip(SHAPES, masks)}


def _shape(mask_hw: np.ndarray) -> str | None:
  """The shape whose template the mask matches, or None."""
  rows, cols = np.nonzero(mask_hw)
  aspect = (np.ptp(cols) + 1) / (np.ptp(rows) + 1)
  if not 1 / MAX_ASPECT <= aspect <= MAX_ASPECT:
    return None
  grid_nn = mask_grids.stretched_grid(mask_hw, TEMPLATE_GRID)
  overlap = {kind: np.minimum(grid_nn, t).sum() / np.maximum(grid_nn, t).sum()
             for kind, t in _templates().items()}
  best = max(overlap, key=overlap.get)
  return best if overlap[best] >= MIN_OVERLAP else None


def classify(masks: list[np.ndarray]) -> list[tuple[str, int | None]]:
  """(kind, digit or None) of each bool object mask [h, w]."""
  shapes = [_shape(mask) for mask in masks]
  unread = [mask for mask, shape in zip(masks, shapes) if shape is None]
  read = iter(digit_classifier.read_digits(unread))
  return [(shape, None) if shape else ('digit', int(next(read))) for shape in shapes]
