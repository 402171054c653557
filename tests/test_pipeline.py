"""The world's Grain pipeline: determinism, shards, normalisation, exact resume, workers, and
the layouts of clips of many sizes (packed rows, buckets, fixed)."""
import json

import numpy as np
import pytest

from configs import world as world_config
from videogen.data import pipeline
from videogen.data import sizes
from videogen.data import world
from videogen.data import world_source

OPTIONS = world.WorldOptions(height=16, width=16, num_frames=3)


def _batches(iterator, n):
  return [next(iterator) for _ in range(n)]


def test_batches_are_normalised_and_shaped():
  batch = next(iter(pipeline.world_dataset(OPTIONS, seed=0, batch_size=4)))
  assert batch['video'].shape == (4, 3, 16, 16, 3)
  assert batch['video'].dtype == np.float32
  assert -1.0 <= batch['video'].min() and batch['video'].max() <= 1.0
  assert batch['video'].max() > 0.5  # a bright object is there, not only background
  assert len(batch['caption']) == 4 and all(isinstance(str(c), str) for c in batch['caption'])


def test_same_seed_same_batches_other_seed_differs():
  a = _batches(iter(pipeline.world_dataset(OPTIONS, seed=3, batch_size=2)), 2)
  b = _batches(iter(pipeline.world_dataset(OPTIONS, seed=3, batch_size=2)), 2)
  c = _batches(iter(pipeline.world_dataset(OPTIONS, seed=4, batch_size=2)), 2)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x['video'], y['video'])
  assert not np.array_equal(a[0]['video'], c[0]['video'])


def test_process_shards_are_disjoint_slices_of_the_source():
  source = world_source.WorldSource(OPTIONS, seed=0)
  for shard in range(2):
    batch = next(iter(pipeline.world_dataset(OPTIONS, seed=0, batch_size=2, shard_index=shard,
                                             shard_count=2)))
    for row, index in enumerate((shard, shard + 2)):
      expected = source[index]['video'].astype(np.float32) * (2 / 255) - 1
      np.testing.assert_allclose(batch['video'][row], expected, atol=1e-6)
      assert batch['caption'][row] == source[index]['caption']


def test_iterator_state_resumes_at_the_exact_next_batch():
  ds = pipeline.world_dataset(OPTIONS, seed=0, batch_size=2)
  iterator = iter(ds)
  _batches(iterator, 3)
  state = iterator.get_state()
  expected = _batches(iterator, 2)
  resumed = iter(ds)
  resumed.set_state(state)
  for want, got in zip(expected, _batches(resumed, 2)):
    np.testing.assert_array_equal(want['video'], got['video'])


def test_worker_processes_give_the_same_batches():
  direct = _batches(iter(pipeline.world_dataset(OPTIONS, seed=1, batch_size=2)), 3)
  workers = _batches(iter(pipeline.world_dataset(OPTIONS, seed=1, batch_size=2,
                                                 num_workers=1)), 3)
  for x, y in zip(direct, workers):
    np.testing.assert_array_equal(x['video'], y['video'])


@pytest.mark.parametrize('kwargs, match', [
    (dict(batch_size=0), 'batch_size 0'),
    (dict(batch_size=2, shard_index=2, shard_count=2), 'shard_index 2'),
    (dict(batch_size=8, num_records=8, shard_count=2), 'num_records 8'),
])
def test_bad_arguments_name_the_value(kwargs, match):
  with pytest.raises(ValueError, match=match):
    pipeline.world_dataset(OPTIONS, seed=0, **kwargs)


def sized_config(layout):
  """runlocal's world with `layout` over its size table (square and wide clips and images)."""
  config = world_config.get_config('runlocal=True')
  config.data.layout = layout
  return config


def test_each_record_renders_at_its_drawn_size():
  table = sizes.table_from_config(sized_config('packed'))
  draw = sizes.ClipSizes(table, seed=0)
  source = world_source.WorldSource(OPTIONS, seed=0, sizes=draw)
  shapes = set()
  for index in range(12):
    record, size = source[index], draw(index)
    assert record['video'].shape == (size.num_frames, size.height, size.width, 3)
    view_w, view_h = json.loads(record['scene'])['view']
    assert view_w / view_h == pytest.approx(size.width / size.height)
    shapes.add(record['video'].shape)
  assert len(shapes) > 2
  np.testing.assert_array_equal(source[5]['video'],
                                world_source.WorldSource(OPTIONS, seed=0, sizes=draw)[5]['video'])


def test_bucket_batches_take_one_size_on_every_shard():
  table = sizes.table_from_config(sized_config('buckets'))
  draw = sizes.ClipSizes(table, seed=0, group=4)
  shards = [iter(pipeline.world_dataset(OPTIONS, seed=0, batch_size=2, shard_index=shard,
                                        shard_count=2, sizes=draw)) for shard in range(2)]
  shapes = []
  for batch in range(4):
    size = draw(4 * batch)
    for iterator in shards:
      assert next(iterator)['video'].shape == (2, size.num_frames, size.height, size.width, 3)
    shapes.append((size.height, size.width, size.num_frames))
  assert len(set(shapes)) > 1
  with pytest.raises(ValueError, match='group=4'):
    pipeline.world_dataset(OPTIONS, seed=0, batch_size=4, sizes=sizes.ClipSizes(table, 0, 2))


def test_packed_world_rows_resume_at_the_exact_next_batch():
  ds = pipeline.world_dataset_from_config(sized_config('packed'))
  iterator = iter(ds)
  first = _batches(iterator, 3)
  assert first[0]['patches'].shape == (8, 16, 64 * 3) and first[0]['captions'].shape == (8, 4)
  assert all(0.5 < batch['fill'] <= 1 for batch in first)
  state = iterator.get_state()
  expected = _batches(iterator, 2)
  resumed = iter(ds)
  resumed.set_state(state)
  for want, got in zip(expected, _batches(resumed, 2)):
    for key in want:
      np.testing.assert_array_equal(want[key], got[key])


def test_fixed_layout_is_the_world_at_its_own_size():
  config = sized_config('fixed')
  got = next(iter(pipeline.world_dataset_from_config(config)))
  want = next(iter(pipeline.world_dataset(
      world.WorldOptions.from_config(config.world), seed=0, batch_size=8, num_threads=1,
      prefetch=1, clips_per_caption=config.data.clips_per_caption)))
  np.testing.assert_array_equal(got['video'], want['video'])
  assert list(got['caption']) == list(want['caption'])
  config.data.layout = 'tiles'
  with pytest.raises(ValueError, match="data.layout 'tiles' is unknown"):
    pipeline.world_dataset_from_config(config)
