"""Where the train step's time goes on this machine: jax.profiler's trace of a few steps, XLA's
ops told apart by the compiled HLO (videogen/bench/step_profile.py): matmuls (and the FLOP rate
of their dots against this machine's dense matmul, measured in the same run), data movement,
elementwise work and reductions, control flow and the runtime's dispatch; the forward, the
backward, random numbers and the rest (objective, optimizer, EMA); the ops that cost most, with
the model part that made them.

  python experiments/profile_step.py --case T/2:8x32x32:2x8x8:32 --out outputs/bench/profile.json

Writes the JSON (command, revision, machine) and a markdown twin beside it; prints the tables.
CPU only: a GPU's ops run on streams this grouping does not read (use the trace itself there).
"""
import pathlib

from absl import app
from absl import flags
from absl import logging

import cluster_flags
from videogen.bench import throughput
from videogen.core import config_args
from videogen.core import media
from videogen.core import tables
from videogen.runtime import huge_pages

_CONFIG = config_args.define_config_file('config', 'configs/world.py', 'Base config.',
                                         lock_config=True)
_CASE = flags.DEFINE_string(
    'case', 'T/2:8x32x32:2x8x8:32', 'variant:TxHxW:ptxphxpw:batch[:scanned|unrolled]'
    "[:remat=none|dots|full], as experiments/benchmark.py's --cases (default: the main job's).")
_STEPS = flags.DEFINE_integer('steps', 5, 'Steps traced, after a warm one.')
_TOP = flags.DEFINE_integer('top', 15, 'How many of the costliest ops to list.')
_OUT = flags.DEFINE_string('out', 'outputs/bench/profile.json', 'Where the JSON goes (the .md '
                           'beside it).')


def _table(rows: list[dict]) -> str:
  """Rows whose keys differ (only the matmul row has a FLOP rate) as one markdown table."""
  keys = list(dict.fromkeys(key for row in rows for key in row))
  return tables.markdown_table([{key: row.get(key, '') for key in keys} for row in rows])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  cluster_flags.initialize(_CONFIG.value)  # the CPU devices the training runners use
  peak = throughput.matmul_rate() / 1e9
  result = throughput.train_step_profile(_CONFIG.value, _CASE.value, steps=_STEPS.value,
                                         top=_TOP.value)
  summary = {'case': _CASE.value, **{k: v for k, v in result.items()
                                     if k not in ('kinds', 'passes', 'top')},
             'matmul_gflops_per_s': peak}
  for row in result['kinds']:
    if 'dot_gflops_per_s' in row:
      row['of_matmul_pct'] = 100 * row['dot_gflops_per_s'] / peak
  sections = {'step': [summary], 'kinds': result['kinds'], 'passes': result['passes'],
              'top': result['top']}
  rows = [{'section': name, **row} for name, section in sections.items() for row in section]
  command = tables.command_line()
  out = pathlib.Path(_OUT.value)
  tables.write_results(out, 'step_profile', rows, command=command)
  machine = tables.machine()
  report = '\n\n'.join(
      [f'# Where the train step\'s time goes\n\n`{command}` at `{tables.revision()}` on '
       f'{machine["processor"]} ({machine["cpu_count"]} cores, {machine["device"]}); per step, '
       'self times of XLA\'s ops (videogen/bench/step_profile.py)']
      + [f'## {name}\n\n{_table(section)}' for name, section in sections.items()])
  media.write_text(out.with_suffix('.md'), report + '\n')
  print(report)


if __name__ == '__main__':
  huge_pages.reexec_with_huge_pages()
  app.run(main)
