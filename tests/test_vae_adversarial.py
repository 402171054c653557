"""The VAE's optional adversarial loss: the 3D patch discriminator, its switch-on step, exact
resume of both players, and the config checks, on the runlocal config ('tiny' preset, 5x16x16).

Legend: b batch, t frames, h/w height/width, c channels.
"""
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import vae_world
from videogen.inference import vae as vae_lib
from videogen.models import discriminator as discriminator_lib
from videogen.runtime import checkpoint
from videogen.runtime import vae_run
from videogen.train import hooks
from videogen.train import loop
from videogen.train import vae_adversarial

pytestmark = pytest.mark.integration  # trains the VAE with its discriminator end to end


START_STEP = 2


def adversarial_config(steps=4, weight=0.1):
  """The runlocal config on videos only (images: the discriminator test), the adversarial loss
  on from update START_STEP + 1 (state.step START_STEP)."""
  config = vae_world.get_config('runlocal=True')
  config.train.update(steps=steps, image_every=0)
  config.loss.update(adversarial_weight=weight, adversarial_start_step=START_STEP)
  return config

def train_vae(config, workdir):
  """The runner's training: the VAE's run and its usual hooks (reconstructions, latent stats)."""
  run = vae_run.build(config)
  return loop.train(run, workdir, hooks=hooks.defaults(run, workdir), progress=False)


@pytest.fixture(scope='module')
def adversarial_run(tmp_path_factory):
  """4 runlocal steps, the adversarial loss on for updates 3 and 4 (checkpoints at 2 and 4)."""
  workdir = tmp_path_factory.mktemp('vae_gan')
  return workdir, train_vae(adversarial_config(), workdir)


def _restore(workdir, parts, step):
  ckpt = checkpoint.Checkpointer(str(workdir / 'checkpoints'))
  state = ckpt.restore(parts.abstract_state, step=step)
  ckpt.close()
  return state


def _assert_trees_equal(a, b, rtol=0.0, atol=0.0):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@pytest.mark.parametrize('frames, logits_thw', [(5, (2, 2, 2)), (1, (1, 2, 2))])
def test_discriminator_gives_patch_logits_for_videos_and_images(frames, logits_thw):
  model = discriminator_lib.PatchDiscriminator(base_channels=8, num_layers=3)
  video_bthwc = jnp.zeros((2, frames, 16, 16, 3))
  logits, variables = jax.eval_shape(
      lambda: model.init_with_output(jax.random.key(0), video_bthwc))
  assert logits.shape == (2, *logits_thw, 1)
  boxes = jax.tree.leaves(variables, is_leaf=lambda x: isinstance(x, nn.Partitioned))
  assert all(isinstance(box, nn.Partitioned) for box in boxes)  # every parameter names its axes
  names = {name for box in boxes for name in box.names if name is not None}
  assert names <= {name for name, _ in vae_world.get_config().logical_axis_rules}


def test_both_players_train_from_the_start_step_and_resume_exactly(adversarial_run, tmp_path):
  workdir, straight = adversarial_run
  rows = loop.read_metrics(workdir)
  assert [r['step'] for r in rows] == [1, 2, 3, 4]
  for row in rows:
    assert all(np.isfinite(row[k]) for k in ('disc_loss', 'gen_adv', 'logits_real', 'logits_fake'))
  on = [(r['disc_loss'] > 0, r['gen_adv'] != 0) for r in rows]
  assert on == [(False, False)] * START_STEP + [(True, True)] * (4 - START_STEP)
  d_2, d_4 = (s.params[vae_adversarial.DISCRIMINATOR]
              for s in (_restore(workdir, straight.run, 2), straight.state))
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(d_2), jax.tree.leaves(d_4)))

  # Resume from a copy of the step-2 checkpoint, across the switch: both players' state, the
  # optimizer moments included, must come out identical.
  shutil.copytree(workdir / 'checkpoints' / '2', tmp_path / 'checkpoints' / '2')
  resumed = train_vae(adversarial_config(), tmp_path)
  assert (resumed.first_step, resumed.last_step) == (2, 4)
  _assert_trees_equal(straight.state, resumed.state)

  # Resuming it with the loss off (another state layout) is refused before reading the state.
  with pytest.raises(ValueError, match=r'saved with loss.adversarial_weight 0.1, which switches '
                                       r'the adversarial loss on, but this run has 0.0'):
    train_vae(adversarial_config(weight=0.0), tmp_path)

  # A restored run hands out the VAE's own weights.
  restored = vae_lib.Autoencoder.from_workdir(workdir)
  _assert_trees_equal(restored.params, straight.state.ema_params[vae_adversarial.AUTOENCODER])


def test_before_the_start_step_the_vae_trains_as_without_it(adversarial_run, tmp_path):
  workdir, straight = adversarial_run
  waiting = _restore(workdir, straight.run, START_STEP)
  plain = train_vae(adversarial_config(steps=START_STEP, weight=0.0), tmp_path)
  assert plain.run.discriminator is None
  # The same updates from two programs that XLA fuses differently: equal up to float rounding.
  for tree in ('params', 'ema_params'):
    _assert_trees_equal(getattr(plain.state, tree),
                        getattr(waiting, tree)[vae_adversarial.AUTOENCODER], rtol=1e-5, atol=1e-7)
  grad_norms = [[r['grad_norm'] for r in loop.read_metrics(w)[:START_STEP]]
                for w in (tmp_path, workdir)]
  # The sharper check: the joint gradient's norm is the VAE's alone (the discriminator's is 0,
  # and the VAE's has no adversarial part).
  np.testing.assert_allclose(*grad_norms, rtol=1e-5)


@pytest.mark.parametrize('field, value, message', [
    ('loss.adversarial_weight', -0.1, r'loss.adversarial_weight -0.1 is negative: use 0'),
    ('loss.adversarial_start_step', -5, r'loss.adversarial_start_step -5 is negative: use 0'),
    ('discriminator.num_layers', 0, r'discriminator.base_channels 8, num_layers 0 .* positive'),
])
def test_bad_adversarial_settings_give_clear_errors(field, value, message):
  config = adversarial_config()
  section, name = field.split('.')
  config[section][name] = value
  with pytest.raises(ValueError, match=message):
    vae_run.build(config)
