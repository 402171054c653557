"""Samplers: integrate the learned velocity from noise (t = 1) to data (t = 0).

Times (`time_grid`): linspace(1, 0, steps + 1) through `flow.shift_t`, so a shift > 1 spends
more steps near noise, as in training. Methods:
  'euler':    x <- x + dt v(x, t); one model call per step.
  'heun':     Euler predictor, trapezoid corrector; two calls per step, the last step plain Euler
              (as in EDM: the step that lands on t = 0 gains little from a corrector there).
  'ab2':      2nd-order Adams-Bashforth on the velocity with variable steps: one call per step,
              v_eff = (1 + r/2) v_n - (r/2) v_{n-1} with r = dt_n / dt_{n-1}; the first step is
              Euler. Second order at Euler's cost (the linear-multistep cousin of DPM-Solver++(2M)).
Two more reproduce diffusers' schedulers for Wan 2.1 step for step, each on its own grid
(`schedule`), with shift as their flow_shift / shift:
  'unipc':    UniPCMultistepScheduler as Wan's pipeline sets it up, Wan's default (see `unipc`);
              one call per step.
  'fm_euler': FlowMatchEulerDiscreteScheduler: Euler on shift(linspace(1, shift(1/1000),
              steps)) then 0 (diffusers shifts the smallest time twice); one call per step.
The loop is one `lax.fori_loop`, so a sampler compiles once per input shape.
Classifier-free guidance: v = v_uncond + s (v_cond - v_uncond), from ONE forward pass over the
batch [cond; uncond]; with given frames, separate scales for text and frames (three branches,
four with a negative prompt, which stands in for the empty prompt in the text guidance).
A guidance interval (after Kynkäänniemi et al., 2024, who guide only within a range of noise
levels) guides only at times t >= min_t and calls only the branches the weights below it need
there (without frames: the text branch alone).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np

from videogen.diffusion import conditioning
from videogen.diffusion import flow
from videogen.diffusion import unipc

METHODS = ('euler', 'heun', 'ab2', 'unipc', 'fm_euler')


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


def flow_match_grid(steps: int, shift: float = 1.0) -> np.ndarray:
  """float32 [steps + 1] times of FlowMatchEulerDiscreteScheduler(shift=shift).set_timesteps:
  the range of its shifted training times (float32, 1 to shift(1/1000)), spaced evenly and
  shifted again, then 0."""
  n = unipc.TRAIN_TIMESTEPS
  ends = flow.shift_t(np.array([n, 1], np.float32) / np.float32(n), np.float32(shift))
  times = np.linspace(*(ends.astype(np.float64) * n), steps) / n
  return np.append(flow.shift_t(times, shift), 0.0).astype(np.float32)


def schedule(steps: int, method: str = 'euler',
             shift: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
  """(times [steps + 1] of the states from 1 to 0, times [steps] the model is called at on
  them), float32. They differ only for 'unipc', whose model times are diffusers' integer
  timesteps / 1000."""
  _check(steps, method, shift)
  if method == 'unipc':
    return unipc.schedule(steps, shift)
  grid = flow_match_grid(steps, shift) if method == 'fm_euler' else time_grid(steps, shift)
  return grid, grid[:-1]


def sample(velocity_fn, noise, *, steps: int, method: str = 'euler', shift: float = 1.0,
           t_start=1.0):
  """x0 from `noise` [B, ...] (x at t_start) by integrating velocity_fn(x, t_b) -> v in float32
  over the method's time grid (`schedule`) scaled by t_start; pure, jittable."""
  _check(steps, method, shift)
  noise = jnp.asarray(noise, jnp.float32)
  velocity = lambda x, t: velocity_fn(x, jnp.full(x.shape[:1], t, jnp.float32))
  if method == 'unipc':
    return unipc.sample(velocity, noise, steps=steps, shift=shift, t_start=t_start)
  ts = jnp.asarray(schedule(steps, method, shift)[0]) * t_start

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

  if method in ('euler', 'fm_euler'):
    return jax.lax.fori_loop(0, steps, euler, noise)
  if method == 'heun':
    return euler(steps - 1, jax.lax.fori_loop(0, steps - 1, heun, noise))
  return jax.lax.fori_loop(0, steps, ab2, (noise, jnp.zeros_like(noise)))[0]


def _check_scale(scale) -> None:
  if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 0:
    raise ValueError(f'guidance scale {scale!r} must be a finite number >= 0: use 1.0 for no '
                     'guidance, or e.g. 5.0.')


