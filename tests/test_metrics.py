"""Metric writers: parseable metrics.jsonl, a TensorBoard event file; tree_norm."""
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from videogen.train import metrics


def test_writer_appends_json_lines_and_tensorboard_events(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path))
  writer.write_scalars(1, {'loss': jnp.float32(0.5), 'learning_rate': 1e-3})
  writer.write_scalars(2, {'loss': np.float32(0.25)})
  lines = (tmp_path / 'metrics.jsonl').read_text().splitlines()  # Flushed before close.
  writer.close()
  assert [json.loads(line) for line in lines] == [
      {'step': 1, 'loss': 0.5, 'learning_rate': 1e-3}, {'step': 2, 'loss': 0.25}]
  events = os.listdir(tmp_path / 'tb')
  assert len(events) == 1 and events[0].startswith('events.out.tfevents')
  assert os.path.getsize(tmp_path / 'tb' / events[0]) > 0


def test_disabled_writer_writes_nothing(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path / 'run'), enabled=False)
  writer.write_scalars(1, {'loss': 1.0})
  writer.close()
  assert not os.path.exists(tmp_path / 'run')


def test_tree_norm():
  tree = {'a': jnp.full((2, 2), 1.0, jnp.bfloat16), 'b': [jnp.array([3.0, 4.0])]}
  assert float(metrics.tree_norm(tree)) == pytest.approx(np.sqrt(4 + 25))
