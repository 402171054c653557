"""Handwritten digit sprites from scikit-learn's bundled 8x8 digits, upscaled smoothly, cached.

A sprite is an alpha map [R, R] in [0, 1] (R: sprite resolution) whose ink fills the square.
"""
import functools

import numpy as np
from scipy import ndimage
from sklearn import datasets

_INK = 0.25  # 8x8 intensity (0..1) that counts as ink when cropping


@functools.cache
def _images_by_digit() -> tuple[np.ndarray, ...]:
  """For each digit 0-9, its handwritten samples [N, 8, 8] in [0, 1]."""
  bunch = datasets.load_digits()
  images = bunch.images.astype(np.float32) / 16.0
  return tuple(images[bunch.target == digit] for digit in range(10))


def variant_count(digit: int) -> int:
  """How many different handwritten samples exist for `digit`."""
  _check_digit(digit)
  return len(_images_by_digit()[digit])


@functools.lru_cache(maxsize=1024)
def digit_sprite(digit: int, variant: int, resolution: int) -> np.ndarray:
  """Alpha [R, R] of one handwritten sample, cropped to its ink, upscaled by cubic splines."""
  _check_digit(digit)
  if not 0 <= variant < variant_count(digit):
    raise ValueError(
        f'variant={variant} is out of range for digit {digit}; use 0..{variant_count(digit) - 1}.')
  if resolution < 8:
    raise ValueError(f'resolution={resolution} is too small for a digit sprite; use >= 8.')
  image = _images_by_digit()[digit][variant]
  rows, cols = np.nonzero(image > _INK)
  crop = image[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
  side = max(crop.shape)
  square = np.zeros((side, side), np.float32)
  top, left = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
  square[top:top + crop.shape[0], left:left + crop.shape[1]] = crop
  smooth = ndimage.zoom(square, resolution / side, order=3, mode='grid-constant', grid_mode=True)
  # A soft threshold turns the blurry upscale into crisp strokes with a one-texel ramp.
  alpha = np.clip((smooth[:resolution, :resolution] - 0.3) / 0.2, 0.0, 1.0).astype(np.float32)
  alpha.flags.writeable = False
  return alpha


def _check_digit(digit: int) -> None:
  if digit not in range(10):
    raise ValueError(f'digit={digit!r} is not a digit; use an integer 0..9.')
