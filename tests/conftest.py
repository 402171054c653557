"""Test setup: 8 fake CPU devices (set before JAX is imported), parsed absl flags, one
persistent compilation cache for the session, shared with runner subprocesses, and one tiny
trained run that the sampling tests share."""
import os
import tempfile

os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8').strip()
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
  from videogen.train import loop  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp('run')
  config = world_config.get_config('runlocal=True')
  config.train.update(steps=2, checkpoint_every=2, sample_every=2)
  loop.train(config, workdir, progress=False)
  return workdir
