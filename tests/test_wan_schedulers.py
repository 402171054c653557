"""The 'unipc' and 'fm_euler' samplers against diffusers' UniPCMultistepScheduler and
FlowMatchEulerDiscreteScheduler, run by experiments/wan_parity.py (scheduler_golden.npz) as
WanPipeline runs them, on the same stand-in model: grids, model times, every sample."""
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videogen.diffusion import samplers

GOLDEN = np.load(pathlib.Path(__file__).parent / 'data' / 'wan' / 'scheduler_golden.npz')
CASES = json.loads(str(GOLDEN['cases']))


def stand_in_model(x, t_b):
  """The golden's model, v = a x + b sin(7 t) + c."""
  t = t_b.reshape((-1,) + (1,) * (x.ndim - 1))
  return GOLDEN['a'] * x + GOLDEN['b'] * jnp.sin(7 * t) + GOLDEN['c']


@pytest.mark.parametrize('name', CASES)
def test_grid_and_model_times_are_diffusers(name):
  method, shift, steps = CASES[name]
  sigmas, times = samplers.schedule(steps, method, shift)
  np.testing.assert_allclose(sigmas, GOLDEN[f'{name}/sigmas'], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(times, GOLDEN[f'{name}/timesteps'] / 1000, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('name', CASES)
def test_every_sample_is_diffusers(name):
  """The model sees diffusers' samples at diffusers' times, step by step, and the result is
  diffusers' last sample."""
  method, shift, steps = CASES[name]
  calls = []

  def recorded_model(x, t_b):
    jax.debug.callback(lambda *x_t: calls.append([np.asarray(a) for a in x_t]), x, t_b)
    return stand_in_model(x, t_b)

  run = jax.jit(lambda x: samplers.sample(recorded_model, x, steps=steps, method=method,
                                          shift=shift))
  x0 = jax.block_until_ready(run(GOLDEN['latents']))
  jax.effects_barrier()
  golden = GOLDEN[f'{name}/samples']
  assert len(calls) == steps
  for i, (x, t_b) in enumerate(calls):
    np.testing.assert_allclose(x, golden[i], atol=1e-5, err_msg=f'step {i}')
    np.testing.assert_allclose(t_b, GOLDEN[f'{name}/timesteps'][i] / 1000, rtol=1e-6)
  np.testing.assert_allclose(x0, golden[-1], atol=1e-5)


@pytest.mark.parametrize('method', ['unipc', 'fm_euler'])
def test_sdedit_start_scales_the_grid(method):
  """t_start scales the whole grid: at 0 the input comes back, at 1 it is the full run."""
  x = jnp.asarray(GOLDEN['latents'])
  run = jax.jit(lambda x, t_start: samplers.sample(stand_in_model, x, steps=4, method=method,
                                                   shift=3.0, t_start=t_start))
  np.testing.assert_allclose(run(x, 0.0), x, atol=1e-6)
  np.testing.assert_allclose(run(x, 1.0), samplers.sample(stand_in_model, x, steps=4,
                                                          method=method, shift=3.0), atol=1e-6)
  assert np.isfinite(run(x, 0.4)).all()
