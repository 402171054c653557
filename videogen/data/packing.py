"""Patch n' pack (NaViT): clips of any (T, H, W) side by side in token rows of one fixed length.

A row holds whole clips one after another, then padding. Per token: its patch values, its clip's
segment id (1..n; 0 = padding) and its (t, h, w) patch index within its clip (for RoPE). Per
segment: the clip's shape (T, H, W) and caption, padded to `max_segments` with zeros and ''.
`PackedDataset` turns a Grain stream of examples {'video' float32 [T, H, W, C], 'caption'} into
batches of such rows; `unpack` cuts tokens back into clips; `segment_text` lays out the encoded
captions of a batch for `DiT.packed`. Numpy only: this runs in Grain workers.

Legend: b rows, l tokens in a row, p patch values (pt * ph * pw * C), m segments, s text tokens
of a caption, n text tokens of a row, d text width.
"""
import itertools
import warnings
from collections.abc import Sequence
from typing import Any

import einops
import grain
import numpy as np

from videogen.core import patches


def check_fits(shape_thw: Sequence[int], row_length: int, patch_size: Sequence[int]) -> int:
  """The clip's token count; raises if the patch does not divide it or the row cannot hold it."""
  patches.check_divisible(shape_thw, patch_size)
  count = patches.num_tokens(shape_thw, patch_size)
  if count > row_length:
    raise ValueError(f'a clip of shape {tuple(shape_thw)} makes {count} tokens, more than '
                     f'row_length {row_length}: raise row_length to at least {count}, or pass '
                     'downscale=True to shrink such clips.')
  return count


