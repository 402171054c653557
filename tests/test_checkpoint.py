"""Orbax round trips: exact resume with the Grain iterator, another mesh, configs, preemption."""
import os
import signal
import threading
import time

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from test_train_step import BATCH, build_run, make_example
from videogen.parallel import mesh as mesh_lib
from videogen.parallel import sharding
from videogen.runtime import checkpoint as checkpoint_lib
from videogen.runtime import dit_run
from videogen.train import preemption
from videogen.train import step as step_lib

CONFIG = ml_collections.ConfigDict({'model': {'width': 16, 'depth': 2, 'patch': (1, 2, 2)},
                                    'optim': {'learning_rate': 3e-2}})


def data_iterator():
  dataset = grain.MapDataset.range(100).shuffle(seed=0).map(make_example).batch(BATCH)
  return iter(dataset.to_iter_dataset())


def train(run, data_iter, num_steps):
  for _ in range(num_steps):
    run.state, metrics = run.step(run.state, sharding.shard_batch(next(data_iter),
                                                                  run.batch_sharding))
    step_lib.check_finite(metrics, int(run.state.step))


def host_tree(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, host_tree(a), host_tree(b))


def test_exact_resume_and_restore_on_another_mesh(tmp_path):
  fsdp_mesh = mesh_lib.make_mesh({'fsdp': -1})
  straight, straight_iter = build_run(fsdp_mesh), data_iterator()
  train(straight, straight_iter, 4)

  first_half, first_iter = build_run(fsdp_mesh), data_iterator()
  train(first_half, first_iter, 2)
  saved = host_tree(first_half.state)
  checkpointer = checkpoint_lib.Checkpointer(str(tmp_path / 'checkpoints'))
  assert checkpointer.save(2, first_half.state, first_iter, CONFIG)
  train(first_half, first_iter, 1)  # The saved iterator position must not move with this.
  checkpointer.wait()
  checkpointer.close()

  resumed, resumed_iter = build_run(fsdp_mesh, seed=1), data_iterator()
  checkpointer = checkpoint_lib.Checkpointer(str(tmp_path / 'checkpoints'))
  assert checkpointer.latest_step() == 2
  resumed.state = checkpointer.restore(resumed.abstract_state, resumed_iter)
  assert_trees_equal(resumed.state, saved)
  assert resumed.state.params['Dense_0']['kernel'].sharding.spec == jax.sharding.PartitionSpec(
      'fsdp', 'tensor')
  train(resumed, resumed_iter, 2)
  assert_trees_equal(resumed.state, straight.state)
  jax.tree.map(np.testing.assert_array_equal, next(resumed_iter), next(straight_iter))

  single = build_run(mesh_lib.make_mesh({}, jax.devices()[:1]))
  on_one_device = checkpointer.restore(single.abstract_state)
  assert on_one_device.params['Dense_0']['kernel'].sharding.device_set == {jax.devices()[0]}
  assert_trees_equal(on_one_device, saved)
  checkpointer.close()


def test_missing_checkpoint_names_the_directory(tmp_path):
  directory = str(tmp_path / 'run' / 'checkpoints')
  checkpointer = checkpoint_lib.Checkpointer(directory)
  abstract_state = build_run(mesh_lib.make_mesh({'data': -1})).abstract_state
  with pytest.raises(FileNotFoundError, match=f'no checkpoint in {directory}: train first with '
                     f'experiments/train.py --workdir {tmp_path / "run"}'):
    checkpointer.restore(abstract_state)
  assert not os.path.exists(directory)


def test_a_failed_save_raises_once_its_step_folder_is_quiet(tmp_path):
  """A save whose item failed while another item's writes still ran into the step's tmp folder
  (a synchronous failure leaves them with no future to wait on) raises only once those writes
  are done: a rerun's removal of that folder would race them ("Directory not empty")."""
  folder = tmp_path / 'checkpoints' / '7.orbax-checkpoint-tmp'
  folder.mkdir(parents=True)
  started, finished = threading.Event(), threading.Event()

  def write():  # a write every 0.25 s for 2 s: the folder never stays still for a second
    with open(folder / 'state', 'ab') as f:
      for _ in range(8):
        f.write(b'x' * 64)
        f.flush()
        started.set()
        time.sleep(0.25)
    finished.set()

  checkpointer = checkpoint_lib.Checkpointer(str(tmp_path / 'checkpoints'))
  writer = threading.Thread(target=write)
  writer.start()
  started.wait()
  with pytest.raises(RuntimeError, match='the config item failed'):
    with checkpointer._disk_full_stops():  # pylint: disable=protected-access
      raise RuntimeError('the config item failed')
  assert finished.is_set(), 'the error left the save while its writes were still running'
  writer.join()
  checkpointer.close()


