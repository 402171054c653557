"""Data (x0) prediction turned into velocity: exact for t >= min_t, and named errors."""
import jax
import numpy as np
import pytest

from videogen.diffusion import flow


def test_true_x0_gives_the_true_velocity():
  k0, k1 = jax.random.split(jax.random.key(0))
  x0 = jax.random.normal(k0, (3, 2, 4, 4, 3))
  eps = jax.random.normal(k1, x0.shape)
  t_b = np.array([0.1, 0.5, 1.0], np.float32)
  x_t = flow.noise(x0, eps, t_b)
  v = flow.as_velocity('data', x0, x_t, t_b, min_t=0.05)
  np.testing.assert_allclose(v, flow.velocity_target(x0, eps), rtol=1e-4, atol=1e-4)
  np.testing.assert_array_equal(flow.as_velocity('velocity', eps, x_t, t_b), eps)


def test_small_t_is_clipped_not_divided_by_zero():
  x = np.ones((1, 1, 1, 1, 1), np.float32)
  v = flow.as_velocity('data', np.zeros_like(x), x, np.zeros((1,), np.float32), min_t=0.25)
  np.testing.assert_allclose(v, 4 * x)


def test_unknown_prediction_is_named():
  with pytest.raises(ValueError, match="'noise'"):
    flow.as_velocity('noise', 0, 0, np.zeros(1))
