"""Metric writers: parseable metrics.jsonl, a TensorBoard event file; tree_norm."""
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from videogen.train import loop
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


def test_read_metrics_keeps_the_resumed_rows_of_steps_logged_twice(tmp_path):
  # A run logged steps 1-3, crashed after its step-1 checkpoint, resumed and logged 2-4 again.
  lines = [{'step': 1, 'loss': 1.0}, {'step': 2, 'loss': 0.9}, {'step': 3, 'loss': 0.8},
           {'step': 2, 'loss': 0.7}, {'step': 3, 'loss': 0.6}, {'step': 4, 'loss': 0.5}]
  (tmp_path / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in lines))
  rows = loop.read_metrics(tmp_path)
  assert [(r['step'], r['loss']) for r in rows] == [(1, 1.0), (2, 0.7), (3, 0.6), (4, 0.5)]
  assert loop.read_metrics(tmp_path / 'nothing') == []
