"""A sampling Generator of the runlocal config with random weights, for tests that sample
without training (a fresh init zeroes the output layer, so every prompt would give the same
video)."""
import jax
import jax.numpy as jnp
import numpy as np

from configs import world as world_config
from videogen.inference import generate
from videogen.parallel import sharding


def runlocal_generator(step: int = 0) -> generate.Generator:
  """configs/world.py:runlocal=True (16x16, 2 frames) with params drawn at 0.1 std, seed 0."""
  run = generate.sampling_run(world_config.get_config('runlocal=True'))
  params = sharding.create_sharded_state(run.init_fn, run.state_shardings, run.mesh,
                                         run.rules).ema_params
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda a: jnp.asarray(0.1 * rng.standard_normal(a.shape), a.dtype),
                        params)
  return generate.Generator(run, params, step=step)
