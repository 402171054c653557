"""The training loop: data -> text encoding -> sharded train step -> metrics, checkpoints, samples.

Resumes from the newest checkpoint in `workdir/checkpoints` (state and data position), so a
preempted or crashed run loses at most the steps since that checkpoint and continues exactly.
"""
import dataclasses
import functools
import json
import pathlib
import time
from typing import Callable

import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import tqdm

from videogen import generate
from videogen import media
from videogen.data import latent_cache
from videogen.data import pipeline
from videogen.evals import prompts as prompts_lib
from videogen.models import dit
from videogen.models import patches
from videogen.parallel import sharding
from videogen.train import checkpoint
from videogen.train import components
from videogen.train import metrics as metrics_lib
from videogen.train import objective
from videogen.train import preemption
from videogen.train import step as step_lib
from videogen.train import state as state_lib

# Config sections a checkpoint must agree with to be resumed or sampled.
COMPATIBLE_KEYS = ('model', 'text', 'autoencoder', 'diffusion.prediction', 'conditioning.enabled',
                   'world.height', 'world.width', 'world.num_frames')

SampleHook = Callable[[int, state_lib.TrainState, components.Components], None]


def write_sample_grid(workdir: pathlib.Path, step: int, state: state_lib.TrainState,
                      parts: components.Components) -> None:
  """The default sample hook: the config's prompt set from the EMA weights, as a captioned grid
  in workdir/samples/<step>/grid.{mp4,png}. Every process must call it: in a multi-process run
  they all gather the weights, then process 0 samples on one of its devices."""
  s = parts.config.sample
  params = state.ema_params if s.use_ema else state.params
  if jax.process_count() > 1:
    params = gather(params)  # a collective: every process takes part
    if jax.process_index() != 0:
      return
    parts = generate.sampling_parts(parts.config)
    params = jax.device_put(params, parts.mesh.devices.flat[0])
  prompts = prompts_lib.world_prompts(parts.config, num_train=s.num_samples, num_held_out=0)
  gen = generate.Generator(parts, params, step)
  settings = generate.SampleSettings(steps=s.steps, method=s.method, cfg_scale=s.cfg_scale)
  texts = [p.text for p in prompts]
  videos = gen.generate(texts, seeds=[p.seed for p in prompts], settings=settings)
  media.write_grid(workdir / 'samples' / str(step) / 'grid', list(videos), texts,
                   fps=parts.config.world.fps)


def gather(tree):
  """Whole arrays of a sharded pytree on this process: the tree itself on one process; on several
  (a collective: every process must call it) numpy copies, each host holding all of it."""
  if jax.process_count() == 1:
    return tree
  return multihost_utils.process_allgather(tree, tiled=True)


@dataclasses.dataclass
class TrainResult:
  state: state_lib.TrainState
  parts: components.Components
  first_step: int     # the step this invocation started from (0 for a fresh run)
  last_step: int
  stopped_early: bool  # by the time budget or a signal, before train.steps


def make_sharded_train_step(parts: components.Components) -> step_lib.StepFn:
  """The jitted, donated train step on parts.mesh (what `train` and the benchmark run)."""
  return step_lib.jit_train_step(
      step_lib.make_train_step(objective.make_loss_fn(parts), parts.optimizer,
                               ema_decay=parts.config.optim.ema_decay,
                               lr_schedule=parts.lr_schedule,
                               grad_accum_steps=state_lib.grad_accum_steps(parts.config.optim)),
      parts.state_shardings, sharding.batch_sharding(parts.mesh), parts.mesh, rules=parts.rules)


@dataclasses.dataclass
class WorkWindow:
  """The work of the steps since the last log, on all processes: real tokens (packed rows
  count their clips' tokens only), the FLOPs computed (padding included) and packed rows' fill."""
  steps: int = 0
  tokens: int = 0
  flops: float = 0.0
  fills: list[float] = dataclasses.field(default_factory=list)

  def add(self, parts: components.Components, batch: dict, fill=None) -> None:
    """Counts one step's model batch (components.encode_batch's) and its packing fill."""
    model_config = parts.model.config
    if 'patches' in batch:
      rows, length = batch['segment_ids'].shape
      tokens = int(np.count_nonzero(batch['segment_ids']))
      flops = rows * dit.flops_per_sample(model_config, length, batch['text'].shape[1])
    else:
      clips = batch['video'].shape[0]
      per_clip = patches.num_tokens(batch['video'].shape[1:4], model_config.patch_size)
      tokens = clips * per_clip
      flops = clips * dit.flops_per_sample(model_config, per_clip, batch['text'].shape[1])
    self.steps += 1
    self.tokens += tokens * jax.process_count()
    self.flops += 3 * flops * jax.process_count()  # forward and backward
    if fill is not None:
      self.fills.append(float(fill))

  def rates(self, seconds: float) -> dict:
    """Per-second rates over `seconds`, plus the mean fill of packed rows."""
    rates = {'steps_per_s': self.steps / seconds, 'tokens_per_s': self.tokens / seconds,
             'gflops_per_s': self.flops / seconds / 1e9}
    return rates | ({'fill': float(np.mean(self.fills))} if self.fills else {})


def dataset_from_config(config: ml_collections.ConfigDict, *, shard_index: int = 0,
                        shard_count: int = 1):
  """This process's training batches of config.data.source: world clips or a latent cache."""
  if pipeline.source(config) == 'latent_cache':
    return latent_cache.dataset_from_config(config, shard_index=shard_index,
                                            shard_count=shard_count)
  return pipeline.world_dataset_from_config(config, shard_index=shard_index,
                                            shard_count=shard_count)


