"""Scalar metrics to TensorBoard event files (workdir/tb) and workdir/metrics.jsonl."""
from collections.abc import Mapping
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import tensorboardX


def tree_norm(tree: Any) -> jax.Array:
  """Global L2 norm of all leaves, accumulated in float32."""
  leaves = jax.tree.leaves(tree)
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves))


class MetricWriter:
  """Writes scalars from process 0 only; every call flushes, so a killed run loses nothing.

  TensorBoard reads workdir/tb; metrics.jsonl holds one JSON object per call, {'step': ..., name:
  value, ...}, for scripts and notebooks that do not want TensorBoard.
  """

  def __init__(self, workdir: str, enabled: bool = True):
    self._enabled = enabled and jax.process_index() == 0
    if not self._enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, 'tb'))
    self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    """Logs each value (a Python or 0-d array number) under its name at `step`."""
    if not self._enabled:
      return
    values = {name: float(value) for name, value in scalars.items()}
    for name, value in values.items():
      self._tb.add_scalar(name, value, int(step))
    self._tb.flush()
    self._jsonl.write(json.dumps({'step': int(step), **values}) + '\n')
    self._jsonl.flush()

  def close(self) -> None:
    if self._enabled:
      self._tb.close()
      self._jsonl.close()
