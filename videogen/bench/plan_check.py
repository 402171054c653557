"""The planner (bench/planner.py) checked against the compiler: the real sharded train step,
AOT-compiled on the local devices (8 fake CPU devices in tests), its memory_analysis() beside
the plan's bytes per device.

On 8 CPU devices (tests/test_planner.py) state + batch per device equals the compiled argument
bytes exactly; the temporary-bytes estimate is within 0.8-1.6x of the compiled temp (remat
'none' low, 'dots' and 'full' high: XLA keeps more than the planner's list under 'none' and less
overhead than planned under remat), so treat it as a guide, not a bound.
"""
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec
import ml_collections

from videogen.bench import planner
from videogen.parallel import sharding
from videogen.runtime import dit_run
from videogen.train import objective


def compiled_memory(parts, batch_size: int) -> dict[str, float]:
  """memory_analysis() of the AOT-compiled sharded train step of `parts`
  (train/dit_run.build) on a batch of `batch_size` clips, per device; empty where the backend
  reports none. The jit mirrors train/step.jit_train_step (same shardings, donated state)."""
  cfg = parts.config
  train_step = objective.make_train_step(parts)
  batch_sharding = sharding.batch_sharding(parts.mesh, parts.rules)
  w, enc = cfg.world, parts.encoder
  struct = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=batch_sharding)
  batch = {'video': struct((batch_size, w.num_frames, w.height, w.width, 3), jnp.float32),
           'text': struct((batch_size, enc.max_length, enc.dim), jnp.float32),
           'text_mask': struct((batch_size, enc.max_length), jnp.bool_)}
  jitted = jax.jit(train_step, in_shardings=(parts.state_shardings, batch_sharding),
                   out_shardings=(parts.state_shardings,
                                  NamedSharding(parts.mesh, PartitionSpec())),
                   donate_argnums=0)
  with sharding.sharding_context(parts.mesh, parts.rules):
    stats = jitted.lower(parts.abstract_state, batch).compile().memory_analysis()
  if stats is None:
    return {}
  return {name: float(getattr(stats, f'{name}_size_in_bytes'))
          for name in ('argument', 'output', 'alias', 'temp')}


def config_workload(parts, batch_size: int, attention: str = 'xla') -> planner.Workload:
  """The Workload of a built run (train/dit_run.DitRun) on pixels, as it trains."""
  w = parts.config.world
  return planner.Workload(model=parts.model.config, clip_thwc=(w.num_frames, w.height, w.width, 3),
                  text_length=parts.encoder.max_length, batch=batch_size, attention=attention)


def validate(config: ml_collections.ConfigDict, meshes: Sequence[str], batch_size: int,
             devices=None) -> list[dict]:
  """Planner vs compiler on the local devices (8 fake CPU devices in tests) for each mesh:
  argument bytes (state + batch) and temporary bytes, per device."""
  devices = jax.devices() if devices is None else devices
  local = planner.Slice('local', len(devices), 1.0, float('inf'), 'this machine')
  rows = []
  for mesh_text in meshes:
    config = ml_collections.ConfigDict(config.to_dict())
    config.mesh = ml_collections.ConfigDict(planner.parse_mesh(mesh_text))
    config.data.batch_size = batch_size
    parts = dit_run.build(config, devices=devices)
    predicted = planner.plan(config_workload(parts, batch_size), config.mesh.to_dict(), local,
                     rules=parts.rules, optimizer=parts.optimizer)
    compiled = compiled_memory(parts, batch_size)
    row = {'variant': config.model.variant, 'mesh': predicted['mesh'], 'batch': batch_size,
           'remat': config.model.remat,
           'planned_argument_MB': predicted['argument_bytes'] / 1e6,
           'compiled_argument_MB': compiled.get('argument', float('nan')) / 1e6,
           'planned_temp_MB': predicted['temp_bytes'] / 1e6,
           'compiled_temp_MB': compiled.get('temp', float('nan')) / 1e6,
           'compiled_alias_MB': compiled.get('alias', float('nan')) / 1e6}
    row['argument_error'] = row['planned_argument_MB'] / row['compiled_argument_MB'] - 1
    row['temp_ratio'] = row['planned_temp_MB'] / row['compiled_temp_MB']
    rows.append(row)
  return rows
