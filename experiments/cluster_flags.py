"""The flags with which every runner joins a multi-process cluster (videogen/parallel/
distributed.py says how to launch one). A runner imports this module and calls `initialize`
first thing in main, before anything touches a device."""
from absl import flags

from videogen.parallel import distributed

_COORDINATOR = flags.DEFINE_string(
    'coordinator', None, f'host:port of process 0\'s coordination service; joins a cluster of '
    f'--num_processes processes (default ${distributed.ENV_COORDINATOR}).')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None, f'Processes in the cluster (default ${distributed.ENV_NUM_PROCESSES}).')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', None, f'This process\'s index in [0, --num_processes) (default '
    f'${distributed.ENV_PROCESS_ID}).')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', None, f'Join the cluster that JAX detects from the environment (TPU pods, '
    f'SLURM, Open MPI, GKE) (default ${distributed.ENV_DISTRIBUTED}=1).')
_LOCAL_DEVICE_COUNT = flags.DEFINE_integer(
    'local_device_count', None, f'CPU only: fake devices this process gives the cluster '
    f'(default ${distributed.ENV_LOCAL_DEVICE_COUNT}, else the config\'s train.cpu_devices; '
    'testing a cluster on one machine).')


def initialize(config=None) -> bool:
  """distributed.initialize with these flags (unset ones fall back to the environment) and the
  CPU devices a training config asks for (config.train.cpu_devices)."""
  cpu_devices = config.train.get('cpu_devices', 0) if config is not None else 0
  return distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                                _LOCAL_DEVICE_COUNT.value, auto=_DISTRIBUTED.value,
                                cpu_devices=cpu_devices)
