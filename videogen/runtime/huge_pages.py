"""Transparent huge pages for the host memory that XLA's CPU runtime allocates.

XLA on CPU takes each large buffer (a step's scratch, attention's [B, H, L, L] logits) from
glibc's malloc, which maps it fresh from the kernel and unmaps it when it is freed, so every
step touches hundreds of MB of new 4 KiB pages, and on a small machine those page faults cost
more than the arithmetic: on 2 cores the S/2 DiT's forward pass took 3.71 s with 4 KiB pages and
2.44 s with 2 MiB ones (docs/benchmarks.md#huge-pages). glibc 2.35 and later asks the kernel for
transparent huge pages when the environment variable GLIBC_TUNABLES holds
`glibc.malloc.hugetlb=1`, which it reads once, when the process starts. So the runners call
`reexec_with_huge_pages()` first in their `__main__` block: it starts the same command again,
with the tunable added, where that changes something (scripts/test.sh exports it, so the
tests' runners start with it). Set VIDEOGEN_HUGE_PAGES=0 to keep 4 KiB pages.
"""
import os
import sys

TUNABLE = 'glibc.malloc.hugetlb=1'
OPT_OUT = 'VIDEOGEN_HUGE_PAGES'
_THP_MODE = '/sys/kernel/mm/transparent_hugepage/enabled'


def wanted(environ, thp_mode: str, libc_version: str) -> bool:
  """Whether starting again with TUNABLE changes anything: glibc 2.35+ (`libc_version` as
  os.confstr('CS_GNU_LIBC_VERSION') says it, e.g. 'glibc 2.36'), the kernel's transparent huge
  pages in 'madvise' mode (`thp_mode`: the text of /sys/kernel/mm/transparent_hugepage/enabled,
  the mode in brackets; in 'always' every large mapping gets them already, in 'never' none can),
  and `environ` neither holding a malloc.hugetlb tunable already nor opting out."""
  name, _, version = libc_version.partition(' ')
  try:
    new_enough = name == 'glibc' and tuple(map(int, version.split('.')[:2])) >= (2, 35)
  except ValueError:
    return False
  return (new_enough and '[madvise]' in thp_mode and environ.get(OPT_OUT, '1') != '0'
          and 'glibc.malloc.hugetlb' not in environ.get('GLIBC_TUNABLES', ''))


def with_tunable(environ) -> dict:
  """`environ` with TUNABLE appended to its GLIBC_TUNABLES (tunables are ':'-separated)."""
  tunables = [t for t in environ.get('GLIBC_TUNABLES', '').split(':') if t]
  return {**environ, 'GLIBC_TUNABLES': ':'.join([*tunables, TUNABLE])}


def wanted_here(environ) -> bool:
  """`wanted` on this machine's kernel and libc (False where either cannot be read)."""
  try:
    with open(_THP_MODE) as f:
      thp_mode = f.read()
    libc_version = os.confstr('CS_GNU_LIBC_VERSION') or ''
  except (OSError, ValueError):
    return False
  return wanted(environ, thp_mode, libc_version)


def reexec_with_huge_pages() -> None:
  """Replaces this process (same pid, interpreter, arguments) by one that starts with TUNABLE
  set, where `wanted_here`; returns at once otherwise (another OS or libc, huge pages off or
  already asked for). Call it before any work: what the process did so far is lost."""
  if wanted_here(os.environ):
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, with_tunable(os.environ))
