"""Benchmark results: a markdown table for people and a JSON file for machines."""
import json
import os
import pathlib
import platform
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

import jax

from videogen.core import media


def cpu_name() -> str:
  """The CPU's model name (e.g. 'AMD EPYC 9B45'), from /proc/cpuinfo where there is one."""
  cpuinfo = pathlib.Path('/proc/cpuinfo')
  if cpuinfo.exists():
    for line in cpuinfo.read_text().splitlines():
      if line.startswith('model name'):
        return line.split(':', 1)[1].strip()
  return platform.processor() or platform.machine()


def machine() -> dict:
  """Where a benchmark ran: processor, core count, accelerator, versions, and the glibc
  tunables it started with (glibc.malloc.hugetlb=1: XLA's host buffers in huge pages,
  videogen/runtime/huge_pages.py)."""
  device = jax.devices()[0]
  return {
      'processor': cpu_name(),
      'cpu_count': os.cpu_count(),
      'device': f'{device.platform}:{getattr(device, "device_kind", "")}',
      'device_count': jax.device_count(),
      'jax': jax.__version__,
      'python': platform.python_version(),
      'glibc_tunables': os.environ.get('GLIBC_TUNABLES', ''),
  }


def revision() -> str:
  """The git commit of the code that ran ('unknown' outside a git checkout), with '+dirty'
  when the working tree has uncommitted changes to tracked files."""
  git = lambda *args: subprocess.run(['git', *args], capture_output=True, text=True, check=False,
                                     cwd=pathlib.Path(__file__).parent).stdout.strip()
  try:
    commit = git('rev-parse', '--short', 'HEAD')
  except OSError:  # no git on this machine
    return 'unknown'
  if not commit:
    return 'unknown'
  return commit + ('+dirty' if git('status', '--porcelain', '--untracked-files=no') else '')


def markdown_table(rows: list[dict],
                   formats: Mapping[str, Callable[[Any], str]] | None = None) -> str:
  """Rows of equal keys as a GitHub markdown table; a key's cells through formats[key], else
  floats to 3 significant digits."""
  keys, formats = list(rows[0]), formats or {}
  plain = lambda v: f'{v:.3g}' if isinstance(v, float) else str(v)
  lines = ['| ' + ' | '.join(keys) + ' |', '|' + ' --- |' * len(keys)]
  lines += ['| ' + ' | '.join(formats.get(k, plain)(row[k]) for k in keys) + ' |'
            for row in rows]
  return '\n'.join(lines)


def command_line() -> str:
  """The command that started this process, as one could type it again."""
  return shlex.join(['python', *sys.argv])


def provenance(command: str | None = None) -> dict:
  """{'command', 'revision', 'machine'}: how a result file was made (`command` defaults to this
  process's command line)."""
  return {'command': command or command_line(), 'revision': revision(), 'machine': machine()}


def write_results(path, name: str, rows: list[dict], command: str | None = None) -> pathlib.Path:
  """Writes {'benchmark', 'command', 'revision', 'machine', 'rows'} as JSON, atomically, and
  returns the path; `command` defaults to this process's command line."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  record = {'benchmark': name, **provenance(command), 'rows': rows}
  return media.write_text(path, json.dumps(record, indent=1))
