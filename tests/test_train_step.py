"""The jitted train step: same numbers on any mesh, learning, EMA, schedule, non-finite checks,
gradient accumulation, bf16 compute over fp32 weights, remat and scan giving the same numbers.

Also home of the tiny MLP run that test_mesh.py and test_checkpoint.py reuse. Legend: b batch,
e embed (features in and out), m mlp (hidden).
"""
import functools
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np
import pytest

from configs import world as world_config
from videogen.parallel import mesh as mesh_lib
from videogen.parallel import sharding
from videogen.runtime import state as state_lib
from videogen.train import step as step_lib

RULES = sharding.rules_from_config(world_config.get_config())  # the DiT run's rules

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


def loss_fn(params, batch, rng, noise=0.01):
  """Mean squared error on slightly noised inputs (so the step's rng matters)."""
  x_be = batch['x'] + noise * jax.random.normal(rng, batch['x'].shape)
  error_be = TinyMLP().apply({'params': params}, x_be) - batch['y']
  return jnp.mean(error_be**2), {'max_error': jnp.max(jnp.abs(error_be))}


def build_run(mesh, *, ema_decay=0.9, seed=0, grad_accum_steps=1, loss=loss_fn):
  """Abstract state, shardings, a fresh sharded state and the jitted step for `mesh`."""
  optimizer = state_lib.make_optimizer(OPTIM_CFG)
  model_init = lambda rng: TinyMLP().init(rng, jnp.zeros((BATCH, EMBED)))['params']
  init_fn = functools.partial(state_lib.init_train_state, model_init, optimizer,
                              jax.random.key(seed))
  abstract_state, shardings = sharding.abstract_state_and_shardings(
      init_fn, mesh, RULES)
  train_step = step_lib.make_train_step(
      loss, optimizer, ema_decay=ema_decay,
      lr_schedule=state_lib.learning_rate_schedule(OPTIM_CFG), grad_accum_steps=grad_accum_steps)
  batch_sharding = sharding.batch_sharding(mesh, RULES)
  return types.SimpleNamespace(
      abstract_state=abstract_state, shardings=shardings, batch_sharding=batch_sharding,
      state=sharding.create_sharded_state(init_fn, shardings, mesh, RULES),
      step=step_lib.jit_train_step(train_step, shardings, batch_sharding, mesh,
                                   rules=RULES))


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


# ---------------------------------------------------------------- gradient accumulation

def exact_loss_fn(params, batch, rng):
  """loss_fn without input noise: a mean over examples with no randomness, which an
  accumulated step must reproduce exactly (see step.make_train_step)."""
  return loss_fn(params, batch, rng, noise=0.0)


def test_accumulated_step_equals_whole_batch_step():
  mesh = mesh_lib.make_mesh({'data': 2, 'fsdp': 2, 'tensor': 2})  # micro-batches of 4 over 4
  whole = build_run(mesh, loss=exact_loss_fn)
  accumulated = build_run(mesh, loss=exact_loss_fn, grad_accum_steps=2)
  for i in range(2):
    batch = sharding.shard_batch(numpy_batch(i * BATCH), whole.batch_sharding)
    whole.state, whole_metrics = whole.step(whole.state, batch)
    accumulated.state, metrics = accumulated.step(accumulated.state, batch)
    for name in ('loss', 'grad_norm', 'update_norm', 'param_norm'):
      np.testing.assert_allclose(metrics[name], whole_metrics[name], rtol=1e-6, err_msg=name)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               jax.device_get(accumulated.state.params), jax.device_get(whole.state.params))
  assert accumulated.state.params['Dense_0']['kernel'].sharding.spec == P('fsdp', 'tensor')


def test_micro_batches_split_every_leaf_strided():
  packed = {'patches': np.arange(8 * 4 * 3, dtype=np.float32).reshape(8, 4, 3),
            'segment_ids': np.arange(8 * 4, dtype=np.int32).reshape(8, 4),
            'shapes': np.arange(8 * 2 * 3, dtype=np.int32).reshape(8, 2, 3)}
  micro = step_lib.split_micro_batches(packed, 4)
  for key, x in packed.items():
    assert micro[key].shape == (4, 2, *x.shape[1:]) and micro[key].dtype == x.dtype
    for i in range(4):
      np.testing.assert_array_equal(micro[key][i], x[i::4])


@pytest.mark.parametrize('grad_accum_steps, message', [
    (3, 'global batch 8 does not split into optim.grad_accum_steps = 3 micro-batches: use a '
        r'multiple of 3 \(a multiple of 12 also fits data×fsdp = 4\)'),
    (4, r'micro-batch 2 \(global batch 8 / 4 grad_accum_steps\) is not divisible by data×fsdp = '
        r'4 devices: use a global batch that is a multiple of 16 \(= 4 × 4\)'),
])
def test_micro_batches_that_the_mesh_does_not_divide_fail_before_compiling(grad_accum_steps,
                                                                            message):
  mesh = mesh_lib.make_mesh({'data': 2, 'fsdp': 2, 'tensor': 2})
  with pytest.raises(ValueError, match=message):
    sharding.check_batch_divisible(BATCH, mesh, RULES, grad_accum_steps)
  run = build_run(mesh, grad_accum_steps=grad_accum_steps)
  with pytest.raises(ValueError, match=message):  # raised while tracing, before XLA compiles
    run.step(run.state, sharding.shard_batch(numpy_batch(0), run.batch_sharding))
  with pytest.raises(ValueError, match='grad_accum_steps is 0: use 1'):
    state_lib.grad_accum_steps(ml_collections.ConfigDict(dict(grad_accum_steps=0)))
  assert state_lib.grad_accum_steps(OPTIM_CFG) == 1  # configs from before the field existed