def guidance_weights(text_scale: float, frame_scale: float | None = None, *,
                     negative: bool = False) -> tuple[float, ...]:
  """Weights of the branches [text + frames, frames only, nothing] (the last two dropped when
  their weight is 0): v = v_none + s_f (v_frames - v_none) + s_t (v_both - v_frames), as in
  InstructPix2Pix. frame_scale None (no frames given): [text, nothing] weighted s_t, 1 - s_t.

  negative: with frames, a negative prompt's branch [text + frames, negative + frames, frames
  only, nothing] weighted so that it replaces the frames-only branch in the text guidance
  alone, v = v_both + (s_t - 1)(v_both - v_negative) + (s_f - 1)(v_frames - v_none): at
  s_t = 1 it drops out, and the frame guidance stays measured without text. (Without frames a
  negative prompt is simply the text of the 'nothing' branch.)
  """
  _check_scale(text_scale)
  if frame_scale is None:
    return (float(text_scale), 1.0 - text_scale)
  _check_scale(frame_scale)
  if negative:
    return (float(text_scale), 1.0 - text_scale, frame_scale - 1.0, 1.0 - frame_scale)
  return (float(text_scale), frame_scale - text_scale, 1.0 - frame_scale)


def guided_velocity(apply_fn, params, branches, weights, *, low_weights=None, min_t=0.0):
  """velocity_fn(x, t_b) = sum_i weights[i] apply_fn(params, x, t_b, *branches[i]) from ONE
  forward pass over the branches with a nonzero weight, stacked on the batch.

  apply_fn(params, x, t_b, *inputs) -> v, e.g. `Components.apply`. Each branch is a tuple of
  model inputs (text, text mask, ...); a branch input of batch 1 (the empty prompt's tokens)
  is broadcast to the first branch's. Unit weight on one branch is the plain model.
  low_weights (min_t > 0): the weights at times below min_t, where only their branches run; a
  time is read from t_b[0], so every example of a call must share it (as the samplers call).
  """
  if len(branches) != len(weights) or not branches:
    raise ValueError(f'{len(branches)} guidance branches for {len(weights)} weights: pass one '
                     'weight per branch.')
  guided = _weighted_velocity(apply_fn, params, branches, weights)
  if not min_t > 0:
    return guided
  if low_weights is None or len(low_weights) != len(weights):
    raise ValueError(f'low_weights {low_weights} must give one weight per branch below min_t '
                     f'{min_t}: e.g. guidance_weights(1.0) for no text guidance there.')
  low = _weighted_velocity(apply_fn, params, branches, low_weights)
  return lambda x, t_b: jax.lax.cond(t_b[0] >= min_t, guided, low, x, t_b)


def _weighted_velocity(apply_fn, params, branches, weights):
  """velocity_fn(x, t_b): the weighted sum of the branches (see guided_velocity) with a nonzero
  weight, all in one forward pass."""
  kept = [(b, w) for b, w in zip(branches, weights) if w != 0]
  if len(kept) == 1 and kept[0][1] == 1:
    return lambda x, t_b: apply_fn(params, x, t_b, *kept[0][0])
  first = branches[0]

  def like_first(branch):
    try:
      return jax.tree.map(lambda a, f: jnp.broadcast_to(a, f.shape), tuple(branch), tuple(first))
    except ValueError as e:
      raise ValueError(f'guidance branch inputs {jax.tree.map(jnp.shape, tuple(branch))} do not '
                       f'broadcast to {jax.tree.map(jnp.shape, tuple(first))}: pad the null '
                       'prompt to the same length.') from e

  stacked = jax.tree.map(lambda *a: jnp.concatenate(a), *[like_first(b) for b, _ in kept])
  n = len(kept)

  def velocity_fn(x, t_b):
    v = apply_fn(params, jnp.concatenate([x] * n), jnp.concatenate([t_b] * n), *stacked)
    return sum(w * v_i for (_, w), v_i in zip(kept, jnp.split(v, n)))

  return velocity_fn


def make_sampler(apply_fn, *, steps: int, method: str = 'euler', shift: float = 1.0,
                 weights=(1.0,), low_weights=None, min_t: float = 0.0):
  """Jitted fn(params, noise, branches, frames=None, frame_mask=None, init=None, strength=1.0)
  -> x0, compiled once per shape (strength is traced, so every strength shares one compile).

  branches/weights/low_weights/min_t: see `guided_velocity` (`guidance_weights` makes the
  weights; min_t 0: `weights` at every time). frames and
  frame_mask hold given frames on their path (conditioning.hold_given_frames) and paste them
  into the result. init/strength: SDEdit; start at t = strength from (1 - s) init + s noise on
  the time grid scaled by s, so strength 0 returns init and 1 ignores it.
  """
  _check(steps, method, shift)
  weights = tuple(float(w) for w in weights)
  low_weights = None if low_weights is None else tuple(float(w) for w in low_weights)

  @jax.jit
  def run(params, noise, branches, frames=None, frame_mask=None, init=None, strength=1.0):
    velocity_fn = guided_velocity(apply_fn, params, branches, weights,
                                  low_weights=low_weights, min_t=min_t)
    x = noise
    if init is not None:
      x = (1 - strength) * init + strength * noise
    if frames is not None:
      velocity_fn = conditioning.hold_given_frames(velocity_fn, frames, frame_mask, noise)
    x0 = sample(velocity_fn, x, steps=steps, method=method, shift=shift, t_start=strength)
    if frames is not None:
      x0 = conditioning.paste_given_frames(x0, frames, frame_mask)
    return x0

  return run
