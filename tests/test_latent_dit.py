"""A DiT trained on VAE latents from a latent cache (configs/world.py:latent=True): training,
exact resume, sampling decoded through the VAE, prompting with a clip's first frames and SDEdit
through the VAE, and the errors of mismatched settings. The VAE is
the untrained tiny one (4x4x4, 4 channels): 2x16x16 clips, cached at 5 frames, are 2x4x4x4.
"""
import dataclasses
import shutil

import jax
import numpy as np
import pytest

from configs import world as world_config
from videogen.inference import generate
from videogen.core import media
from videogen.inference import prompting
from videogen.data import latent_cache
from videogen.models import autoencoder
from videogen.models import text
from videogen.runtime import dit_run
from videogen.train import loop

pytestmark = pytest.mark.integration  # trains a DiT on latents end to end

NUM_RECORDS = 24  # 3 batches of 8: 4 steps cross an epoch


@pytest.fixture(scope='module')
def vae_export(tmp_path_factory, tiny_vae):
  return tiny_vae.export(tmp_path_factory.mktemp('vae') / 'export')


@pytest.fixture(scope='module')
def cache(tmp_path_factory, tiny_vae, vae_export):
  config = world_config.get_config('runlocal=True,latent=True')
  out = tmp_path_factory.mktemp('cache') / 'world'
  latent_cache.encode_source(config, tiny_vae, text.encoder_from_config(config.text), out,
                            vae_workdir=str(vae_export), num_records=NUM_RECORDS, batch_size=8)
  return out


def latent_config(vae_export, cache, steps=4):
  config = world_config.get_config('runlocal=True,latent=True')
  config.autoencoder, config.data.cache_dir = str(vae_export), str(cache)
  config.train.update(steps=steps, checkpoint_every=2)
  return config


@pytest.fixture(scope='module')
def trained(tmp_path_factory, vae_export, cache):
  """A 4-step run, and the same run resumed from a copy of its step-2 checkpoint."""
  root = tmp_path_factory.mktemp('latent_runs')
  straight = loop.train(dit_run.build(latent_config(vae_export, cache)), root / 'straight', progress=False)
  shutil.copytree(root / 'straight' / 'checkpoints' / '2', root / 'resumed' / 'checkpoints' / '2')
  resumed = loop.train(dit_run.build(latent_config(vae_export, cache)), root / 'resumed', progress=False)
  return straight, resumed, root / 'straight'


