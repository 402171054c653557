"""The sizes clips train at: aspect ratios x durations, each a weighted share, in whole patches.

A size table is a tuple of `buckets.Bucket` (frames, height, width, weight), so packing and
buckets read the same distribution. Each aspect ratio keeps about the area of a `side` x `side`
frame: its height is the patch multiple nearest side / sqrt(aspect), its width the patch multiple
nearest height * aspect. A size's weight is its aspect's weight times its duration's. `ClipSizes`
draws the size of each record (or of each batch of records) from (seed, index). Numpy only.
"""
import math
from collections.abc import Sequence

import numpy as np

from videogen.data import buckets
from videogen.core import patches

_STREAM = 6  # keeps size draws apart from the scene's and the caption's draws of (seed, index)


def parse_aspect(aspect: str) -> float:
  """'16:9' (width:height) -> 16 / 9."""
  width, sep, height = str(aspect).partition(':')
  try:
    ratio = float(width) / float(height) if sep else float('nan')
  except (ValueError, ZeroDivisionError):
    ratio = float('nan')
  if not (ratio > 0 and math.isfinite(ratio)):
    raise ValueError(f'aspect {aspect!r} is not a width:height ratio of positive numbers: write '
                     'e.g. "16:9".')
  return ratio


def _probabilities(name: str, values: Sequence, weights: Sequence[float]) -> np.ndarray:
  """weights / their sum, or one clear error for a bad list."""
  if not values or len(values) != len(weights):
    raise ValueError(f'{name} {tuple(values)} with weights {tuple(weights)}: give at least one, '
                     'and one weight for each.')
  w = np.asarray(weights, np.float64)
  if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
    raise ValueError(f'{name} weights {tuple(weights)} must be finite, >= 0 and not all zero: '
                     'give at least one a positive weight.')
  return w / w.sum()


def frame_size(aspect: float, side: int, patch_size: Sequence[int]) -> tuple[int, int]:
  """(height, width) of about side**2 pixels at width / height near `aspect`, in whole patches."""
  _, ph, pw = patch_size
  height = max(ph, ph * round(side / math.sqrt(aspect) / ph))
  return height, max(pw, pw * round(height * aspect / pw))


def size_table(*, side: int, aspects: Sequence[str], aspect_weights: Sequence[float],
               durations: Sequence[int], duration_weights: Sequence[float],
               patch_size: Sequence[int],
               row_length: int | None = None) -> tuple[buckets.Bucket, ...]:
  """Every (aspect, duration) as a Bucket; raises if the patch does not divide a size or (given
  a row_length) a size has more tokens than one packed row holds."""
  p_aspect = _probabilities('aspects', aspects, aspect_weights)
  p_duration = _probabilities('durations', durations, duration_weights)
  if side < 1:
    raise ValueError(f'side {side} must be a positive number of pixels, e.g. 32.')
  table = []
  for aspect, p_a in zip(aspects, p_aspect):
    height, width = frame_size(parse_aspect(aspect), side, patch_size)
    for frames, p_d in zip(durations, p_duration):
      shape = (int(frames), height, width)
      tokens = patches.num_tokens(shape, patch_size)  # raises unless the patch divides it
      if row_length is not None and tokens > row_length:
        raise ValueError(f'size {shape} ({aspect}, {frames} frames) makes {tokens} tokens, more '
                         f'than row_length {row_length}: raise row_length to at least {tokens}, '
                         'or lower the side or the longest duration.')
      table.append(buckets.Bucket(*shape, weight=float(p_a * p_d)))
  buckets.check_table(table)
  return tuple(table)


def table_from_config(config) -> tuple[buckets.Bucket, ...]:
  """The size table of a config with data.sizes, model.patch_size and, for the packed layout,
  data.row_length."""
  s, d = config.data.sizes, config.data
  row_length = d.row_length if d.get('layout') == 'packed' else None
  return size_table(side=s.side, aspects=s.aspects, aspect_weights=s.aspect_weights,
                    durations=s.durations, duration_weights=s.duration_weights,
                    patch_size=config.model.patch_size, row_length=row_length)


class ClipSizes:
  """The size of record `index`: drawn from the table with its weights, per record (group=1,
  for packing) or once per run of `group` consecutive records (one global batch, for buckets).
  A pure function of (seed, index // group); pickles into Grain workers."""

  def __init__(self, table: Sequence[buckets.Bucket], seed: int, group: int = 1):
    if group < 1:
      raise ValueError(f'group {group} must be at least 1 record.')
    stream_seed = int(np.random.SeedSequence((seed, _STREAM)).generate_state(1)[0])
    self.sampler = buckets.BucketSampler(table, stream_seed)
    self.group = group

  @property
  def table(self) -> tuple[buckets.Bucket, ...]:
    """The sizes drawn from, with their weights."""
    return self.sampler.buckets

  def __call__(self, index: int) -> buckets.Bucket:
    return self.sampler(index // self.group)

  def __repr__(self) -> str:
    return f'ClipSizes({len(self.table)} sizes, group={self.group})'
