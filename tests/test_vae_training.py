"""VAE training, the public Autoencoder, reconstruction metrics and the eval runner, on the
runlocal config ('tiny' preset, 5x16x16 world clips).

Legend: b batch, t frames, h/w height/width, c channels.
"""
import json
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import vae_world
from videogen.core import image_metrics
from videogen.evals import reconstruction
from videogen.inference import vae as vae_lib
from videogen.models import autoencoder
from videogen.models import autoencoder_chunks
from videogen.runtime import checkpoint
from videogen.runtime import vae_run
from videogen.train import hooks
from videogen.train import loop
from videogen.train import vae_loss

import runner_env

pytestmark = pytest.mark.integration  # trains the VAE end to end, runs its runner

REPO = pathlib.Path(__file__).resolve().parents[1]


def tiny_config(steps=4):
  config = vae_world.get_config('runlocal=True')
  config.train.steps = steps
  config.loss.chroma_weight = 16.0  # on (the world recipe's second run), so every term is used
  return config

def train_vae(config, workdir):
  """The runner's training: the VAE's run and its usual hooks (reconstructions, latent stats)."""
  run = vae_run.build(config)
  return loop.train(run, workdir, hooks=hooks.defaults(run, workdir), progress=False)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A 4-step runlocal VAE run (updates 2 and 4 on images, checkpoints at 2 and 4)."""
  workdir = tmp_path_factory.mktemp('vae')
  return workdir, train_vae(tiny_config(), workdir)


@pytest.fixture(scope='module')
def vae(trained):
  """The trained run's Autoencoder, chunked one latent frame at a time (chunks do happen)."""
  restored = vae_lib.Autoencoder.from_workdir(trained[0])
  return vae_lib.Autoencoder(restored.config, restored.params, restored.stats, step=restored.step,
                             chunk_latent_frames=1)


def _smooth_video(t, h, w):
  """[1, t, h, w, 3] in [-1, 1]: low-frequency waves that move over time."""
  ti, yi, xi = np.meshgrid(np.arange(t), np.arange(h) / h, np.arange(w) / w, indexing='ij')
  channels = [np.sin(2 * np.pi * (yi + 0.7 * xi) + 0.3 * ti + p) for p in (0.0, 2.0, 4.0)]
  return jnp.asarray(np.stack(channels, -1)[None] * 0.8, jnp.float32)


