"""Shape buckets: the simpler alternative to packing. Each batch takes one (T, H, W) shape.

A table lists the shapes with weights; `BucketSampler` draws one bucket per batch with
probability proportional to its weight (a pure function of (seed, batch index), so a resumed
run draws the same); `nearest_bucket` picks a clip's bucket by aspect ratio, then frame count;
`to_bucket` samples the frames and resizes and crops them to the bucket (`clips.sample_clip`).
Numpy only (Grain workers).
"""
import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from videogen.data import clips


@dataclasses.dataclass(frozen=True)
class Bucket:
  """One clip shape in pixels and frames, and its share of batches (relative weight)."""
  num_frames: int
  height: int
  width: int
  weight: float = 1.0

  @property
  def aspect(self) -> float:
    """Width / height."""
    return self.width / self.height


def check_table(buckets: Sequence[Bucket]) -> np.ndarray:
  """The probabilities of `buckets` (weights / their sum); raises one clear error for a bad
  table."""
  if not buckets:
    raise ValueError('the bucket table is empty: list at least one Bucket(num_frames, height, '
                     'width, weight).')
  for bucket in buckets:
    clips.check_target(bucket.num_frames, bucket.height, bucket.width, fps=None)
  weights = np.array([bucket.weight for bucket in buckets], np.float64)
  if not np.isfinite(weights).all() or (weights < 0).any():
    raise ValueError(f'bucket weights {weights.tolist()} must be finite and >= 0: give each '
                     'bucket a non-negative weight.')
  if weights.sum() <= 0:
    raise ValueError(f'bucket weights {weights.tolist()} sum to {weights.sum()}: give at least '
                     'one bucket a positive weight.')
  return weights / weights.sum()


class BucketSampler:
  """Draws the bucket of each batch, with probabilities proportional to the weights."""

  def __init__(self, buckets: Sequence[Bucket], seed: int = 0):
    self.buckets = tuple(buckets)
    self.probabilities = check_table(self.buckets)
    self.seed = seed

  def __call__(self, batch_index: int) -> Bucket:
    """The bucket of batch `batch_index` (the same for the same seed and index)."""
    rng = np.random.default_rng((self.seed, batch_index))
    return self.buckets[rng.choice(len(self.buckets), p=self.probabilities)]


def nearest_bucket(buckets: Sequence[Bucket], aspect: float, num_frames: int) -> Bucket:
  """The bucket closest to `aspect` (width / height, compared as log ratios); among those, the
  longest one no longer than `num_frames`, else the shortest."""
  check_table(buckets)
  if not (aspect > 0 and math.isfinite(aspect)):
    raise ValueError(f'aspect {aspect} must be a positive width / height ratio, e.g. 16 / 9.')

  def distance(bucket):
    aspect_gap = round(abs(math.log(bucket.aspect / aspect)), 9)
    too_long = bucket.num_frames > num_frames
    return aspect_gap, too_long, abs(bucket.num_frames - num_frames)

  return min(buckets, key=distance)


def to_bucket(frames_thwc: np.ndarray, bucket: Bucket, **sampling) -> np.ndarray:
  """A uint8 clip [T, H, W, 3] of the bucket's shape: frames sampled, then resized and cropped.

  `sampling` takes `clips.sample_clip`'s source_fps, fps, seed and index.
  """
  return clips.sample_clip(frames_thwc, num_frames=bucket.num_frames, height=bucket.height,
                           width=bucket.width, **sampling)
