"""Faults a long run meets, each injected: a save killed midway, a full disk, an unreadable
checkpoint, nan/inf losses, a crash while results are written. The Checkpointer and step tests
use the tiny MLP run (test_train_step.py); the loop tests train the runlocal DiT."""
import errno
import gc
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest
# Private (orbax-checkpoint is pinned): its futures, and the writer of the JSON item, where saves
# are made to fail.
from orbax.checkpoint._src.futures import future
from orbax.checkpoint._src.handlers import json_checkpoint_handler

from configs import world as world_config
from test_train_step import OPTIM_CFG, RULES, build_run, loss_fn, numpy_batch
from videogen.jobs import scaling
from videogen.parallel import mesh as mesh_lib
from videogen.parallel import sharding
from videogen.runtime import checkpoint as checkpoint_lib
from videogen.runtime import dit_run
from videogen.runtime import state as state_lib
from videogen.train import loop
from videogen.train import step as step_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = ml_collections.ConfigDict({'model': {'width': 16}})


def host_tree(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, host_tree(a), host_tree(b))


def one_device_run():
  return build_run(mesh_lib.make_mesh({}, jax.devices()[:1]))


def take_steps(run, first, count):
  for i in range(first, first + count):
    run.state, _ = run.step(run.state, sharding.shard_batch(numpy_batch(i), run.batch_sharding))


def saved_steps(directory):
  """Checkpoints at steps 2 and 4 of the tiny run in `directory`: (run, host state at 2, at 4)."""
  run = one_device_run()
  with checkpoint_lib.Checkpointer(str(directory), async_save=False) as ckpt:
    take_steps(run, 0, 2)
    ckpt.save(2, run.state, config=CONFIG)
    at_2 = host_tree(run.state)
    take_steps(run, 2, 2)
    ckpt.save(4, run.state, config=CONFIG)
  return run, at_2, host_tree(run.state)


def refuse_space(self, x, directory):  # in place of JsonCheckpointHandler._save_fn
  raise OSError(errno.ENOSPC, 'No space left on device')


async def refuse_space_later(self, x, directory):  # the same, failing in the background thread
  raise OSError(errno.ENOSPC, 'No space left on device')


# --- A save killed midway ------------------------------------------------------------------------

KILLED_SAVE = textwrap.dedent('''
    import asyncio, os, signal, sys, time
    sys.path.insert(0, 'tests')
    import conftest  # the suite's XLA flags and compilation cache
    from orbax.checkpoint._src.handlers import json_checkpoint_handler
    import test_faults
    from videogen.runtime import checkpoint as checkpoint_lib

    directory = sys.argv[1]
    run = test_faults.one_device_run()
    ckpt = checkpoint_lib.Checkpointer(directory)
    ckpt.save(2, run.state, config=test_faults.CONFIG)
    ckpt.wait()
    async def never_done(self, x, directory):
      await asyncio.sleep(3600)
    json_checkpoint_handler.JsonCheckpointHandler._save_fn = never_done
    test_faults.take_steps(run, 0, 2)
    ckpt.save(4, run.state, config=test_faults.CONFIG)  # async: writes on in the background
    deadline = time.monotonic() + 60
    while not os.path.isdir(os.path.join(directory, '4.orbax-checkpoint-tmp')):
      assert time.monotonic() < deadline, os.listdir(directory)
      time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGKILL)
''')


