"""Benchmarks the train step and the sampler against this machine's measured matmul rate.

  python experiments/benchmark.py --out outputs/bench/model.json
  python experiments/benchmark.py --layouts= --peer_python=REFVENV/bin/python   # against torch

For each (variant, clip, patch): step time, tokens/s, achieved GFLOP/s and that as a share of the
fp32 matmul rate measured in the same run (MFU on CPU); then sampling seconds per video and the
compiled sampler loop's overhead over `steps` separate forward passes, and one video sampled in
--guided_steps Euler steps with text guidance; then the config's train
step on the world's own batches in each data layout (fixed clips, packed rows of many sizes,
buckets), in real (non-padding) tokens/s; then the config's training loop (host batch -> caption
encoding -> train step) with each model batch made in turn or on a thread while the step runs
(--loop_steps). With --peer_python, diffusers' WanTransformer3DModel of each case's shape is
timed too (forward and train step, torch eager on 2 threads), before ours in the same run, and
the ratios printed (experiments/peer_benchmark.py). With --vae_cases, the
'wan' VAE layout at the given widths encodes and decodes one clip (beside diffusers'
AutoencoderKLWan at the same widths when --peer_python is given).

On a GPU (scripts/gpu_benchmark.sh runs this): Wan 2.1 1.3B's train step in bfloat16 with cuDNN
attention, at Wan's text shape, against the bf16 matmul rate and the peer on the same GPU:

  python experiments/benchmark.py --config configs/world.py:variant=1.3B \
      --config.model.dtype=bfloat16 --config.model.attention_backend=cudnn \
      --cases 1.3B:9x60x104:1x2x2:1 --layouts= --text_shape 512:4096 --matmul_size 8192 \
      --peer_python python3 --peer_device cuda
"""
from absl import app
from absl import flags
from absl import logging

import cluster_flags
from videogen.core import config_args
from videogen.core import tables
from videogen.bench import throughput
from videogen.runtime import huge_pages

_CONFIG = config_args.define_config_file('config', 'configs/world.py', 'Base config.',
                                         lock_config=True)
_OUT = flags.DEFINE_string('out', 'outputs/bench/model.json', 'Where the JSON results go.')
_CASES = flags.DEFINE_list(
    'cases', ['T/2:8x32x32:2x8x8:32', 'T/2:8x32x32:1x4x4:8', 'S/2:8x64x64:2x4x4:4',
              'S/2:16x64x64:2x4x4:2'],
    'variant:TxHxW:ptxphxpw:batch[:scanned|unrolled][:remat=none|dots|full] for each train-step '
    "case (the optional fields override the config's block layout and remat policy).")
_LAYOUTS = flags.DEFINE_list('layouts', ['fixed', 'packed'],
                              "Data layouts whose train step is timed on the config's batches.")
_SAMPLER_STEPS = flags.DEFINE_integer('sampler_steps', 10, 'Steps for the sampler overhead.')
_GUIDED_STEPS = flags.DEFINE_integer(
    'guided_steps', 25, 'Euler steps of one video sampled with text guidance (both branches in '
    'one batch), by ours and, with --peer_python, by the peer; 0: skip it.')
_LOOP_STEPS = flags.DEFINE_integer(
    'loop_steps', 20, "Steps per round of the config's training loop, timed with each model "
    'batch (caption encoding) made in turn and on a thread while the step runs; 0: skip it.')
_TEXT_SHAPE = flags.DEFINE_string(
    'text_shape', None, "tokens:width of the captions the DiTs are timed with (e.g. 512:4096, "
    "Wan's umT5), as fixed random states (throughput.SyntheticText); default: the config's "
    'text encoder.')
_MATMUL_SIZE = flags.DEFINE_integer(
    'matmul_size', 2048, "Side of the square matmul, in the config's model.dtype, whose rate MFU "
    'is measured against (2048 saturates a CPU; use 8192 on a GPU).')
_PEER_DEVICE = flags.DEFINE_enum('peer_device', 'cpu', ['cpu', 'cuda'],
                                 'Where the peer runs (its dtype is the config\'s model.dtype).')
_VAE_CASES = flags.DEFINE_list(
    'vae_cases', [], "base:mults:res:latent:TxHxW: the 'wan' VAE preset at those widths "
    '(e.g. 32:1-2-4-4:2:16:17x128x128), encode and decode of one clip; with --peer_python, '
    "diffusers' AutoencoderKLWan at the same widths beside it.")
_PEER_PYTHON = flags.DEFINE_string(
    'peer_python', None, 'The python of a venv with torch and diffusers: also times the same '
    'DiTs in diffusers (experiments/peer_benchmark.py) in this run, side by side with ours.')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  cluster_flags.initialize(config)  # the CPU devices the training runners use (train.cpu_devices)
  text_shape = _TEXT_SHAPE.value and tuple(int(v) for v in _TEXT_SHAPE.value.split(':'))
  # The peer first: an accelerator's memory that jax has taken stays taken until we exit.
  peer = _PEER_PYTHON.value and throughput.peer_timings(
      config, _CASES.value, _PEER_PYTHON.value, text_shape=text_shape, device=_PEER_DEVICE.value,
      guided_steps=_GUIDED_STEPS.value)
  peer_vae = (_PEER_PYTHON.value and _VAE_CASES.value and throughput.peer_vae_timings(
      _VAE_CASES.value, _PEER_PYTHON.value, device=_PEER_DEVICE.value))
  results = throughput.model_benchmark(config, _CASES.value, _LAYOUTS.value,
                                       sampler_steps=_SAMPLER_STEPS.value, text_shape=text_shape,
                                       matmul_size=_MATMUL_SIZE.value,
                                       loop_steps=_LOOP_STEPS.value,
                                       guided_steps=_GUIDED_STEPS.value)
  if peer:
    results['peer'] = throughput.peer_rows(results['train'], peer, results['sampler'],
                                           matmul_gflops_per_s=results['peak_gflops_per_s'])
  results['vae'] = [throughput.vae_speed(case) for case in _VAE_CASES.value]
  if peer_vae:
    results['vae'] = throughput.vae_peer_rows(results['vae'], peer_vae)
  rows = [{'matmul': results['matmul'], 'matmul_gflops_per_s': results['peak_gflops_per_s']},
          *results['train'], *results.get('peer', []), *results['sampler'], *results['vae'],
          *results['layouts'], *results['loop']]
  path = tables.write_results(_OUT.value, 'model', rows)
  print(throughput.benchmark_report(results, config.model.variant))
  print('wrote', path)


if __name__ == '__main__':
  huge_pages.reexec_with_huge_pages()
  app.run(main)
