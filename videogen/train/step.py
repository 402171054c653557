"""One optimizer update as a pure function of (state, batch), and its sharded, donated jit."""
from collections.abc import Callable, Mapping
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec
import optax

from videogen.parallel import sharding
from videogen.train import metrics as metrics_lib
from videogen.train.state import TrainState

# loss_fn(params, batch, rng) -> (scalar loss, dict of scalar aux metrics)
LossFn = Callable[[Any, Any, jax.Array], tuple[jax.Array, Mapping[str, jax.Array]]]
StepFn = Callable[[TrainState, Any], tuple[TrainState, dict[str, jax.Array]]]


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation, *,
                    ema_decay: float, lr_schedule: optax.Schedule) -> StepFn:
  """train_step(state, batch) -> (state, metrics): gradients, update, EMA, and their norms.

  The step's randomness is fold_in(state.rng, state.step), so a resumed run draws the same noise.
  ema_params ← d·ema_params + (1 − d)·params after every update, d = min(ema_decay,
  (1 + step) / (10 + step)).
  """

  def train_step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, jax.Array]]:
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, rng)
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
                   mesh: jax.sharding.Mesh, *, rules: sharding.LogicalRules) -> StepFn:
  """jax.jit with explicit shardings, the state donated, traced under the mesh and rules.

  Metrics come back replicated, so every process can read them.
  """
  jitted = jax.jit(train_step, in_shardings=(state_shardings, batch_sharding),
                   out_shardings=(state_shardings, NamedSharding(mesh, PartitionSpec())),
                   donate_argnums=0)

  def sharded_step(state: TrainState, batch: Any) -> tuple[TrainState, dict[str, jax.Array]]:
    with sharding.sharding_context(mesh, rules):
      return jitted(state, batch)

  return sharded_step


def check_finite(step_metrics: Mapping[str, Any], step: int) -> None:
  """Raises FloatingPointError when the loss or gradient norm is nan/inf; call before saving."""
  for name in ('loss', 'grad_norm'):
    value = float(step_metrics[name])
    if not math.isfinite(value):
      raise FloatingPointError(
          f'{name} is {value} at step {step}: lower the learning rate or grad_clip (or check the '
          'data) and resume; the last good checkpoint is kept.')
