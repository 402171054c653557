"""data.source='tfds' (configs/tfds.py): the DiT trains, resumes exactly and samples on a TFDS
dataset prepared as ArrayRecord (the world's own, world_tfds/tiny), in fixed clips, in buckets
of the sizes table and in packed rows; the VAE reads it (configs/vae_world.py:source=tfds), a
latent cache encodes it, and the DiT says what to pass when the dataset is not named."""
import itertools

import jax
import numpy as np
import pytest

from configs import tfds as tfds_config
from configs import vae_world
from videogen.data import clips
from videogen.data import latent_cache
from videogen.data import pipeline
from videogen.data import sizes
from videogen.data import world_source
from videogen.data import world_tfds
from videogen.models import text
from videogen.runtime import dit_run
from videogen.runtime import vae_run
from videogen.train import hooks
from videogen.train import loop


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  folder = tmp_path_factory.mktemp('tfds')
  world_tfds.WorldTfds(data_dir=folder).download_and_prepare()
  return folder


def tiny_config(data_dir, steps=2):
  config = tfds_config.get_config('runlocal=True')
  config.data.update(tfds_name='world_tfds/tiny', tfds_data_dir=str(data_dir), layout='fixed',
                     num_records=64)
  config.world.update(num_frames=2, height=16, width=16)
  config.train.update(steps=steps, checkpoint_every=2)
  # The 8 examples' captions repeat within steps; a cached caption's states, encoded beside
  # captions of another length, differ in their last bits from a fresh encoding, so without
  # the cache a resumed run and a straight one encode every batch alike.
  config.text.cache_size = 0
  return config


def test_batches_are_the_datasets_clips_at_the_configs_size(data_dir):
  config = tiny_config(data_dir)
  batch = next(iter(pipeline.tfds_dataset_from_config(config)))
  assert batch['video'].shape == (8, 2, 16, 16, 3) and batch['video'].dtype == np.float32
  assert -1 <= batch['video'].min() < batch['video'].max() <= 1
  stored = world_tfds.WorldTfds(data_dir=data_dir).builder_config
  world = world_source.WorldSource(world_tfds.world_options(stored), seed=stored.seed,
                                   num_records=stored.examples_per_split)
  assert set(batch['caption']) <= {world[i]['caption'] for i in range(len(world))}


def test_the_vae_reads_the_dataset_at_its_own_clip_size(data_dir):
  config = vae_world.get_config('runlocal=True,source=tfds')
  config.data.update(tfds_name='world_tfds/tiny', tfds_data_dir=str(data_dir), num_records=64)
  batch = next(iter(vae_run.build(config).dataset(0, 1)))
  assert batch['video'].shape == (8, 5, 16, 16, 3)  # runlocal VAE clips: 5 frames of 16 x 16
  clips = pipeline.source_clips(config, num_clips=2, seed=config.seed)
  np.testing.assert_array_equal(clips, batch['video'][:2])  # the same shuffle's first records


def test_each_process_reads_its_own_shard(data_dir):
  shards = [next(iter(pipeline.tfds_dataset_from_config(tiny_config(data_dir), shard_index=i,
                                                        shard_count=2))) for i in range(2)]
  assert shards[0]['video'].shape == shards[1]['video'].shape == (4, 2, 16, 16, 3)
  assert not np.array_equal(shards[0]['video'], shards[1]['video'])


def test_the_sample_grid_captions_are_the_datasets_own(data_dir):
  texts, _ = hooks.sample_prompts(tiny_config(data_dir), 4)
  stored = world_tfds.WorldTfds(data_dir=data_dir).builder_config
  world = world_source.WorldSource(world_tfds.world_options(stored), seed=stored.seed,
                                   num_records=stored.examples_per_split)
  assert texts == [world[i]['caption'] for i in range(4)]


@pytest.mark.integration
def test_trains_and_resumes_exactly(data_dir, tmp_path):
  first = loop.train(dit_run.build(tiny_config(data_dir, steps=2)), tmp_path / 'run',
                     progress=False)
  second = loop.train(dit_run.build(tiny_config(data_dir, steps=4)), tmp_path / 'run',
                      progress=False)
  straight = loop.train(dit_run.build(tiny_config(data_dir, steps=4)), tmp_path / 'straight',
                        progress=False)
  assert (first.last_step, second.first_step, second.last_step) == (2, 2, 4)
  for a, b in zip(jax.tree.leaves(straight.state), jax.tree.leaves(second.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the data continued exactly
  assert all(np.isfinite(r['loss']) for r in loop.read_metrics(tmp_path / 'run'))


def test_buckets_give_one_table_size_per_batch_and_train(data_dir, tmp_path):
  config = tiny_config(data_dir)
  config.data.layout = 'buckets'
  table = {(b.num_frames, b.height, b.width) for b in sizes.table_from_config(config)}
  batches = itertools.islice(iter(pipeline.tfds_dataset_from_config(config)), 4)
  shapes = [batch['video'].shape for batch in batches]
  assert all(shape[0] == 8 and shape[1:4] in table for shape in shapes)
  assert len(set(shapes)) > 1  # the batches take several of the table's sizes
  result = loop.train(dit_run.build(config), tmp_path, progress=False)
  assert result.last_step == 2


def test_a_missing_dataset_name_is_one_sentence(data_dir):
  config = tiny_config(data_dir)
  config.data.tfds_name = None
  with pytest.raises(ValueError, match=r"^data.source 'tfds' trains on a TFDS dataset that "
                                       r'data.tfds_name must name: pass '):
    dit_run.build(config).dataset(0, 1)


def test_packed_rows_hold_clips_at_their_own_aspect_and_train(data_dir, tmp_path):
  config = tiny_config(data_dir)
  config.data.layout = 'packed'
  stored = world_tfds.WorldTfds(data_dir=data_dir).builder_config
  w, patch = config.world, tuple(config.model.patch_size)
  want = clips.native_size((stored.height, stored.width), num_frames=w.num_frames,
                           patch_size=patch, max_tokens=config.data.row_length)
  batch = next(iter(pipeline.tfds_dataset_from_config(config)))
  shapes = batch['shapes'][batch['shapes'][..., 0] > 0]  # the rows' real segments
  assert len(shapes) and all(tuple(s) == (w.num_frames, *want) for s in shapes), shapes
  result = loop.train(dit_run.build(config), tmp_path, progress=False)
  assert result.last_step == 2


def test_a_latent_cache_encodes_the_datasets_clips(data_dir, tmp_path, tiny_vae):
  config = tiny_config(data_dir)
  cache = tmp_path / 'cache'
  metadata = latent_cache.encode_source(config, tiny_vae, text.encoder_from_config(config.text),
                                        cache, vae_workdir='fresh', num_records=4, batch_size=4)
  assert metadata['source']['kind'] == 'tfds'
  assert metadata['source']['tfds_name'] == 'world_tfds/tiny'
  records = [latent_cache.LatentCacheSource(cache)[i] for i in range(4)]
  # The cache's clips: the shuffle of 4 records, of 5 real frames (2 model frames -> 5 for the
  # VAE's 4x time), read as training reads them.
  five = tiny_config(data_dir)
  five.data.update(num_records=4, batch_size=4)
  five.world.num_frames = 5
  batch = next(iter(pipeline.tfds_dataset_from_config(five)))
  assert [r['caption'] for r in records] == list(batch['caption'][:4])
  np.testing.assert_allclose(np.stack([r['latents'] for r in records]),
                             np.asarray(tiny_vae.encode(batch['video'][:4])), rtol=2e-3,
                             atol=2e-3)
