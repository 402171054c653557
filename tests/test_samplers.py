"""Samplers against analytic velocities, classifier-free guidance, and compiling once."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videogen.diffusion import samplers
from videogen.models import dit


def gaussian_velocity(mean, std):
  """The exact flow-matching velocity E[eps - x0 | x_t] for data N(mean, std^2)."""

  def velocity_fn(x, t_b):
    t = t_b[:, None]
    var = (1 - t) ** 2 * std**2 + t**2
    centred = x - (1 - t) * mean
    return t / var * centred - (mean + (1 - t) * std**2 / var * centred)

  return velocity_fn


def test_time_grid_runs_from_noise_to_data_with_the_shift():
  grid = samplers.time_grid(4)
  np.testing.assert_allclose(grid, [1.0, 0.75, 0.5, 0.25, 0.0])
  shifted = samplers.time_grid(4, shift=3.0)
  assert shifted[0] == 1.0 and shifted[-1] == 0.0 and shifted[2] == pytest.approx(0.75)


@pytest.mark.parametrize('method', samplers.METHODS)
def test_straight_flow_to_a_point_lands_on_it(method):
  point = jnp.array([0.5, -2.0, 3.0])
  velocity_fn = lambda x, t_b: (x - point) / t_b[:, None]
  noise = jax.random.normal(jax.random.key(0), (4, 3))
  x0 = jax.jit(lambda n: samplers.sample(velocity_fn, n, steps=50, method=method, shift=2.0))(
      noise)
  # 'unipc' calls the model at diffusers' integer timesteps, up to 1/1000 below its state's time.
  np.testing.assert_allclose(x0, jnp.broadcast_to(point, x0.shape),
                             atol=1e-3 if method == 'unipc' else 1e-4)


def test_second_order_methods_beat_euler_on_a_gaussian():
  mean, std = 1.5, 0.3
  noise = jax.random.normal(jax.random.key(1), (256, 1))
  exact = mean + std * noise  # the flow maps each noise quantile to the same data quantile
  error = {}
  for method in samplers.METHODS:
    x0 = samplers.sample(gaussian_velocity(mean, std), noise, steps=6, method=method)
    error[method] = float(jnp.abs(x0 - exact).max())
  fine = samplers.sample(gaussian_velocity(mean, std), noise, steps=200, method='heun')
  np.testing.assert_allclose(fine, exact, atol=1e-3)
  assert error['heun'] < 0.5 * error['euler'], error
  assert error['ab2'] < 0.5 * error['euler'], error


def linear_model(params, x, t_b, text, text_mask):
  """A stand-in velocity model whose output depends on x, t and the unmasked text."""
  summary = jnp.sum(text * text_mask[..., None], axis=(1, 2))
  return params * x + (t_b + summary)[:, None]


def prompts(batch=2):
  text = jax.random.normal(jax.random.key(2), (batch, 3, 4))
  mask = jnp.array([[True, True, False]] * batch)
  null_text, null_mask = jnp.zeros((1, 3, 4)), jnp.array([[True, False, False]])
  return text, mask, null_text, null_mask


def test_guidance_is_one_batched_pass_and_scale_one_is_conditional():
  text, mask, null_text, null_mask = prompts()
  x, t = jnp.ones((2, 5)), jnp.array([0.3, 0.6])
  calls = []
  counted = lambda *args: calls.append(args[1].shape[0]) or linear_model(*args)
  cond = linear_model(0.5, x, t, text, mask)
  uncond = linear_model(0.5, x, t, jnp.broadcast_to(null_text, text.shape),
                        jnp.broadcast_to(null_mask, mask.shape))
  branches = [(text, mask), (null_text, null_mask)]
  plain = samplers.guided_velocity(counted, 0.5, branches, samplers.guidance_weights(1.0))
  np.testing.assert_allclose(plain(x, t), cond)
  guided = samplers.guided_velocity(counted, 0.5, branches, samplers.guidance_weights(4.0))
  np.testing.assert_allclose(guided(x, t), uncond + 4.0 * (cond - uncond), rtol=1e-5, atol=1e-6)
  assert calls == [2, 4]  # scale 1: cond only; otherwise one pass over [cond; uncond]


def test_a_guidance_interval_guides_above_min_t_and_runs_the_text_branch_alone_below():
  text, mask, null_text, null_mask = prompts()
  x = jnp.ones((2, 5))
  calls = []
  counted = lambda *args: calls.append(args[1].shape[0]) or linear_model(*args)
  branches = [(text, mask), (null_text, null_mask)]
  velocity_fn = samplers.guided_velocity(counted, 0.5, branches, samplers.guidance_weights(4.0),
                                         low_weights=samplers.guidance_weights(1.0), min_t=0.5)
  plain = samplers.guided_velocity(linear_model, 0.5, branches, samplers.guidance_weights(1.0))
  guided = samplers.guided_velocity(linear_model, 0.5, branches, samplers.guidance_weights(4.0))
  for t in (0.2, 0.5, 0.8):
    t_b = jnp.full((2,), t)
    want = (guided if t >= 0.5 else plain)(x, t_b)
    np.testing.assert_allclose(velocity_fn(x, t_b), want, rtol=1e-6)
  assert sorted(calls) == [2, 4]  # traced once each: the cond pass alone, [cond; uncond]
  with pytest.raises(ValueError, match='low_weights'):
    samplers.guided_velocity(linear_model, 0.5, branches, samplers.guidance_weights(4.0),
                             min_t=0.5)


def test_text_and_frame_guidance_combine_three_branches():
  x, t = jnp.ones((2, 5)), jnp.array([0.3, 0.6])
  v_both, v_frames, v_none = 2.0 * x, 5.0 * x, -1.0 * x
  model = lambda params, x, t_b, scale: scale[:, None] * x
  branches = [(jnp.full((2,), 2.0),), (jnp.full((2,), 5.0),), (jnp.full((1,), -1.0),)]
  text_scale, frame_scale = 3.0, 2.0
  velocity_fn = samplers.guided_velocity(
      model, None, branches, samplers.guidance_weights(text_scale, frame_scale))
  expected = v_none + frame_scale * (v_frames - v_none) + text_scale * (v_both - v_frames)
  np.testing.assert_allclose(velocity_fn(x, t), expected, rtol=1e-6)
  assert samplers.guidance_weights(2.0, 1.0)[2] == 0  # frame scale 1: the third branch drops


def test_sampler_compiles_once_per_shape_and_strength():
  traces = []
  counted = lambda *args: traces.append(1) or linear_model(*args)
  sampler = samplers.make_sampler(counted, steps=5, method='heun', shift=2.0,
                                  weights=samplers.guidance_weights(3.0))
  text, mask, null_text, null_mask = prompts()
  branches = [(text, mask), (null_text, null_mask)]
  first = sampler(0.1, jnp.ones((2, 5)), branches, init=jnp.ones((2, 5)), strength=0.3)
  traced = len(traces)
  second = sampler(0.2, jnp.zeros((2, 5)), [(text + 1.0, mask), (null_text, null_mask)],
                   init=jnp.ones((2, 5)), strength=0.7)
  assert traced > 0 and len(traces) == traced
  assert not np.allclose(first, second)


def test_sdedit_strength_zero_returns_the_input_and_one_ignores_it():
  sampler = samplers.make_sampler(linear_model, steps=4, method='euler')
  text, mask, _, _ = prompts()
  init, noise = jnp.full((2, 5), 0.25), jax.random.normal(jax.random.key(4), (2, 5))
  np.testing.assert_array_equal(sampler(0.5, noise, [(text, mask)], init=init, strength=0.0),
                                init)
  np.testing.assert_allclose(sampler(0.5, noise, [(text, mask)], init=init, strength=1.0),
                             sampler(0.5, noise, [(text, mask)]), rtol=1e-6)


def test_tiny_dit_samples_with_guidance_as_two_separate_passes_would():
  config = dit.dit_config('T/2', in_channels=2, text_dim=4, dim=32, depth=1, heads=2, mlp_dim=32)
  model = dit.DiT(config)
  noise = jax.random.normal(jax.random.key(3), (2, 1, 4, 4, 2))
  text, mask, null_text, null_mask = prompts()
  shapes = jax.eval_shape(model.init, jax.random.key(0), noise, jnp.zeros(2), text, mask)
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda a: jnp.asarray(0.1 * rng.standard_normal(a.shape), a.dtype),
                        nn.unbox(shapes))
  sampler = samplers.make_sampler(model.apply, steps=3, method='ab2', shift=3.0,
                                  weights=samplers.guidance_weights(5.0))
  x0 = sampler(params, noise, [(text, mask), (null_text, null_mask)])
  assert x0.shape == noise.shape and x0.dtype == jnp.float32

  def two_passes(x, t_b):  # the guided velocity with the null prompt in its own forward pass
    cond = model.apply(params, x, t_b, text, mask)
    uncond = model.apply(params, x, t_b, jnp.broadcast_to(null_text, text.shape),
                         jnp.broadcast_to(null_mask, mask.shape))
    return uncond + 5.0 * (cond - uncond)

  expected = samplers.sample(two_passes, noise, steps=3, method='ab2', shift=3.0)
  assert not np.allclose(expected, noise, atol=0.1)
  np.testing.assert_allclose(x0, expected, rtol=1e-5, atol=1e-5)


def test_bad_settings_raise_clear_errors():
  noise = jnp.zeros((1, 2))
  with pytest.raises(ValueError, match="'rk4'"):
    samplers.sample(lambda x, t: x, noise, steps=4, method='rk4')
  with pytest.raises(ValueError, match='steps 0'):
    samplers.make_sampler(linear_model, steps=0)
  with pytest.raises(ValueError, match='guidance scale -1'):
    samplers.guidance_weights(-1.0)
  text, mask, _, _ = prompts()
  with pytest.raises(ValueError, match='pad the null prompt'):
    samplers.guided_velocity(linear_model, 1.0, [(text, mask), (jnp.zeros((1, 5, 4)),
                                                                jnp.ones((1, 5), bool))],
                             samplers.guidance_weights(2.0))
  with pytest.raises(ValueError, match='2 guidance branches for 1 weights'):
    samplers.guided_velocity(linear_model, 1.0, [(text, mask)] * 2, (1.0,))
