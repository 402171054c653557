"""Flow matching: time sampling and shift, noising, the masked loss, and a tiny DiT overfitting."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from videogen.diffusion import flow
from videogen.models import dit


def test_sample_t_is_logit_normal():
  t = flow.sample_t(jax.random.key(0), (20000,), mean=0.5, std=0.8)
  assert t.shape == (20000,) and bool(jnp.all((t > 0) & (t < 1)))
  logit = np.log(t / (1 - t))
  assert abs(logit.mean() - 0.5) < 0.03 and abs(logit.std() - 0.8) < 0.03


def test_shift_moves_times_towards_noise_and_keeps_ends():
  t = jnp.linspace(0, 1, 11)
  np.testing.assert_allclose(flow.shift_t(t, 1.0), t, atol=1e-7)
  shifted = flow.shift_t(t, 3.0)
  np.testing.assert_allclose(shifted[jnp.array([0, 5, 10])], [0.0, 0.75, 1.0], atol=1e-6)
  assert bool(jnp.all(shifted >= t)) and bool(jnp.all(jnp.diff(shifted) > 0))


def test_resolution_shift_is_log_linear_in_tokens():
  assert flow.resolution_shift(256) == pytest.approx(1.0)
  assert flow.resolution_shift(4096) == pytest.approx(3.0)
  assert flow.resolution_shift(2176) == pytest.approx(np.sqrt(3.0))  # halfway: geometric mean
  assert flow.resolution_shift(8192) == pytest.approx(3.0)  # held beyond max_tokens
  assert flow.resolution_shift(16) == pytest.approx(1.0)
  with pytest.raises(ValueError, match='num_tokens'):
    flow.resolution_shift(0)
  with pytest.raises(ValueError, match='positive'):
    flow.resolution_shift(512, base_shift=0.0)


def test_noise_runs_from_data_to_noise_with_the_target_velocity():
  keys = jax.random.split(jax.random.key(1))
  x0 = jax.random.normal(keys[0], (3, 2, 4, 4, 1))
  eps = jax.random.normal(keys[1], x0.shape)
  np.testing.assert_allclose(flow.noise(x0, eps, jnp.zeros(3)), x0)
  np.testing.assert_allclose(flow.noise(x0, eps, jnp.ones(3)), eps)
  t = jnp.array([0.1, 0.5, 0.8])
  slope = (flow.noise(x0, eps, t + 1e-2) - flow.noise(x0, eps, t)) / 1e-2
  np.testing.assert_allclose(slope, flow.velocity_target(x0, eps), atol=1e-3)


def test_loss_averages_over_real_elements_only():
  pred = jnp.zeros((2, 3, 2))
  target = jnp.ones((2, 3, 2)).at[:, 2].set(100.0)  # frame 2 is padding
  frames = jnp.array([1.0, 1.0, 0.0])[None, :, None]
  assert flow.loss(pred, target, frames) == pytest.approx(1.0)
  assert flow.loss(pred, target) == pytest.approx((8 + 4 * 100.0**2) / 12)
  assert flow.loss(pred, target, jnp.zeros_like(frames)) == 0.0


def test_flow_matching_loss_of_a_zero_model():
  x0 = 2.0 * jnp.ones((64, 4, 4, 4, 1))
  zero_model = lambda params, x, t, text, mask: jnp.zeros_like(x)
  value, aux = flow.flow_matching_loss(zero_model, None, x0, None, None, jax.random.key(2),
                                       shift=3.0)
  assert value == pytest.approx(1.0 + 4.0, rel=0.05)  # E[(eps - x0)^2] = 1 + x0^2
  assert aux['t'].shape == (64,) and aux['loss_per_sample'].shape == (64,)
  assert float(jnp.median(aux['t'])) == pytest.approx(0.75, abs=0.1)  # shift 3 of median 0.5
  perfect = lambda params, x, t, text, mask: jnp.where(jnp.arange(4)[:, None, None, None] < 2,
                                                       (x - x0) / t[:, None, None, None, None], 9.)
  frame_mask = (jnp.arange(4) < 2)[None, :, None, None, None]
  value, _ = flow.flow_matching_loss(perfect, None, x0, None, None, jax.random.key(3),
                                     loss_mask=frame_mask)
  assert value == pytest.approx(0.0, abs=1e-4)


def test_loss_min_t_caps_the_weight_of_examples_near_the_data():
  t = jnp.array([0.1, 0.5, 0.9])
  np.testing.assert_allclose(flow.error_scale(t, 0.5), [0.2, 1.0, 1.0])
  np.testing.assert_array_equal(flow.error_scale(t, 0.0), 1.0)
  x0 = 2.0 * jnp.ones((256, 2, 2, 2, 1))
  zero_model = lambda params, x, t, text, mask: jnp.zeros_like(x)
  run = lambda c: flow.flow_matching_loss(zero_model, None, x0, None, None, jax.random.key(5),
                                          loss_min_t=c)
  plain, aux = run(0.0)
  weighted, _ = run(0.5)
  expected = jnp.mean(jnp.minimum(1.0, aux['t'] / 0.5)**2 * aux['loss_per_sample'])
  assert float(weighted) == pytest.approx(float(expected), rel=1e-5)
  assert float(weighted) < 0.9 * float(plain)  # about a third of unshifted times fall below 0.5


def test_tiny_dit_overfits_a_fixed_batch():
  config = dit.dit_config('T/2', in_channels=2, text_dim=8, dim=32, depth=2, heads=2, mlp_dim=64)
  model = dit.DiT(config)
  keys = jax.random.split(jax.random.key(4), 4)
  x0 = jax.random.normal(keys[0], (4, 2, 4, 4, 2))
  text = jax.random.normal(keys[1], (4, 3, 8))
  mask = jnp.ones((4, 3), bool)
  params = nn.unbox(jax.jit(model.init)(keys[2], x0, jnp.zeros(4), text, mask))
  optimizer = optax.adam(3e-3)

  @jax.jit
  def step(params, opt_state):
    loss_fn = lambda p: flow.flow_matching_loss(model.apply, p, x0, text, mask, keys[3])[0]
    value, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, value

  opt_state = optimizer.init(params)
  losses = []
  for _ in range(40):
    params, opt_state, value = step(params, opt_state)
    losses.append(float(value))
  assert losses[-1] < 0.2 * losses[0], losses


def test_train_times_draw_a_fraction_near_the_data_and_none_by_default():
  rng = jax.random.key(0)
  u = flow.sample_t(rng, (4096,))
  np.testing.assert_array_equal(flow.train_times(rng, (4096,), 8.0), flow.shift_t(u, 8.0))
  t = flow.train_times(rng, (4096,), 8.0, near_data=0.25, near_data_shift=1.0)
  near = np.isclose(t, u)  # shift 1 leaves a time as drawn; shift 8 moves every one
  assert abs(near.mean() - 0.25) < 0.03
  np.testing.assert_allclose(t[~near], flow.shift_t(u, 8.0)[~near], rtol=1e-6)
  shifts = jnp.full((64, 2), 4.0)  # per-segment shifts of packed rows broadcast
  assert flow.train_times(rng, (64, 2), shifts, near_data=0.5).shape == (64, 2)
