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
import jax.numpy as jnp
import ml_collections
import tqdm

from videogen import generate
from videogen import media
from videogen.data import pipeline
from videogen.diffusion import conditioning
from videogen.diffusion import flow
from videogen.evals import prompts as prompts_lib
from videogen.models import dit
from videogen.models import patches
from videogen.parallel import sharding
from videogen.train import checkpoint
from videogen.train import components
from videogen.train import metrics as metrics_lib
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
  in workdir/samples/<step>/grid.{mp4,png}."""
  if jax.process_index() != 0:
    return
  s = parts.config.sample
  prompts = prompts_lib.world_prompts(parts.config, num_train=s.num_samples, num_held_out=0)
  gen = generate.Generator(parts, state.ema_params if s.use_ema else state.params, step)
  settings = generate.SampleSettings(steps=s.steps, method=s.method, cfg_scale=s.cfg_scale)
  texts = [p.text for p in prompts]
  videos = gen.generate(texts, seeds=[p.seed for p in prompts], settings=settings)
  media.write_grid(workdir / 'samples' / str(step) / 'grid', list(videos), texts,
                   fps=parts.config.world.fps)


@dataclasses.dataclass
class TrainResult:
  state: state_lib.TrainState
  parts: components.Components
  first_step: int     # the step this invocation started from (0 for a fresh run)
  last_step: int
  stopped_early: bool  # by the time budget or a signal, before train.steps


def make_loss_fn(parts: components.Components):
  """loss_fn(params, batch, rng) for the train step: flow matching with text dropout for CFG
  and, for a frame-conditioned model, one random task per example whose given frames the loss
  leaves out (diffusion/conditioning.py)."""
  cfg = parts.config
  null_text, null_mask = (jnp.asarray(a) for a in parts.encoder.unconditional())
  shift = parts.shift()
  if parts.frame_conditioning:
    task_probabilities = conditioning.task_probabilities(cfg.conditioning.tasks)

  def loss_fn(params, batch, rng):
    drop_rng, task_rng, flow_rng = jax.random.split(rng, 3)
    video = batch['video']
    drop_b = jax.random.bernoulli(drop_rng, cfg.text.dropout, video.shape[:1])
    text = jnp.where(drop_b[:, None, None], null_text[None], batch['text'])
    mask = jnp.where(drop_b[:, None], null_mask[None], batch['text_mask'])
    apply_fn, loss_mask = parts.apply, None
    if parts.frame_conditioning:
      given_bt = conditioning.sample_frame_masks(task_rng, *video.shape[:2], task_probabilities)
      apply_fn = lambda p, x, t, txt, m: parts.apply(p, x, t, txt, m, video, given_bt)
      loss_mask = conditioning.loss_weights(given_bt, video)
    loss, _ = flow.flow_matching_loss(
        apply_fn, params, video, text, mask, flow_rng, shift=shift,
        t_mean=cfg.diffusion.t_mean, t_std=cfg.diffusion.t_std, loss_mask=loss_mask)
    return loss, {}

  return loss_fn


def make_sharded_train_step(parts: components.Components) -> step_lib.StepFn:
  """The jitted, donated train step on parts.mesh (what `train` and the benchmark run)."""
  return step_lib.jit_train_step(
      step_lib.make_train_step(make_loss_fn(parts), parts.optimizer,
                               ema_decay=parts.config.optim.ema_decay,
                               lr_schedule=parts.lr_schedule),
      parts.state_shardings, sharding.batch_sharding(parts.mesh), parts.mesh, rules=parts.rules)


def write_config(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
  """workdir/config.json: what the sampler rebuilds the model from."""
  if jax.process_index() == 0:
    (workdir / 'config.json').write_text(config.to_json_best_effort(indent=1))


def restore_or_init(parts: components.Components, ckpt: checkpoint.Checkpointer, data_iter):
  """The newest checkpoint's state (moving data_iter to its position), else a fresh state."""
  if ckpt.latest_step() is None:
    return sharding.create_sharded_state(parts.init_fn, parts.state_shardings, parts.mesh,
                                         parts.rules)
  checkpoint.check_compatible(ckpt.restore_config(), parts.config, COMPATIBLE_KEYS)
  return ckpt.restore(parts.abstract_state, data_iter)


def train(config: ml_collections.ConfigDict, workdir, *,
          sample_hook: SampleHook | None = None, progress: bool = True) -> TrainResult:
  """Trains until config.train.steps or config.train.max_minutes; see the module docstring.

  Every config.train.sample_every steps (0: never) sample_hook(step, state, parts) runs;
  by default it writes a captioned grid to workdir/samples/<step>/.
  """
  workdir = pathlib.Path(workdir)
  sample_hook = sample_hook or functools.partial(write_sample_grid, workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  parts = components.build(config)
  tc = config.train

  data_iter = iter(pipeline.world_dataset_from_config(
      config, shard_index=jax.process_index(), shard_count=jax.process_count()))
  ckpt = checkpoint.Checkpointer(str(workdir / 'checkpoints'), max_to_keep=tc.keep_checkpoints,
                                 save_interval_steps=tc.checkpoint_every)
  state = restore_or_init(parts, ckpt, data_iter)
  write_config(config, workdir)  # only once the run is known compatible with its checkpoints
  first_step = int(state.step)

  batch_sharding = sharding.batch_sharding(parts.mesh)
  train_step = make_sharded_train_step(parts)

  tokens = patches.num_tokens(parts.shape[:3], parts.model.config.patch_size)
  flops_per_step = 3 * config.data.batch_size * dit.flops_per_sample(
      parts.model.config, tokens, parts.encoder.max_length)
  writer = metrics_lib.MetricWriter(str(workdir))
  deadline = time.monotonic() + 60 * tc.max_minutes if tc.max_minutes > 0 else float('inf')
  bar = tqdm.tqdm(initial=first_step, total=tc.steps, desc='train', unit='step',
                  disable=not progress or jax.process_index() != 0, dynamic_ncols=True)
  step, stopped_early = first_step, False
  window_start, window_steps = time.perf_counter(), 0
  with preemption.stop_on_signal() as stop:
    while step < tc.steps:
      host_batch = components.encode_batch(parts, next(data_iter))
      state, step_metrics = train_step(state, sharding.shard_batch(host_batch, batch_sharding))
      step += 1
      window_steps += 1
      bar.update(1)
      last = step == tc.steps
      out_of_time = time.monotonic() > deadline
      stop_now = stop.should_stop() or ckpt.reached_preemption(step) or out_of_time
      if step % tc.log_every == 0 or last or stop_now or step % tc.checkpoint_every == 0:
        step_metrics = jax.device_get(step_metrics)
        step_lib.check_finite(step_metrics, step)
        seconds = time.perf_counter() - window_start
        rate = window_steps / seconds
        scalars = {**step_metrics, 'steps_per_s': rate,
                   'tokens_per_s': rate * tokens * config.data.batch_size,
                   'gflops_per_s': rate * flops_per_step / 1e9}
        writer.write_scalars(step, scalars)
        bar.set_postfix(loss=f'{scalars["loss"]:.4f}', refresh=False)
        window_start, window_steps = time.perf_counter(), 0
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
