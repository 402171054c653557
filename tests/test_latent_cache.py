"""The latent cache: world clips encoded once (an untrained tiny VAE, MiniLM) into
ArrayRecord shards, read back by a Grain source and a resumable training pipeline, and the runner.

Legend: b batch, t/h/w latent frames/height/width, c latent channels, l text tokens, d text width.
"""
import json
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest

from configs import world as world_config
from videogen.data import latent_cache
from videogen.data import pipeline
from videogen.data import world
from videogen.models import text

pytestmark = pytest.mark.integration  # encodes a cache, runs its runner

REPO = pathlib.Path(__file__).resolve().parents[1]
NUM_RECORDS, BATCH = 6, 4  # two batches, the second cut to 2 clips; shards of 4 and 2 records
F16 = dict(rtol=2e-3, atol=2e-3)  # float16 storage


@pytest.fixture(scope='module')
def dit_config():
  """The runlocal DiT config: 2-frame 16x16 world clips (cached at 5 frames), MiniLM."""
  return world_config.get_config('runlocal=True')


@pytest.fixture(scope='module')
def encoder(dit_config):
  return text.encoder_from_config(dit_config.text)


@pytest.fixture(scope='module')
def cache(tmp_path_factory, dit_config, tiny_vae, encoder):
  out = tmp_path_factory.mktemp('cache') / 'world'
  latent_cache.encode_source(dit_config, tiny_vae, encoder, out, vae_workdir='fresh',
                            batch_size=BATCH, num_records=NUM_RECORDS, records_per_shard=4)
  return out


def _world_batches(dit_config):
  """The clips the cache encoded, in the writer's batches: world records 0 .. 7 at 5 frames."""
  options = world.WorldOptions.from_config({**dit_config.world.to_dict(), 'num_frames': 5})
  ds = pipeline.world_dataset(options, seed=dit_config.seed, batch_size=BATCH, num_records=8)
  return list(iter(ds))


def test_records_equal_the_encoders_outputs(cache, dit_config, tiny_vae, encoder):
  source = latent_cache.LatentCacheSource(cache)
  metadata = source.metadata
  assert len(source) == NUM_RECORDS and len(metadata['shards']) == 2
  assert metadata['clip_shape'] == [5, 16, 16] and metadata['latent_shape'] == [2, 4, 4, 4]
  assert metadata['vae']['compression'] == [4, 4, 4] and metadata['vae']['step'] == 0
  assert metadata['text'] == {'encoder': 'minilm', 'dim': 384, 'max_length': 32}
  assert metadata['source']['world']['num_frames'] == 5
  assert metadata['source']['model_num_frames'] == 2
  batches = _world_batches(dit_config)
  latents = np.concatenate([tiny_vae.encode(b['video']) for b in batches])[:NUM_RECORDS]
  captions = [str(c) for b in batches for c in b['caption']][:NUM_RECORDS]
  text_bld, mask_bl = encoder.encode(captions)
  for i in range(NUM_RECORDS):
    record = source[i]
    assert record['index'] == i and record['caption'] == captions[i]
    assert record['latents'].dtype == np.float32 and record['latents'].shape == (2, 4, 4, 4)
    np.testing.assert_allclose(record['latents'], latents[i], **F16)
    np.testing.assert_array_equal(record['text_mask'], mask_bl[i])
    np.testing.assert_allclose(record['text'], text_bld[i], **F16)
    assert not record['text'][~record['text_mask']].any()
  assert 10 < mask_bl.sum(1).min() and mask_bl.sum(1).max() < 32  # real tokens only are stored
  copy = pickle.loads(pickle.dumps(source))  # as Grain sends it to worker processes
  np.testing.assert_array_equal(copy[5]['latents'], source[5]['latents'])


def test_pipeline_batches_and_resumes_exactly(cache):
  ds = latent_cache.latent_dataset(cache, seed=0, batch_size=2, num_threads=1, prefetch=1)
  iterator = iter(ds)
  first = [next(iterator) for _ in range(3)]  # one epoch: every record once
  assert first[0]['latents'].shape == (2, 2, 4, 4, 4) and first[0]['text'].shape == (2, 32, 384)
  assert first[0]['text_mask'].shape == (2, 32) and first[0]['caption'].shape == (2,)
  assert sorted(i for b in first for i in b['index']) == list(range(NUM_RECORDS))
  state = iterator.get_state()
  expected = [next(iterator) for _ in range(3)]
  resumed = iter(ds)
  resumed.set_state(state)
  for want, got in zip(expected, [next(resumed) for _ in range(3)]):
    for key in want:
      np.testing.assert_array_equal(want[key], got[key])
  # Processes read disjoint slices.
  halves = [next(iter(latent_cache.latent_dataset(cache, seed=0, batch_size=3, shard_index=k,
                                                  shard_count=2)))['index'] for k in (0, 1)]
  assert sorted(np.concatenate(halves)) == list(range(NUM_RECORDS))


def test_clear_errors(cache, tmp_path, dit_config, tiny_vae, encoder):
  with pytest.raises(FileNotFoundError, match='no latent cache in .*build it with '
                                              'experiments/encode_dataset.py'):
    latent_cache.LatentCacheSource(tmp_path / 'nothing')
  with pytest.raises(IndexError, match='index=6 is outside this latent cache of 6 records'):
    latent_cache.LatentCacheSource(cache)[6]
  with pytest.raises(FileExistsError, match='already holds a latent cache'):
    latent_cache.encode_source(dit_config, tiny_vae, encoder, cache, vae_workdir='x', num_records=1)
  with pytest.raises(ValueError, match='fewer than one batch of 4'):
    latent_cache.latent_dataset(cache, seed=0, batch_size=4, shard_count=2)
  expected = dict(compression=(4, 4, 4), latent_channels=4, text_encoder='minilm', text_dim=384)
  assert latent_cache.check_compatible(cache, **expected)['num_records'] == NUM_RECORDS
  for change, message in ((dict(compression=(4, 8, 8)), 'VAE compression'),
                          (dict(latent_channels=16), 'latent channels'),
                          (dict(text_encoder='t5', text_dim=4096), 'text encoder')):
    with pytest.raises(ValueError, match=f'made with {message} .* rebuild it'):
      latent_cache.check_compatible(cache, **{**expected, **change})
  assert [latent_cache.cache_frame_count(n, 4) for n in (1, 2, 5, 8, 9)] == [1, 5, 5, 9, 9]


def test_runner_writes_a_cache_the_source_reads(cache, tiny_vae, tmp_path):
  export = tiny_vae.export(tmp_path / 'vae')
  out = tmp_path / 'runner_cache'
  result = subprocess.run(
      [sys.executable, 'experiments/encode_dataset.py', f'--vae_workdir={export}', f'--out={out}',
       '--config=configs/world.py:runlocal=True', '--num_records=3', f'--batch_size={BATCH}',
       '--records_per_shard=2'],
      cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'wrote 3 records' in result.stdout and 'records/s' in result.stdout
  source, reference = latent_cache.LatentCacheSource(out), latent_cache.LatentCacheSource(cache)
  assert len(source) == 3 and source.metadata['vae']['workdir'] == str(export)
  assert json.loads((out / 'cache.json').read_text())['shards'] == [
      'latents-00000-of-00002.array_record', 'latents-00001-of-00002.array_record']
  for i in range(3):
    np.testing.assert_allclose(source[i]['latents'], reference[i]['latents'], **F16)
    np.testing.assert_array_equal(source[i]['text'], reference[i]['text'])