def test_training_lowers_the_loss_and_resumes_exactly(trained, tmp_path):
  workdir, straight = trained
  rows = loop.read_metrics(workdir)
  assert [(r['step'], r['images']) for r in rows] == [(1, 0), (2, 1), (3, 0), (4, 1)]
  assert rows[2]['l1'] < 0.9 * rows[0]['l1'] and rows[2]['psnr'] > rows[0]['psnr'], rows
  assert (workdir / 'samples' / '4' / 'reconstruction.mp4').stat().st_size > 0
  stats = json.loads((workdir / vae_run.LATENT_STATS_FILE).read_text())
  assert stats['step'] == 4 and len(stats['std']) == 4 and min(stats['std']) > 0
  # The logged loss is the sum of its logged terms at the config's weights.
  w = tiny_config().loss
  for r in rows:
    terms = (r['l1'] + w.mse_weight * r['mse'] + w.chroma_weight * r['chroma']
             + w.ssim_weight * (1 - r['ssim']) + w.kl_weight * r['kl'])
    np.testing.assert_allclose(r['loss'], terms, rtol=1e-5)

  # Resume from a copy of the run's step-2 checkpoint: steps 3 and 4 must come out identical.
  shutil.copytree(workdir / 'checkpoints' / '2', tmp_path / 'checkpoints' / '2')
  second = train_vae(tiny_config(steps=4), tmp_path)
  assert (second.first_step, second.last_step) == (2, 4)
  for a, b in zip(jax.tree.leaves(straight.state), jax.tree.leaves(second.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert ((tmp_path / vae_run.LATENT_STATS_FILE).read_text()
          == (workdir / vae_run.LATENT_STATS_FILE).read_text())


def test_autoencoder_round_trips_and_chunks_exactly(trained, vae, tmp_path):
  assert (vae.step, vae.compression, vae.latent_channels) == (4, (4, 4, 4), 4)
  assert vae.latent_shape(9, 16, 32) == (3, 4, 8, 4)
  x = _smooth_video(9, 16, 16)
  z = vae.encode(x)  # chunks of 1, 4 and 4 frames
  one_shot_mean, _ = autoencoder_chunks.apply_whole(vae.model, 'encode', vae.params, x)
  np.testing.assert_allclose(z, autoencoder.normalize(one_shot_mean, vae.stats), atol=1e-4)
  recon = vae.decode(z)
  assert z.shape == (1, 3, 4, 4, 4) and recon.shape == x.shape
  assert float(jnp.abs(recon).max()) <= 1.0

  exported = vae_lib.Autoencoder.from_workdir(vae.export(tmp_path / 'export', note='test'))
  assert exported.step == 4 and exported.config == vae.config
  for folder in (trained[0], tmp_path / 'export'):  # what a latent DiT run reads, weights unread
    assert autoencoder.config_from_workdir(folder) == vae.config
  for a, b in zip(jax.tree.leaves((vae.params, vae.stats)),
                  jax.tree.leaves((exported.params, exported.stats))):
    np.testing.assert_array_equal(a, b)


def test_model_overrides_reach_the_model_and_old_runs_still_resume(tmp_path):
  config = tiny_config()
  config.model.latent_channels = 6
  assert vae_run.model_config(config).latent_channels == 6
  vae_run.build(config).write_config(tmp_path)  # what a latent DiT run and eval_vae read back
  assert autoencoder.config_from_workdir(tmp_path).latent_channels == 6
  wrong = tiny_config()
  wrong.model.num_blocks = 2
  with pytest.raises(ValueError, match=r"\['num_blocks'\] are not autoencoder settings"):
    vae_run.model_config(wrong)
  # A run saved before these fields existed ({'preset': 'tiny'}) resumes while they are unset.
  unset = tiny_config()
  checkpoint.check_compatible({'model': {'preset': 'tiny'}}, unset, vae_run.COMPATIBLE_KEYS)
  with pytest.raises(ValueError, match=r"model.latent_channels \(saved '<missing>', now 6\)"):
    checkpoint.check_compatible({'model': {'preset': 'tiny'}}, config)


def test_codec_speed_rows(vae):
  rows = [row for chunked in (False, True)
          for row in reconstruction.codec_speed(vae, num_frames=9, height=16, width=16,
                                                chunked=chunked, repeats=1)]
  assert [(r['op'], r['mode']) for r in rows] == [
      ('encode', 'one-shot'), ('decode', 'one-shot'),
      ('encode', 'chunked, 1 latent frames/chunk'), ('decode', 'chunked, 1 latent frames/chunk')]
  assert all(r['frames_per_s'] > 0 and r['temp_MiB'] > 0 for r in rows)


def test_bad_input_gives_clear_errors(vae, tmp_path):
  with pytest.raises(ValueError, match='8 frames do not fit .* use 5 or 9 frames, or pass pad'):
    vae.encode(jnp.zeros((1, 8, 16, 16, 3)))
  assert vae.encode(jnp.zeros((1, 8, 16, 16, 3)), pad=True).shape == (1, 3, 4, 4, 4)
  with pytest.raises(ValueError, match='dtype uint8 must be floating point'):
    vae.encode(np.zeros((1, 5, 16, 16, 3), np.uint8))
  with pytest.raises(ValueError, match='frame size 16x18 is not a multiple'):
    vae.latent_shape(5, 16, 18)
  with pytest.raises(FileNotFoundError, match='train first with experiments/train_vae.py'):
    vae_lib.Autoencoder.from_workdir(tmp_path / 'nothing')
  config = tiny_config()
  config.world.num_frames = 8
  with pytest.raises(ValueError, match='8 frames do not fit'):
    train_vae(config, tmp_path / 'bad')
  config = tiny_config()
  config.loss.ssim_weight = -0.2
  with pytest.raises(ValueError, match=r'loss.ssim_weight -0.2 is negative: use 0 to switch'):
    train_vae(config, tmp_path / 'bad')
  del config.loss['chroma_weight']  # a config written before the term
  with pytest.raises(ValueError, match=r'loss.chroma_weight is missing from the config: add it'):
    train_vae(config, tmp_path / 'bad')


def test_metrics_of_identical_noisy_and_constant_videos():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(-1, 1, (2, 3, 16, 16, 3)), jnp.float32)
  assert np.isinf(image_metrics.psnr(x, x)).all()
  np.testing.assert_allclose(image_metrics.ssim(x, x), 1.0, atol=1e-6)
  np.testing.assert_allclose(image_metrics.flicker(x, x), 0.0, atol=1e-6)
  noisy = jnp.clip(x + 0.1 * jnp.asarray(rng.normal(size=x.shape), jnp.float32), -1, 1)
  assert 15 < float(image_metrics.psnr(noisy, x).mean()) < 30
  assert float(image_metrics.ssim(noisy, x).max()) < 0.95
  assert float(image_metrics.flicker(noisy, x).min()) > 5
  # Chroma (what the loss's chroma term compares): blind to brightness, 0 on grey.
  np.testing.assert_allclose(image_metrics.chroma(x + 0.3), image_metrics.chroma(x), atol=1e-6)
  np.testing.assert_allclose(image_metrics.chroma(jnp.repeat(x[..., :1], 3, -1)), 0.0, atol=1e-6)
  assert float(jnp.abs(image_metrics.chroma(x)).mean()) > 0.1
  # Hue error: 0 for a brightness shift (PSNR drops), large for red <-> blue, NaN without colour.
  np.testing.assert_allclose(image_metrics.colour_error(x, x), 0.0, atol=1e-6)
  np.testing.assert_allclose(image_metrics.colour_error(x - 0.05, x), 0.0, atol=1e-5)
  assert float(image_metrics.colour_error(x[..., ::-1], x).min()) > 20
  grey = jnp.repeat(x[..., :1], 3, axis=-1)
  assert np.isnan(image_metrics.colour_error(x, grey)).all()
  # Constant frames a and b: SSIM reduces to the luminance term (2ab + c1) / (a² + b² + c1).
  a, b, c1 = 0.5, -0.25, (0.01 * 2) ** 2
  ssim = image_metrics.ssim(jnp.full((1, 1, 12, 12, 3), a), jnp.full((1, 1, 12, 12, 3), b))
  np.testing.assert_allclose(ssim, (2 * a * b + c1) / (a * a + b * b + c1), rtol=1e-5)
  with pytest.raises(ValueError, match='frame side 8 is smaller than the SSIM window 11'):
    image_metrics.ssim(x[:, :, :8], x[:, :, :8])


def test_eval_runner_writes_its_json(trained):
  workdir, _ = trained
  env = runner_env.one_device()
  result = subprocess.run(
      [sys.executable, 'experiments/eval_vae.py', f'--workdir={workdir}', '--num_clips=3',
       '--footage_shape=5x16x16', '--clips_per_file=1', '--lengths='],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = json.loads((workdir / 'eval.json').read_text())['rows']
  assert rows[0] == {'step': 4}
  assert [r['data'] for r in rows[1:4]] == ['world held_out', 'world unseen seed', 'real footage']
  assert all(np.isfinite(r['psnr_db']) and -1 < r['ssim'] <= 1 for r in rows[1:4])
  assert len(rows) == 4  # no --lengths: no speed rows (test_codec_speed_rows covers them)


def test_the_export_runner_exports_a_vae_run(trained, tmp_path):
  workdir, _ = trained
  for dtype in ('float32', 'bfloat16'):
    result = subprocess.run(
        [sys.executable, 'experiments/export.py', f'--workdir={workdir}',
         f'--out={tmp_path}/{dtype}', '--step=2', f'--dtype={dtype}'], cwd=REPO,
        env=runner_env.one_device(), capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
  refused = subprocess.run(
      [sys.executable, 'experiments/export.py', f'--workdir={workdir}', f'--out={tmp_path}/no',
       '--sample=cfg_min_t=0.7'], cwd=REPO, env=runner_env.one_device(), capture_output=True,
      text=True, timeout=300, check=False)
  assert refused.returncode != 0 and 'this run is a VAE' in refused.stderr, refused.stderr[-3000:]
  at_2 = vae_lib.Autoencoder.from_workdir(workdir, step=2)
  for dtype in ('float32', 'bfloat16'):
    exported = vae_lib.Autoencoder.from_workdir(tmp_path / dtype)
    assert exported.step == 2 and exported.config == at_2.config
    for a, b in zip(jax.tree.leaves(exported.params), jax.tree.leaves(at_2.params)):
      assert a.dtype == np.float32  # read back as the model's float32
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b.astype(dtype).astype(np.float32)))
  size = lambda folder: sum(f.stat().st_size for f in (tmp_path / folder / 'params').rglob('*')
                            if f.is_file())
  assert size('bfloat16') < 0.7 * size('float32')


def test_channel_permutations_reorder_each_clips_colours_and_repeat_per_rng():
  seen = vae_loss.with_channel_permutations(lambda params, batch, rng: (0.0, batch['video']))
  video_bthwc = jnp.broadcast_to(jnp.arange(3.0), (64, 2, 4, 4, 3))  # R=0, G=1, B=2 everywhere
  rng = jax.random.key(0)
  _, permuted_bthwc = seen(None, {'video': video_bthwc}, rng)
  order_bc = np.asarray(permuted_bthwc[:, 0, 0, 0])
  # One order per clip, the same at every pixel and frame, and a permutation of (0, 1, 2).
  np.testing.assert_array_equal(permuted_bthwc, order_bc[:, None, None, None, :] + 0 * video_bthwc)
  np.testing.assert_array_equal(np.sort(order_bc, axis=-1), np.broadcast_to(np.arange(3), (64, 3)))
  assert len({tuple(order) for order in order_bc}) == 6  # all six orders among 64 clips
  np.testing.assert_array_equal(seen(None, {'video': video_bthwc}, rng)[1], permuted_bthwc)
