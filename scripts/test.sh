#!/usr/bin/env bash
# README command (b): set up .venv and run the whole test suite: the unit tier (what `pytest`
# alone runs, setup.cfg) and the integration tier (runners, notebooks, the two-process cluster,
# end-to-end training; marker `integration`).
# Two pytest workers (pytest-xdist), one per core of a 2-core machine: much of the suite is XLA
# compilation, which runs on one thread, so two files compile side by side; --dist loadfile keeps
# each file's module fixtures in one worker.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
# Huge pages for XLA's host buffers in the tests' own processes too (the runners start with
# them anyway: videogen/runtime/huge_pages.py).
export GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.hugetlb=1"
exec .venv/bin/python -m pytest -q -n 2 --dist loadfile -m "integration or not integration" tests "$@"
