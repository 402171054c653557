"""One optimizer update as a pure function of (state, batch), and its sharded, donated jit."""
from collections.abc import Callable, Mapping, Sequence
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec
import optax

from videogen.parallel import sharding
from videogen.train import metrics as metrics_lib
from videogen.runtime.state import TrainState

# loss_fn(params, batch, rng) -> (scalar loss, dict of scalar aux metrics)
LossFn = Callable[[Any, Any, jax.Array], tuple[jax.Array, Mapping[str, jax.Array]]]
# train_step(state, batch) -> (state, metrics); a step on frozen weights (jit_train_step's
# `frozen`) takes them as a third argument.
StepFn = Callable[..., tuple[TrainState, dict[str, jax.Array]]]


def split_micro_batches(batch: Any, grad_accum_steps: int) -> Any:
  """Every leaf [B, ...] → [k, B/k, ...] (k = grad_accum_steps); micro-batch i holds examples
  i, i + k, i + 2k, ...

  Strided, not consecutive: a batch sharded over data×fsdp in consecutive blocks keeps each
  micro-batch spread over every device, so the split moves no data. Packed rows (a dict with
  'patches', 'segment_ids', ...) split the same way, each leaf along axis 0.
  """
  k = grad_accum_steps

  def split(x):
    micro_bk = x.reshape(x.shape[0] // k, k, *x.shape[1:])
    return sharding.constrain(jnp.swapaxes(micro_bk, 0, 1), (None, 'batch'))

  return jax.tree.map(split, batch)


def _batch_size(batch: Any) -> int:
  sizes = sorted({x.shape[0] for x in jax.tree.leaves(batch)})
  if len(sizes) != 1:
    raise ValueError(f'batch leaves have leading sizes {sizes}: every leaf must hold the same '
                     'examples along axis 0.')
  return sizes[0]


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation, *,
                    ema_decay: float, lr_schedule: optax.Schedule,
                    grad_accum_steps: int = 1) -> StepFn:
  """train_step(state, batch) -> (state, metrics): gradients, update, EMA, and their norms.

  The step's randomness is fold_in(state.rng, state.step), so a resumed run draws the same noise.
  ema_params ← d·ema_params + (1 − d)·params after every update, d = min(ema_decay,
  (1 + step) / (10 + step)).

  grad_accum_steps k > 1: the batch splits into k micro-batches (`split_micro_batches`), a
  `jax.lax.scan` sums their gradients in float32, and their mean makes one optimizer update;
  loss and aux metrics are micro-batch means too (a max in aux becomes a mean of maxima).
  Micro-batch i draws its randomness from fold_in(rng, i). "Equal to one step on the whole
  batch" (up to float rounding) then holds for a loss that is a mean over equally weighted
  examples and draws no randomness, or draws it per example keyed by the example. The objective
  (train/objective.py) draws noise, times, caption dropout and tasks for the whole
  (micro-)batch at once, so there the draws differ (same distribution), and its masked means
  (packed rows' real tokens, given frames left out) weight micro-batches equally. A batch that
  does not split into k micro-batches that each split over the batch's mesh axes fails while
  tracing, before compiling, naming the numbers. k = 1 is the plain step, unchanged.
  """
  if grad_accum_steps < 1:
    raise ValueError(f'grad_accum_steps is {grad_accum_steps}: use 1 (no accumulation) or more '
                     'micro-batches per update.')
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def accumulated_grads(params: Any, batch: Any, rng: jax.Array):
    """((loss, aux), grads) of the whole batch, as means over its micro-batches."""
    k = grad_accum_steps
    mesh = jax.sharding.get_abstract_mesh()
    ways = 1 if mesh.empty else sharding.batch_ways(mesh)  # the rules in scope (jit_train_step)
    sharding.check_micro_batches(_batch_size(batch), ways, k,
                                 'one device' if mesh.empty else sharding.batch_axes_name(mesh))
    micro_batches = split_micro_batches(batch, k)
    first = jax.tree.map(lambda x: x[0], micro_batches)
    shapes = jax.eval_shape(grad_fn, params, first, rng)
    zeros_f32 = lambda s: jnp.zeros(s.shape, jnp.promote_types(s.dtype, jnp.float32))

    def add_micro_batch(total, i_and_micro_batch):
      i, micro_batch = i_and_micro_batch
      micro_batch = jax.tree.map(lambda x: sharding.constrain(x, ('batch',)), micro_batch)
      out = grad_fn(params, micro_batch, jax.random.fold_in(rng, i))
      return jax.tree.map(lambda t, x: t + x.astype(t.dtype), total, out), None

    total, _ = jax.lax.scan(add_micro_batch, jax.tree.map(zeros_f32, shapes),
                            (jnp.arange(k), micro_batches))
    return jax.tree.map(lambda t, s: (t / k).astype(s.dtype), total, shapes)

  def train_step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, jax.Array]]:
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    if grad_accum_steps == 1:
      (loss, aux), grads = grad_fn(state.params, batch, rng)
    else:
      (loss, aux), grads = accumulated_grads(state.params, batch, rng)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # Warm-up (as TF's ExponentialMovingAverage with num_updates): the average forgets the
    # random init within a few hundred steps instead of ~1/(1 - ema_decay).
    decay = jnp.minimum(ema_decay, (1.0 + state.step) / (10.0 + state.step))
    ema_params = optax.incremental_update(params, state.ema_params, step_size=1.0 - decay)
    step_metrics = {
        'loss': loss,
        'grad_norm': metrics_lib.tree_norm(grads),
        'param_norm': metrics_lib.tree_norm(params),
        'update_norm': metrics_lib.tree_norm(updates),
        'learning_rate': lr_schedule(state.step),
    }
    clashes = sorted(set(aux) & set(step_metrics))
    if clashes:
      raise ValueError(f'loss_fn aux metrics {clashes} clash with the train step\'s own: '
                       'rename them.')
    state = state.replace(step=state.step + 1, params=params, ema_params=ema_params,
                          opt_state=opt_state)
    return state, {**step_metrics, **aux}

  return train_step


