"""The runners' restart with glibc's huge-page tunable (videogen/runtime/huge_pages.py) and the
benchmark that compares it with 4 KiB pages."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from videogen.runtime import huge_pages

import runner_env

REPO = pathlib.Path(__file__).resolve().parents[1]
WAYS = ('4 KiB pages', 'huge pages')

MADVISE = 'always [madvise] never\n'


@pytest.mark.parametrize('environ, thp_mode, libc, expected', [
    ({}, MADVISE, 'glibc 2.36', True),
    ({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2'}, MADVISE, 'glibc 2.35', True),
    ({}, '[always] madvise never\n', 'glibc 2.36', False),  # every mapping has them already
    ({}, 'always madvise [never]\n', 'glibc 2.36', False),
    ({}, MADVISE, 'glibc 2.31', False),  # the tunable came in 2.35
    ({}, MADVISE, '', False),  # not glibc (musl, macOS)
    ({'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=1'}, MADVISE, 'glibc 2.36', False),  # restarted
    ({'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'}, MADVISE, 'glibc 2.36', False),  # user's own
    ({huge_pages.OPT_OUT: '0'}, MADVISE, 'glibc 2.36', False),
])
def test_a_restart_is_wanted_only_where_it_changes_something(environ, thp_mode, libc, expected):
  assert huge_pages.wanted(environ, thp_mode, libc) is expected


def test_the_tunable_joins_the_users_own():
  environ = huge_pages.with_tunable({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2', 'A': 'b'})
  assert environ == {'GLIBC_TUNABLES': f'glibc.malloc.arena_max=2:{huge_pages.TUNABLE}', 'A': 'b'}
  assert huge_pages.with_tunable({})['GLIBC_TUNABLES'] == huge_pages.TUNABLE


def test_a_runner_restarts_once_with_the_tunable_and_its_own_arguments(tmp_path):
  if not huge_pages.wanted_here({}):
    pytest.skip('this machine has no glibc 2.35+ with transparent huge pages on madvise')
  script = tmp_path / 'runner.py'
  script.write_text(
      'import os, sys\n'
      'from videogen.runtime import huge_pages\n'
      "print('started', flush=True)\n"
      'huge_pages.reexec_with_huge_pages()\n'
      "print(os.getpid(), os.environ['GLIBC_TUNABLES'], sys.argv[1:])\n")
  environ = {k: v for k, v in os.environ.items()
             if k not in ('GLIBC_TUNABLES', huge_pages.OPT_OUT)}
  done = subprocess.run([sys.executable, str(script), '--out', 'x y'], capture_output=True,
                        text=True, check=True, env=environ)
  lines = done.stdout.splitlines()
  assert lines[:2] == ['started', 'started'], done.stdout  # once as asked, once restarted
  assert lines[2].split(' ', 1)[1] == f"{huge_pages.TUNABLE} ['--out', 'x y']"


@pytest.mark.integration  # two benchmark.py subprocesses
def test_the_pages_benchmark_times_each_way_in_its_own_process(tmp_path):
  out = tmp_path / 'pages.json'
  environ = runner_env.one_device()
  subprocess.run([sys.executable, 'experiments/benchmark_pages.py', '--rounds=1',
                  '--cases=T/2:8x32x32:2x8x8:2', '--loop_steps=1', f'--out={out}'],
                 cwd=REPO, env=environ, capture_output=True, check=True, timeout=600)
  result = json.loads(out.read_text())
  assert 'benchmark_pages.py' in result['command'] and result['machine']['processor']
  rows = {row['measure']: row for row in result['rows']}
  assert set(rows) == {'T/2 8x32x32 batch 2: train step s', 'T/2 8x32x32 batch 2: forward s',
                       "main job's loop: steps/s"}
  step = rows['T/2 8x32x32 batch 2: train step s']
  assert [len(step['rounds'][way]) for way in WAYS] == [1, 1]
  assert step['speed_up'] == pytest.approx(step[WAYS[0]] / step[WAYS[1]])
