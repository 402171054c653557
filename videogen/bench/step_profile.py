"""Where a compiled step's time goes on the CPU: XLA's own ops, timed by jax.profiler over a few
steps and told apart by the compiled HLO: what each op computes (matmuls, with the FLOP rate of
their dots; data movement; elementwise work and reductions; control flow; the runtime's own
work between ops) and in which pass (the forward, the backward, random numbers, the rest:
objective, optimizer, EMA), from the op_name metadata jax writes on every instruction.

Op times are self times (an event's duration less its children's on the same thread), summed
over threads: the time an op held the thread that started it (the work it hands to other threads
inside itself, as a parallel matmul does, is not added again). How busy the cores were comes
from the process's CPU time instead: over untraced steps, CPU seconds against wall seconds times
the cores; the rest is capacity the step left idle (work it could not spread over the cores).
"""
import collections
import dataclasses
import gzip
import json
import os
import pathlib
import re
import resource
import tempfile
import time
from typing import Any, Callable

import jax
import numpy as np

KINDS = ('matmul', 'data movement', 'elementwise and reductions', 'control flow', 'runtime')
# Opcodes that only move or reshape data; a fusion of only these is data movement.
_MOVES = frozenset((
    'bitcast', 'broadcast', 'concatenate', 'copy', 'dynamic-slice', 'dynamic-update-slice',
    'gather', 'get-tuple-element', 'iota', 'pad', 'parameter', 'constant', 'reshape', 'reverse',
    'scatter', 'slice', 'transpose', 'tuple'))
_MATMULS = frozenset(('dot', 'convolution'))
# The CPU runtime's event around each run of ops: its self time is dispatch between them.
_EXECUTOR = 'ThunkExecutor::Execute'
_CONTROL = frozenset(('while', 'conditional', 'call'))
_HEADER = re.compile(r'^(?:ENTRY )?%?(?P<name>[\w.\-]+) .*\{\s*$')
_INSTRUCTION = re.compile(
    r'^\s*(?:ROOT )?%?(?P<name>[\w.\-]+) = (?P<shape>.+?) (?P<op>[a-z][\w\-]*)\((?P<rest>.*)$')
_DIMS = re.compile(r'\[([\d,]*)\]')


@dataclasses.dataclass(frozen=True)
class Op:
  """One instruction of the compiled HLO, as the profile needs it."""
  kind: str            # one of KINDS
  dot_flops: float     # the FLOPs of the dots it runs, per execution (convolutions not counted)
  source: str          # jax's op_name: which function and module made it


def _dims(shape: str) -> tuple[int, ...]:
  found = _DIMS.search(shape)
  return tuple(int(d) for d in found.group(1).split(',') if d) if found else ()


def _dot_flops(rest: str, out_shape: str, shapes: dict[str, str]) -> float:
  """2 x output elements x contracted size of a `dot(lhs, rhs), lhs_contracting_dims={..}`."""
  lhs = rest.split(',')[0].strip().lstrip('%').split(' ')[-1]
  contracting = re.search(r'lhs_contracting_dims=\{([\d,]*)\}', rest)
  lhs_dims = _dims(shapes.get(lhs, ''))
  if contracting is None or not lhs_dims:
    return 0.0
  size = np.prod([lhs_dims[int(d)] for d in contracting.group(1).split(',') if d])
  return 2.0 * float(np.prod(_dims(out_shape))) * float(size)


def hlo_ops(hlo_text: str) -> dict[str, Op]:
  """Each instruction of a compiled module's text (`Compiled.as_text()`) by name."""
  computations: dict[str, list[tuple[str, str, str, str]]] = {}
  current = None
  for line in hlo_text.splitlines():
    header = _HEADER.match(line) if not line.startswith((' ', '\t')) else None
    if header:
      current = computations.setdefault(header.group('name'), [])
    elif current is not None and (found := _INSTRUCTION.match(line)):
      current.append((found.group('name'), found.group('shape'), found.group('op'),
                      found.group('rest')))

  def called(rest: str) -> list[str]:
    """The computations an instruction runs inside itself (a fusion's, a reduce's)."""
    return re.findall(r'(?:calls|to_apply)=%?([\w.\-]+)', rest)

  def contents(computation: str, seen: frozenset = frozenset()) -> tuple[set[str], float]:
    """Opcodes and dot FLOPs of a computation and of those it calls (fusions nest)."""
    instructions = computations.get(computation, [])
    shapes = {name: shape for name, shape, _, _ in instructions}
    opcodes, flops = set(), 0.0
    for _, shape, op, rest in instructions:
      opcodes.add(op)
      if op == 'dot':
        flops += _dot_flops(rest, shape, shapes)
      for inner in called(rest):
        if inner not in seen:
          inner_ops, inner_flops = contents(inner, seen | {computation})
          opcodes |= inner_ops
          flops += inner_flops
    return opcodes, flops

  # Fused and applied computations run inside their op, never as ops of their own.
  inside = {target for instructions in computations.values()
            for _, _, _, rest in instructions for target in called(rest)}
  ops = {}
  for computation, instructions in computations.items():
    if computation in inside:
      continue
    shapes = {name: shape for name, shape, _, _ in instructions}
    for name, shape, op, rest in instructions:
      source = re.search(r'op_name="([^"]*)"', rest)
      opcodes, flops = {op}, _dot_flops(rest, shape, shapes) if op == 'dot' else 0.0
      if op == 'fusion':
        opcodes, flops = set(), 0.0
        for inner in called(rest):
          inner_ops, inner_flops = contents(inner)
          opcodes |= inner_ops
          flops += inner_flops
      if op in _CONTROL:
        kind = 'control flow'
      elif opcodes & _MATMULS:
        kind = 'matmul'
      elif opcodes <= _MOVES:
        kind = 'data movement'
      else:
        kind = 'elementwise and reductions'
      ops[name] = Op(kind, flops, source.group(1) if source else '')
  return ops


