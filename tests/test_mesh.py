"""Mesh sizes and errors (one slice and several: ICI × DCN), golden parameter shardings of a toy
model, batch sharding. The DiT's golden shardings are in test_golden_shardings.py."""
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from configs import world
from test_train_step import build_run
from videogen.parallel import mesh as mesh_lib
from videogen.parallel import sharding

RULES = sharding.rules_from_config(world.get_config())  # the DiT run's rules


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


def test_config_mesh_is_one_slice_by_default():
  mesh_cfg = world.get_config().mesh
  assert dict(mesh_lib.make_mesh(mesh_cfg).shape) == {
      'data': 8, 'fsdp': 1, 'context': 1, 'tensor': 1}
  assert mesh_lib.hybrid_shape(mesh_cfg, 8) == ((8, 1, 1, 1), (1, 1, 1, 1))


def test_dcn_mesh_is_ici_times_dcn_and_slice_major():
  """Fake devices carry no slice_index: the fixed dcn sizes split them into consecutive slices."""
  mesh_cfg = {'data': 2, 'tensor': -1, 'dcn': {'data': 2}}  # 2 slices of 4 devices
  assert mesh_lib.hybrid_shape(mesh_cfg, 8) == ((2, 1, 1, 2), (2, 1, 1, 1))
  mesh = mesh_lib.make_mesh(mesh_cfg)
  assert dict(mesh.shape) == {'data': 4, 'fsdp': 1, 'context': 1, 'tensor': 2}
  assert mesh.axis_types == (jax.sharding.AxisType.Auto,) * 4
  ids = np.vectorize(lambda d: d.id)(mesh.devices)
  # Along 'data', index i·2 + j is ICI position j in slice i (slice 0: devices 0-3).
  np.testing.assert_array_equal(ids.reshape(4, 2), [[0, 1], [2, 3], [4, 5], [6, 7]])
  fsdp_across = mesh_lib.make_mesh({'data': 2, 'fsdp': 2, 'dcn': {'fsdp': 2}})
  assert dict(fsdp_across.shape) == {'data': 2, 'fsdp': 4, 'context': 1, 'tensor': 1}
  slice_of = np.vectorize(lambda d: d.id // 4)(fsdp_across.devices).reshape(2, 4)
  np.testing.assert_array_equal(slice_of, [[0, 0, 1, 1], [0, 0, 1, 1]])


class FakeSliceDevice:
  """What create_hybrid_device_mesh reads from a TPU device."""

  def __init__(self, id_, slice_index):
    self.id, self.slice_index = id_, slice_index
    self.platform, self.device_kind, self.process_index = 'cpu', 'fake', 0

  def __repr__(self):
    return f'FakeSliceDevice({self.id}, slice {self.slice_index})'


def test_devices_with_slices_go_through_create_hybrid_device_mesh():
  devices = [FakeSliceDevice(i, i // 4) for i in range(8)]
  mesh_cfg = {'data': 2, 'tensor': -1, 'dcn': {'data': -1}}  # -1: every slice
  array = mesh_lib.device_array(mesh_cfg, devices)
  assert array.shape == (4, 1, 1, 2)
  emulated = mesh_lib.device_array({**mesh_cfg, 'dcn': {'data': 2}}, list(range(8)))
  np.testing.assert_array_equal(np.vectorize(lambda d: d.id)(array), emulated)
  with pytest.raises(ValueError, match=r'mesh.dcn data=4, fsdp=1, context=1, tensor=1 uses 4 '
                     r"slices but there are 2 \(the devices' slice_index\): make the product 2"):
    mesh_lib.device_array({'data': -1, 'dcn': {'data': 4}}, devices)
  with pytest.raises(ValueError, match=r'mesh data=8, fsdp=1, context=1, tensor=1 uses 8 devices '
                     r'but there are 4 per slice \(8 devices in 2 slices\): make the product 4'):
    mesh_lib.device_array({'data': 8, 'dcn': {'data': 2}}, devices)


@pytest.mark.parametrize('mesh_cfg, message', [
    ({'data': -1, 'dcn': {'data': 3}}, 'mesh.dcn data=3, fsdp=1, context=1, tensor=1 asks for 3 '
     'slices, but 8 devices do not split into 3 equal slices: use dcn sizes whose product '
     'divides 8'),
    ({'data': 2, 'tensor': 4, 'dcn': {'data': 2}}, r'mesh data=2, fsdp=1, context=1, tensor=4 '
     r'uses 8 devices but there are 4 per slice \(8 devices in 2 slices\): make the product 4'),
    ({'data': -1, 'tensor': 3, 'dcn': {'fsdp': 2}}, r'needs a multiple of 3 devices but there '
     r'are 4 per slice \(8 devices in 2 slices\)'),
    ({'data': -1, 'dcn': {'data': 0}}, "mesh.dcn axis 'data' has size 0: use a positive size, or "
     '-1 for the rest of the slices'),
    ({'data': -1, 'dcn': {'pipeline': 2}}, r"mesh.dcn axes \['pipeline'\] are unknown"),
    ({'data': -1, 'dcn': 2}, 'mesh.dcn is 2: give it per-axis sizes across slices'),
])
def test_dcn_mesh_errors(mesh_cfg, message):
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
                                          RULES)


def test_batch_sharding_and_divisibility():
  mesh = mesh_lib.make_mesh({'data': 2, 'fsdp': 2, 'tensor': 2})
  batch_sharding = sharding.batch_sharding(mesh, RULES)
  x = np.arange(24, dtype=np.float32).reshape(8, 3)
  batch = sharding.shard_batch({'x': x}, batch_sharding)
  assert batch['x'].sharding == batch_sharding
  assert {shard.data.shape for shard in batch['x'].addressable_shards} == {(2, 3)}
  np.testing.assert_array_equal(np.asarray(batch['x']), x)
  sharding.check_batch_divisible(12, mesh, RULES)
  message = 'global batch 6 is not divisible by data×fsdp = 4 devices: use a multiple of 4'
  with pytest.raises(ValueError, match=message):
    sharding.check_batch_divisible(6, mesh, RULES)
  with pytest.raises(ValueError, match=message):
    sharding.shard_batch({'x': x[:6]}, batch_sharding)
  # The batch's mesh axes come from the rules: with 'batch' on 'data' alone, 6 splits 2 ways.
  data_only = [('batch', 'data'), *[rule for rule in RULES if rule[0] != 'batch']]
  assert sharding.batch_sharding(mesh, data_only).spec == jax.sharding.PartitionSpec(('data',))
  sharding.check_batch_divisible(6, mesh, data_only)


def test_constrain_outside_a_mesh_is_a_no_op():
  x = jnp.arange(6.0).reshape(2, 3)
  np.testing.assert_array_equal(sharding.constrain(x, ('batch', 'embed')), x)
