"""Test setup: 8 fake CPU devices and fast compiles (set before JAX is imported), parsed absl
flags, one persistent compilation cache for the session, shared with runner subprocesses, one tiny
trained run that the sampling tests share and one untrained tiny VAE."""
import os
import tempfile

# LLVM at -O0: the suite compiles far more than it computes (tiny shapes), and unoptimised
# machine code compiles faster, which outweighs the slower execution of the few heavy tests.
# Runner subprocesses inherit these flags (tests/runner_env.py drops the fake devices).
os.environ['XLA_FLAGS'] = ' '.join([os.environ.get('XLA_FLAGS', ''),
                                    '--xla_backend_optimization_level=0',
                                    '--xla_force_host_platform_device_count=8']).strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# The same programs compile in several tests (and in the runners the tests start): compile once.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', tempfile.mkdtemp(prefix='videogen-jax-cache-'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

from absl import flags  # noqa: E402

# Grain workers and absl-based code read flags; pytest does not parse them.
if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()


import pytest  # noqa: E402


@pytest.fixture(scope='session')
def trained_run(tmp_path_factory):
  """A workdir trained 2 steps on the runlocal config (frame-conditioned), with a sample grid."""
  from configs import world as world_config  # pylint: disable=g-import-not-at-top
  from videogen.runtime import dit_run  # pylint: disable=g-import-not-at-top
  from videogen.train import hooks, loop  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp('run')
  config = world_config.get_config('runlocal=True')
  config.train.update(steps=2, checkpoint_every=2, sample_every=2)
  run = dit_run.build(config)
  loop.train(run, workdir, hooks=hooks.defaults(run, workdir), progress=False)
  return workdir


def fresh_params(model) -> dict:
  """Parameters of an AutoencoderKL drawn as a fresh init draws them (kernels N(0, 1/fan_in),
  biases 0, norm scales 1), in numpy: a jitted init compiles for ~10 s on two busy cores."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  image = jnp.zeros((1, 1, 4, 4, 3), jnp.float32)
  shapes = nn.unbox(jax.eval_shape(model.init, jax.random.key(0), image, jax.random.key(1)))
  rng = np.random.default_rng(0)
  fill = {'kernel': lambda s: rng.normal(size=s) / np.sqrt(np.prod(s[:-1])),
          'bias': np.zeros, 'scale': np.ones}
  flat = traverse_util.flatten_dict(shapes['params'])
  return traverse_util.unflatten_dict(
      {path: jnp.asarray(fill[path[-1]](leaf.shape), jnp.float32) for path, leaf in flat.items()})


@pytest.fixture(scope='session')
def tiny_vae():
  """The runlocal VAE ('tiny': 4x4x4 compression, 4 channels), untrained, with latent stats
  measured as the trainer measures them; caches and latent runs do not need trained weights."""
  from configs import vae_world  # pylint: disable=g-import-not-at-top
  from videogen.inference import vae as vae_lib  # pylint: disable=g-import-not-at-top
  from videogen.models import autoencoder  # pylint: disable=g-import-not-at-top
  from videogen.runtime import vae_run  # pylint: disable=g-import-not-at-top
  config = vae_world.get_config('runlocal=True')
  model = autoencoder.AutoencoderKL(vae_run.model_config(config))
  params = fresh_params(model)
  stats = vae_run.measure_latent_stats(config, model, params)
  return vae_lib.Autoencoder(model.config, params, stats, step=0)
