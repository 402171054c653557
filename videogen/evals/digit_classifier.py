"""Reads which handwritten digit an object's mask shows: an RBF SVM on the mask's 8x8 grid.

The world draws every one of scikit-learn's bundled digit images (videogen/data/digits.py), so no
image is left that it never renders; the split is by image instead. The reader learns from the
world's renders of two thirds of each digit's images and reports its accuracy on renders of the
other third, which it never saw. Its masks come from world.render and blobs.find, as in a scored
video, at object sizes from 9.6 pixels (a small object in a 48-pixel frame) to 22.4.
"""
import functools
from typing import NamedTuple

import numpy as np
from sklearn import svm

from videogen.data import digits
from videogen.evals import mask_grids

GRID = 8  # the reader's input: the mask on a GRID x GRID square grid (as scikit-learn's digits)
HELD_OUT_EVERY = 3  # image v of a digit is held out when v % HELD_OUT_EVERY == HELD_OUT_EVERY - 1
# (frame side, object size) of the renders: objects of 9.6, 16.8 and 22.4 pixels.
RENDERS = ((48, 'small'), (48, 'large'), (64, 'large'))


class DigitReader(NamedTuple):
  model: svm.SVC
  held_out_accuracy: float  # on renders of the held-out images, every size in RENDERS


def features(mask_hw: np.ndarray) -> np.ndarray:
  """[GRID * GRID] what the reader sees of a bool object mask [h, w]."""
  return mask_grids.square_grid(mask_hw, GRID).ravel()


def _dataset(held_out: bool) -> tuple[np.ndarray, np.ndarray]:
  """Features [N, GRID * GRID] and digits [N] of the renders of one side of the split."""
  rng = np.random.default_rng(held_out)
  identities = [('digit', digit, variant) for digit in range(10)
                for variant in range(digits.variant_count(digit))
                if (variant % HELD_OUT_EVERY == HELD_OUT_EVERY - 1) == held_out]
  rows = []
  for frame_side, size in RENDERS:
    offsets = rng.uniform(-0.2, 0.2, (len(identities), 2))  # any sub-pixel placement
    rows += [features(mask_hw) for mask_hw in mask_grids.lone_object_masks(
        identities, frame_side, size, offsets)]
  return np.array(rows), np.array([digit for _, digit, _ in identities] * len(RENDERS))


@functools.cache
def reader() -> DigitReader:
  """The reader, trained once per process (a few seconds), with its held-out accuracy."""
  model = svm.SVC(C=10.0, gamma='scale').fit(*_dataset(held_out=False))
  inputs, labels = _dataset(held_out=True)
  return DigitReader(model, float((model.predict(inputs) == labels).mean()))


def read_digits(masks: list[np.ndarray]) -> np.ndarray:
  """int [N]: the digit each bool object mask [h, w] shows."""
  if not masks:
    return np.zeros(0, int)
  return reader().model.predict(np.stack([features(mask) for mask in masks])).astype(int)
