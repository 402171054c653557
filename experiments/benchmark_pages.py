"""Times the train step, forward pass and training loop with 4 KiB pages against huge pages.

  python experiments/benchmark_pages.py --rounds 3 --out reference/bench/pages.json

XLA's CPU runtime maps its large host buffers afresh for every step; with glibc's
`glibc.malloc.hugetlb=1` tunable (videogen/runtime/huge_pages.py, the runners' default) they
come in 2 MiB pages instead of 4 KiB ones. Each round runs experiments/benchmark.py twice, in
fresh processes, once each way (the order alternating from round to round, so a machine whose
speed drifts slows both alike), on the same cases with the config's remat, and the training loop
of the main job (the config's data.echo and data.ahead); the table gives each way's
median over the rounds and the speed-up.
"""
import json
import os
import pathlib
import subprocess
import sys
import tempfile

from absl import app
from absl import flags
import numpy as np

from videogen.core import tables
from videogen.runtime import huge_pages

_OUT = flags.DEFINE_string('out', 'outputs/bench/pages.json', 'Where the JSON results go.')
_CASES = flags.DEFINE_list('cases', ['T/2:8x32x32:2x8x8:32:remat=dots',
                                     'S/2:8x64x64:2x4x4:4:remat=dots'],
                           'Train-step cases, as experiments/benchmark.py --cases takes them.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Rounds; each runs the benchmark once each way.')
_LOOP_STEPS = flags.DEFINE_integer('loop_steps', 20, "Steps per round of the main job's loop.")

_BENCHMARK = pathlib.Path(__file__).resolve().parent / 'benchmark.py'
WAYS = ('4 KiB pages', 'huge pages')


def _environ(way: str) -> dict:
  """This process's environment without any malloc.hugetlb tunable, plus it for 'huge pages'
  (and the runners told not to add it for '4 KiB pages')."""
  tunables = [t for t in os.environ.get('GLIBC_TUNABLES', '').split(':')
              if t and not t.startswith('glibc.malloc.hugetlb')]
  environ = {**os.environ, 'GLIBC_TUNABLES': ':'.join(tunables), huge_pages.OPT_OUT: '0'}
  return huge_pages.with_tunable(environ) if way == 'huge pages' else environ


def _run(way: str) -> list[dict]:
  """experiments/benchmark.py's rows, run in a fresh process the given way."""
  with tempfile.TemporaryDirectory() as tmp:
    out = pathlib.Path(tmp) / 'model.json'
    subprocess.run([sys.executable, str(_BENCHMARK), '--cases', ','.join(_CASES.value),
                    '--layouts=', '--guided_steps', '0', '--loop_steps', str(_LOOP_STEPS.value),
                    '--out', str(out)], check=True, env=_environ(way), capture_output=True)
    record = json.loads(out.read_text())
  if (huge_pages.TUNABLE in record['machine']['glibc_tunables']) != (way == 'huge pages'):
    raise RuntimeError(f"the {way} run started with GLIBC_TUNABLES="
                       f"{record['machine']['glibc_tunables']!r}: nothing to compare.")
  return record['rows']


def _timings(rows: list[dict]) -> dict:
  """{measure: value} of one benchmark run: each case's step and forward seconds, and the
  steps/s of the loop the config runs."""
  found = {}
  for row in rows:
    if 'step_s' in row:
      case = f"{row['variant']} {row['clip']} batch {row['batch']}"
      found[f'{case}: train step s'] = row['step_s']
      found[f'{case}: forward s'] = row['forward_s']
    elif row.get('configs_own'):
      found["main job's loop: steps/s"] = row['steps_per_s']
  return found


def main(argv):
  del argv
  runs = {way: [] for way in WAYS}
  for i in range(_ROUNDS.value):
    for way in (WAYS if i % 2 == 0 else WAYS[::-1]):
      runs[way].append(_timings(_run(way)))
      print(f'round {i + 1} {way}: {runs[way][-1]}', flush=True)
  rows = []
  for measure in runs[WAYS[0]][0]:
    small, huge = (float(np.median([r[measure] for r in runs[way]])) for way in WAYS)
    faster = small / huge if measure.endswith(' s') else huge / small
    rows.append({'measure': measure, WAYS[0]: small, WAYS[1]: huge, 'speed_up': faster,
                 'rounds': {way: [r[measure] for r in runs[way]] for way in WAYS}})
  path = tables.write_results(_OUT.value, 'pages', rows)
  print(tables.markdown_table([{k: v for k, v in row.items() if k != 'rounds'} for row in rows]))
  print('wrote', path)


if __name__ == '__main__':
  app.run(main)
