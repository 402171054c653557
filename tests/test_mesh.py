"""Mesh sizes and errors, golden parameter shardings, batch sharding."""
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from test_train_step import build_run
from videogen.parallel import mesh as mesh_lib
from videogen.parallel import sharding


def test_mesh_sizes():
  assert dict(mesh_lib.make_mesh({'data': -1}).shape) == {
      'data': 8, 'fsdp': 1, 'context': 1, 'tensor': 1}
  assert dict(mesh_lib.make_mesh({'data': 2, 'fsdp': -1, 'tensor': 2}).shape) == {
      'data': 2, 'fsdp': 2, 'context': 1, 'tensor': 2}
  single = mesh_lib.make_mesh({'data': -1, 'fsdp': 1}, jax.devices()[:1])
  assert single.axis_names == mesh_lib.MESH_AXES and single.devices.shape == (1, 1, 1, 1)
  assert mesh_lib.mesh_shape({'fsdp': 4, 'tensor': 2}, 8) == (1, 4, 1, 2)


@pytest.mark.parametrize('mesh_cfg, message', [
    ({'data': 0}, "mesh axis 'data' has size 0: use a positive size, or -1"),
    ({'data': -1, 'fsdp': -1}, r"mesh axes \['data', 'fsdp'\] are all -1"),
    ({'data': -1, 'fsdp': 3}, 'needs a multiple of 3 devices but there are 8'),
    ({'data': 2, 'fsdp': 2}, 'uses 4 devices but there are 8: make the product 8'),
    ({'pipeline': 2}, r"mesh axes \['pipeline'\] are unknown"),
])
def test_mesh_errors(mesh_cfg, message):
  with pytest.raises(ValueError, match=message):
    mesh_lib.make_mesh(mesh_cfg)


GOLDEN_SPECS = {
    ('Dense_0', 'kernel'): P('fsdp', 'tensor'),
    ('Dense_0', 'bias'): P('tensor'),
    ('Dense_1', 'kernel'): P('tensor', 'fsdp'),
    ('Dense_1', 'bias'): P('fsdp'),
}


@pytest.mark.parametrize('mesh_cfg, shard_shapes', [
    ({'fsdp': 8}, {('Dense_0', 'kernel'): (2, 32), ('Dense_0', 'bias'): (32,),
                   ('Dense_1', 'kernel'): (32, 2), ('Dense_1', 'bias'): (2,)}),
    ({'data': -1, 'tensor': 2}, {('Dense_0', 'kernel'): (16, 16), ('Dense_0', 'bias'): (16,),
                                 ('Dense_1', 'kernel'): (16, 16), ('Dense_1', 'bias'): (16,)}),
])
def test_golden_param_shardings(mesh_cfg, shard_shapes):
  run = build_run(mesh_lib.make_mesh(mesh_cfg))
  adam_state = run.shardings.opt_state[1][0]
  for (layer, name), spec in GOLDEN_SPECS.items():
    for tree in (run.shardings.params, run.shardings.ema_params, adam_state.mu, adam_state.nu):
      assert tree[layer][name].spec == spec, (layer, name)
    assert run.abstract_state.params[layer][name].sharding == run.shardings.params[layer][name]
    array = run.state.params[layer][name]
    assert array.sharding.spec == spec
    assert array.sharding.shard_shape(array.shape) == shard_shapes[layer, name]
  for replicated in (run.shardings.step, run.shardings.rng, adam_state.count):
    assert replicated.spec == P()


def test_logical_name_without_rule_fails():
  class Typo(nn.Module):

    @nn.compact
    def __call__(self, x):
      return nn.Dense(4, kernel_init=nn.with_logical_partitioning(
          nn.initializers.lecun_normal(), ('embed', 'hiden')))(x)

  init_fn = lambda: Typo().init(jax.random.key(0), jnp.ones((1, 4)))
  with pytest.raises(ValueError, match=r"logical axis names \['hiden'\] have no sharding rule"):
    sharding.abstract_state_and_shardings(init_fn, mesh_lib.make_mesh({'fsdp': -1}),
                                          sharding.DEFAULT_RULES)


def test_batch_sharding_and_divisibility():
  mesh = mesh_lib.make_mesh({'data': 2, 'fsdp': 2, 'tensor': 2})
  batch_sharding = sharding.batch_sharding(mesh)
  x = np.arange(24, dtype=np.float32).reshape(8, 3)
  batch = sharding.shard_batch({'x': x}, batch_sharding)
  assert batch['x'].sharding == batch_sharding
  assert {shard.data.shape for shard in batch['x'].addressable_shards} == {(2, 3)}
  np.testing.assert_array_equal(np.asarray(batch['x']), x)
  sharding.check_batch_divisible(12, mesh)
  message = 'global batch 6 is not divisible by data×fsdp = 4 devices: use a multiple of 4'
  with pytest.raises(ValueError, match=message):
    sharding.check_batch_divisible(6, mesh)
  with pytest.raises(ValueError, match=message):
    sharding.shard_batch({'x': x[:6]}, batch_sharding)


def test_constrain_outside_a_mesh_is_a_no_op():
  x = jnp.arange(6.0).reshape(2, 3)
  np.testing.assert_array_equal(sharding.constrain(x, ('batch', 'embed')), x)