def test_trains_on_latents_and_resumes_exactly(trained):
  straight, resumed, workdir = trained
  assert straight.run.shape == (2, 4, 4, 4)  # the latent, not the 2x16x16x3 clip
  assert sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir()
                if p.name.isdigit()) == [2, 4]
  assert (resumed.first_step, resumed.last_step) == (2, 4)  # data position restored too
  for a, b in zip(jax.tree.leaves(straight.state), jax.tree.leaves(resumed.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  rows = loop.read_metrics(workdir)
  assert [r['step'] for r in rows] == [1, 2, 3, 4]
  assert all(np.isfinite(r['loss']) and r['tokens_per_s'] > 0 for r in rows)


def test_generator_decodes_samples_to_pixels(trained, tmp_path):
  gen = generate.Generator.from_workdir(trained[2])
  settings = generate.SampleSettings(steps=2, method='euler', cfg_scale=2.0)
  videos = gen.generate(['a red circle moves right'], seeds=[0], settings=settings)
  assert videos.shape == (1, 2, 16, 16, 3) and videos.dtype == np.uint8  # 5 decoded, 2 kept
  paths = gen.write(videos, ['a red circle moves right'], tmp_path, seeds=[0], settings=settings)
  assert media.read_video(paths[0]).shape == (2, 16, 16, 3)


def test_prompting_tasks_on_latents(trained):
  """A latent model is given a clip's first frames (through its VAE) and edits by SDEdit on
  the input's latents; frames after a missing one are refused."""
  gen = generate.Generator.from_workdir(trained[2])
  assert gen.run.frame_conditioning
  settings = generate.SampleSettings(steps=2, method='euler', cfg_scale=2.0)
  clip = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
  animated = prompting.image_to_video(gen, clip[0], 'a red circle', settings=settings)
  assert animated.shape == (2, 16, 16, 3)
  # Exact by construction (generate pastes the given pixels over the decoded video): this
  # checks the frame lands first; tests/test_conditioning.py checks the held path.
  np.testing.assert_array_equal(animated[0], clip[0])
  longer = prompting.extend(gen, clip, 'a red circle', frames=3, settings=settings)
  assert longer.shape == (5, 16, 16, 3)
  np.testing.assert_array_equal(longer[:2], clip)
  # SDEdit at strength 0 returns the input's latents: what the VAE reconstructs of it.
  unchanged = prompting.edit(gen, clip, 'a red circle', strength=0.0, settings=settings)
  video = clip[None].astype(np.float32) / 127.5 - 1.0
  expected = gen.vae.decode(gen.vae.encode(video, pad=True))[0, :2]
  difference = np.abs(unchanged.astype(int) - media.to_uint8(np.asarray(expected)).astype(int))
  assert difference.max() <= 1  # float rounding of the uint8 -> [-1, 1] scaling at most
  with pytest.raises(ValueError, match=r"given frames \[1\] are not a clip's first frames"):
    prompting.keyframes(gen, {-1: clip[1]}, 'a red circle', settings=settings)


def test_mismatched_settings_are_clear_errors(vae_export, cache, tmp_path):
  other_vae = tmp_path / 'vae_4x8x8'  # its config alone: build reads no VAE weights
  other_vae.mkdir()
  media.write_json(other_vae / autoencoder.EXPORT_CONFIG_FILE,
                   dataclasses.asdict(autoencoder.autoencoder_config('world')))
  config = latent_config(vae_export, cache)
  config.autoencoder = str(other_vae)
  with pytest.raises(ValueError, match=r'made with VAE compression \(4, 4, 4\) but the model '
                                       r'expects \(4, 8, 8\).* rebuild it'):
    loop.train(dit_run.build(config), tmp_path / 'run', progress=False)
  config = latent_config(vae_export, cache)
  config.world.num_frames = 3  # the same 2x4x4x4 latent (5 frames), but not the cached clips
  with pytest.raises(ValueError, match=r'holds latents \(2, 4, 4, 4\) of 2-frame clips .* '
                                       r'expects \(2, 4, 4, 4\) of 3x16x16 clips'):
    loop.train(dit_run.build(config), tmp_path / 'run', progress=False)
  config = latent_config(vae_export, cache)
  config.data.cache_dir = None
  with pytest.raises(ValueError, match='needs data.cache_dir: pass --config.data.cache_dir'):
    loop.train(dit_run.build(config), tmp_path / 'run', progress=False)
  config = latent_config(vae_export, cache)
  config.data.layout = 'packed'
  with pytest.raises(ValueError, match="data.layout 'packed' is not available on latents.*"
                                       'layout=fixed'):
    loop.train(dit_run.build(config), tmp_path / 'run', progress=False)
  config = latent_config(vae_export, cache)
  config.model.patch_size = (1, 8, 8)
  with pytest.raises(ValueError, match=r'patch_size \(1, 8, 8\) does not divide the latent '
                                       r'\(2, 4, 4\)'):
    dit_run.build(config)
  config = latent_config(vae_export, cache)
  config.autoencoder = 'none'
  with pytest.raises(ValueError, match='needs the VAE its cache was made with'):
    dit_run.build(config)
  config = latent_config(vae_export, cache)
  config.conditioning.tasks.last_k = 0.1
  with pytest.raises(ValueError, match=r"conditioning tasks \['last_k'\] give frames after a "
                                       'missing one.*set the others to 0'):
    dit_run.build(config)
  config = world_config.get_config('runlocal=True')
  config.autoencoder = str(vae_export)
  with pytest.raises(ValueError, match="data.source 'world' does not give"):
    dit_run.build(config)
