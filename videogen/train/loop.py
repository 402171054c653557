"""The training loop, one for every Run (runtime/run.py): data -> model batch -> sharded train
step -> metrics, checkpoints, hooks.

Resumes from the newest checkpoint in `workdir/checkpoints` (state and data position), so a
preempted or crashed run loses at most the steps since that checkpoint and continues exactly.
A nan/inf loss or gradient norm stops the run (checked at logged and saved steps, so no bad
state is saved), unless config.train.skip_nonfinite lets that many bad updates be dropped.
What else happens during training (sample grids, reconstructions, latent statistics) is handed
in as hooks by whoever starts it (train/hooks.py has the usual ones); the loop knows none.
"""
import dataclasses
import json
import pathlib
import time
from collections.abc import Sequence
from typing import Callable

from absl import logging
import jax
import numpy as np
import tqdm

from videogen.parallel import distributed
from videogen.parallel import sharding
from videogen.runtime import checkpoint
from videogen.runtime import dit_run
from videogen.runtime import run as run_lib
from videogen.runtime import state as state_lib
from videogen.train import metrics as metrics_lib
from videogen.train import objective
from videogen.train import preemption
from videogen.train import prefetch
from videogen.train import step as step_lib
from videogen.train import vae_objective


@dataclasses.dataclass(frozen=True)
class Hook:
  """fn(step, state, run), called every `every` steps (0: never during training) and, with
  `at_end`, once after the last step unless it just ran. Every process calls it (a hook that
  gathers a sharded state takes part in a collective); hooks write from process 0 only."""
  fn: Callable[[int, state_lib.TrainState, run_lib.Run], None]
  every: int = 0
  at_end: bool = False


@dataclasses.dataclass
class TrainResult:
  state: state_lib.TrainState
  run: run_lib.Run
  first_step: int     # the step this invocation started from (0 for a fresh run)
  last_step: int
  stopped_early: bool  # by the time budget or a signal, before train.steps


def make_sharded_train_step(run: run_lib.Run, *,
                            skip_nonfinite: bool = False) -> step_lib.StepFn:
  """The jitted, donated train step of the run's objective on run.mesh; with skip_nonfinite, one
  that drops updates whose loss or gradient norm is nan/inf (`step.skip_nonfinite`). A LoRA
  run's step also reads its frozen base (run.base_params, read here on first use)."""
  if isinstance(run, dit_run.DitRun):
    train_step, frozen = objective.make_train_step(run), run.base_params
  else:
    train_step, frozen = vae_objective.make_train_step(run), None
  if skip_nonfinite:
    train_step = step_lib.skip_nonfinite(train_step)
  return step_lib.jit_train_step(train_step, run.state_shardings,
                                 sharding.batch_sharding(run.mesh, run.rules), run.mesh,
                                 rules=run.rules, frozen=frozen)


def _dropped_steps(flags: list, last_step: int) -> list[int]:
  """The steps, of the len(flags) ending at last_step, whose 'skipped' flag is set."""
  first = last_step - len(flags) + 1
  return [first + i for i, flag in enumerate(jax.device_get(flags)) if flag]


class _Window:
  """What the steps since the last log did, on all processes: summed counts, averaged levels."""

  def __init__(self):
    self.start, self.steps, self.counts, self.levels = time.perf_counter(), 0, {}, {}

  def add(self, counts: dict, levels: dict) -> None:
    self.steps += 1
    for name, value in counts.items():
      self.counts[name] = self.counts.get(name, 0) + value * jax.process_count()
    for name, value in levels.items():
      self.levels.setdefault(name, []).append(value)

  def scalars(self) -> dict:
    seconds = time.perf_counter() - self.start
    return {'steps_per_s': self.steps / seconds,
            **{f'{name}_per_s': total / seconds for name, total in self.counts.items()},
            **{name: float(np.mean(values)) for name, values in self.levels.items()}}


