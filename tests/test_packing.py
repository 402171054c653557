"""Patch n' pack: rows of clips of any shape, their round trip, the Grain packer, its fill and
its exact resume."""
import grain
import numpy as np
import pytest

from videogen.data import packing
from videogen.core import patches

PATCH = (1, 8, 8)
# Clip sizes (height, width) for the aspect ratios 9:16, 1:1, 16:9 and 4:3, at most 28 tokens a
# frame, so that 17 frames fit a row of 512 tokens.
SIZES = ((56, 32), (40, 40), (32, 56), (24, 32))


def make_example(index: int) -> dict:
  """A clip of 1 to 17 frames (1 frame: an image) at one of SIZES, drawn from its index."""
  rng = np.random.default_rng(index)
  height, width = SIZES[rng.integers(len(SIZES))]
  video = rng.standard_normal((int(rng.integers(1, 18)), height, width, 3)).astype(np.float32)
  return {'video': video, 'caption': f'clip {index}'}


def packed_dataset(seed=0, num_examples=400, **options):
  parent = grain.MapDataset.range(num_examples).map(make_example).to_iter_dataset()
  options = dict(row_length=512, patch_size=PATCH, rows_per_batch=4, buffer_size=64) | options
  return packing.PackedDataset(parent, seed=seed, **options)


def test_a_row_holds_images_and_videos_and_unpacks_to_them():
  clips = [np.random.default_rng(i).standard_normal(shape).astype(np.float32)
           for i, shape in enumerate(((3, 16, 16, 2), (1, 8, 16, 2), (2, 8, 8, 2)))]
  row = packing.pack_row([{'video': c, 'caption': f'c{i}'} for i, c in enumerate(clips)],
                         row_length=20, patch_size=PATCH, max_segments=4)
  assert row['patches'].shape == (20, 64 * 2) and row['patches'].dtype == np.float32
  np.testing.assert_array_equal(row['segment_ids'], [1] * 12 + [2] * 2 + [3] * 2 + [0] * 4)
  np.testing.assert_array_equal(row['positions'][:12], patches.positions(3, 16, 16, PATCH))
  np.testing.assert_array_equal(row['positions'][12:14], [[0, 0, 0], [0, 0, 1]])
  np.testing.assert_array_equal(row['shapes'], [[3, 16, 16], [1, 8, 16], [2, 8, 8], [0, 0, 0]])
  assert row['captions'].tolist() == ['c0', 'c1', 'c2', '']
  for got, want in zip(packing.unpack(row['patches'], row['segment_ids'], row['shapes'], PATCH),
                       clips, strict=True):
    np.testing.assert_array_equal(got, want)


def test_segment_text_keeps_real_tokens_of_real_segments_in_order():
  text = np.arange(2 * 3 * 2 * 1, dtype=np.float32).reshape(2, 3, 2, 1)
  mask = np.array([[[1, 0], [1, 1], [1, 1]]] * 2, bool)
  shapes = np.array([[[1, 8, 8], [1, 8, 8], [0, 0, 0]], [[1, 8, 8]] + [[0, 0, 0]] * 2])
  flat_text, flat_mask, ids = packing.segment_text(text, mask, shapes)
  assert flat_text.shape == (2, 6, 1)
  np.testing.assert_array_equal(flat_text[0, :3, 0], [text[0, 0, 0, 0], *text[0, 1, :, 0]])
  np.testing.assert_array_equal(ids, [[1, 2, 2, 0, 0, 0], [1, 0, 0, 0, 0, 0]])
  np.testing.assert_array_equal(flat_mask, ids > 0)
  short_text, short_mask, short_ids = packing.segment_text(text, mask, shapes, length=3)
  np.testing.assert_array_equal(short_text, flat_text[:, :3])
  np.testing.assert_array_equal(short_ids, ids[:, :3])


@pytest.mark.parametrize('lengths, budget, want', [
    ((5, 9), 20, [5, 9]),     # both fit: whole
    ((5, 9), 12, [5, 7]),     # the short one whole, the long one cut
    ((9, 9, 2), 10, [4, 4, 2]),
    ((3, 3), 1, [0, 1]),
])
def test_caption_quotas_fill_the_budget_shortest_first(lengths, budget, want):
  assert packing.caption_quotas(lengths, budget) == want


