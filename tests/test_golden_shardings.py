"""Golden sharding specs: every DiT parameter's shape, logical axes and mesh axes for the T/2 and
1.3B configs (no allocation: jax.eval_shape), compared with tests/data/golden_shardings_*.json;
and every VAE and text-encoder parameter names logical axes that its config's rules cover.

Regenerate the golden files after a deliberate change (and review the diff):
  PYTHONPATH=. .venv/bin/python scripts/update_golden_shardings.py
"""
import importlib.util
import json
import math
import pathlib

import flax.linen as nn
import jax
import numpy as np
import pytest

from configs import vae_world
from configs import world
from videogen.models import bert
from videogen.models import t5
from videogen.parallel import sharding
from videogen.runtime import vae_run

_SCRIPT = pathlib.Path(__file__).resolve().parent.parent / 'scripts' / 'update_golden_shardings.py'
_spec = importlib.util.spec_from_file_location('update_golden_shardings', _SCRIPT)
golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden)


def _differences(actual: dict, expected: dict) -> list[str]:
  lines = [f'  new:     {path} {actual[path]}' for path in sorted(set(actual) - set(expected))]
  lines += [f'  gone:    {path} {expected[path]}' for path in sorted(set(expected) - set(actual))]
  lines += [f'  changed: {path} {expected[path]} -> {actual[path]}'
            for path in sorted(set(actual) & set(expected)) if actual[path] != expected[path]]
  return lines


@pytest.mark.parametrize('name', sorted(golden.GOLDEN_CONFIGS))
def test_parameter_shardings_match_golden(name):
  table = golden.golden_table(name)
  path = golden.golden_path(name)
  expected = json.loads(path.read_text())
  differences = _differences(table['params'], expected['params'])
  assert (table['config'], table['mesh']) == (expected['config'], expected['mesh'])
  assert not differences, (
      f'parameter shardings of {table["config"]} differ from {path.name}:\n'
      + '\n'.join(differences[:40]) + f'\nIf the change is meant, regenerate with '
      f'`{golden.UPDATE_COMMAND}` and review the diff.')
  # Every sharded dimension splits evenly, so the state can be placed on the mesh.
  for param, entry in table['params'].items():
    for size, axes in zip(entry['shape'], entry['mesh']):
      ways = math.prod(golden.GOLDEN_MESH[a] for a in ([axes] if isinstance(axes, str) else
                                                         axes or []))
      assert size % ways == 0, (param, entry)


def test_optimizer_state_and_ema_follow_the_parameters():
  """The 1.3B state's Adam moments and EMA copy get the parameters' shardings."""
  from videogen.runtime import dit_run  # pylint: disable=g-import-not-at-top
  config = world.get_config(golden.GOLDEN_CONFIGS['1p3b'])
  config.mesh.update(golden.GOLDEN_MESH)
  parts = dit_run.build(config)
  shardings = parts.state_shardings
  adam = shardings.opt_state[1][0]
  for tree in (shardings.ema_params, adam.mu, adam.nu):
    assert jax.tree.all(jax.tree.map(lambda a, b: a.spec == b.spec, tree, shardings.params))
  assert dict(parts.mesh.shape) == golden.GOLDEN_MESH


def _names(boxed) -> set:
  leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
  unnamed = [leaf.shape for leaf in leaves if not isinstance(leaf, nn.Partitioned)]
  assert not unnamed, f'parameters without logical axis names, shapes {unnamed}'
  return {name for leaf in leaves for name in leaf.names if name is not None}


def test_vae_parameters_name_axes_its_rules_cover():
  config = vae_world.get_config()  # the 'world' preset
  config.mesh.update(data=2, fsdp=2, tensor=2)
  parts = vae_run.build(config)
  with sharding.sharding_context(parts.mesh, parts.rules):
    boxed = jax.eval_shape(parts.init_fn).params
  assert _names(boxed) <= {name for name, _ in parts.rules}
  specs = {leaf.spec for leaf in jax.tree.leaves(parts.state_shardings.params)}
  assert jax.sharding.PartitionSpec(None, None, None, None, 'fsdp') in specs  # conv kernels


@pytest.mark.parametrize('module', [
    bert.Bert(bert.BertConfig(vocab_size=64, width=16, depth=1, num_heads=4, mlp_dim=32,
                              max_positions=16)),
    t5.T5Encoder(t5.T5Config(64, 16, 4, 32, 1, 4, per_layer_bias=False)),
    t5.T5Encoder(t5.T5Config(64, 16, 4, 32, 1, 4, per_layer_bias=True)),
], ids=['minilm', 't5', 'umt5'])
def test_text_encoder_parameters_name_axes_the_world_rules_cover(module):
  ids = np.ones((1, 8), np.int32)
  boxed = jax.eval_shape(module.init, jax.random.key(0), ids, ids > 0)['params']
  assert _names(boxed) <= {name for name, _ in world.get_config().logical_axis_rules}