def train(run: run_lib.Run, workdir, *, hooks: Sequence[Hook] = (),
          progress: bool = True, restore_fallback: bool = False) -> TrainResult:
  """Trains `run` until config.train.steps or config.train.max_minutes; see the module
  docstring.

  restore_fallback: when the newest checkpoint cannot be read (a truncated or edited file),
  resume from the newest one that can, renaming the unreadable step folders to
  `<step>.unreadable` (see checkpoint.Checkpointer); without it such a folder stops the run with
  an error that names it. Off by default, so that no saved step is passed over unasked.

  config.train.skip_nonfinite (default 0): how many steps with a nan/inf loss or gradient norm
  this invocation may drop (params and optimizer state stay as they were) before it stops as
  with 0, naming the step; the count of dropped steps is logged as 'skipped_steps'.

  The run's mesh decides the devices. In a multi-process run (parallel/distributed.py) every
  process calls this with the same config and workdir: each reads its own shard of the data,
  and only process 0 writes the config and metrics.
  """
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  tc = run.config.train
  ckpt = checkpoint.Checkpointer(str(workdir / 'checkpoints'), max_to_keep=tc.keep_checkpoints,
                                 save_interval_steps=tc.checkpoint_every,
                                 remove_partial_saves=True, restore_fallback=restore_fallback)
  state, data_iter = run.restore_or_init(ckpt, shard_index=jax.process_index(),
                                         shard_count=jax.process_count())
  run.write_config(workdir)  # only once the run is known compatible with its checkpoints
  first_step = int(state.step)

  batch_sharding = sharding.batch_sharding(run.mesh, run.rules)
  skip_limit = tc.get('skip_nonfinite', 0)  # configs from before the field: 0
  train_step = make_sharded_train_step(run, skip_nonfinite=skip_limit > 0)
  writer = metrics_lib.MetricWriter(str(workdir))
  deadline = time.monotonic() + 60 * tc.max_minutes if tc.max_minutes > 0 else float('inf')
  bar = tqdm.tqdm(initial=first_step, total=tc.steps, desc=run.description, unit='step',
                  disable=not progress or jax.process_index() != 0, dynamic_ncols=True)
  step, stopped_early, window = first_step, False, _Window()
  last_called, dropped, unchecked = {}, [], []  # steps skipped; 'skipped' flags not read yet
  # Leaving `ckpt` waits for the save underway, error or not: the last one started is whole.
  # The next update's model batch is made on a thread while this one's step runs (data.ahead
  # of them; 0: in turn); checkpoints save the data position of the batches taken (prefetch.py).
  with preemption.stop_on_signal() as stop, ckpt, \
      prefetch.ModelBatches(run, data_iter, first_step, ahead=run.config.data.get('ahead', 1),
                            echo=run.config.data.get('echo', 1)) as batches:
    while step < tc.steps:
      model_batch, counts, levels = next(batches)
      window.add(counts, levels)
      state, step_metrics = train_step(state, sharding.shard_batch(model_batch, batch_sharding))
      step += 1
      if skip_limit:
        unchecked.append(step_metrics.pop('skipped'))
      bar.update(1)
      last = step == tc.steps
      stop_now = stop.should_stop() or time.monotonic() > deadline
      if jax.process_count() > 1:
        # Every process must stop at the same step (the next one enters a collective), so they
        # agree, with one small allgather, at the steps that already wait for the device.
        stop_now = step % tc.log_every == 0 and distributed.any_process(stop_now)
      stop_now = stop_now or ckpt.reached_preemption(step)  # Orbax agrees on its own
      if step % tc.log_every == 0 or last or stop_now or step % tc.checkpoint_every == 0:
        step_metrics = jax.device_get(step_metrics)
        if skip_limit:
          newly, unchecked = _dropped_steps(unchecked, step), []
          if newly:
            logging.warning('dropped the updates of steps %s: nan/inf loss or gradient norm.',
                            newly)
          dropped += newly
          step_lib.check_skipped(dropped, skip_limit)
          step_metrics['skipped_steps'] = len(dropped)
        else:
          step_lib.check_finite(step_metrics, step)
        scalars = {**step_metrics, **window.scalars()}
        writer.write_scalars(step, scalars)
        bar.set_postfix({run.progress_metric: f'{float(scalars[run.progress_metric]):.4g}'},
                        refresh=False)
        window = _Window()
      ckpt.save(step, state, batches, run.config, force=last or stop_now)
      for i, hook in enumerate(hooks):
        if hook.every and step % hook.every == 0:
          hook.fn(step, state, run)
          last_called[i] = step
      if stop_now and not last:
        stopped_early = True
        break
  bar.close()
  writer.close()
  for i, hook in enumerate(hooks):
    if hook.at_end and last_called.get(i) != step:
      hook.fn(step, state, run)
  return TrainResult(state=state, run=run, first_step=first_step, last_step=step,
                     stopped_early=stopped_early)


def read_metrics(workdir) -> list[dict]:
  """The rows of workdir/metrics.jsonl (every logged step, across resumed runs), one per step in
  step order. A run that crashed logged the steps after its last checkpoint once more when it
  resumed; the later row of a step (the one the surviving run made) is kept."""
  path = pathlib.Path(workdir) / 'metrics.jsonl'
  if not path.exists():
    return []
  rows = {}
  for line in path.read_text().splitlines():
    if line.strip():
      row = json.loads(line)
      rows[row['step']] = row
  return [rows[step] for step in sorted(rows)]
