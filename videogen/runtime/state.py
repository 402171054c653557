"""The train state (step, params, EMA params, optimizer state, rng) and its optimizer."""
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to continue exactly; a plain pytree that Orbax saves as is.

  rng holds raw uint32 key data (`jax.random.key_data`), not a typed key, so it saves like any
  other array; `jax.random.wrap_key_data(state.rng)` turns it back into a key.
  """
  step: jax.Array  # int32 scalar: optimizer updates applied so far
  params: Any
  ema_params: Any
  opt_state: optax.OptState
  rng: jax.Array


def learning_rate_schedule(optim_cfg: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warmup from 0 to learning_rate, cosine decay to end_lr_factor·learning_rate."""
  if optim_cfg.total_steps <= optim_cfg.warmup_steps:
    raise ValueError(f'total_steps {optim_cfg.total_steps} must exceed warmup_steps '
                     f'{optim_cfg.warmup_steps}: raise total_steps or shorten the warmup.')
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=optim_cfg.learning_rate, warmup_steps=optim_cfg.warmup_steps,
      decay_steps=optim_cfg.total_steps,
      end_value=optim_cfg.learning_rate * optim_cfg.end_lr_factor)


def make_optimizer(optim_cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Global-norm clipping, then AdamW on the schedule; weight decay skips biases and norm scales."""
  return optax.chain(
      optax.clip_by_global_norm(optim_cfg.grad_clip),
      optax.adamw(learning_rate_schedule(optim_cfg), b1=optim_cfg.b1, b2=optim_cfg.b2,
                  weight_decay=optim_cfg.weight_decay,
                  mask=lambda params: jax.tree.map(lambda p: p.ndim > 1, params)))


def init_train_state(model_init_fn: Callable[[jax.Array], Any],
                     optimizer: optax.GradientTransformation, rng: jax.Array) -> TrainState:
  """A fresh state at step 0; model_init_fn(rng) returns params, e.g. `model.init(...)['params']`.

  Params (and the optimizer moments and EMA copied from them) keep Linen's logical-axis boxes so
  `parallel.sharding.abstract_state_and_shardings` can read them; `create_sharded_state` (or
  `nn.unbox`) gives the plain arrays that the train step and checkpoints use.
  """
  if not jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
    rng = jax.random.wrap_key_data(rng)
  init_rng, train_rng = jax.random.split(rng)
  params = model_init_fn(init_rng)
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      ema_params=jax.tree.map(jnp.copy, params),
      opt_state=optimizer.init(params),
      rng=jax.random.key_data(train_rng))


def grad_accum_steps(optim_cfg: ml_collections.ConfigDict) -> int:
  """optim.grad_accum_steps (micro-batches per update; see train/step.py), 1 for configs from
  before it existed; fails on a count below 1."""
  steps = int(optim_cfg.get('grad_accum_steps', 1))
  if steps < 1:
    raise ValueError(f'optim.grad_accum_steps is {steps}: use 1 (no accumulation) or more '
                     'micro-batches per update.')
  return steps


def train_steps(train_cfg: ml_collections.ConfigDict) -> int:
  """train.steps, the step training stops at; fails on a count below 1."""
  steps = train_cfg.steps
  if not isinstance(steps, int) or steps < 1:
    raise ValueError(f'train.steps is {steps!r}: training stops at that step, so use a whole '
                     'number of at least 1, e.g. --config.train.steps=6000.')
  return steps
