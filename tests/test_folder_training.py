"""The DiT trainer on a folder of videos (configs/folder.py): train, resume, sample, and the bad
folders it refuses, on mp4 clips, a PNG and a corrupt file written here."""
import itertools
import json
import logging

import jax
import numpy as np
import pytest

from configs import folder as folder_config
from configs import vae_world
from videogen.core import media
from videogen.data import latent_cache
from videogen.data import pipeline
from videogen.data import sizes
from videogen.inference import generate
from videogen.models import text
from videogen.runtime import dit_run
from videogen.runtime import vae_run
from videogen.train import hooks
from videogen.train import loop

CAPTIONS = {'corrupt.mp4': 'random bytes, skipped',
            'clips/red.mp4': 'a red square slides right',
            'clips/tall.mp4': 'a tall blue bar grows',
            'short.mp4': 'a green flash',
            'still.png': 'a white stripe on black'}


def _moving_square(num_frames, height, width, channel):
  """A bright square moving right on black, one pixel a frame."""
  video = np.zeros((num_frames, height, width, 3), np.uint8)
  for t in range(num_frames):
    video[t, height // 3:height // 3 + 6, t:t + 6, channel] = 255
  return video


def _write_captions(root, rows, name='captions.jsonl'):
  (root / name).write_text(''.join(json.dumps({'path': p, 'caption': c}) + '\n'
                                   for p, c in rows))


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  """Three mp4 clips of other sizes and lengths than the clip, a PNG, and a corrupt file listed
  first, so the pipeline's first read meets it."""
  root = tmp_path_factory.mktemp('folder')
  media.write_video(root / 'clips' / 'red.mp4', _moving_square(12, 24, 40, 0), fps=8)
  media.write_video(root / 'clips' / 'tall.mp4', _moving_square(6, 40, 24, 2), fps=16)
  media.write_video(root / 'short.mp4', _moving_square(1, 16, 16, 1), fps=8)
  stripe = np.zeros((20, 36, 3), np.uint8)
  stripe[:, 14:22] = 255
  media.write_image(root / 'still.png', stripe)
  (root / 'corrupt.mp4').write_bytes(np.random.default_rng(0).bytes(2048))
  _write_captions(root, CAPTIONS.items())
  return root


def tiny_config(root, steps=2, **data):
  config = folder_config.get_config('runlocal=True')
  config.data.root = str(root)
  config.data.update(data)
  config.train.update(steps=steps, checkpoint_every=2, sample_every=2)
  return config


@pytest.mark.integration
def test_trains_resumes_and_samples_past_a_corrupt_file(root, tmp_path, caplog):
  workdir = tmp_path / 'run'
  with caplog.at_level(logging.WARNING):
    run = dit_run.build(tiny_config(root, steps=2))
    first = loop.train(run, workdir, hooks=hooks.defaults(run, workdir), progress=False)
  assert first.last_step == 2
  skipped = [r.getMessage() for r in caplog.records if 'corrupt.mp4' in r.getMessage()]
  assert skipped and '1 of 5 files skipped' in skipped[0]
  second = loop.train(dit_run.build(tiny_config(root, steps=4)), workdir, progress=False)
  assert (second.first_step, second.last_step) == (2, 4)
  straight = loop.train(dit_run.build(tiny_config(root, steps=4)), tmp_path / 'straight',
                        progress=False)
  for a, b in zip(jax.tree.leaves(straight.state), jax.tree.leaves(second.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the data continued exactly
  rows = loop.read_metrics(workdir)
  assert [r['step'] for r in rows] == [1, 2, 3, 4] and all(np.isfinite(r['loss']) for r in rows)
  assert media.read_video(workdir / 'samples' / '2' / 'grid.mp4').shape[-1] == 3

  gen = generate.Generator.from_workdir(workdir)
  settings = generate.SampleSettings(steps=2, method='euler', cfg_scale=2.0)
  videos = gen.generate(['a red square slides right'], seeds=[0], settings=settings)
  assert gen.step == 4 and videos.shape == (1, 2, 16, 16, 3)


@pytest.mark.integration
@pytest.mark.parametrize('layout', ['packed', 'buckets'])
def test_the_other_layouts_train(root, tmp_path, layout):
  result = loop.train(dit_run.build(tiny_config(root, steps=2, layout=layout)), tmp_path,
                      progress=False)
  assert result.last_step == 2
  assert all(np.isfinite(r['loss']) for r in loop.read_metrics(tmp_path))


@pytest.mark.integration
def test_the_vae_trains_on_the_folder_and_a_latent_cache_encodes_it(root, tmp_path, tiny_vae):
  config = vae_world.get_config('runlocal=True,source=folder')
  config.data.root = str(root)
  run = vae_run.build(config)
  batch = next(iter(run.dataset(0, 1)))
  assert batch['video'].shape == (8, 5, 16, 16, 3)  # the VAE's clip size, from the folder
  result = loop.train(run, tmp_path / 'vae', hooks=hooks.defaults(run, tmp_path / 'vae'),
                      progress=False)
  assert result.last_step == 4 and all(np.isfinite(r['loss'])
                                       for r in loop.read_metrics(tmp_path / 'vae'))
  grid = media.read_video(tmp_path / 'vae' / 'samples' / '4' / 'reconstruction.mp4')
  assert grid.shape[-1] == 3  # the folder's clips beside their reconstructions
  stats = json.loads((tmp_path / 'vae' / vae_run.LATENT_STATS_FILE).read_text())
  assert len(stats['mean']) == 4 and all(s > 0 for s in stats['std'])

  dit = tiny_config(root)
  encoder = text.encoder_from_config(dit.text)
  cache = tmp_path / 'cache'
  metadata = latent_cache.encode_source(dit, tiny_vae, encoder, cache, vae_workdir='fresh',
                                        num_records=6, batch_size=4)
  assert metadata['source']['kind'] == 'folder' and metadata['source']['root'] == str(root)
  assert metadata['clip_shape'] == [5, 16, 16]  # 2 frames -> 5 for the VAE's 4x time
  records = [latent_cache.LatentCacheSource(cache)[i] for i in range(6)]
  folder_captions = set(CAPTIONS.values()) - {CAPTIONS['corrupt.mp4']}
  assert {r['caption'] for r in records} <= folder_captions
  five = tiny_config(root, num_records=8)  # the cache's clips: the shuffle of 2 batches of 4,
  five.world.num_frames = 5                # of 5 real frames, read as training reads them
  clips = pipeline.source_clips(five, num_clips=4, seed=dit.seed)
  np.testing.assert_allclose(np.stack([r['latents'] for r in records[:4]]),
                             np.asarray(tiny_vae.encode(clips)), rtol=2e-3, atol=2e-3)


def test_the_sample_grid_captions_are_the_folders_own(root):
  texts, seeds = hooks.sample_prompts(tiny_config(root), 6)
  assert texts == list(CAPTIONS.values()) + [CAPTIONS['corrupt.mp4']]
  assert seeds == list(range(6))


def test_fixed_batches_are_clips_of_the_configs_size(root):
  batch = next(iter(pipeline.folder_dataset_from_config(tiny_config(root))))
  assert batch['video'].shape == (8, 2, 16, 16, 3) and batch['video'].dtype == np.float32
  assert -1 <= batch['video'].min() < batch['video'].max() <= 1
  assert set(batch['caption']) <= set(CAPTIONS.values()) - {CAPTIONS['corrupt.mp4']}


def test_each_process_reads_its_own_shard(root):
  config = tiny_config(root)
  shards = [pipeline.folder_dataset_from_config(config, shard_index=i, shard_count=2)
            for i in range(2)]
  first = [next(iter(shard))['video'] for shard in shards]
  assert first[0].shape == first[1].shape == (4, 2, 16, 16, 3)
  assert not np.array_equal(first[0], first[1])


def test_buckets_give_one_table_size_per_batch(root):
  config = tiny_config(root, layout='buckets')
  table = {(b.num_frames, b.height, b.width) for b in sizes.table_from_config(config)}
  batches = itertools.islice(iter(pipeline.folder_dataset_from_config(config)), 3)
  shapes = [batch['video'].shape for batch in batches]
  assert all(shape[0] == 8 and shape[1:4] in table for shape in shapes)


def test_packed_rows_keep_aspects_and_images_are_one_frame(root):
  config = tiny_config(root, layout='packed')
  source = pipeline._folder_source(config, 'packed')  # pylint: disable=protected-access
  by_path = {}
  for index in range(len(CAPTIONS) * 2):
    record = source[index]
    by_path[record['path']] = record['video'].shape
  assert by_path['still.png'][0] == 1  # patch (1, 8, 8): an image is a 1-frame clip
  assert by_path['clips/red.mp4'] == (2, 8, 16, 3) and by_path['clips/tall.mp4'] == (2, 16, 8, 3)
  batch = next(iter(pipeline.folder_dataset_from_config(config)))
  assert batch['patches'].shape[:2] == (8, 16) and 0 < float(batch['fill']) <= 1


def test_a_run_without_data_root_stops_with_the_flag_to_pass():
  with pytest.raises(ValueError, match=r'--config.data.root=DIR'):
    dit_run.build(folder_config.get_config('runlocal=True'))


def test_a_folder_with_no_readable_video_is_named(tmp_path):
  (tmp_path / 'a.mp4').write_bytes(b'')
  (tmp_path / 'b.mp4').write_bytes(b'not a video')
  _write_captions(tmp_path, [('a.mp4', 'x'), ('b.mp4', 'y')])
  run = dit_run.build(tiny_config(tmp_path))
  with pytest.raises(ValueError, match=f'None of the 2 files listed under {tmp_path} can be '
                                       'decoded'):
    run.dataset(0, 1)


@pytest.mark.parametrize('path', ['../outside.mp4', 'clips/../../outside.mp4', '/etc/x.mp4'])
def test_a_caption_row_outside_the_folder_is_refused(root, tmp_path, path):
  media.write_video(tmp_path / 'outside.mp4', _moving_square(4, 16, 16, 0))
  inner = tmp_path / 'inner'
  inner.mkdir(exist_ok=True)
  (inner / 'ok.png').write_bytes((root / 'still.png').read_bytes())
  _write_captions(inner, [('ok.png', 'fine'), (path, 'escapes')])
  with pytest.raises(ValueError, match=f'lists paths outside {inner} \\({path}\\)'):
    pipeline.folder_dataset_from_config(tiny_config(inner))