def test_config_round_trip_and_compatibility(tmp_path):
  run = build_run(mesh_lib.make_mesh({'data': -1}))
  checkpointer = checkpoint_lib.Checkpointer(str(tmp_path), max_to_keep=2, async_save=False)
  for step in (1, 2, 3):
    checkpointer.save(step, run.state, config=CONFIG)
  assert sorted(os.listdir(tmp_path)) == ['2', '3']
  saved = checkpointer.restore_config()
  assert saved['model']['patch'] == [1, 2, 2]
  with pytest.raises(FileNotFoundError, match=r'no checkpoint at step 1 .*pick one of \[2, 3\]'):
    checkpointer.restore_config(step=1)
  with pytest.raises(ValueError, match='has no data iterator'):
    checkpointer.restore(run.abstract_state, data_iterator())
  checkpointer.save(4, run.state)
  with pytest.raises(FileNotFoundError, match='checkpoint 4 in .* has no config'):
    checkpointer.restore_config()
  checkpointer.close()

  checkpoint_lib.check_compatible(saved, CONFIG)
  changed = ml_collections.ConfigDict(CONFIG.to_dict())
  changed.optim.learning_rate = 1e-3  # Outside the checked keys: allowed.
  checkpoint_lib.check_compatible(saved, changed)
  changed.model.width = 32
  with pytest.raises(ValueError, match=r'differs from the checkpoint in model.width \(saved 16, '
                     r'now 32\): resume with the saved values'):
    checkpoint_lib.check_compatible(saved, changed)


def test_an_option_added_since_a_save_means_its_old_behaviour():
  """A save without model.pos_embed trained with none: resuming with 'none' is no difference,
  with 'sincos' is one (components.OLD_RUN_MODEL says what a missing field meant)."""
  saved = {'model': {'width': 16}}
  old = {'model.pos_embed': 'none'}
  checkpoint_lib.check_compatible(saved, {'model': {'width': 16, 'pos_embed': 'none'}},
                                  missing=old)
  with pytest.raises(ValueError, match=r"model.pos_embed \(saved '<missing>', now 'sincos'\)"):
    checkpoint_lib.check_compatible(saved, {'model': {'width': 16, 'pos_embed': 'sincos'}},
                                    missing=old)


def test_how_the_model_is_computed_may_change_on_resume():
  """A run saved with remat 'none' resumes with 'dots' (the same function, other memory), as
  dit_run.FREE_KEYS allows; a width change still refuses."""
  saved = {'model': {'width': 16, 'remat': 'none', 'attention_backend': 'xla'}}
  now = {'model': {'width': 16, 'remat': 'dots', 'attention_backend': 'flash'}}
  checkpoint_lib.check_compatible(saved, now, free=dit_run.FREE_KEYS)
  with pytest.raises(ValueError, match=r"model.remat \(saved 'none', now 'dots'\)"):
    checkpoint_lib.check_compatible(saved, now)
  with pytest.raises(ValueError, match=r'model.width \(saved 16, now 32\)'):
    checkpoint_lib.check_compatible(saved, {'model': {**now['model'], 'width': 32}},
                                    free=dit_run.FREE_KEYS)


def test_sigterm_sets_the_stop_flag_and_restores_the_handler():
  before = signal.getsignal(signal.SIGTERM)
  with preemption.stop_on_signal() as stop:
    assert not stop.should_stop()
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.should_stop()
  assert signal.getsignal(signal.SIGTERM) is before


def test_replicated_arrays_save_from_one_replica_and_keys_round_trip(tmp_path, caplog):
  """On CPU a replicated array is written from one replica: orbax's default splits the write
  across the 8 devices and compiles a slice per array and device. A random key comes back a key."""
  replicated = jax.sharding.NamedSharding(mesh_lib.make_mesh({'data': -1}),
                                          jax.sharding.PartitionSpec())
  tree = {'weights': np.arange(48.0, dtype=np.float32).reshape(8, 6),  # rows split over 8
          'rng': jax.random.key(3)}
  tree = jax.device_put(tree, replicated)
  checkpointer = checkpoint_lib.Checkpointer(str(tmp_path), async_save=False)
  with caplog.at_level('WARNING'), jax.log_compiles():
    checkpointer.save(1, tree)
  assert not [r.getMessage() for r in caplog.records if r.getMessage().startswith('Compiling')]
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
  restored = checkpointer.restore(abstract)
  checkpointer.close()
  np.testing.assert_array_equal(restored['weights'], tree['weights'])
  assert jax.dtypes.issubdtype(restored['rng'].dtype, jax.dtypes.prng_key)
  np.testing.assert_array_equal(jax.random.key_data(restored['rng']),
                                jax.random.key_data(tree['rng']))


def test_export_weights_keep_their_dtype_unless_a_storage_dtype_is_asked(tmp_path):
  """save_params stores each leaf as it is by default (a bfloat16 model stays bfloat16), or every
  floating-point leaf as the asked dtype (integers untouched), and a bad dtype is one sentence."""
  tree = {'f32': np.linspace(0.0, 1.0, 7, dtype=np.float32),
          'bf16': np.ones(3, jnp.bfloat16), 'count': np.arange(4, dtype=np.int32)}
  stored = lambda folder: {key: value.dtype for key, value in
                           ocp.StandardCheckpointer().restore(tmp_path / folder).items()}
  checkpoint_lib.save_params(tmp_path / 'kept', tree)
  assert stored('kept') == {'f32': np.float32, 'bf16': jnp.bfloat16, 'count': np.int32}
  checkpoint_lib.save_params(tmp_path / 'half', tree, 'bfloat16')
  assert stored('half') == {'f32': jnp.bfloat16, 'bf16': jnp.bfloat16, 'count': np.int32}
  with pytest.raises(ValueError, match=r"storage dtype 'int8' is unknown: use one of"):
    checkpoint_lib.save_params(tmp_path / 'bad', tree, 'int8')
