"""Samplers: integrate the learned velocity from noise (t = 1) to data (t = 0).

Times: linspace(1, 0, steps + 1) through `flow.shift_t`, so a shift > 1 spends more steps near
noise, as in training. Methods:
  'euler': x <- x + dt v(x, t); one model call per step.
  'heun':  Euler predictor, trapezoid corrector; two calls per step, the last step plain Euler
           (as in EDM: the step that lands on t = 0 gains little from a corrector there).
  'ab2':   2nd-order Adams-Bashforth on the velocity with variable steps: one call per step,
           v_eff = (1 + r/2) v_n - (r/2) v_{n-1} with r = dt_n / dt_{n-1}; the first step is Euler.
           Second order at Euler's cost (the linear-multistep cousin of DPM-Solver++(2M)).
The loop is one `lax.fori_loop`, so a sampler compiles once per input shape.
Classifier-free guidance: v = v_uncond + s (v_cond - v_uncond), from ONE forward pass over the
batch [cond; uncond].
"""
import math

import jax
import jax.numpy as jnp
import numpy as np

from videogen.diffusion import flow

METHODS = ('euler', 'heun', 'ab2')


def _check(steps: int, method: str, shift: float) -> None:
  if method not in METHODS:
    raise ValueError(f'sampler method {method!r} is unknown: use one of {METHODS}.')
  if not isinstance(steps, (int, np.integer)) or steps < 1:
    raise ValueError(f'steps {steps!r} must be an integer of at least 1: use e.g. 50.')
  if not shift > 0:
    raise ValueError(f'shift {shift} must be positive: use 1.0 for none, or e.g. 3.0.')


def time_grid(steps: int, shift: float = 1.0) -> np.ndarray:
  """float32 [steps + 1] times from 1 (noise) down to 0 (data), shifted."""
  return flow.shift_t(np.linspace(1.0, 0.0, steps + 1), shift).astype(np.float32)


def sample(velocity_fn, noise, *, steps: int, method: str = 'euler', shift: float = 1.0):
  """x0 from `noise` [B, ...] by integrating velocity_fn(x, t_b) -> v in float32; pure, jittable."""
  _check(steps, method, shift)
  noise = jnp.asarray(noise, jnp.float32)
  ts = jnp.asarray(time_grid(steps, shift))
  velocity = lambda x, t: velocity_fn(x, jnp.full(x.shape[:1], t, jnp.float32))

  def euler(i, x):
    return x + (ts[i + 1] - ts[i]) * velocity(x, ts[i])

  def heun(i, x):
    dt = ts[i + 1] - ts[i]
    v = velocity(x, ts[i])
    return x + dt / 2 * (v + velocity(x + dt * v, ts[i + 1]))

  def ab2(i, carry):
    x, v_prev = carry
    dt = ts[i + 1] - ts[i]
    half_r = jnp.where(i > 0, dt / (2 * (ts[i] - ts[jnp.maximum(i - 1, 0)])), 0.0)
    v = velocity(x, ts[i])
    return x + dt * ((1 + half_r) * v - half_r * v_prev), v

  if method == 'euler':
    return jax.lax.fori_loop(0, steps, euler, noise)
  if method == 'heun':
    return euler(steps - 1, jax.lax.fori_loop(0, steps - 1, heun, noise))
  return jax.lax.fori_loop(0, steps, ab2, (noise, jnp.zeros_like(noise)))[0]


def _check_scale(scale) -> None:
  if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 0:
    raise ValueError(f'guidance scale {scale!r} must be a finite number >= 0: use 1.0 for no '
                     'guidance, or e.g. 5.0.')


def guided_velocity(apply_fn, params, text, text_mask, null_text, null_mask, scale: float):
  """velocity_fn(x, t_b) with classifier-free guidance; scale 1 runs the conditional model only.

  apply_fn(params, x, t_b, text, text_mask) -> v (e.g. `DiT(config).apply`). The null text (the
  empty prompt's tokens) may have batch 1; it must have the text's length.
  """
  _check_scale(scale)
  if scale == 1:
    return lambda x, t_b: apply_fn(params, x, t_b, text, text_mask)
  try:
    null_text = jnp.broadcast_to(null_text, text.shape)
    null_mask = jnp.broadcast_to(null_mask, text_mask.shape)
  except ValueError as e:
    raise ValueError(f'null text {jnp.shape(null_text)} / mask {jnp.shape(null_mask)} do not '
                     f'broadcast to text {text.shape} / mask {text_mask.shape}: pad the null '
                     'prompt to the same length.') from e
  both_text = jnp.concatenate([text, null_text])
  both_mask = jnp.concatenate([text_mask, null_mask])

  def velocity_fn(x, t_b):
    v = apply_fn(params, jnp.concatenate([x, x]), jnp.concatenate([t_b, t_b]), both_text,
                 both_mask)
    v_cond, v_uncond = jnp.split(v, 2)
    return v_uncond + scale * (v_cond - v_uncond)

  return velocity_fn


def make_sampler(apply_fn, *, steps: int, method: str = 'euler', shift: float = 1.0,
                 cfg_scale: float = 1.0):
  """Jitted fn(params, noise, text, text_mask, null_text, null_mask) -> x0, compiled once per
  shape; the null text is unused (may be None) when cfg_scale is 1."""
  _check(steps, method, shift)
  _check_scale(cfg_scale)

  @jax.jit
  def run(params, noise, text, text_mask, null_text, null_mask):
    velocity_fn = guided_velocity(apply_fn, params, text, text_mask, null_text, null_mask,
                                  cfg_scale)
    return sample(velocity_fn, noise, steps=steps, method=method, shift=shift)

  return run
