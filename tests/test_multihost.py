"""Two processes on this machine as one 4-device CPU cluster (loopback, gloo): the real runner
trains the tiny config, checkpoints, and resumes; the loss equals a one-process run on the same
global batches, and the checkpoint restores on one device here."""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import world as world_config
from videogen.data import pipeline
from videogen.parallel import distributed
from videogen.runtime import checkpoint
from videogen.runtime import dit_run
from videogen.train import loop

import runner_env

pytestmark = pytest.mark.integration  # a two-process cluster

REPO = pathlib.Path(__file__).resolve().parents[1]
PROCESSES, LOCAL_DEVICES = 2, 2
FIRST_STEPS, LAST_STEP, CHECKPOINT_EVERY = 3, 5, 3
TIMEOUT_S = 240  # per launch of both processes; they are killed past it


def tiny_config(steps):
  config = world_config.get_config('runlocal=True')
  config.train.update(steps=steps, checkpoint_every=CHECKPOINT_EVERY)
  return config


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def launch_cluster(workdir, steps: int, *, through_env: bool) -> list[str]:
  """Runs experiments/train.py as PROCESSES processes of one cluster; their outputs."""
  return finish(start_cluster(workdir, steps, through_env=through_env))


def start_cluster(workdir, steps: int, *, through_env: bool) -> list[subprocess.Popen]:
  """Starts experiments/train.py as PROCESSES processes of one cluster."""
  port = free_port()
  # Not the 8 fake devices of conftest's XLA_FLAGS: each process brings LOCAL_DEVICES of its own.
  base_env = {**runner_env.one_device(), 'JAX_PLATFORMS': 'cpu'}
  # No persistent compilation cache shared between the cluster's processes: a launch that
  # reused it once hung in the first step's collective; each process compiles its own.
  base_env.pop('JAX_COMPILATION_CACHE_DIR', None)
  for name in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES,
               distributed.ENV_PROCESS_ID, distributed.ENV_LOCAL_DEVICE_COUNT):
    base_env.pop(name, None)
  procs = []
  for i in range(PROCESSES):
    args = [sys.executable, 'experiments/train.py', '--config=configs/world.py:runlocal=True',
            f'--workdir={workdir}', f'--config.train.steps={steps}',
            f'--config.train.checkpoint_every={CHECKPOINT_EVERY}']
    env = dict(base_env)
    if through_env:
      env.update({distributed.ENV_COORDINATOR: f'127.0.0.1:{port}',
                  distributed.ENV_NUM_PROCESSES: str(PROCESSES),
                  distributed.ENV_PROCESS_ID: str(i),
                  distributed.ENV_LOCAL_DEVICE_COUNT: str(LOCAL_DEVICES)})
    else:
      args += [f'--coordinator=127.0.0.1:{port}', f'--num_processes={PROCESSES}',
               f'--process_id={i}', f'--local_device_count={LOCAL_DEVICES}']
    procs.append(subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True))
  return procs


def finish(procs: list[subprocess.Popen]) -> list[str]:
  """Waits for the cluster's processes (killed past TIMEOUT_S); their outputs. Each must exit 0."""
  deadline, outputs = time.monotonic() + TIMEOUT_S, []
  try:
    for proc in procs:
      outputs.append(proc.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
  except subprocess.TimeoutExpired:
    for proc in procs:
      proc.kill()
    pytest.fail(f'the {PROCESSES}-process cluster did not finish within {TIMEOUT_S} s: '
                + '\n'.join((p.communicate()[0] or '')[-2000:] for p in procs))
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  for i, (proc, out) in enumerate(zip(procs, outputs)):
    assert proc.returncode == 0, f'process {i} exited {proc.returncode}:\n{out[-3000:]}'
  return outputs


class ConcatenatedShards:
  """One process's view of a PROCESSES-process run's data: each global batch is shard 0's local
  batch, then shard 1's, ... (make_array_from_process_local_data's order on this mesh)."""

  def __init__(self, config, make_dataset):
    self.shards = [iter(make_dataset(config, shard_index=i, shard_count=PROCESSES))
                   for i in range(PROCESSES)]

  def __iter__(self):
    return self

  def __next__(self):
    local = [next(shard) for shard in self.shards]
    return {key: (np.concatenate([b[key] for b in local]) if np.ndim(local[0][key])
                  else np.mean([b[key] for b in local])) for key in local[0]}

  def get_state(self) -> bytes:  # what Grain's checkpoint handler saves for a non-Grain iterator
    return json.dumps([shard.get_state() for shard in self.shards]).encode()


def test_two_process_cluster_trains_checkpoints_resumes_and_matches_one_process(
    tmp_path, monkeypatch):
  workdir = tmp_path / 'cluster'
  first = launch_cluster(workdir, FIRST_STEPS, through_env=False)
  assert sum(f'trained to step {FIRST_STEPS}' in out for out in first) == 1  # process 0 only
  second = launch_cluster(workdir, LAST_STEP, through_env=True)
  assert sum(f'trained to step {LAST_STEP}' in out for out in second) == 1

  # Process 0 alone wrote the metrics: each step once, across both launches.
  rows = loop.read_metrics(workdir)
  assert [r['step'] for r in rows] == list(range(1, LAST_STEP + 1))
  assert (workdir / 'config.json').exists() and (workdir / 'tb').is_dir()
  ckpt = checkpoint.Checkpointer(str(workdir / 'checkpoints'))
  assert ckpt.latest_step() == LAST_STEP
  data_iter_dir = workdir / 'checkpoints' / str(LAST_STEP) / 'data_iter'
  assert sorted(p.name for p in data_iter_dir.glob('*.json')) == [
      f'process_{i}-of-{PROCESSES}.json' for i in range(PROCESSES)]

  # The shards differ, so the loss below matching shows each process read its own.
  config = tiny_config(LAST_STEP)
  shard_batches = [next(iter(pipeline.world_dataset_from_config(config, shard_index=i,
                                                                shard_count=PROCESSES)))
                   for i in range(PROCESSES)]
  assert not np.array_equal(shard_batches[0]['patches'], shard_batches[1]['patches'])

  # One process, 4 devices, the same global batches, straight through without a resume.
  make_dataset = pipeline.world_dataset_from_config

  def concatenated(config, *, shard_index, shard_count):
    assert (shard_index, shard_count) == (0, 1)
    return ConcatenatedShards(config, make_dataset)

  monkeypatch.setattr(pipeline, 'world_dataset_from_config', concatenated)
  devices = jax.devices()[:PROCESSES * LOCAL_DEVICES]
  reference = loop.train(dit_run.build(config, devices=devices), tmp_path / 'one_process', progress=False)
  reference_rows = loop.read_metrics(tmp_path / 'one_process')
  cluster_loss = np.array([r['loss'] for r in rows])
  reference_loss = np.array([r['loss'] for r in reference_rows])
  print('loss, 2 processes:', cluster_loss.tolist(), '1 process:', reference_loss.tolist(),
        'max relative difference:', np.max(np.abs(cluster_loss / reference_loss - 1)))
  np.testing.assert_allclose(cluster_loss, reference_loss, rtol=1e-5)

  # The cluster's final state restores on one device of this process, finite and as trained.
  single = dit_run.build(config, devices=jax.devices()[:1])
  restored = ckpt.restore(single.abstract_state)
  ckpt.close()
  assert int(restored.step) == LAST_STEP
  leaf = jax.tree.leaves(restored.params)[0]
  assert leaf.sharding.device_set == {jax.devices()[0]}
  for got, want in zip(jax.tree.leaves(restored.params), jax.tree.leaves(reference.state.params)):
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6)


