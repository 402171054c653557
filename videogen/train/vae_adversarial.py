"""The VAE's optional adversarial loss: a 3D PatchGAN discriminator trained with hinge losses.

On (config.loss.adversarial_weight > 0), the train state's params are {'autoencoder': ...,
'discriminator': ...}, with one optimizer per part (runtime/vae_run.py), and one loss whose
gradient is each player's own:

  loss = reconstruction + weight · gen_adv + disc_loss,
  gen_adv   = −mean D(x̂)                                  (D's params held fixed),
  disc_loss = mean relu(1 − D(x)) + mean relu(1 + D(x̂))   (x̂ held fixed).

stop_gradient keeps each term off the other player's parameters, so the generic train step
(train/step.py: gradient accumulation, clipping, EMA, checkpoints) updates both players at once
from one forward pass of the VAE, with no second step or state. Both terms count from
loss.adversarial_start_step on; before it they are multiplied by 0, a switch computed from the
state's step inside the compiled step (`switch_on_at`), so one program serves the whole run and
a resumed run repeats it exactly. The weight is fixed: Taming's adaptive weight (gradient-norm
ratio at the decoder's last layer) is left out, it would cost a second backward pass.

Off (the default, and every CPU config), the state is the plain VAE TrainState and nothing here
runs.

Legend: b batch, t frames, h/w height/width, c channels.
"""
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from videogen.models import autoencoder
from videogen.models import discriminator as discriminator_lib
from videogen.runtime import vae_run
from videogen.train import step as step_lib
from videogen.train import vae_loss

AUTOENCODER, DISCRIMINATOR = vae_run.AUTOENCODER, vae_run.DISCRIMINATOR
# batch key of the per-example switch (1 from adversarial_start_step on, else 0).
SWITCH_KEY = 'adversarial_on_b'


def _per_example(x) -> jax.Array:
  """[B, ...] -> [B]: the mean over everything but the batch axis."""
  return x.reshape(x.shape[0], -1).mean(axis=1)


def make_loss_fn(model: autoencoder.AutoencoderKL,
                 discriminator: discriminator_lib.PatchDiscriminator,
                 loss_cfg: ml_collections.ConfigDict) -> step_lib.LossFn:
  """loss_fn(params, batch, rng) -> (loss, aux) on the joint params; see the module docstring.

  batch holds 'video' and SWITCH_KEY (added by `switch_on_at`). aux: the reconstruction's
  metrics, gen_adv and disc_loss as they enter the loss (0 before the start, unweighted), and the
  mean logits of real and reconstructed clips.
  """
  vae_loss.check_weights(loss_cfg)

  def loss_fn(params, batch, rng):
    video_bthwc, on_b = batch['video'], batch[SWITCH_KEY]
    recon_loss, aux, recon_bthwc = vae_loss.reconstruction_loss(
        model, loss_cfg, params[AUTOENCODER], video_bthwc, rng)
    judge = lambda p, x: discriminator.apply({'params': p}, x)
    logits_real_bthwc = judge(params[DISCRIMINATOR], video_bthwc)
    logits_fake_bthwc = judge(params[DISCRIMINATOR], jax.lax.stop_gradient(recon_bthwc))
    gen_logits_bthwc = judge(jax.lax.stop_gradient(params[DISCRIMINATOR]), recon_bthwc)
    disc_loss_b = (_per_example(jax.nn.relu(1.0 - logits_real_bthwc))
                   + _per_example(jax.nn.relu(1.0 + logits_fake_bthwc)))
    gen_adv = (on_b * -_per_example(gen_logits_bthwc)).mean()
    disc_loss = (on_b * disc_loss_b).mean()
    loss = recon_loss + loss_cfg.adversarial_weight * gen_adv + disc_loss
    return loss, {**aux, 'gen_adv': gen_adv, 'disc_loss': disc_loss,
                  'logits_real': logits_real_bthwc.mean(),
                  'logits_fake': logits_fake_bthwc.mean()}

  return loss_fn


def switch_on_at(train_step: step_lib.StepFn, start_step: int) -> step_lib.StepFn:
  """train_step with batch[SWITCH_KEY] added: 1.0 for every example once state.step >=
  start_step, else 0.0. A loss_fn sees the batch, not the step, and a per-example flag splits
  into micro-batches like every other batch leaf."""

  def switched_step(state, batch: dict[str, Any]):
    on = (state.step >= start_step).astype(jnp.float32)
    return train_step(state, {**batch, SWITCH_KEY: jnp.full(batch['video'].shape[:1], on)})

  return switched_step
