"""The environment for runner subprocesses that tests start (experiments/*.py)."""
import os

DEVICE_COUNT_FLAG = '--xla_force_host_platform_device_count'


def one_device() -> dict[str, str]:
  """os.environ with conftest's XLA_FLAGS (fast compiles) but not its 8 fake devices: the
  runner sees this machine's one CPU device, as a user's would."""
  flags = [flag for flag in os.environ.get('XLA_FLAGS', '').split()
           if not flag.startswith(DEVICE_COUNT_FLAG)]
  return {**os.environ, 'XLA_FLAGS': ' '.join(flags)}