# ---------------------------------------------------------------- the DiT's efficiency knobs

def tiny_dit(**overrides):
  """The runlocal config's DiT (T/2, patch (1, 8, 8)) on 3 channels with 16-wide text."""
  from videogen.models import dit  # pylint: disable=g-import-not-at-top
  return dit.DiT(dit.dit_config('T/2', in_channels=3, text_dim=16, patch_size=(1, 8, 8),
                                **overrides))


def tiny_dit_inputs():
  """The runlocal config's clips (2 frames of 16×16) and a short caption."""
  rng = np.random.default_rng(0)
  return (rng.normal(size=(2, 2, 16, 16, 3)).astype(np.float32), np.array([0.3, 0.8], np.float32),
          rng.normal(size=(2, 8, 16)).astype(np.float32), np.arange(8)[None].repeat(2, 0) < 6)


@functools.cache
def tiny_dit_params():
  """Scanned-layout parameters, perturbed so that no gradient is zero (the DiT's gates and head
  start at zero)."""
  def init():
    params = nn.unbox(tiny_dit().init(jax.random.key(0), *tiny_dit_inputs())['params'])
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    return jax.tree.unflatten(treedef, [p + 0.05 * jax.random.normal(k, p.shape)
                                        for p, k in zip(leaves, keys)])
  return jax.jit(init)()


@functools.cache
def tiny_dit_loss_and_grads(remat, scan_layers):
  """MSE of the DiT's output and its gradients (in the scanned layout) for these knobs."""
  model = tiny_dit(remat=remat, scan_layers=scan_layers)
  depth, params = model.config.depth, tiny_dit_params()
  if not scan_layers:  # blocks [depth, ...] -> blocks_0 ... blocks_{depth - 1}
    params = {k: v for k, v in params.items() if k != 'blocks'}
    params.update({f'blocks_{i}': jax.tree.map(lambda p, i=i: p[i], tiny_dit_params()['blocks'])
                   for i in range(depth)})
  x, t, txt, mask = tiny_dit_inputs()
  loss = lambda p: jnp.mean((model.apply({'params': p}, x, t, txt, mask) - x)**2)
  value, grads = jax.jit(jax.value_and_grad(loss))(params)
  if not scan_layers:
    grads['blocks'] = jax.tree.map(lambda *g: jnp.stack(g),
                                   *(grads.pop(f'blocks_{i}') for i in range(depth)))
  return float(value), grads


@pytest.mark.parametrize('remat, scan_layers', [('dots', True), ('full', False)])
def test_remat_and_scan_give_the_same_loss_and_gradients(remat, scan_layers):
  """Against remat='none' with scan_layers=True (the default): with it, every remat policy and
  both layer layouts are covered, at one compile each."""
  reference_loss, reference_grads = tiny_dit_loss_and_grads('none', True)
  loss, grads = tiny_dit_loss_and_grads(remat, scan_layers)
  assert loss == pytest.approx(reference_loss, rel=1e-6)
  jax.tree.map(lambda g, r: np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-6),
               grads, reference_grads)


def test_bf16_compute_trains_fp32_weights_on_the_tiny_config():
  """One step of the runlocal config's model and objective with bf16 matmuls over float32
  weights, accumulating over 2 micro-batches (each draws its own noise and tasks)."""
  from configs import world  # pylint: disable=g-import-not-at-top
  from videogen.runtime import dit_run  # pylint: disable=g-import-not-at-top
  from videogen.train import objective  # pylint: disable=g-import-not-at-top
  config = world.get_config('runlocal=True')
  config.model.update(dtype='bfloat16', param_dtype='float32')
  config.optim.grad_accum_steps = 2
  parts = dit_run.build(config, devices=jax.devices()[:1])
  train_step = step_lib.make_train_step(
      objective.make_loss_fn(parts), parts.optimizer, ema_decay=config.optim.ema_decay,
      lr_schedule=parts.lr_schedule,
      grad_accum_steps=state_lib.grad_accum_steps(config.optim))
  rng = np.random.default_rng(0)
  batch = {'video': rng.uniform(-1, 1, (2, *parts.shape)).astype(np.float32),
           'text': rng.normal(size=(2, parts.encoder.max_length, parts.encoder.dim)).astype(
               np.float32),
           'text_mask': np.arange(parts.encoder.max_length)[None].repeat(2, 0) < 5}
  state, metrics = jax.jit(train_step)(jax.jit(lambda: nn.unbox(parts.init_fn()))(), batch)
  step_lib.check_finite(metrics, 0)
  assert float(metrics['grad_norm']) > 0 and int(state.step) == 1
  dtypes = {leaf.dtype for leaf in jax.tree.leaves((state.params, state.ema_params))}
  assert dtypes == {jnp.dtype(jnp.float32)}
