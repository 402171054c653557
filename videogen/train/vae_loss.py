"""The autoencoder's training loss: L1 + MSE + chroma + SSIM reconstruction, plus a small KL.

loss = |x̂ − x|₁ + mse_weight · |x̂ − x|² + chroma_weight · |chroma(x̂) − chroma(x)|²
       + ssim_weight · (1 − SSIM(x̂, x)) + kl_weight · KL(q(z|x) ‖ N(0, 1)),
each term a mean (L1, MSE and chroma over pixels, SSIM over frames, KL over latent elements),
where x̂ decodes a sample of the posterior and chroma is a pixel minus its grey level. L1 keeps
colours exact; the squared term pulls hardest where the error is largest, which on the world's
sparse objects is the objects; the chroma term adds weight to hue alone, which an autoencoder
otherwise learns last (brightness carries most of a video's variance); SSIM (the
evaluation's own, core/image_metrics.py) rewards edges and local contrast, which L1 alone
blurs; the KL only keeps the posterior from collapsing to a point and its means bounded (see
configs/vae_world.py for the weights chosen).

Legend: b batch, t frames, h/w height/width, c channels.
"""
import jax
import jax.numpy as jnp
import ml_collections

from videogen.core import image_metrics
from videogen.models import autoencoder
from videogen.train import step as step_lib


def kl_to_standard_normal(mean_bthwc, logvar_bthwc) -> jax.Array:
  """KL(N(mean, exp(logvar)) ‖ N(0, 1)) of each latent element, in nats."""
  return 0.5 * (jnp.square(mean_bthwc) + jnp.exp(logvar_bthwc) - 1.0 - logvar_bthwc)


def reconstruction_loss(model: autoencoder.AutoencoderKL, loss_cfg: ml_collections.ConfigDict,
                        params, video_bthwc, rng) -> tuple[jax.Array, dict, jax.Array]:
  """(loss, {'l1', 'mse', 'chroma', 'ssim', 'kl', 'psnr'}, recon_bthwc) of one batch (module
  docstring).

  video_bthwc is float32 [B, 1 + r·k, H, W, 3] in [-1, 1] (images are 1-frame videos); 'psnr'
  (dB, of the clipped reconstruction, per frame) is reported, not optimised.
  """
  recon_bthwc, mean_bthwc, logvar_bthwc = model.apply({'params': params}, video_bthwc, rng)
  error_bthwc = recon_bthwc - video_bthwc
  l1 = jnp.abs(error_bthwc).mean()
  mse = jnp.square(error_bthwc).mean()
  chroma = jnp.square(image_metrics.chroma(error_bthwc)).mean()  # chroma is linear
  ssim = image_metrics.ssim(recon_bthwc, video_bthwc).mean()
  kl = kl_to_standard_normal(mean_bthwc, logvar_bthwc).mean()
  loss = (l1 + loss_cfg.mse_weight * mse + loss_cfg.chroma_weight * chroma
          + loss_cfg.ssim_weight * (1.0 - ssim) + loss_cfg.kl_weight * kl)
  psnr = image_metrics.psnr(jnp.clip(recon_bthwc, -1.0, 1.0), video_bthwc).mean()
  terms = {'l1': l1, 'mse': mse, 'chroma': chroma, 'ssim': ssim, 'kl': kl, 'psnr': psnr}
  return loss, terms, recon_bthwc


def check_weights(loss_cfg: ml_collections.ConfigDict) -> None:
  """Fails on a missing or negative mse_weight, chroma_weight, ssim_weight or kl_weight."""
  for name in ('mse_weight', 'chroma_weight', 'ssim_weight', 'kl_weight'):
    if name not in loss_cfg:
      raise ValueError(f'loss.{name} is missing from the config: add it (0 switches the term '
                       'off; configs/vae_world.py has the measured weights).')
    if loss_cfg[name] < 0:
      raise ValueError(f'loss.{name} {loss_cfg[name]} is negative: use 0 to switch the term '
                       'off, or a positive weight.')


def make_loss_fn(model: autoencoder.AutoencoderKL,
                 loss_cfg: ml_collections.ConfigDict) -> step_lib.LossFn:
  """loss_fn(params, batch, rng) -> (loss, {'l1', 'mse', 'chroma', 'ssim', 'kl', 'psnr'}) for
  make_train_step; batch['video'] as `reconstruction_loss` takes it."""
  check_weights(loss_cfg)

  def loss_fn(params, batch, rng):
    loss, aux, _ = reconstruction_loss(model, loss_cfg, params, batch['video'], rng)
    return loss, aux

  return loss_fn


def with_channel_permutations(loss_fn: step_lib.LossFn) -> step_lib.LossFn:
  """loss_fn on batch['video'] with each clip's RGB channels in a random order.

  The order is drawn per clip from the step's rng (split off before loss_fn sees it), so a
  resumed run repeats it. It breaks the tie between a shape and its colours: the world's VAE
  otherwise learns which colours each shape comes in, and gives a composition it never saw (a
  held-out green triangle) a triangle's usual colour in the frame it encodes alone.
  """

  def permuted_loss_fn(params, batch, rng):
    order_rng, rng = jax.random.split(rng)
    video_bthwc = batch['video']
    keys = jax.random.split(order_rng, video_bthwc.shape[0])
    order_bc = jax.vmap(lambda key: jax.random.permutation(key, 3))(keys)
    video_bthwc = jnp.take_along_axis(video_bthwc, order_bc[:, None, None, None, :], axis=-1)
    return loss_fn(params, {**batch, 'video': video_bthwc}, rng)

  return permuted_loss_fn