def test_segment_text_cuts_captions_over_the_row_with_a_warning():
  mask = np.ones((1, 2, 4), bool)
  text = np.arange(8, dtype=np.float32).reshape(1, 2, 4, 1)
  with pytest.warns(UserWarning, match=r'captions of \[4, 4\] tokens do not fit a text row of 6'):
    cut, _, ids = packing.segment_text(text, mask, np.ones((1, 2, 3), int), length=6)
  np.testing.assert_array_equal(cut[0, :, 0], [0, 1, 2, 4, 5, 6])
  np.testing.assert_array_equal(ids[0], [1, 1, 1, 2, 2, 2])


def test_packer_is_deterministic_fills_rows_and_reports_fill():
  first_run = iter(packed_dataset())
  batches = [next(first_run) for _ in range(12)]
  again = iter(packed_dataset())
  for batch in batches:
    other = next(again)
    assert batch.keys() == other.keys()
    for key in batch:
      np.testing.assert_array_equal(batch[key], other[key])
  assert not np.array_equal(next(iter(packed_dataset(seed=1)))['segment_ids'],
                            batches[0]['segment_ids'])
  first = batches[0]
  assert first['patches'].shape == (4, 512, 64 * 3) and first['positions'].shape == (4, 512, 3)
  assert first['shapes'].shape == (4, 16, 3) and first['captions'].shape == (4, 16)
  fills = [float(batch['fill']) for batch in batches]
  assert np.mean(fills) >= 0.9, fills  # measured 0.95 with a buffer of 64 clips
  counted = np.mean([np.mean(batch['segment_ids'] > 0) for batch in batches])
  np.testing.assert_allclose(np.mean(fills), counted, rtol=1e-6)
  for batch in batches:  # every token of a segment belongs to the shape it reports
    tokens = [patches.num_tokens(s, PATCH) if s[0] else 0 for s in batch['shapes'].reshape(-1, 3)]
    assert sum(tokens) == np.count_nonzero(batch['segment_ids'])


def test_running_fill_rate_and_resume_give_identical_next_batches():
  it = iter(packed_dataset(rows_per_batch=3, buffer_size=16))
  for _ in range(5):  # rounds of 16 clips make ~8 rows: batches straddle rounds
    next(it)
  state, fill_rate = it.get_state(), it.fill_rate
  expected = [next(it) for _ in range(4)]
  resumed = iter(packed_dataset(rows_per_batch=3, buffer_size=16))
  resumed.set_state(state)
  assert 0.5 < resumed.fill_rate == fill_rate
  for want in expected:
    got = next(resumed)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])
  assert resumed.fill_rate == pytest.approx(it.fill_rate)
  fresh = iter(packed_dataset(rows_per_batch=3, buffer_size=16))  # the state before any batch
  restarted = iter(packed_dataset(rows_per_batch=3, buffer_size=16))
  restarted.set_state(fresh.get_state())
  np.testing.assert_array_equal(next(restarted)['patches'], next(fresh)['patches'])


def test_too_long_clip_names_both_numbers_or_downscales():
  clip = {'video': np.zeros((4, 64, 96, 3), np.float32), 'caption': 'big'}  # 4 * 8 * 12 = 384
  with pytest.raises(ValueError, match=r'makes 384 tokens, more than row_length 60.*'
                                       r'at least 384.*downscale=True'):
    packing.pack_examples([clip], 60, PATCH)
  row, = packing.pack_examples([clip], 60, PATCH, downscale=True)
  np.testing.assert_array_equal(row['shapes'][0], [4, 16, 32])  # factor 2 makes 96: 3 fits
  assert np.count_nonzero(row['segment_ids']) == 4 * 2 * 4
  np.testing.assert_array_equal(packing.unpack(row['patches'], row['segment_ids'],
                                               row['shapes'], PATCH)[0], 0.0)
  with pytest.raises(ValueError, match=r'height 30 is not divisible by patch height 8'):
    packing.pack_examples([{'video': np.zeros((1, 30, 32, 3)), 'caption': ''}], 100, PATCH)
  with pytest.raises(ValueError, match='even at one patch per frame'):
    packing.downscale_to_fit(np.zeros((200, 8, 8, 3)), 100, PATCH)


def test_rows_keep_to_max_segments():
  images = [{'video': np.zeros((1, 8, 8, 3), np.float32), 'caption': str(i)} for i in range(7)]
  rows = packing.pack_examples(images, 512, PATCH, max_segments=3)
  assert sorted(np.count_nonzero(row['shapes'][:, 0]) for row in rows) == [1, 3, 3]
  with pytest.raises(ValueError, match='rows_per_batch 0 must be at least 1'):
    packed_dataset(rows_per_batch=0)
