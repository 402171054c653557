"""Benchmarks the train step and the sampler against this machine's measured matmul rate.

  python experiments/benchmark.py --out outputs/bench/model.json

For each (variant, clip, patch): step time, tokens/s, achieved GFLOP/s and that as a share of the
fp32 matmul rate measured in the same run (MFU on CPU); then sampling seconds per video and the
compiled sampler loop's overhead over `steps` separate forward passes; then the config's train
step on the world's own batches in each data layout (fixed clips, packed rows of many sizes,
buckets), in real (non-padding) tokens/s.
"""
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from videogen.core import tables
from videogen.bench import throughput

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/world.py', 'Base config.',
                                          lock_config=True)
_OUT = flags.DEFINE_string('out', 'outputs/bench/model.json', 'Where the JSON results go.')
_CASES = flags.DEFINE_list(
    'cases', ['T/2:8x32x32:2x8x8:32', 'T/2:8x32x32:1x4x4:8', 'S/2:8x64x64:2x4x4:4',
              'S/2:16x64x64:2x4x4:2'],
    'variant:TxHxW:ptxphxpw:batch for each train-step case.')
_LAYOUTS = flags.DEFINE_list('layouts', ['fixed', 'packed'],
                              "Data layouts whose train step is timed on the config's batches.")
_SAMPLER_STEPS = flags.DEFINE_integer('sampler_steps', 10, 'Steps for the sampler overhead.')


def _ints(text):
  return tuple(int(v) for v in text.split('x'))


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  peak = throughput.matmul_rate()
  print(f'fp32 matmul 2048^2: {peak / 1e9:.1f} GFLOP/s')
  train_rows, sampler_rows = [], []
  for case in _CASES.value:
    variant, clip, patch, batch = case.split(':')
    row = throughput.train_step_rate(config, variant=variant, shape_thw=_ints(clip),
                                     patch=_ints(patch), batch_size=int(batch))
    row['mfu_pct'] = 100 * row['gflops_per_s'] * 1e9 / peak
    train_rows.append(row)
    print(row)
    sampler_rows.append(throughput.sampler_overhead(
        config, variant=variant, shape_thw=_ints(clip), patch=_ints(patch),
        steps=_SAMPLER_STEPS.value))
    print(sampler_rows[-1])
  layout_rows = throughput.layout_step_rates(config, _LAYOUTS.value) if _LAYOUTS.value else []
  if train_rows:  # --cases= times only the layouts
    print(f'\nTrain step (fp32 matmul peak {peak / 1e9:.0f} GFLOP/s)\n')
    print(tables.markdown_table(train_rows))
    print('\nSampler\n')
    print(tables.markdown_table(sampler_rows))
  if layout_rows:
    print(f'\nData layouts ({config.model.variant}, real tokens/s; vs_first: against '
          f'{layout_rows[0]["layout"]})\n')
    print(tables.markdown_table(layout_rows))
  rows = [{'matmul_gflops_per_s': peak / 1e9}, *train_rows, *sampler_rows, *layout_rows]
  print('wrote', tables.write_results(_OUT.value, 'model', rows))


if __name__ == '__main__':
  app.run(main)
