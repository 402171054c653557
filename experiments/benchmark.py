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

from videogen.core import config_args
from videogen.core import tables
from videogen.bench import throughput

_CONFIG = config_args.define_config_file('config', 'configs/world.py', 'Base config.',
                                         lock_config=True)
_OUT = flags.DEFINE_string('out', 'outputs/bench/model.json', 'Where the JSON results go.')
_CASES = flags.DEFINE_list(
    'cases', ['T/2:8x32x32:2x8x8:32', 'T/2:8x32x32:1x4x4:8', 'S/2:8x64x64:2x4x4:4',
              'S/2:16x64x64:2x4x4:2'],
    'variant:TxHxW:ptxphxpw:batch[:scanned|unrolled] for each train-step case (the last field '
    "overrides the config's block layout).")
_LAYOUTS = flags.DEFINE_list('layouts', ['fixed', 'packed'],
                              "Data layouts whose train step is timed on the config's batches.")
_SAMPLER_STEPS = flags.DEFINE_integer('sampler_steps', 10, 'Steps for the sampler overhead.')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  results = throughput.model_benchmark(_CONFIG.value, _CASES.value, _LAYOUTS.value,
                                       sampler_steps=_SAMPLER_STEPS.value)
  print(throughput.benchmark_report(results, _CONFIG.value.model.variant))
  rows = [{'matmul_gflops_per_s': results['peak_gflops_per_s']}, *results['train'],
          *results['sampler'], *results['layouts']]
  print('wrote', tables.write_results(_OUT.value, 'model', rows))

if __name__ == '__main__':
  app.run(main)
