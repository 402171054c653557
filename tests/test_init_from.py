"""config.init_from: a run without checkpoints starts from another run's or an export's EMA
params where path and shape agree, reports what it loaded, refuses a parameter of another shape,
and resuming its own checkpoint wins. On tiny runlocal DiTs whose weights are drawn, not
trained (a checkpoint of drawn weights reads back as a trained one does)."""
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import vae_world
from configs import world as world_config
from videogen.inference import generate
from videogen.inference import vae as vae_lib
from videogen.models import dit
from videogen.parallel import sharding
from videogen.runtime import checkpoint
from videogen.runtime import dit_run
from videogen.runtime import vae_run


def tiny_config(init_from='', **model):
  config = world_config.get_config('runlocal=True')
  config.init_from = str(init_from)
  config.model.update(model)
  return config


def drawn(tree, seed):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape), a.dtype), tree)


def fresh_state(run):
  return sharding.create_sharded_state(run.init_fn, run.state_shardings, run.mesh, run.rules)


def save_run(folder, config):
  """A run folder (config.json + a checkpoint at step 2) whose params and EMA params differ;
  returns its state."""
  run = dit_run.build(config)
  state = fresh_state(run)
  state = state.replace(params=drawn(state.params, 1), ema_params=drawn(state.ema_params, 2))
  run.write_config(folder)
  with checkpoint.Checkpointer(str(folder / 'checkpoints')) as ckpt:
    ckpt.save(2, state, config=config, force=True)
  return state


@pytest.fixture(scope='module')
def source(tmp_path_factory):
  folder = tmp_path_factory.mktemp('source')
  return folder, save_run(folder, tiny_config())


def host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, host(a), host(b))


def start(config, workdir):
  """restore_or_init of a run of `config` in `workdir`, as training starts it."""
  run = dit_run.build(config)
  with checkpoint.Checkpointer(str(workdir / 'checkpoints')) as ckpt:
    return run.restore_or_init(ckpt)[0]


def test_a_fresh_run_starts_from_the_source_ema_params(source, tmp_path, caplog):
  folder, saved = source
  with caplog.at_level(logging.WARNING):
    state = start(tiny_config(init_from=folder), tmp_path / 'run')
  assert int(state.step) == 0
  assert_trees_equal(state.params, saved.ema_params)
  assert_trees_equal(state.ema_params, saved.ema_params)
  assert all(not np.any(leaf) for leaf in jax.tree.leaves(host(state.opt_state)))  # fresh
  count = len(jax.tree.leaves(saved.params))
  assert (f'loaded {count} parameters; new (kept at init): none; dropped (in the source only): '
          'none.') in caplog.text


def test_an_export_starts_a_run_as_its_training_run_does(source, tmp_path):
  folder, saved = source
  exported = generate.Generator.from_workdir(folder).export(tmp_path / 'export')
  state = dit_run.build(tiny_config(init_from=exported)).init_state(str(exported))
  assert_trees_equal(state.params, saved.ema_params)


@pytest.mark.parametrize('scan_layers', [True, False])
def test_a_run_starts_from_weights_of_the_other_block_layout(tmp_path, caplog, scan_layers):
  """Scanned blocks ([depth, ...] under 'blocks') load into unrolled ones ('blocks_<i>') and
  back, every parameter of every block, none reported new or dropped."""
  saved = save_run(tmp_path / 'source', tiny_config(scan_layers=scan_layers))
  with caplog.at_level(logging.WARNING):
    state = start(tiny_config(init_from=tmp_path / 'source', scan_layers=not scan_layers),
                  tmp_path / 'run')
  assert ('blocks' in state.params) == (not scan_layers)
  assert 'new (kept at init): none; dropped (in the source only): none.' in caplog.text
  assert_trees_equal(dit.block_layout(host(state.params), scan_layers),
                     host(saved.ema_params))


def test_a_parameter_of_another_shape_is_one_sentence(source):
  folder, _ = source
  run = dit_run.build(tiny_config(init_from=folder, patch_size=(1, 4, 4)))
  with pytest.raises(ValueError, match=(
      r"^parameter head/bias has shape \(192,\) in init_from '.*source.*' but \(48,\) "
      r'in this model: train with a config of the same model shapes, or pick another '
      r'init_from\.$')):
    run.init_state(str(folder))


def test_the_runs_own_checkpoint_wins_over_init_from(source, tmp_path, caplog):
  folder, _ = source
  workdir = tmp_path / 'run'
  run = dit_run.build(tiny_config())
  own = fresh_state(run)
  with checkpoint.Checkpointer(str(workdir / 'checkpoints')) as ckpt:
    ckpt.save(1, own, iter(run.dataset(0, 1)), run.config, force=True)
  with caplog.at_level(logging.WARNING):
    state = start(tiny_config(init_from=folder), workdir)
  assert_trees_equal(state.params, own.params)
  assert 'init_from' in caplog.text and 'is ignored' in caplog.text


def test_parameters_on_one_side_only_are_reported_new_or_dropped(source, tmp_path, caplog):
  folder, _ = source
  plain = tmp_path / 'plain'
  save_run(plain, tiny_config(pooled_text=False))
  with caplog.at_level(logging.WARNING):
    state = dit_run.build(tiny_config(init_from=plain)).init_state(str(plain))
  new = [line for line in caplog.text.splitlines() if 'new (kept at init)' in line][-1]
  assert 'text_pooled/kernel' in new and 'dropped (in the source only): none' in new
  fresh = fresh_state(dit_run.build(tiny_config()))  # a new parameter keeps its init
  assert_trees_equal(state.params['text_pooled'], fresh.params['text_pooled'])
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    dit_run.build(tiny_config(init_from=folder, pooled_text=False)).init_state(str(folder))
  assert 'text_pooled/kernel' in caplog.text.split('dropped (in the source only):')[-1]


def test_a_missing_init_from_folder_is_one_sentence(tmp_path):
  missing = tmp_path / 'nowhere'
  with pytest.raises(FileNotFoundError, match=(
      rf"^init_from '{missing}' is not a folder: pass a training run or an export "
      r'\(experiments/export.py\), or leave init_from empty\.$')):
    dit_run.build(tiny_config(init_from=missing)).init_state(str(missing))


def test_a_vae_run_starts_from_a_vae_export_with_a_fresh_discriminator(tiny_vae, tmp_path):
  exported = tiny_vae.export(tmp_path / 'vae')
  config = vae_world.get_config('runlocal=True')
  config.init_from = str(exported)
  config.loss.adversarial_weight = 0.1
  state = vae_run.build(config).init_state(str(exported))
  assert_trees_equal(state.params[vae_run.AUTOENCODER], tiny_vae.params)
  assert_trees_equal(state.ema_params[vae_run.AUTOENCODER], tiny_vae.params)
  assert 'discriminator' in state.params
  assert_trees_equal(vae_lib.Autoencoder.from_workdir(exported).params, tiny_vae.params)