def write_config(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
  """workdir/config.json: what the sampler rebuilds the model from."""
  if jax.process_index() == 0:
    (workdir / 'config.json').write_text(config.to_json_best_effort(indent=1))


def restore_or_init(parts, ckpt: checkpoint.Checkpointer, make_data_iter,
                    keys=COMPATIBLE_KEYS, check_saved=None):
  """(state, data iterator): the newest checkpoint's state with make_data_iter()'s iterator
  moved to its position, else a fresh state and iterator. The iterator is made only once the
  checkpoint is known compatible (check_saved(saved config, config) when given, which raises
  on what keys cannot express, then config `keys` and data layout), so a mismatch is reported as
  such and not as bad data. `parts`: the DiT's Components or the VAE's VaeParts."""
  if ckpt.latest_step() is None:
    return sharding.create_sharded_state(parts.init_fn, parts.state_shardings, parts.mesh,
                                         parts.rules), make_data_iter()
  saved = ckpt.restore_config()
  if check_saved is not None:
    check_saved(saved, parts.config)
  checkpoint.check_compatible(saved, parts.config, keys, missing={
      f'model.{field}': old for field, old in components.OLD_RUN_MODEL.items()})
  saved_layout = saved.get('data', {}).get('layout', 'fixed')  # runs before layouts: 'fixed'
  if saved_layout != pipeline.layout(parts.config):
    raise ValueError(f'the checkpoint holds a data position of data.layout {saved_layout!r}, not '
                     f'{pipeline.layout(parts.config)!r}: resume with '
                     f'--config.data.layout={saved_layout} or start a new workdir.')
  data_iter = make_data_iter()
  return ckpt.restore(parts.abstract_state, data_iter), data_iter


def train(config: ml_collections.ConfigDict, workdir, *,
          sample_hook: SampleHook | None = None, progress: bool = True,
          devices=None) -> TrainResult:
  """Trains until config.train.steps or config.train.max_minutes; see the module docstring.

  The mesh spans `devices` (default: every device of the cluster). In a multi-process run
  (parallel/distributed.py) every process calls this with the same config and workdir: each
  reads its own shard of the data, and only process 0 writes the config, metrics and samples.

  Every config.train.sample_every steps (0: never) sample_hook(step, state, parts) runs;
  by default it writes a captioned grid to workdir/samples/<step>/.
  """
  workdir = pathlib.Path(workdir)
  sample_hook = sample_hook or functools.partial(write_sample_grid, workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  parts = components.build(config, devices=devices)
  components.check_latent_cache(parts)
  tc = config.train

  ckpt = checkpoint.Checkpointer(str(workdir / 'checkpoints'), max_to_keep=tc.keep_checkpoints,
                                 save_interval_steps=tc.checkpoint_every)
  state, data_iter = restore_or_init(parts, ckpt, lambda: iter(dataset_from_config(
      config, shard_index=jax.process_index(), shard_count=jax.process_count())))
  write_config(config, workdir)  # only once the run is known compatible with its checkpoints
  first_step = int(state.step)

  batch_sharding = sharding.batch_sharding(parts.mesh)
  train_step = make_sharded_train_step(parts)

  writer = metrics_lib.MetricWriter(str(workdir))
  deadline = time.monotonic() + 60 * tc.max_minutes if tc.max_minutes > 0 else float('inf')
  bar = tqdm.tqdm(initial=first_step, total=tc.steps, desc='train', unit='step',
                  disable=not progress or jax.process_index() != 0, dynamic_ncols=True)
  step, stopped_early = first_step, False
  window_start, window = time.perf_counter(), WorkWindow()
  with preemption.stop_on_signal() as stop:
    while step < tc.steps:
      batch = next(data_iter)
      host_batch = components.encode_batch(parts, batch)
      window.add(parts, host_batch, batch.get('fill'))
      state, step_metrics = train_step(state, sharding.shard_batch(host_batch, batch_sharding))
      step += 1
      bar.update(1)
      last = step == tc.steps
      out_of_time = time.monotonic() > deadline
      stop_now = stop.should_stop() or ckpt.reached_preemption(step) or out_of_time
      if step % tc.log_every == 0 or last or stop_now or step % tc.checkpoint_every == 0:
        step_metrics = jax.device_get(step_metrics)
        step_lib.check_finite(step_metrics, step)
        scalars = {**step_metrics, **window.rates(time.perf_counter() - window_start)}
        writer.write_scalars(step, scalars)
        bar.set_postfix(loss=f'{scalars["loss"]:.4f}', refresh=False)
        window_start, window = time.perf_counter(), WorkWindow()
      ckpt.save(step, state, data_iter, config, force=last or stop_now)
      if tc.sample_every and step % tc.sample_every == 0:
        sample_hook(step, state, parts)
      if stop_now and not last:
        stopped_early = True
        break
  bar.close()
  ckpt.wait()
  ckpt.close()
  writer.close()
  return TrainResult(state=state, parts=parts, first_step=first_step, last_step=step,
                     stopped_early=stopped_early)


def read_metrics(workdir) -> list[dict]:
  """The rows of workdir/metrics.jsonl (every logged step, across resumed runs)."""
  path = pathlib.Path(workdir) / 'metrics.jsonl'
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
