"""The video autoencoder's train step: its reconstruction loss (train/vae_loss.py), with
optional per-clip channel permutations and, when on, the adversarial loss
(train/vae_adversarial.py) switched on at loss.adversarial_start_step."""
from videogen.runtime import state as state_lib
from videogen.runtime import vae_run
from videogen.train import step as step_lib
from videogen.train import vae_adversarial
from videogen.train import vae_loss


def make_train_step(run: vae_run.VaeRun) -> step_lib.StepFn:
  """The (unjitted) train step of `run`; it compiles once for clips, once for images."""
  cfg = run.config
  if run.discriminator is None:
    loss_fn = vae_loss.make_loss_fn(run.model, cfg.loss)
  else:
    loss_fn = vae_adversarial.make_loss_fn(run.model, run.discriminator, cfg.loss)
  if cfg.data.get('permute_channels', False):  # configs from before the option: off
    loss_fn = vae_loss.with_channel_permutations(loss_fn)
  train_step = step_lib.make_train_step(
      loss_fn, run.optimizer, ema_decay=cfg.optim.ema_decay, lr_schedule=run.lr_schedule,
      grad_accum_steps=state_lib.grad_accum_steps(cfg.optim))
  if run.discriminator is not None:
    train_step = vae_adversarial.switch_on_at(train_step, cfg.loss.adversarial_start_step)
  return train_step