def test_a_save_killed_midway_is_ignored_then_cleaned(tmp_path):
  """Orbax writes a step into <step>.orbax-checkpoint-tmp and renames it when whole; a process
  killed before that leaves the tmp folder, which restores pass over and the next run removes."""
  directory = tmp_path / 'checkpoints'
  killed = subprocess.run([sys.executable, '-c', KILLED_SAVE, str(directory)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
  assert killed.returncode == -9, killed.stderr[-3000:]
  assert sorted(os.listdir(directory)) == ['2', '4.orbax-checkpoint-tmp']

  run = one_device_run()
  with checkpoint_lib.Checkpointer(str(directory)) as reader:  # as a sampler opens it
    assert reader.latest_step() == 2
    assert_trees_equal(reader.restore(run.abstract_state), run.state)  # step 2: untrained
  assert sorted(os.listdir(directory)) == ['2', '4.orbax-checkpoint-tmp']  # may be underway
  with checkpoint_lib.Checkpointer(str(directory), remove_partial_saves=True) as writer:
    take_steps(run, 0, 1)
    assert writer.save(3, run.state, config=CONFIG)  # (a step the killed save did not have)
  assert sorted(os.listdir(directory)) == ['2', '3']


# --- A full disk ---------------------------------------------------------------------------------

def test_a_full_disk_stops_saving_with_one_sentence_and_keeps_the_last_checkpoint(
    tmp_path, monkeypatch):
  directory = tmp_path / 'checkpoints'
  run = one_device_run()
  with pytest.raises(OSError, match=(
      rf'no space left on the device of {directory} while saving a checkpoint: free space '
      r'there or train with another --workdir, and run again \(it resumes from step 2\)\.$')):
    with checkpoint_lib.Checkpointer(str(directory)) as ckpt:  # async, as the loop saves
      ckpt.save(2, run.state, config=CONFIG)
      ckpt.wait()
      at_2 = host_tree(run.state)
      take_steps(run, 0, 2)
      monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, '_save_fn',
                          refuse_space)
      assert ckpt.save(4, run.state, config=CONFIG)  # fails in the background ...
      take_steps(run, 2, 2)
      ckpt.save(6, run.state, config=CONFIG)  # ... and stops the next save
  monkeypatch.undo()

  with checkpoint_lib.Checkpointer(str(directory)) as ckpt:
    assert ckpt.latest_step() == 2
    assert_trees_equal(ckpt.restore(run.abstract_state), at_2)


def test_a_failed_save_waits_for_its_other_writes_before_it_reports(tmp_path, monkeypatch):
  """Orbax stops at the first item write that fails (config, by name order) and leaves the state's
  writing: the error may only reach the caller once they are done, or a rerun in the same process
  removes their folder under them."""
  written = tmp_path / 'late_write'
  standard_save = ocp.StandardCheckpointHandler.async_save

  async def save_then_write_late(self, directory, *args, **kwargs):
    async def late():
      time.sleep(1.0)
      written.write_text('done')
    writes = await standard_save(self, directory, *args, **kwargs)
    return [*(writes or []), future.CommitFutureAwaitingContractedSignals(late())]

  monkeypatch.setattr(ocp.StandardCheckpointHandler, 'async_save', save_then_write_late)
  monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, '_save_fn', refuse_space_later)
  with checkpoint_lib.Checkpointer(str(tmp_path / 'checkpoints')) as ckpt:
    ckpt.save(2, one_device_run().state, config=CONFIG)
    with pytest.raises(OSError, match='no space left on the device'):
      ckpt.wait()
    assert written.read_text() == 'done'


@pytest.mark.parametrize('error, full', [
    (OSError(errno.ENOSPC, 'No space left on device'), True),
    (OSError(errno.EDQUOT, 'Disk quota exceeded'), True),
    (ValueError('RESOURCE_EXHAUSTED: Error writing local file "x/manifest.ocdbt": Failed to '
                "write 490 bytes to file 14: No space left on device [os_error_code='28']"), True),
    (OSError(errno.EACCES, 'Permission denied'), False),
])
def test_disk_full_is_recognised_from_python_and_tensorstore(error, full):
  """The two shapes a real full disk took under Orbax (a 200 KiB tmpfs): Python's OSError, and
  TensorStore's ValueError that quotes the OS error."""
  assert checkpoint_lib._is_disk_full(error) is full  # pylint: disable=protected-access
  try:
    try:
      raise error
    except Exception as inner:
      raise RuntimeError('a wrapper') from inner
  except RuntimeError as wrapped:
    assert checkpoint_lib._is_disk_full(wrapped) is full  # pylint: disable=protected-access


# --- An unreadable checkpoint --------------------------------------------------------------------

# A restore that fails on one array leaves Orbax's reads of the others un-awaited; Python reports
# them when they are collected. Tests that truncate an array collect them before they end.
ORBAX_UNAWAITED_READS = pytest.mark.filterwarnings(
    'ignore::pytest.PytestUnraisableExceptionWarning')


def truncate(path):
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])


