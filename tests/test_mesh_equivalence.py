"""The tiny world run trains to the same losses on every mesh layout of 8 devices as on 1.

3 train steps of the runlocal config (its packed rows of several clips) from the same state on
the same batches: data=8, fsdp=8, data=2×fsdp=2×tensor=2 and context=4×fsdp=2 (ring attention
within segments) agree with one device within 1e-5 relative (float32). Each case compiles one
train step (~15 s on 2 busy cores), so clips of one size (the 'fixed' layout, DiT.__call__) are
left to tests/test_context_parallel.py's forward check.
"""
import functools

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import pytest

from configs import world as world_config
from videogen.data import packing
from videogen.parallel import sharding
from videogen.runtime import dit_run
from videogen.train import objective
from videogen.train import step as step_lib

pytestmark = pytest.mark.integration  # trains on several meshes end to end

STEPS = 3
LAYOUTS = ({'data': 8}, {'fsdp': 8}, {'data': 2, 'fsdp': 2, 'tensor': 2},
           {'context': 4, 'fsdp': 2})
# Rows of 16 tokens (patch (1, 8, 8)) from clips of 8, 2, 6, 4 and 12 tokens: segments straddle
# the 4-token blocks of context=4, and three of the four kinds of row end in padding.
ROW_SHAPES = (((2, 16, 16), (1, 8, 16), (1, 16, 24)), ((1, 24, 16), (2, 8, 16), (1, 16, 16)),
              ((2, 16, 24),), ((1, 8, 16),) * 4)


def tiny_config(**mesh) -> ml_collections.ConfigDict:
  """runlocal (packed rows of 16 tokens, batch 8) on `mesh`; no frame conditioning, which only
  adds compile time here."""
  config = world_config.get_config('runlocal=True')
  config.conditioning.enabled = False
  config.mesh = ml_collections.ConfigDict({'data': 1, 'fsdp': 1, 'context': 1, 'tensor': 1,
                                           **mesh})
  return config


def host_batches(parts: dit_run.DitRun) -> list[dict]:
  """STEPS model batches of packed rows (dit_run.encode_batch's), the same for every mesh."""
  rng = np.random.default_rng(0)
  d, batches = parts.config.data, []
  for step in range(STEPS):
    rows = [packing.pack_row(
        [{'video': rng.uniform(-1, 1, (*shape, 3)).astype(np.float32),
          'caption': f'a red circle moves {step} {row} {i}'}
         for i, shape in enumerate(ROW_SHAPES[row % len(ROW_SHAPES)])],
        d.row_length, parts.config.model.patch_size, d.max_segments)
            for row in range(d.batch_size)]
    batches.append(dit_run.encode_batch(
        parts, {key: np.stack([row[key] for row in rows]) for key in rows[0]}))
  return batches


def train_losses(parts: dit_run.DitRun, state, batches) -> np.ndarray:
  """Losses of STEPS steps from host `state` through step.jit_train_step."""
  train_step = step_lib.make_train_step(
      objective.make_loss_fn(parts), parts.optimizer, ema_decay=parts.config.optim.ema_decay,
      lr_schedule=parts.lr_schedule)
  batch_sharding = sharding.batch_sharding(parts.mesh, parts.rules)
  jitted = step_lib.jit_train_step(train_step, parts.state_shardings, batch_sharding, parts.mesh,
                                   rules=parts.rules)
  state, losses = jax.device_put(state, parts.state_shardings), []
  for batch in batches:
    state, metrics = jitted(state, sharding.shard_batch(batch, batch_sharding))
    losses.append(float(metrics['loss']))
  return np.array(losses)


@functools.cache
def reference():
  """(host batches, host initial state, 1-device losses), shared by the cases."""
  parts = dit_run.build(tiny_config(), devices=jax.devices()[:1])
  with sharding.sharding_context(parts.mesh, parts.rules):
    state = jax.device_get(jax.jit(lambda: nn.unbox(parts.init_fn()))())
  batches = host_batches(parts)
  losses = train_losses(parts, state, batches)
  assert np.isfinite(losses).all() and len(set(losses.tolist())) == STEPS
  return batches, state, losses


@pytest.mark.parametrize('mesh', LAYOUTS, ids=lambda m: '×'.join(f'{k}={v}' for k, v in m.items()))
def test_same_losses_as_one_device(mesh):
  batches, state, single = reference()
  losses = train_losses(dit_run.build(tiny_config(**mesh)), state, batches)
  np.testing.assert_allclose(losses, single, rtol=1e-5, err_msg=str(mesh))