def test_initialize_is_a_no_op_alone_and_names_what_is_wrong():
  assert not distributed.initialize(env={})
  assert not distributed.initialize('127.0.0.1:1234', num_processes=1, process_id=0, env={})
  assert distributed.is_main_process()
  with pytest.raises(ValueError, match=r'process_id 2 is outside \[0, num_processes=2\)'):
    distributed.initialize('127.0.0.1:1234', num_processes=2, process_id=2, env={})
  with pytest.raises(ValueError, match='has no port'):
    distributed.initialize('127.0.0.1', num_processes=2, process_id=0, env={})
  with pytest.raises(ValueError, match='needs num_processes and process_id'):
    distributed.initialize(env={distributed.ENV_COORDINATOR: '127.0.0.1:1234'})
  with pytest.raises(ValueError, match='need a coordinator'):
    distributed.initialize(env={distributed.ENV_NUM_PROCESSES: '2',
                                distributed.ENV_PROCESS_ID: '1'})
  with pytest.raises(ValueError, match=r"VIDEOGEN_NUM_PROCESSES='two' is not an integer"):
    distributed.initialize(env={distributed.ENV_NUM_PROCESSES: 'two'})


@pytest.mark.parametrize('xla_flags, local_count, devices', [
    ('', None, 2),  # the config's cpu_devices
    ('--xla_force_host_platform_device_count=8', None, 8),  # a count asked otherwise wins
    ('', 3, 3)])
def test_a_training_config_splits_the_cpu_unless_a_count_was_asked(xla_flags, local_count,
                                                                    devices):
  script = ('import jax; from videogen.parallel import distributed; '
            f'distributed.initialize(local_device_count={local_count}, cpu_devices=2); '
            'print(len(jax.devices()))')
  env = {**os.environ, 'XLA_FLAGS': xla_flags}
  env.pop(distributed.ENV_LOCAL_DEVICE_COUNT, None)
  done = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, text=True,
                        check=True, cwd=REPO)
  assert done.stdout.split()[-1] == str(devices)


def test_sigterm_to_one_process_stops_every_process_at_one_saved_step(tmp_path):
  """A preempted host: SIGTERM reaches process 1 alone. Both must stop after the same step, save
  it together and exit 0 (a process that stopped alone would leave the other in a collective)."""
  workdir, steps = tmp_path / 'stop', 10_000
  procs = start_cluster(workdir, steps, through_env=True)
  metrics, deadline = workdir / 'metrics.jsonl', time.monotonic() + TIMEOUT_S
  while not (metrics.exists() and metrics.read_text().count('\n') >= 2):  # training, not compiling
    if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
      for proc in procs:
        proc.kill()
      pytest.fail('the cluster did not start training: '
                  + '\n'.join((p.communicate()[0] or '')[-2000:] for p in procs))
    time.sleep(0.5)
  procs[1].send_signal(signal.SIGTERM)
  outputs = finish(procs)
  step = checkpoint.Checkpointer(str(workdir / 'checkpoints')).latest_step()
  assert 2 <= step < steps
  assert f'trained to step {step}' in outputs[0]
  assert loop.read_metrics(workdir)[-1]['step'] == step