def downscale_to_fit(video_thwc: np.ndarray, row_length: int,
                     patch_size: Sequence[int]) -> np.ndarray:
  """The clip shrunk in height and width by the smallest integer factor k whose result fits a row.

  Each output pixel is the mean of a k x k box; the centre is cropped so that the new height and
  width stay multiples of the patch. A clip that already fits is returned as is.
  """
  t, h, w, _ = video_thwc.shape
  pt, ph, pw = patch_size
  patches.check_divisible((t, h, w), patch_size)
  for k in itertools.count(1):
    rows, cols = h // (k * ph), w // (k * pw)
    if rows == 0 or cols == 0:
      raise ValueError(f'a clip of shape {(t, h, w)} does not fit row_length {row_length} even '
                       f'at one patch per frame ({t // pt} tokens): raise row_length or use '
                       'shorter clips.')
    if (t // pt) * rows * cols <= row_length:
      break
  if k == 1:
    return video_thwc
  top, left = (h - rows * ph * k) // 2, (w - cols * pw * k) // 2
  crop = video_thwc[:, top:top + rows * ph * k, left:left + cols * pw * k]
  return einops.reduce(crop, 't (h k1) (w k2) c -> t h w c', 'mean', k1=k, k2=k).astype(
      video_thwc.dtype)


def first_fit_decreasing(counts: Sequence[int], row_length: int, max_segments: int,
                         rng: np.random.Generator) -> list[list[int]]:
  """Indices of `counts` grouped into rows: largest first, each into the first row with room.

  Equal counts go in a random order; the rows come back in a random order.
  """
  order = rng.permutation(len(counts))
  order = order[np.argsort(-np.asarray(counts)[order], kind='stable')]
  rows, room = [], []
  for index in order:
    for row, free in enumerate(room):
      if counts[index] <= free and len(rows[row]) < max_segments:
        rows[row].append(int(index))
        room[row] -= counts[index]
        break
    else:
      rows.append([int(index)])
      room.append(row_length - counts[index])
  return [rows[i] for i in rng.permutation(len(rows))]


def pack_row(examples: Sequence[dict], row_length: int, patch_size: Sequence[int],
             max_segments: int) -> dict[str, np.ndarray]:
  """One row from examples that fit together: patches [L, P], segment_ids [L], positions [L, 3],
  shapes [M, 3] and captions [M] (see the module docstring)."""
  if not 1 <= len(examples) <= max_segments:
    raise ValueError(f'{len(examples)} clips cannot fill one row of at most {max_segments} '
                     'segments: pass 1 to max_segments clips.')
  channels = {example['video'].shape[-1] for example in examples}
  if len(channels) != 1:
    raise ValueError(f'clips in one row have channel counts {sorted(channels)}: give every clip '
                     'the same number of channels.')
  counts = [check_fits(np.shape(example['video'])[:3], row_length, patch_size)
             for example in examples]
  if sum(counts) > row_length:
    raise ValueError(f'clips of {counts} tokens ({sum(counts)} in all) do not fit one row of '
                     f'row_length {row_length}: pack them into several rows (pack_examples).')
  width = int(np.prod(patch_size)) * channels.pop()
  row = {'patches': np.zeros((row_length, width), np.float32),
         'segment_ids': np.zeros(row_length, np.int32),
         'positions': np.zeros((row_length, 3), np.int32),
         'shapes': np.zeros((max_segments, 3), np.int32)}
  start = 0
  for segment, (example, count) in enumerate(zip(examples, counts)):
    video_thwc = np.asarray(example['video'], np.float32)
    span = slice(start, start + count)
    row['patches'][span] = patches.patchify(video_thwc[None], patch_size)[0]
    row['segment_ids'][span] = segment + 1
    row['positions'][span] = patches.positions(*video_thwc.shape[:3], patch_size)
    row['shapes'][segment] = video_thwc.shape[:3]
    start += count
  captions = [str(example['caption']) for example in examples]
  row['captions'] = np.array(captions + [''] * (max_segments - len(examples)))
  return row


def pack_examples(examples: Sequence[dict], row_length: int, patch_size: Sequence[int], *,
                  max_segments: int = 16, downscale: bool = False,
                  seed: Any = 0) -> list[dict[str, np.ndarray]]:
  """Packs all `examples` into rows (first fit, largest first), in a random order from `seed`.

  A clip with more tokens than `row_length` raises, or with `downscale` shrinks to fit.
  """
  if downscale:
    examples = [{**example, 'video': downscale_to_fit(np.asarray(example['video']), row_length,
                                                      patch_size)} for example in examples]
  counts = [check_fits(np.shape(example['video'])[:3], row_length, patch_size)
            for example in examples]
  groups = first_fit_decreasing(counts, row_length, max_segments, np.random.default_rng(seed))
  return [pack_row([examples[i] for i in group], row_length, patch_size, max_segments)
          for group in groups]


def unpack(tokens_blp, segment_ids_bl, shapes_bm3, patch_size: Sequence[int]) -> list:
  """Clips [T, H, W, C] cut out of packed tokens, in (row, segment) order, empty segments skipped.

  tokens [B, L, P] (numpy or jax); segment_ids [B, L] and shapes [B, M, 3] must be concrete.
  A single row ([L, P], [L], [M, 3]) works too.
  """
  segment_ids_bl, shapes_bm3 = np.asarray(segment_ids_bl), np.asarray(shapes_bm3)
  if segment_ids_bl.ndim == 1:
    tokens_blp, segment_ids_bl, shapes_bm3 = (a[None] for a in (tokens_blp, segment_ids_bl,
                                                                 shapes_bm3))
  clips = []
  for row, (ids_l, shapes_m3) in enumerate(zip(segment_ids_bl, shapes_bm3)):
    for segment, shape in enumerate(shapes_m3, start=1):
      if shape[0] == 0:
        continue
      index = np.flatnonzero(ids_l == segment)
      if len(index) != patches.num_tokens(shape, patch_size):
        raise ValueError(f'segment {segment} of row {row} has {len(index)} tokens but shape '
                         f'{tuple(shape)} needs {patches.num_tokens(shape, patch_size)}: pass the '
                         'segment_ids and shapes of the same packed batch.')
      clips.append(patches.unpatchify(tokens_blp[row, index][None], shape, patch_size)[0])
  return clips


def caption_quotas(lengths: Sequence[int], budget: int) -> list[int]:
  """How many tokens each caption keeps so that together they fit `budget`: all of each when
  they fit, else the shortest keep theirs and the rest share what is left equally (water
  filling), so a long caption never crowds a short one out."""
  quotas, left = list(lengths), budget
  for rank, index in enumerate(np.argsort(lengths, kind='stable')):
    share = left // (len(lengths) - rank)
    quotas[index] = min(lengths[index], share)
    left -= quotas[index]
  return quotas


def segment_text(text_bmsd: np.ndarray, mask_bms: np.ndarray, shapes_bm3: np.ndarray,
                 length: int | None = None):
  """Encoded captions per segment [B, M, S, D] -> one text row per packed row for `DiT.packed`:
  (text [B, N, D], mask [B, N] bool, text_segment_ids [B, N] int32), N = `length` or M*S.

  Each row holds its real segments' real caption tokens one caption after another, then
  padding (mask False, id 0); empty segments' text is left out. Captions longer together than
  `length` are cut at their ends by `caption_quotas` (with a warning): a row of M clips with
  short captions needs far fewer than M*S text tokens, and cross-attention costs per token.
  """
  text_bmsd, mask_bms = np.asarray(text_bmsd), np.asarray(mask_bms, bool)
  batch, segments, per_caption = mask_bms.shape
  length = segments * per_caption if length is None else length
  if length < 1:
    raise ValueError(f'text row length {length} must be at least 1 token.')
  real_bm = np.asarray(shapes_bm3)[..., 0] > 0
  text_bnd = np.zeros((batch, length, text_bmsd.shape[-1]), text_bmsd.dtype)
  mask_bn, ids_bn = np.zeros((batch, length), bool), np.zeros((batch, length), np.int32)
  for row in range(batch):
    kept = [(m, np.flatnonzero(mask_bms[row, m])) for m in np.flatnonzero(real_bm[row])]
    lengths = [len(tokens) for _, tokens in kept]
    quotas = caption_quotas(lengths, length)
    if quotas != lengths:
      warnings.warn(f'captions of {lengths} tokens do not fit a text row of {length}: cut to '
                    f'{quotas}. Raise data.text_row_length to keep them whole.', stacklevel=2)
    start = 0
    for (segment, tokens), quota in zip(kept, quotas):
      span = slice(start, start + quota)
      text_bnd[row, span] = text_bmsd[row, segment, tokens[:quota]]
      mask_bn[row, span], ids_bn[row, span] = True, segment + 1
      start += quota
  return text_bnd, mask_bn, ids_bn


class PackedDataset(grain.IterDataset):
  """Batches of packed rows from a stream of examples {'video' [T, H, W, C], 'caption'}.

  Reads `buffer_size` examples at a time, packs them with `pack_examples` (seeded per round)
  and emits `rows_per_batch` rows per batch: patches [B, L, P], segment_ids [B, L], positions
  [B, L, 3], shapes [B, M, 3], captions [B, M], and 'fill' (this batch's real tokens / all
  tokens). A partial last batch is dropped. The iterator's `fill_rate` is the running fill since
  the start; its state (the parent's state at the round's start plus the rows already given)
  resumes at exactly the next batch.
  """

  def __init__(self, parent: grain.IterDataset, *, row_length: int,
               patch_size: Sequence[int], rows_per_batch: int, max_segments: int = 16,
               buffer_size: int = 256, seed: int = 0, downscale: bool = False):
    super().__init__(parent)
    for name, value in (('row_length', row_length), ('rows_per_batch', rows_per_batch),
                        ('max_segments', max_segments), ('buffer_size', buffer_size)):
      if value < 1:
        raise ValueError(f'{name} {value} must be at least 1.')
    self.row_length, self.patch_size = row_length, tuple(patch_size)
    self.rows_per_batch, self.max_segments = rows_per_batch, max_segments
    self.buffer_size, self.seed, self.downscale = buffer_size, seed, downscale

  def __iter__(self) -> '_PackedIterator':
    return _PackedIterator(self._parent.__iter__(), self)

  def __str__(self) -> str:
    return f'PackedDataset(row_length={self.row_length}, patch_size={self.patch_size})'


class _PackedIterator(grain.DatasetIterator):
  """Packs one round of `buffer_size` examples at a time; see `PackedDataset`."""

  def __init__(self, parent: grain.DatasetIterator, spec: PackedDataset):
    super().__init__(parent)
    self._spec = spec
    self._round, self._rows, self._next_row = -1, [], 0
    self._round_parent_state = parent.get_state()
    self._real_tokens = self._all_tokens = 0

  @property
  def fill_rate(self) -> float:
    """Real tokens / all tokens over every batch given so far (0 before the first)."""
    return self._real_tokens / max(self._all_tokens, 1)

  def _start_round(self):
    spec = self._spec
    self._round_parent_state = self._parent.get_state()
    examples = list(itertools.islice(self._parent, spec.buffer_size))
    if not examples:
      raise StopIteration
    self._round += 1
    self._rows = pack_examples(examples, spec.row_length, spec.patch_size,
                               max_segments=spec.max_segments, downscale=spec.downscale,
                               seed=(spec.seed, self._round))
    self._next_row = 0

  def __next__(self) -> dict[str, np.ndarray]:
    rows = []
    while len(rows) < self._spec.rows_per_batch:
      if self._next_row == len(self._rows):
        self._start_round()
      rows.append(self._rows[self._next_row])
      self._next_row += 1
    batch = {key: np.stack([row[key] for row in rows]) for key in rows[0]}
    real = int(np.count_nonzero(batch['segment_ids']))
    self._real_tokens += real
    self._all_tokens += batch['segment_ids'].size
    batch['fill'] = np.float32(real / batch['segment_ids'].size)
    return batch

  def get_state(self) -> dict[str, Any]:
    return {'parent': self._round_parent_state, 'round': self._round,
            'next_row': self._next_row, 'real_tokens': self._real_tokens,
            'all_tokens': self._all_tokens}

  def set_state(self, state: dict[str, Any]) -> None:
    self._parent.set_state(state['parent'])
    # _start_round counts the round again; a state from before the first batch has round -1.
    self._round, self._rows, self._next_row = max(state['round'] - 1, -1), [], 0
    self._round_parent_state = state['parent']
    if state['round'] >= 0:
      self._start_round()
      self._next_row = state['next_row']
    self._real_tokens, self._all_tokens = state['real_tokens'], state['all_tokens']