def step_pass(source: str) -> str:
  """Which pass of a train step an op's op_name belongs to."""
  if 'transpose(' in source:
    return 'backward'
  if re.search(r'threefry|_normal|_uniform|_bernoulli|_randint|random_', source):
    return 'random numbers'
  if 'jvp(' in source and ('DiT' in source or 'blocks' in source):
    return 'forward'
  return 'objective, optimizer, EMA'


def self_times(trace_dir: str | pathlib.Path) -> dict[str, list[float]]:
  """{event name: [self microseconds, count]} in the newest trace in trace_dir (jax.profiler's
  .trace.json.gz)."""
  path = max(pathlib.Path(trace_dir).rglob('*.trace.json.gz'), key=lambda p: p.stat().st_mtime)
  events = [e for e in json.loads(gzip.decompress(path.read_bytes()))['traceEvents']
            if e.get('ph') == 'X' and 'dur' in e]
  totals = collections.defaultdict(lambda: [0.0, 0])
  by_thread = collections.defaultdict(list)
  for event in events:
    by_thread[(event['pid'], event['tid'])].append(event)
  for thread_events in by_thread.values():
    thread_events.sort(key=lambda e: (e['ts'], -e['dur']))
    stack: list[dict[str, Any]] = []  # open events; each keeps the time its children took
    for event in thread_events:
      while stack and stack[-1]['ts'] + stack[-1]['dur'] <= event['ts']:
        _close(stack.pop(), totals)
      if stack:
        stack[-1]['children_us'] = stack[-1].get('children_us', 0.0) + event['dur']
      stack.append(dict(event))
    while stack:
      _close(stack.pop(), totals)
  return dict(totals)


def _close(event: dict, totals) -> None:
  totals[event['name']][0] += event['dur'] - event.get('children_us', 0.0)
  totals[event['name']][1] += 1


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def profile(run_step: Callable[[], None], hlo_text: str, *, steps: int = 5,
            top: int = 15) -> dict:
  """run_step() runs one compiled step and returns when it is done; hlo_text is that step's
  compiled module. After a warm step, times `steps` steps (wall and CPU seconds), then traces
  as many; returns `summarize`'s result."""
  ops = hlo_ops(hlo_text)
  run_step()  # compiled and warm
  start, cpu_start = time.perf_counter(), _cpu_seconds()
  for _ in range(steps):
    run_step()
  wall_s, cpu_s = time.perf_counter() - start, _cpu_seconds() - cpu_start
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    for _ in range(steps):
      run_step()
    jax.profiler.stop_trace()
    totals = self_times(trace_dir)
  return summarize(totals, ops, wall_s=wall_s / steps, cpu_s=cpu_s / steps, steps=steps, top=top)


def summarize(totals: dict[str, list[float]], ops: dict[str, Op], *, wall_s: float, cpu_s: float,
              steps: int, top: int, cores: int | None = None) -> dict:
  """From self times {name: [us, count]} over `steps` traced steps, and a step's untraced wall
  and CPU seconds: per step, the wall time, the share of the cores' capacity used (cores:
  default this process's), the ops' time, the self
  time of each kind of op and of each pass (ms, share of the ops' time), the dots' FLOPs and
  rate, and the `top` ops by time with the last parts of their source."""
  kind_ms, pass_ms, flops = collections.Counter(), collections.Counter(), 0.0
  rows = []
  for name, (us, count) in totals.items():
    op = ops.get(name)
    if op is None and name != _EXECUTOR:
      continue  # the host's work (Python, dispatch) and waits, not the step's own
    kind = op.kind if op else 'runtime'
    ms = us / 1e3 / steps
    kind_ms[kind] += ms
    step = step_pass(op.source) if op else 'runtime'
    pass_ms[step] += ms
    if op and op.dot_flops:
      flops += op.dot_flops * count / steps
    rows.append({'op': name, 'kind': kind, 'pass': step, 'ms_per_step': ms,
                 'calls_per_step': count / steps,
                 'source': '/'.join(op.source.split('/')[-3:]) if op else ''})
  op_ms = sum(kind_ms.values())
  share = lambda ms: 100 * ms / op_ms if op_ms else 0.0
  kinds = [{'kind': k, 'ms_per_step': kind_ms[k], 'of_op_time_pct': share(kind_ms[k])}
           for k in KINDS if k in kind_ms]
  for row in kinds:
    if row['kind'] == 'matmul' and kind_ms['matmul']:
      row['dot_gflops_per_s'] = flops / (kind_ms['matmul'] / 1e3) / 1e9
  passes = [{'pass': p, 'ms_per_step': ms, 'of_op_time_pct': share(ms)}
            for p, ms in pass_ms.most_common()]
  rows.sort(key=lambda r: -r['ms_per_step'])
  cores = cores or len(os.sched_getaffinity(0))
  return {'wall_ms': wall_s * 1e3, 'cores': cores, 'cpu_busy_pct': 100 * cpu_s / (cores * wall_s),
          'op_ms': op_ms,
          'dot_gflop_per_step': flops / 1e9,
          'kinds': kinds, 'passes': passes, 'top': rows[:top]}
