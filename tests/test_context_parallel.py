"""Context-parallel (ring) attention: equal to full attention with packing masks, values and
gradients; the DiT on a context mesh equals the DiT on one device; clear errors at trace time."""
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import world as world_config
from test_dit import inputs, packed_inputs, random_params, tiny
from videogen.models import attention
from videogen.models import dit
from videogen.parallel import context_attention
from videogen.parallel import mesh as mesh_lib
from videogen.parallel import sharding
from videogen.runtime import dit_run

RULES = sharding.rules_from_config(world_config.get_config())  # the DiT run's rules

# Two rows of 32 tokens, 8 per device at context=4: segments cross the blocks' borders, the
# first row ends in padding (id 0, attending to padding) and the second is one segment.
SEGMENT_IDS = np.array([[1] * 5 + [2] * 14 + [3] * 9 + [0] * 4, [1] * 32], np.int32)


def qkv(batch=2, length=32, heads=4, head_dim=8):
  rng = np.random.default_rng(0)
  return tuple(jnp.asarray(rng.standard_normal((batch, length, heads, head_dim)), jnp.float32)
               for _ in range(3))


def loss_and_grads(attend, q, k, v):
  """A scalar of the attention output and its gradients with respect to q, k and v."""
  loss = lambda q, k, v: jnp.sum(jnp.sin(attend(q, k, v)))
  return jax.value_and_grad(loss, argnums=(0, 1, 2))(q, k, v)


@pytest.mark.parametrize('mesh_cfg', [{'context': 4, 'fsdp': 2},
                                      {'context': 2, 'fsdp': 2, 'tensor': 2}])
@pytest.mark.parametrize('segment_ids', [SEGMENT_IDS, None], ids=['packed', 'whole'])
def test_ring_attention_equals_full_attention(mesh_cfg, segment_ids):
  q, k, v = qkv()
  mask = None if segment_ids is None else attention.segment_mask(segment_ids, segment_ids)
  full = lambda q, k, v: attention.dot_product_attention(q, k, v, mask=mask)
  ring = lambda q, k, v: context_attention.ring_attention(q, k, v, segment_ids)
  want_out, (want_loss, want_grads) = full(q, k, v), loss_and_grads(full, q, k, v)
  with sharding.sharding_context(mesh_lib.make_mesh(mesh_cfg), RULES):
    assert context_attention.context_size() == mesh_cfg['context']  # the ring does run
    got_out, (got_loss, got_grads) = jax.jit(
        lambda *a: (ring(*a), loss_and_grads(ring, *a)))(q, k, v)
  np.testing.assert_allclose(got_out, want_out, atol=2e-6, rtol=0)
  # A sum of 2,048 float32 terms (~55): the order of summation alone moves it by ~2e-6.
  np.testing.assert_allclose(got_loss, want_loss, rtol=5e-6)
  for got, want in zip(got_grads, want_grads):
    np.testing.assert_allclose(got, want, atol=2e-6, rtol=0)


def on_mesh(fn, mesh_cfg):
  """fn jitted and run under a mesh with the default rules; also its lowered text."""
  mesh = mesh_lib.make_mesh(mesh_cfg)

  def run(*args):
    with sharding.sharding_context(mesh, RULES):
      lowered = jax.jit(fn).lower(*args)
      return lowered.compile()(*args), lowered.as_text()
  return run


def test_dit_on_a_context_mesh_equals_one_device():
  config = tiny()  # patch (1, 2, 2): clips of 12 tokens and packed rows of 40, 3 and 10 a device
  variables = random_params(config)
  model = dit.DiT(config)
  for method, args in (('__call__', inputs()), ('packed', packed_inputs()[0])):
    apply = functools.partial(model.apply, method=method)
    want = jax.jit(apply)(variables, *args)
    got, lowered = on_mesh(apply, {'context': 4, 'fsdp': 2})(variables, *args)
    assert 'collective_permute' in lowered, 'the ring did not run'
    assert np.abs(want).max() > 1e-2
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=0, err_msg=method)  # |want| ~ 8


def test_shapes_that_the_mesh_does_not_divide_fail_while_tracing():
  q, k, v = qkv(length=30)
  with sharding.sharding_context(mesh_lib.make_mesh({'context': 4, 'fsdp': 2}), RULES):
    with pytest.raises(ValueError, match='token row of 30 tokens is not divisible by context=4'):
      jax.eval_shape(context_attention.ring_attention, q, k, v)
  # Without rules in scope no logical name maps to a mesh axis: the row stays whole.
  with jax.set_mesh(mesh_lib.make_mesh({'context': 4, 'fsdp': 2})):
    assert context_attention.context_size() == 1
  key, args = jax.random.key(0), inputs()  # clips of 12 tokens
  with sharding.sharding_context(mesh_lib.make_mesh({'context': 8}), RULES):
    with pytest.raises(ValueError, match='token row of 12 tokens is not divisible by context=8'):
      jax.eval_shape(dit.DiT(tiny()).init, key, *args)
  with sharding.sharding_context(mesh_lib.make_mesh({'data': 4, 'tensor': 2}),
                                 RULES):
    with pytest.raises(ValueError, match='3 attention heads are not divisible by tensor=2'):
      jax.eval_shape(dit.DiT(tiny(dim=48, heads=3)).init, key, *args)


@pytest.mark.parametrize('change, mesh, message', [
    ({'data.row_length': 18}, {'context': 4, 'fsdp': 2},
     'token row of 18 tokens is not divisible by context=4'),
    ({'world.height': 24}, {'context': 8},  # clips of 2×3×2 = 12 tokens
     'token row of 12 tokens is not divisible by context=8'),
    ({'model.variant': 'XS/2'}, {'data': 2, 'tensor': 4},
     '6 attention heads are not divisible by tensor=4'),
])
def test_build_rejects_a_mesh_the_model_does_not_fit(change, mesh, message):
  config = world_config.get_config('runlocal=True')  # packed rows of 16, clips of 8 tokens
  for key, value in change.items():
    section, field = key.split('.')
    config[section][field] = value
  config.mesh = ml_collections.ConfigDict({'data': 1, 'fsdp': 1, 'context': 1, 'tensor': 1,
                                           **mesh})
  with pytest.raises(ValueError, match=message):
    dit_run.build(config)
