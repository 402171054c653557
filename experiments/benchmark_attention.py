"""Benchmarks attention alone: the 'xla' backend against blocked 'flash', forward and backward.

  python experiments/benchmark_attention.py --out outputs/bench/attention.json

For each token-row length, 'xla' and 'flash' at each of `--flash_blocks` (block_q x block_k; a
block_q at least L puts all queries in one block, so only the key blocks are a loop): the median
seconds of the forward pass and of forward + backward (gradients of a linear functional of the
output with respect to q, k and v), the backward's cost in forwards, and the compiled scratch
memory (`memory_analysis`) of each. Prints a markdown table and writes JSON with the command,
revision and machine.
"""
from absl import app
from absl import flags

import jax
import jax.numpy as jnp

from videogen.bench import throughput
from videogen.core import tables
from videogen.core import timing
from videogen.models import attention
from videogen.runtime import huge_pages

_OUT = flags.DEFINE_string('out', 'outputs/bench/attention.json', 'Where the JSON results go.')
_LENGTHS = flags.DEFINE_list('lengths', ['256', '1024', '2048'], 'Token-row lengths L (= S).')
_FLASH_BLOCKS = flags.DEFINE_list(
    'flash_blocks', [f'{attention.FLASH_BLOCK_Q}x{attention.FLASH_BLOCK_K}', '4096x128'],
    "block_q x block_k of each 'flash' row (the default first).")
_BATCH = flags.DEFINE_integer('batch', 4, 'Rows per batch.')
_HEADS = flags.DEFINE_integer('heads', 6, 'Attention heads (S/2: 6).')
_HEAD_DIM = flags.DEFINE_integer('head_dim', 64, 'Head dimension (S/2: 64).')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed calls per measurement (median).')


def attention_row(length: int, backend: str, block_q: int = 0, block_k: int = 0) -> dict:
  """Times and scratch memory of one backend's self-attention at one row length ('flash':
  with these block sizes)."""
  shape = (_BATCH.value, length, _HEADS.value, _HEAD_DIM.value)
  q, k, v, w = (jax.random.normal(key, shape) for key in jax.random.split(jax.random.key(0), 4))
  blocks = dict(block_q=block_q, block_k=block_k) if backend == 'flash' else {}
  attend = lambda q, k, v: attention.dot_product_attention(q, k, v, backend=backend, **blocks)
  forward = jax.jit(attend).lower(q, k, v).compile()
  backward = jax.jit(jax.grad(lambda q, k, v: jnp.sum(w * attend(q, k, v)),
                              argnums=(0, 1, 2))).lower(q, k, v).compile()
  forward_s = timing.median_seconds(lambda: forward(q, k, v).block_until_ready(),
                                    _REPEATS.value)
  both_s = timing.median_seconds(lambda: jax.block_until_ready(backward(q, k, v)),
                                 _REPEATS.value)
  mb = lambda compiled: compiled.memory_analysis().temp_size_in_bytes / 1e6
  label = f'{min(block_q, length)}x{min(block_k, length)}' if backend == 'flash' else '-'
  return {'L': length, 'backend': backend, 'blocks': label, 'forward_ms': 1e3 * forward_s,
          'fwd_bwd_ms': 1e3 * both_s, 'bwd_in_forwards': (both_s - forward_s) / forward_s,
          'forward_temp_mb': mb(forward), 'fwd_bwd_temp_mb': mb(backward)}


def main(argv):
  del argv
  rows = []
  flash_blocks = [tuple(int(n) for n in spec.split('x')) for spec in _FLASH_BLOCKS.value]
  for length in (int(n) for n in _LENGTHS.value):
    for backend, blocks in [('xla', ()), *(('flash', b) for b in flash_blocks)]:
      rows.append(attention_row(length, backend, *blocks))
      print(rows[-1], flush=True)
  setting = {'batch': _BATCH.value, 'heads': _HEADS.value, 'head_dim': _HEAD_DIM.value,
             'dtype': 'float32', 'matmul_gflops_per_s': throughput.matmul_rate() / 1e9}
  print(setting)
  print(tables.markdown_table(rows))
  print('wrote', tables.write_results(_OUT.value, 'attention', [setting, *rows]))


if __name__ == '__main__':
  huge_pages.reexec_with_huge_pages()
  app.run(main)
