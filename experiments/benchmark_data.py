"""Benchmarks the world input pipeline: clips/s and frames/s by clip size and worker count.

  python experiments/benchmark_data.py --out outputs/bench/data.json

Prints a markdown table and writes JSON (rows + the machine they were measured on).
"""
from absl import app
from absl import flags

from videogen.data import world
from videogen.core import tables
from videogen.bench import throughput

_OUT = flags.DEFINE_string('out', 'outputs/bench/data.json', 'Where the JSON results go.')
_SHAPES = flags.DEFINE_list('shapes', ['32x32x8', '64x64x17', '256x256x33'], 'Clip sizes HxWxT.')
_WORKERS = flags.DEFINE_list('workers', ['0', '1', '2'], 'Worker process counts to try.')
_BATCH = flags.DEFINE_integer('batch_size', 8, 'Clips per batch.')
_BATCHES = flags.DEFINE_integer('num_batches', 10, 'Batches timed per setting.')


def main(argv):
  del argv
  rows = []
  for shape in _SHAPES.value:
    height, width, frames = (int(v) for v in shape.split('x'))
    options = world.WorldOptions(height=height, width=width, num_frames=frames)
    for workers in _WORKERS.value:
      rows.append(throughput.pipeline_rate(options, batch_size=_BATCH.value,
                                           num_workers=int(workers),
                                           num_batches=_BATCHES.value))
      print(rows[-1])
  print(tables.markdown_table(rows))
  print('wrote', tables.write_results(_OUT.value, 'world_pipeline', rows))


if __name__ == '__main__':
  app.run(main)
