"""The train step's profile: XLA's ops told apart by the compiled HLO, self times from the
profiler's trace, and the whole of it on a real (tiny) train step."""
import gzip
import json

import jax
import jax.numpy as jnp
import numpy as np

from videogen.bench import step_profile
from videogen.bench import throughput
from videogen.models import dit


def compiled_text(fn, *args) -> str:
  return jax.jit(fn).lower(*args).compile().as_text()


def test_the_hlo_says_which_ops_are_matmuls_and_how_many_flops_their_dots_run():
  x, w = jnp.ones((64, 48)), jnp.ones((48, 32))
  ops = step_profile.hlo_ops(compiled_text(lambda x, w: jnp.tanh(x @ w).T * 2.0, x, w))
  matmuls = [op for op in ops.values() if op.kind == 'matmul']
  assert matmuls and sum(op.dot_flops for op in matmuls) == 2 * 64 * 48 * 32
  assert all(op.kind in step_profile.KINDS for op in ops.values())
  moves = step_profile.hlo_ops(compiled_text(lambda x: x.T.copy(), jnp.ones((64, 48))))
  assert {op.kind for op in moves.values()} <= {'data movement'}  # a transpose computes nothing


def test_a_batched_dot_counts_its_batch_too():
  a, b = jnp.ones((4, 16, 8)), jnp.ones((4, 8, 24))
  ops = step_profile.hlo_ops(compiled_text(lambda a, b: jnp.einsum('bij,bjk->bik', a, b), a, b))
  assert sum(op.dot_flops for op in ops.values()) == 2 * 4 * 16 * 8 * 24


def test_the_pass_of_an_op_comes_from_its_op_name():
  assert step_profile.step_pass('jit(train_step)/transpose(jvp(DiT))/blocks/ffn_in/dot_general') \
      == 'backward'
  assert step_profile.step_pass('jit(train_step)/jvp(DiT)/DiT._tokens/blocks/ffn_in') == 'forward'
  assert step_profile.step_pass('jit(train_step)/jvp(jit(_normal))/jit(_normal_real)') \
      == 'random numbers'
  assert step_profile.step_pass('jit(train_step)/mul') == 'objective, optimizer, EMA'


def test_self_times_take_each_events_children_out(tmp_path):
  events = [  # thread 1: an executor run of 100 us holding two ops; thread 2: one op
      {'ph': 'X', 'pid': 1, 'tid': 1, 'ts': 0, 'dur': 100, 'name': 'ThunkExecutor::Execute'},
      {'ph': 'X', 'pid': 1, 'tid': 1, 'ts': 10, 'dur': 30, 'name': 'dot.1'},
      {'ph': 'X', 'pid': 1, 'tid': 1, 'ts': 50, 'dur': 40, 'name': 'fusion.2'},
      {'ph': 'X', 'pid': 1, 'tid': 2, 'ts': 0, 'dur': 60, 'name': 'fusion.2'}]
  folder = tmp_path / 'plugins' / 'profile' / 'run'
  folder.mkdir(parents=True)
  (folder / 'host.trace.json.gz').write_bytes(gzip.compress(json.dumps(
      {'traceEvents': events}).encode()))
  totals = step_profile.self_times(tmp_path)
  assert totals['ThunkExecutor::Execute'] == [30.0, 1]
  assert totals['dot.1'] == [30.0, 1] and totals['fusion.2'] == [100.0, 2]


def test_the_summary_sums_kinds_and_passes_and_leaves_out_the_hosts_work():
  ops = {'dot.1': step_profile.Op('matmul', 2e9, 'jit(f)/jvp(DiT)/blocks/dot_general'),
         'copy.2': step_profile.Op('data movement', 0.0, 'jit(f)/transpose(jvp(DiT))/copy')}
  totals = {'dot.1': [20_000.0, 2], 'copy.2': [10_000.0, 2],
            'ThunkExecutor::Execute': [10_000.0, 4], 'python': [99_000.0, 1]}
  out = step_profile.summarize(totals, ops, wall_s=0.05, cpu_s=0.06, steps=2, top=2, cores=2)
  kinds = {row['kind']: row for row in out['kinds']}
  assert out['op_ms'] == 20.0 and kinds['matmul']['ms_per_step'] == 10.0
  assert kinds['matmul']['dot_gflops_per_s'] == 200.0  # 2 GFLOP in 10 ms
  assert {row['pass']: row['ms_per_step'] for row in out['passes']} == {
      'forward': 10.0, 'backward': 5.0, 'runtime': 5.0}
  assert abs(out['cpu_busy_pct'] - 60.0) < 1e-9  # 60 ms of CPU in 50 ms on 2 cores
  assert [row['op'] for row in out['top']] == ['dot.1', 'copy.2']


def test_a_real_train_step_is_profiled_and_its_dots_are_the_models_flops():
  from configs import world  # pylint: disable=g-import-not-at-top
  config = world.get_config('runlocal=True')
  case = 'T/2:2x16x16:1x8x8:8'
  out = throughput.train_step_profile(config, case, steps=2, top=5)
  assert out['op_ms'] > 0 and out['wall_ms'] > 0 and out['cpu_busy_pct'] > 0
  kinds = {row['kind'] for row in out['kinds']}
  assert {'matmul', 'elementwise and reductions'} <= kinds
  assert {'forward', 'backward'} <= {row['pass'] for row in out['passes']}
  # The dots the profile found are the model's matmuls, forward and backward (~3 forwards).
  parts = throughput._build(throughput._model_config(  # pylint: disable=protected-access
      config, 'T/2', (2, 16, 16), (1, 8, 8), 8), None)
  expected = 3 * 8 * dit.flops_per_sample(parts.model.config, 8, parts.encoder.max_length)
  np.testing.assert_allclose(out['dot_gflop_per_step'] * 1e9, expected, rtol=0.3)
  assert len(out['top']) == 5