def jit_train_step(train_step: StepFn, state_shardings: Any, batch_sharding: NamedSharding,
                   mesh: jax.sharding.Mesh, *, rules: sharding.LogicalRules,
                   frozen: Any = None) -> StepFn:
  """jax.jit with explicit shardings, the state donated, traced under the mesh and rules.

  Metrics come back replicated, so every process can read them; the step's `lower(state, batch)`
  gives its jax Lowered. frozen: weights every step reads and none updates (a LoRA run's base
  params, jax.Arrays on the mesh), handed to train_step as its third argument on their own
  shardings, never donated; the step returned takes (state, batch) either way.
  """
  frozen_args = () if frozen is None else (frozen,)
  frozen_shardings = tuple(jax.tree.map(lambda x: x.sharding, a) for a in frozen_args)
  jitted = jax.jit(train_step, in_shardings=(state_shardings, batch_sharding, *frozen_shardings),
                   out_shardings=(state_shardings, NamedSharding(mesh, PartitionSpec())),
                   donate_argnums=0)

  def sharded_step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, jax.Array]]:
    with sharding.sharding_context(mesh, rules):
      return jitted(state, batch, *frozen_args)

  def lower(state: TrainState, batch: Any) -> jax.stages.Lowered:
    """The step lowered for these arguments (its compiled HLO and cost analysis:
    bench/step_profile.py); nothing is donated or run."""
    with sharding.sharding_context(mesh, rules):
      return jitted.lower(state, batch, *frozen_args)

  sharded_step.lower = lower
  return sharded_step


def check_finite(step_metrics: Mapping[str, Any], step: int) -> None:
  """Raises FloatingPointError when the loss or gradient norm is nan/inf; call before saving."""
  for name in ('loss', 'grad_norm'):
    value = float(step_metrics[name])
    if not math.isfinite(value):
      raise FloatingPointError(
          f'{name} is {value} at step {step}: lower the learning rate or grad_clip (or check the '
          'data) and resume; the last good checkpoint is kept.')


def skip_nonfinite(train_step: StepFn) -> StepFn:
  """train_step that drops an update whose loss or gradient norm is nan/inf: the state comes
  back as it went in (params, EMA, optimizer state, rng) but for step + 1, so the next step draws
  new noise and the data moves on. Metrics gain 'skipped' (1 when dropped, else 0); their loss
  is the bad step's own. The choice is made on the device, so no step waits for the host; the
  old state must then live until the new one is made, which can cost a second copy of it in
  device memory (why the loop uses this only when config.train.skip_nonfinite asks).
  """
  def step(state: TrainState, batch: Any, *frozen) -> tuple[TrainState, dict[str, jax.Array]]:
    new_state, step_metrics = train_step(state, batch, *frozen)
    finite = jnp.isfinite(step_metrics['loss']) & jnp.isfinite(step_metrics['grad_norm'])
    kept = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)
    return kept.replace(step=new_state.step), {**step_metrics,
                                               'skipped': (~finite).astype(jnp.int32)}

  return step


def check_skipped(skipped_steps: Sequence[int], limit: int) -> None:
  """Raises FloatingPointError once more than `limit` steps were dropped (`skip_nonfinite`),
  naming the one over the limit."""
  if len(skipped_steps) > limit:
    raise FloatingPointError(
        f'step {skipped_steps[limit]} had a nan/inf loss or gradient norm, one more than the '
        f'train.skip_nonfinite={limit} steps that may be skipped: lower the learning rate or '
        'grad_clip (or check the data) and resume; the last good checkpoint is kept.')
