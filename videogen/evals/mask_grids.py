"""An object's pixel mask as a small fixed grid, what kind templates and the digit reader
compare; and the mask of a lone world object, what they are made from.

Masks of any size reduce to the same grid by exact area averaging (each grid cell is the mean of
the pixel area it covers), so an object reads the same at 10 pixels and at 100.
Legend: h/w mask height/width, n grid side.
"""
import numpy as np

from videogen.data import world
from videogen.data import world_render
from videogen.evals import blobs
from videogen.evals import tracking

STRIP = 16  # objects drawn per render
_WHITE = list(world.PALETTE).index('white')


def lone_object_masks(identities: list[tuple[str, int | None, int]], frame_side: int, size: str,
                      offsets: np.ndarray) -> list[np.ndarray]:
  """bool [h, w] masks of still white objects on black, as blobs.find finds them in frames
  `frame_side` high that world.render draws: (kind, digit, variant) each, its box centred
  `offsets` [N, 2] (world units) from the centre of its own square. Squares are drawn STRIP to a
  render, side by side, so one render serves many objects."""
  masks = []
  for first in range(0, len(identities), STRIP):
    objs = tuple(world.ObjectSpec('white', kind, digit, variant, size, 'still', None, None,
                                  i + 0.5 + float(dx), 0.5 + float(dy))
                 for i, ((kind, digit, variant), (dx, dy)) in enumerate(
                     zip(identities[first:first + STRIP], offsets[first:first + STRIP])))
    scene = world.Scene(view=(float(len(objs)), 1.0), duration=0.0, objects=objs,
                        background='black', background_style='plain', background_seed=0,
                        occluder=None, pan=None)
    frames = world_render.render_frames(scene, frame_side, len(objs) * frame_side, 1, 1.0)
    labels_hw = tracking.reference_labels(frames)[0]
    for i in range(len(objs)):
      square = np.s_[:, i * frame_side:(i + 1) * frame_side]
      found = blobs.find(frames[0][square], labels_hw[square],
                         np.zeros_like(labels_hw[square], bool), 3)[_WHITE]
      masks.append(max(found, key=lambda blob: blob.area).mask_hw)
  return masks


def _area_weights(cells: int, pixels: int) -> np.ndarray:
  """[cells, pixels]: the share of each pixel in each of `cells` equal cells spanning them."""
  edges = np.arange(cells + 1) * pixels / cells
  pixel = np.arange(pixels)
  overlap = np.minimum(edges[1:, None], pixel + 1) - np.maximum(edges[:-1, None], pixel)
  overlap = np.maximum(overlap, 0.0)
  return overlap / overlap.sum(1, keepdims=True)


def _crop(mask_hw: np.ndarray) -> np.ndarray:
  rows, cols = np.nonzero(mask_hw)
  if not rows.size:
    raise ValueError('the mask has no pixels set; pass the mask of a found object.')
  return mask_hw[rows.min():rows.max() + 1, cols.min():cols.max() + 1].astype(np.float32)


def stretched_grid(mask_hw: np.ndarray, side: int) -> np.ndarray:
  """[n, n] the mask's bounding box stretched to the grid (shape templates fill their box)."""
  crop_hw = _crop(mask_hw)
  return _area_weights(side, crop_hw.shape[0]) @ crop_hw @ _area_weights(side, crop_hw.shape[1]).T


def square_grid(mask_hw: np.ndarray, side: int) -> np.ndarray:
  """[n, n] the mask's bounding box centred in a square and scaled to the grid, keeping its
  aspect, as the world draws a digit (its ink, centred in the object's square)."""
  crop_hw = _crop(mask_hw)
  length = max(crop_hw.shape)
  square_hw = np.zeros((length, length), np.float32)
  top, left = (length - crop_hw.shape[0]) // 2, (length - crop_hw.shape[1]) // 2
  square_hw[top:top + crop_hw.shape[0], left:left + crop_hw.shape[1]] = crop_hw
  weights = _area_weights(side, length)
  return weights @ square_hw @ weights.T
