"""The world as a TFDS ArrayRecord dataset, built and read back without TensorFlow."""
import grain
import numpy as np
import pytest

from videogen.data import clips
from videogen.data import tfds_source
from videogen.data import world_source
from videogen.data import world_tfds


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp('tfds')


@pytest.fixture(scope='module')
def builder(data_dir):
  builder = world_tfds.WorldTfds(data_dir=data_dir)
  builder.download_and_prepare()
  return builder


def _world(builder, split):
  config = builder.builder_config
  return world_source.WorldSource(world_tfds.world_options(config), seed=config.seed,
                                  split=split, num_records=config.examples_per_split)


def test_files_are_array_record(builder):
  names = [p.name for p in builder.data_path.iterdir()]
  assert 'world_tfds-train.array_record-00000-of-00001' in names
  assert 'world_tfds-held_out.array_record-00000-of-00001' in names


def test_a_grain_pipeline_reads_back_the_world_sources_clips(builder, data_dir):
  source = tfds_source.TfdsSource('world_tfds/tiny', 'train', data_dir=data_dir, num_frames=4,
                                  height=16, width=16)
  batches = list(grain.MapDataset.source(source).batch(4))
  world = _world(builder, 'train')
  assert len(source) == 8 and len(batches) == 2
  for b, batch in enumerate(batches):
    assert batch['video'].shape == (4, 4, 16, 16, 3) and batch['video'].dtype == np.uint8
    for row in range(4):
      expected = world[4 * b + row]
      np.testing.assert_array_equal(batch['video'][row], expected['video'])
      assert batch['caption'][row] == expected['caption']
      assert batch['scene'][row] == expected['scene']


def test_held_out_split_matches_the_world_held_out_split(builder):
  source = tfds_source.TfdsSource(builder, 'held_out', num_frames=4, height=16, width=16)
  world = _world(builder, 'held_out')
  for index in (0, 7):
    np.testing.assert_array_equal(source[index]['video'], world[index]['video'])
    assert source[index]['caption'] == world[index]['caption']


def test_other_sizes_and_rates_are_resampled_and_cropped(builder):
  source = tfds_source.TfdsSource(builder, 'train', num_frames=2, height=8, width=12, fps=4)
  stored = _world(builder, 'train')[3]['video']  # 4 frames at 8 fps
  record = source[3]
  assert record['video'].shape == (2, 8, 12, 3)
  candidates = [clips.resize_crop(stored[[s, s + 2]], 8, 12) for s in (0, 1)]  # every other
  assert any(np.array_equal(record['video'], c) for c in candidates)


def test_unknown_keys_name_the_fields(builder):
  with pytest.raises(ValueError, match="'image' .* not a field of this dataset"):
    tfds_source.TfdsSource(builder, 'train', num_frames=1, height=8, width=8, video_key='image')