def biggest_file(folder):
  return max((p for p in folder.rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)


@ORBAX_UNAWAITED_READS
def test_an_unreadable_checkpoint_names_its_folder_and_can_fall_back(tmp_path):
  directory = tmp_path / 'checkpoints'
  run, at_2, _ = saved_steps(directory)
  truncate(biggest_file(directory / '4' / 'state'))

  with checkpoint_lib.Checkpointer(str(directory)) as ckpt:
    with pytest.raises(checkpoint_lib.UnreadableCheckpointError, match=(
        rf'^checkpoint {directory / "4"} cannot be read \(.+\): resume from step 2 with '
        r'--restore_fallback \(train.py, train_vae.py; restore_fallback=True in Python\), or '
        r'move the folder aside \(to 4.unreadable\) yourself\.$'
    )) as raised:
      ckpt.restore(run.abstract_state)
    assert raised.value.step == 4
  assert sorted(os.listdir(directory)) == ['2', '4']  # nothing moved unasked

  with checkpoint_lib.Checkpointer(str(directory), restore_fallback=True) as ckpt:
    assert ckpt.restore_config() == CONFIG.to_dict()  # step 4's config still reads
    assert_trees_equal(ckpt.restore(run.abstract_state), at_2)
    assert ckpt.latest_step() == 2
    assert ckpt.save(4, run.state, config=CONFIG)  # saves go on past the folder set aside
  assert sorted(os.listdir(directory)) == ['2', '4', '4.unreadable']
  gc.collect()


@ORBAX_UNAWAITED_READS
def test_an_unreadable_config_and_a_lone_unreadable_step(tmp_path):
  directory = tmp_path / 'checkpoints'
  run, at_2, _ = saved_steps(directory)
  truncate(directory / '4' / 'config' / 'metadata')
  with checkpoint_lib.Checkpointer(str(directory)) as ckpt:
    with pytest.raises(checkpoint_lib.UnreadableCheckpointError,
                       match=r'4 cannot be read \(JSONDecodeError: .*resume from step 2'):
      ckpt.restore_config()
  with checkpoint_lib.Checkpointer(str(directory), restore_fallback=True) as ckpt:
    assert ckpt.restore_config() == CONFIG.to_dict()  # step 2's
    assert_trees_equal(ckpt.restore(run.abstract_state), at_2)  # 4 is known unreadable
  assert sorted(os.listdir(directory)) == ['2', '4.unreadable']

  shutil.rmtree(directory / '2')
  truncate(biggest_file(directory / '4.unreadable' / 'state'))
  os.rename(directory / '4.unreadable', directory / '4')
  with checkpoint_lib.Checkpointer(str(directory), restore_fallback=True) as ckpt:
    with pytest.raises(checkpoint_lib.UnreadableCheckpointError,
                       match='there is no earlier step: move the folder aside to start over'):
      ckpt.restore(run.abstract_state)
  assert os.listdir(directory) == ['4']  # no step reads: nothing is set aside
  gc.collect()


# --- Non-finite losses ---------------------------------------------------------------------------

def test_a_skipped_step_changes_nothing_but_the_step_count():
  mesh = mesh_lib.make_mesh({}, jax.devices()[:1])
  run = build_run(mesh)
  train_step = step_lib.make_train_step(
      loss_fn, state_lib.make_optimizer(OPTIM_CFG), ema_decay=0.9,
      lr_schedule=state_lib.learning_rate_schedule(OPTIM_CFG))
  skipping = step_lib.jit_train_step(step_lib.skip_nonfinite(train_step), run.shardings,
                                     run.batch_sharding, mesh, rules=RULES)
  before = host_tree(run.state)
  bad = numpy_batch(0)
  bad['x'][0, 0] = np.nan
  state, metrics = skipping(run.state, sharding.shard_batch(bad, run.batch_sharding))
  assert int(metrics['skipped']) == 1 and np.isnan(float(metrics['loss']))
  after = host_tree(state)
  assert int(after.step) == int(before.step) + 1
  assert_trees_equal(after.replace(step=before.step), before)

  state, metrics = skipping(state, sharding.shard_batch(numpy_batch(8), run.batch_sharding))
  assert int(metrics['skipped']) == 0 and np.isfinite(float(metrics['loss']))
  assert int(state.step) == int(before.step) + 2
  changed = jax.tree.map(lambda x, y: not np.array_equal(x, y), host_tree(state.opt_state),
                         before.opt_state)
  assert any(jax.tree.leaves(changed))  # (warm-up starts at a learning rate of 0)


def test_skipping_stops_one_step_over_the_limit():
  step_lib.check_skipped([3], 1)
  with pytest.raises(FloatingPointError, match=(
      r'^step 5 had a nan/inf loss or gradient norm, one more than the train.skip_nonfinite=1 '
      r'steps that may be skipped: lower the learning rate .* last good checkpoint is kept\.$')):
    step_lib.check_skipped([3, 5, 9], 1)


# --- Results written while a crash may come ----------------------------------------------------

def test_a_crash_while_scaling_json_is_written_leaves_the_old_file(tmp_path, monkeypatch):
  path = tmp_path / 'scaling.json'
  scaling.write_rows(path, [{'size': 'N/2', 'multiplier': 1}])

  def half_then_crash(self, text, *args, **kwargs):
    pathlib.Path.write_bytes(self, text[:len(text) // 2].encode())
    raise OSError(errno.ENOSPC, 'No space left on device')

  monkeypatch.setattr(pathlib.Path, 'write_text', half_then_crash)
  with pytest.raises(OSError):
    scaling.write_rows(path, [{'size': 'N/2', 'multiplier': 1}, {'size': 'N/2', 'multiplier': 4}])
  monkeypatch.undo()
  assert json.loads(path.read_text())['rows'] == [{'size': 'N/2', 'multiplier': 1}]
  assert os.listdir(tmp_path) == ['scaling.json']  # no half-written temporary left


# --- The training loop (runlocal DiT) -------------------------------------------------------------

def tiny_config(steps, **train):
  config = world_config.get_config('runlocal=True')
  config.train.update(steps=steps, checkpoint_every=2, **train)
  config.data.echo = 1  # a poisoned model batch is one update (echoed, it would be each of its)
  return config


def poisoned_run(config, bad_steps):
  """The config's DiT run whose updates numbered `bad_steps` (step + 1) see nan inputs."""
  run = dit_run.build(config)
  model_batch = run.model_batch

  def poisoned(batch, step):
    batch, counts, levels = model_batch(batch, step)
    if step + 1 in bad_steps:
      batch = jax.tree.map(lambda x: x * np.nan if jnp.issubdtype(x.dtype, jnp.floating) else x,
                           batch)
    return batch, counts, levels

  run.model_batch = poisoned
  return run


def copy_of(trained_run, tmp_path):
  """A workdir trained 2 steps (checkpoint 2) that a test may change."""
  return pathlib.Path(shutil.copytree(trained_run, tmp_path / 'run'))


@pytest.mark.integration
def test_the_loop_stops_at_a_nonfinite_loss_and_resumes_from_the_last_good_step(trained_run,
                                                                               tmp_path):
  workdir = copy_of(trained_run, tmp_path)
  with pytest.raises(FloatingPointError, match=r'^loss is nan at step 3: lower the learning '
                     r'rate .* the last good checkpoint is kept\.$'):
    loop.train(poisoned_run(tiny_config(4), {3}), workdir, progress=False)
  assert max(int(name) for name in os.listdir(workdir / 'checkpoints')) == 2
  result = loop.train(dit_run.build(tiny_config(4)), workdir, progress=False)
  assert (result.first_step, result.last_step) == (2, 4)


@pytest.mark.integration
def test_the_loop_drops_a_nonfinite_update_when_allowed(tmp_path):
  states = {}
  keep = loop.Hook(lambda step, state, run: states.__setitem__(step, host_tree(state)), every=1)
  result = loop.train(poisoned_run(tiny_config(4, skip_nonfinite=1), {3}), tmp_path,
                      hooks=[keep], progress=False)
  assert result.last_step == 4 and int(result.state.step) == 4
  assert int(states[3].step) == 3
  assert_trees_equal(states[3].replace(step=2), states[2])  # params, EMA, optimizer, rng
  changed = jax.tree.map(lambda x, y: not np.array_equal(x, y), states[4].opt_state,
                         states[3].opt_state)
  assert any(jax.tree.leaves(changed))
  rows = loop.read_metrics(tmp_path)
  assert [r['skipped_steps'] for r in rows] == [0, 0, 1, 1]
  assert np.isnan(rows[2]['loss']) and np.isfinite(rows[3]['loss'])


@pytest.mark.integration
def test_a_full_disk_stops_the_loop_and_a_rerun_resumes(trained_run, tmp_path, monkeypatch):
  workdir = copy_of(trained_run, tmp_path)
  monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, '_save_fn', refuse_space)
  with pytest.raises(OSError, match=rf'^\[Errno 28\] no space left on the device of '
                     rf'{workdir / "checkpoints"} while saving a checkpoint: .*--workdir, and run '
                     r'again \(it resumes from step 2\)\.$'):
    loop.train(dit_run.build(tiny_config(4)), workdir, progress=False)
  monkeypatch.undo()
  result = loop.train(dit_run.build(tiny_config(4)), workdir, progress=False)
  assert (result.first_step, result.last_step) == (2, 4)


@pytest.mark.integration
@ORBAX_UNAWAITED_READS
def test_the_loop_falls_back_from_an_unreadable_checkpoint_when_asked(trained_run, tmp_path):
  workdir = copy_of(trained_run, tmp_path)
  loop.train(dit_run.build(tiny_config(4)), workdir, progress=False)
  truncate(biggest_file(workdir / 'checkpoints' / '4' / 'state'))
  with pytest.raises(checkpoint_lib.UnreadableCheckpointError,
                     match=r'checkpoints/4 cannot be read .*resume from step 2'):
    loop.train(dit_run.build(tiny_config(6)), workdir, progress=False)
  result = loop.train(dit_run.build(tiny_config(6)), workdir, progress=False,
                      restore_fallback=True)
  assert (result.first_step, result.last_step) == (2, 6)
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['4', '4.unreadable', '6']
  gc.collect()
