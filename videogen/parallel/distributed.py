"""Joining a multi-process (multi-host) JAX cluster before any device is touched.

One process runs per host (or per group of local devices); together they see every device of the
cluster as one mesh. Each process reads its own shard of the data, `parallel.sharding.shard_batch`
assembles the global batch, Orbax saves and restores the sharded state from every process, and
only process 0 writes logs, metrics, the config and samples.

Launching (every runner in experiments/ takes the same flags, experiments/cluster_flags.py):

  # Explicit: run this on each of N hosts, with its own PROCESS_ID in [0, N).
  python experiments/train.py --config configs/world.py --workdir gs://bucket/run \
      --coordinator=HOST0:1234 --num_processes=N --process_id=PROCESS_ID
  # The same through the environment (flags win over it):
  VIDEOGEN_COORDINATOR=HOST0:1234 VIDEOGEN_NUM_PROCESSES=N VIDEOGEN_PROCESS_ID=PROCESS_ID \
      python experiments/train.py ...
  # Cloud TPU pods, SLURM, Open MPI, GKE: JAX reads the cluster from the environment.
  python experiments/train.py ... --distributed        # or VIDEOGEN_DISTRIBUTED=1
  # Two processes on one CPU machine (testing): 2 fake CPU devices each, 4 in the cluster.
  python experiments/train.py ... --coordinator=127.0.0.1:1234 --num_processes=2 \
      --process_id=0 --local_device_count=2 &   # and the same with --process_id=1

The workdir must be one folder that every process sees (a shared filesystem or a bucket).
Without any of these, `initialize` does nothing and the run uses this process's devices.
"""
from collections.abc import Mapping
import os

import jax
from jax.experimental import multihost_utils
import numpy as np

ENV_COORDINATOR = 'VIDEOGEN_COORDINATOR'
ENV_NUM_PROCESSES = 'VIDEOGEN_NUM_PROCESSES'
ENV_PROCESS_ID = 'VIDEOGEN_PROCESS_ID'
ENV_DISTRIBUTED = 'VIDEOGEN_DISTRIBUTED'
ENV_LOCAL_DEVICE_COUNT = 'VIDEOGEN_LOCAL_DEVICE_COUNT'

def _env_int(env: Mapping[str, str], name: str) -> int | None:
  value = env.get(name)
  if value in (None, ''):
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f'${name}={value!r} is not an integer: set it to a whole number.') from None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, local_device_count: int | None = None, *,
               auto: bool | None = None, cpu_devices: int = 0,
               env: Mapping[str, str] | None = None) -> bool:
  """Joins the cluster that the arguments, else the VIDEOGEN_* environment, describe; True if
  this process is now one of several.

  coordinator_address (host:port of process 0) needs num_processes and process_id; auto=True
  lets `jax.distributed.initialize()` detect a TPU pod or SLURM/MPI job itself. With neither (or
  num_processes=1) it joins nothing. local_device_count fakes that many CPU devices in this
  process; cpu_devices (a config's train.cpu_devices) does the same where no count was given,
  neither that nor XLA_FLAGS' xla_force_host_platform_device_count. Call it before anything
  touches devices (jax.devices(), an array); a second call in a process that already joined
  does nothing.
  """
  env = os.environ if env is None else env
  if coordinator_address is None:
    coordinator_address = env.get(ENV_COORDINATOR) or None
  if num_processes is None:
    num_processes = _env_int(env, ENV_NUM_PROCESSES)
  if process_id is None:
    process_id = _env_int(env, ENV_PROCESS_ID)
  if local_device_count is None:
    local_device_count = _env_int(env, ENV_LOCAL_DEVICE_COUNT)
  if auto is None:
    auto = env.get(ENV_DISTRIBUTED, '').lower() in ('1', 'true', 'yes')

  if jax.distributed.is_initialized():
    return jax.process_count() > 1
  if local_device_count is not None:
    if local_device_count < 1:
      raise ValueError(f'local_device_count {local_device_count} must be at least 1.')
    jax.config.update('jax_num_cpu_devices', local_device_count)
  elif cpu_devices > 1 and 'xla_force_host_platform_device_count' not in env.get('XLA_FLAGS', ''):
    jax.config.update('jax_num_cpu_devices', cpu_devices)
  if coordinator_address is None:
    if num_processes not in (None, 1) or process_id not in (None, 0):
      raise ValueError(f'num_processes={num_processes} and process_id={process_id} need a '
                       f'coordinator: pass --coordinator=HOST:PORT (or ${ENV_COORDINATOR}), the '
                       'address of process 0.')
    if not auto:
      return False
    jax.distributed.initialize()  # The cluster describes itself (TPU pod, SLURM, MPI, GKE).
    return jax.process_count() > 1
  if ':' not in coordinator_address:
    raise ValueError(f'coordinator {coordinator_address!r} has no port: use HOST:PORT, e.g. '
                     f'{coordinator_address}:1234.')
  if num_processes is None or process_id is None:
    raise ValueError(f'coordinator {coordinator_address} needs num_processes and process_id: '
                     f'pass --num_processes and --process_id (or ${ENV_NUM_PROCESSES} and '
                     f'${ENV_PROCESS_ID}).')
  if num_processes < 1:
    raise ValueError(f'num_processes {num_processes} must be at least 1.')
  if not 0 <= process_id < num_processes:
    raise ValueError(f'process_id {process_id} is outside [0, num_processes={num_processes}): '
                     f'number the processes 0 to {num_processes - 1}.')
  if num_processes == 1:
    return False
  jax.distributed.initialize(coordinator_address, num_processes=num_processes,
                             process_id=process_id)
  return True


def is_main_process() -> bool:
  """Whether this is process 0, the one that writes logs, metrics, configs and samples."""
  return jax.process_index() == 0


def gather(tree):
  """Whole arrays of a sharded pytree on this process: the tree itself on one process; on several
  (a collective: every process must call it) numpy copies, each host holding all of it."""
  if jax.process_count() == 1:
    return tree
  return multihost_utils.process_allgather(tree, tiled=True)


def any_process(flag: bool) -> bool:
  """Whether `flag` is set on any process (a collective: every process must call it)."""
  if jax.process_count() == 1:
    return bool(flag)
  return bool(np.asarray(multihost_utils.process_allgather(np.int32(flag))).any())
