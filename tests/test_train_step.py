"""The jitted train step: same numbers on any mesh, learning, EMA, schedule, non-finite checks.

Also home of the tiny MLP run that test_mesh.py and test_checkpoint.py reuse. Legend: b batch,
e embed (features in and out), m mlp (hidden).
"""
import functools
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from videogen.parallel import mesh as mesh_lib
from videogen.parallel import sharding
from videogen.train import state as state_lib
from videogen.train import step as step_lib

EMBED, HIDDEN, BATCH = 16, 32, 8
TARGET_EM = np.random.default_rng(0).normal(size=(EMBED, EMBED)).astype(np.float32) / 4
OPTIM_CFG = ml_collections.ConfigDict(dict(
    learning_rate=3e-2, warmup_steps=2, total_steps=40, end_lr_factor=0.1, weight_decay=1e-4,
    b1=0.9, b2=0.99, grad_clip=1.0))


class TinyMLP(nn.Module):
  """Two Dense layers whose parameters name their logical axes, activations constrained."""

  @nn.compact
  def __call__(self, x_be):
    def dense(features, names):
      return nn.Dense(
          features,
          kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), names),
          bias_init=nn.with_logical_partitioning(nn.initializers.zeros, names[1:]))
    h_bm = sharding.constrain(nn.gelu(dense(HIDDEN, ('embed', 'mlp'))(x_be)), ('batch', 'mlp'))
    return sharding.constrain(dense(EMBED, ('mlp', 'embed'))(h_bm), ('batch', 'embed'))


def make_example(index):
  """One regression example: y = tanh(x·A), x drawn from the example's index."""
  x_e = np.random.default_rng(int(index)).normal(size=EMBED).astype(np.float32)
  return {'x': x_e, 'y': np.tanh(x_e @ TARGET_EM)}


def loss_fn(params, batch, rng):
  """Mean squared error on slightly noised inputs (so the step's rng matters)."""
  x_be = batch['x'] + 0.01 * jax.random.normal(rng, batch['x'].shape)
  error_be = TinyMLP().apply({'params': params}, x_be) - batch['y']
  return jnp.mean(error_be**2), {'max_error': jnp.max(jnp.abs(error_be))}


def build_run(mesh, *, ema_decay=0.9, seed=0):
  """Abstract state, shardings, a fresh sharded state and the jitted step for `mesh`."""
  optimizer = state_lib.make_optimizer(OPTIM_CFG)
  model_init = lambda rng: TinyMLP().init(rng, jnp.zeros((BATCH, EMBED)))['params']
  init_fn = functools.partial(state_lib.init_train_state, model_init, optimizer,
                              jax.random.key(seed))
  abstract_state, shardings = sharding.abstract_state_and_shardings(
      init_fn, mesh, sharding.DEFAULT_RULES)
  train_step = step_lib.make_train_step(
      loss_fn, optimizer, ema_decay=ema_decay,
      lr_schedule=state_lib.learning_rate_schedule(OPTIM_CFG))
  batch_sharding = sharding.batch_sharding(mesh)
  return types.SimpleNamespace(
      abstract_state=abstract_state, shardings=shardings, batch_sharding=batch_sharding,
      state=sharding.create_sharded_state(init_fn, shardings, mesh, sharding.DEFAULT_RULES),
      step=step_lib.jit_train_step(train_step, shardings, batch_sharding, mesh,
                                   rules=sharding.DEFAULT_RULES))


def numpy_batch(first_index):
  examples = [make_example(i) for i in range(first_index, first_index + BATCH)]
  return {key: np.stack([e[key] for e in examples]) for key in examples[0]}


def run_steps(run, num_steps):
  losses = []
  for i in range(num_steps):
    run.state, metrics = run.step(run.state, sharding.shard_batch(numpy_batch(i * BATCH),
                                                                  run.batch_sharding))
    step_lib.check_finite(metrics, i)
    losses.append(float(metrics['loss']))
  return losses


def test_same_losses_on_every_mesh():
  single = run_steps(build_run(mesh_lib.make_mesh({}, jax.devices()[:1])), 3)
  for mesh_cfg in ({'data': 8}, {'fsdp': 8}, {'data': 2, 'fsdp': 2, 'tensor': 2}):
    losses = run_steps(build_run(mesh_lib.make_mesh(mesh_cfg)), 3)
    np.testing.assert_allclose(losses, single, rtol=1e-5, err_msg=str(mesh_cfg))


def test_loss_decreases_and_metrics_are_reported():
  run = build_run(mesh_lib.make_mesh({'data': -1, 'tensor': 2}))
  losses = run_steps(run, 20)
  assert np.mean(losses[-3:]) < 0.4 * np.mean(losses[:3]), losses
  run.state, metrics = run.step(run.state,
                                sharding.shard_batch(numpy_batch(0), run.batch_sharding))
  assert set(metrics) == {'loss', 'grad_norm', 'param_norm', 'update_norm', 'learning_rate',
                          'max_error'}
  schedule = state_lib.learning_rate_schedule(OPTIM_CFG)
  assert float(metrics['learning_rate']) == pytest.approx(float(schedule(20)))
  assert int(run.state.step) == 21


def test_ema_follows_params():
  run = build_run(mesh_lib.make_mesh({'fsdp': -1}), ema_decay=0.75)
  params_0 = jax.device_get(run.state.params)
  run_steps(run, 1)
  params_1, ema_1 = jax.device_get((run.state.params, run.state.ema_params))
  # Step 0's decay is warmed up to min(0.75, 1/10): the average forgets the init quickly.
  jax.tree.map(lambda e, p0, p1: np.testing.assert_allclose(e, 0.1 * p0 + 0.9 * p1, atol=1e-6),
               ema_1, params_0, params_1)
  run_steps(run, 5)
  params_6, ema_6 = jax.device_get((run.state.params, run.state.ema_params))
  distance = lambda a, b: float(np.sqrt(sum(np.sum((x - y)**2) for x, y in zip(
      jax.tree.leaves(a), jax.tree.leaves(b)))))
  assert 0 < distance(ema_6, params_6) < distance(params_0, params_6)


def test_check_finite_raises_on_nan():
  step_lib.check_finite({'loss': 1.0, 'grad_norm': 2.0}, 5)
  with pytest.raises(FloatingPointError, match='loss is nan at step 123: lower the learning rate'):
    step_lib.check_finite({'loss': jnp.float32(np.nan), 'grad_norm': 1.0}, 123)
  with pytest.raises(FloatingPointError, match='grad_norm is inf at step 7'):
    step_lib.check_finite({'loss': 1.0, 'grad_norm': np.inf}, 7)


def test_schedule_warms_up_then_decays_and_rejects_short_runs():
  schedule = state_lib.learning_rate_schedule(OPTIM_CFG)
  assert float(schedule(0)) == 0.0
  assert float(schedule(2)) == pytest.approx(3e-2)
  assert float(schedule(40)) == pytest.approx(3e-3)
  short = ml_collections.ConfigDict(dict(OPTIM_CFG, total_steps=2))
  with pytest.raises(ValueError, match='total_steps 2 must exceed warmup_steps 2'):
    state_lib.learning_rate_schedule(short)
