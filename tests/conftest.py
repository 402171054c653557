"""Test setup: 8 fake CPU devices (set before JAX is imported) and parsed absl flags."""
import os

os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

from absl import flags  # noqa: E402

# Grain workers and absl-based code read flags; pytest does not parse them.
if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()
