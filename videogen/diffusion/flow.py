"""Rectified flow / flow matching: straight paths from data (t = 0) to noise (t = 1).

x_t = (1 - t) x0 + t eps, and the model learns the velocity dx_t/dt = eps - x0. Training times are
logit-normal (SD3) and then shifted towards noise, more so for more tokens (SD3, Flux, Wan).

Shapes: x0, eps, x_t are any [B, ...]; t is [B].
"""
import jax
import jax.numpy as jnp
import numpy as np


def sample_t(rng, shape, mean: float = 0.0, std: float = 1.0):
  """Logit-normal times in (0, 1): sigmoid(mean + std * N(0, 1))."""
  return jax.nn.sigmoid(mean + std * jax.random.normal(rng, shape))


def shift_t(t, shift: float):
  """SD3's time shift, shift * t / (1 + (shift - 1) * t): shift > 1 moves times towards noise."""
  return shift * t / (1 + (shift - 1) * t)


def train_times(rng, shape, shift, t_mean: float = 0.0, t_std: float = 1.0,
                near_data: float = 0.0, near_data_shift: float = 1.0):
  """Training times: logit-normal (`sample_t`) shifted by `shift` (a number, or an array that
  broadcasts to `shape`); with near_data > 0, that fraction of them, drawn at random, is shifted
  by near_data_shift instead: a second mode nearer the data, where outlines are drawn, beside a
  large shift's mode near noise. near_data 0 draws exactly what shift_t(sample_t(...)) does."""
  t = sample_t(rng, shape, t_mean, t_std)
  if near_data > 0:
    near_b = jax.random.bernoulli(jax.random.fold_in(rng, 1), near_data, shape)
    shift = jnp.where(near_b, near_data_shift, shift)
  return shift_t(t, shift)


def resolution_shift(num_tokens: int, base_tokens: int = 256, base_shift: float = 1.0,
                     max_tokens: int = 4096, max_shift: float = 3.0) -> float:
  """The shift for `num_tokens`, as Flux computes it: mu = log(shift) is linear in the token
  count through (base_tokens, log base_shift) and (max_tokens, log max_shift), held constant
  beyond them (extrapolating would give 720p x 81 frames a shift of e^21), and shift = exp(mu).
  Defaults: no shift at 256 tokens, SD3's 3.0 at 4096."""
  if num_tokens < 1 or not 0 < base_tokens < max_tokens:
    raise ValueError(f'tokens must satisfy 1 <= num_tokens ({num_tokens}) and 0 < base_tokens '
                     f'({base_tokens}) < max_tokens ({max_tokens}): pass positive, ordered counts.')
  if base_shift <= 0 or max_shift <= 0:
    raise ValueError(f'shifts {base_shift} and {max_shift} must be positive: use e.g. 1.0 and 3.0.')
  slope = (np.log(max_shift) - np.log(base_shift)) / (max_tokens - base_tokens)
  tokens = min(max(num_tokens, base_tokens), max_tokens)
  return float(np.exp(np.log(base_shift) + slope * (tokens - base_tokens)))


def _per_sample(t_b, x):
  """Reshapes times [B] (or [B, L], one per token) to broadcast against x [B, ...]."""
  return jnp.reshape(t_b, t_b.shape + (1,) * (x.ndim - t_b.ndim))


def noise(x0, eps, t_b):
  """The point x_t = (1 - t) x0 + t eps on each sample's straight path."""
  t = _per_sample(t_b, x0).astype(x0.dtype)
  return (1 - t) * x0 + t * eps


def velocity_target(x0, eps):
  """The velocity along the path, eps - x0, that the model regresses."""
  return eps - x0


def error_scale(t_b, loss_min_t: float = 0.0):
  """Per-example factor min(1, t / loss_min_t) [B] on a prediction and its target, so that the
  squared error is weighted by its square; loss_min_t 0: 1 (no weight over t).

  For a clean-data predictor the velocity error is the clean-data error over t, so its squared
  error weighs the clean-data error by 1 / t^2: the examples nearest the data pull hardest. This
  caps that weight at 1 / loss_min_t^2, which lets a run train near the data without those
  examples taking over the gradient."""
  if loss_min_t <= 0:
    return jnp.ones_like(t_b)
  return jnp.minimum(1.0, t_b / loss_min_t)


def weigh_over_t(pred, target, t_b, loss_min_t: float = 0.0):
  """pred and target [B, ...] both scaled by error_scale of their times t [B] (or [B, L] for
  tokens [B, L, ...]), so their squared error is weighted over t; loss_min_t 0: as they are."""
  if loss_min_t <= 0:
    return pred, target
  scale = _per_sample(error_scale(t_b, loss_min_t), pred)
  return pred * scale, target * scale


def loss(pred, target, weights=None):
  """Mean squared error in float32 over the elements that count (`weights` broadcastable to
  `pred`, e.g. a [B, T, 1, 1, 1] frame mask; zero weight = padding, left out of the mean)."""
  err = jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32))
  if weights is None:
    return jnp.mean(err)
  weights = jnp.broadcast_to(jnp.asarray(weights, jnp.float32), err.shape)
  total = jnp.sum(weights)
  return jnp.where(total > 0, jnp.sum(err * weights) / jnp.maximum(total, 1e-12), 0.0)


def flow_matching_loss(apply_fn, params, x0, text, text_mask, rng, *, shift: float = 1.0,
                       t_mean: float = 0.0, t_std: float = 1.0, near_data: float = 0.0,
                       near_data_shift: float = 1.0, loss_min_t: float = 0.0, loss_mask=None):
  """One flow-matching loss for a batch -> (loss, aux); times from `train_times`.

  apply_fn(params, x_t, t_b, text, text_mask) -> velocity, e.g. `DiT(config).apply` with
  params = {'params': ...}. loss_min_t > 0 weights each example's error over t (`weigh_over_t`).
  aux = {'t': the times [B], 'loss_per_sample': [B]} for logging
  loss against time.
  """
  t_rng, eps_rng = jax.random.split(rng)
  t_b = train_times(t_rng, x0.shape[:1], shift, t_mean, t_std, near_data, near_data_shift)
  eps = jax.random.normal(eps_rng, x0.shape, x0.dtype)
  pred = apply_fn(params, noise(x0, eps, t_b), t_b, text, text_mask)
  pred, velocity = weigh_over_t(pred, velocity_target(x0, eps), t_b, loss_min_t)
  weights = jnp.ones_like(x0, jnp.float32) if loss_mask is None else loss_mask
  per_sample = jax.vmap(loss)(pred, velocity, jnp.broadcast_to(weights, x0.shape))
  return loss(pred, velocity, weights), {'t': t_b, 'loss_per_sample': per_sample}


PREDICTIONS = ('velocity', 'data')


def as_velocity(prediction: str, out, x_t, t_b, min_t: float = 0.05):
  """The velocity implied by a model output: itself ('velocity'), or, for a model that predicts
  clean data x0 ('data'), v = (x_t - x0) / t with t clipped below at min_t.

  Data prediction is what lets a narrow transformer denoise large pixel patches: clean patches
  lie near a low-dimensional manifold a small width can represent, while noise (and so velocity)
  fills every one of the patch's dimensions (Li & He, "Back to Basics: Let Denoising Generative
  Models Denoise", 2025). Training still regresses velocity, so the loss and samplers are shared.
  """
  if prediction == 'velocity':
    return out
  if prediction != 'data':
    raise ValueError(f'prediction {prediction!r} is unknown: use one of {PREDICTIONS}.')
  t = _per_sample(jnp.maximum(t_b, min_t), x_t).astype(out.dtype)
  return (x_t - out) / t
