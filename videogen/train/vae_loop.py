"""The autoencoder's training loop: world clips -> L1 + SSIM + KL (+ optional adversarial loss,
train/vae_adversarial.py) -> the shared train step.

Built from the DiT trainer's parts (TrainState, make_train_step, jit_train_step, Checkpointer,
MetricWriter, stop_on_signal, create_sharded_state) and, like `loop.train`, resumes exactly from
the newest checkpoint in workdir/checkpoints (state and data position).

Images and videos train in one run: every `train.image_every`-th update (counting from 1) takes
each frame of its batch's world clips alone, as a 1-frame video, which trains the causal
encoder's first-frame path that images and image-to-video use; the rest take whole clips of
1 + r·k frames. Which updates are images depends only on the step, so a resumed run repeats it.

Workdir: config.json, checkpoints/<step>/, tb/, metrics.jsonl, samples/<step>/reconstruction.
{mp4,png} (held-out input | reconstruction), latent_stats.json (per-channel mean/std of the
posterior means, measured with the EMA weights at the end of every invocation).

Legend: b batch, t frames, h/w height/width, c channels.
"""
import dataclasses
import functools
import pathlib
import time
from typing import Any, Callable

import einops
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from videogen import media
from videogen.data import pipeline
from videogen.evals import reconstruction
from videogen.models import autoencoder
from videogen.models import discriminator as discriminator_lib
from videogen.parallel import mesh as mesh_lib
from videogen.parallel import sharding
from videogen.train import checkpoint
from videogen.train import loop
from videogen.train import metrics as metrics_lib
from videogen.train import preemption
from videogen.train import state as state_lib
from videogen.train import step as step_lib
from videogen.train import vae_adversarial
from videogen.train import vae_loss

# Config sections a checkpoint must agree with to be resumed or restored; with the adversarial
# loss on, also the discriminator's shape (whether it is on at all: vae_adversarial.
# check_resumable).
COMPATIBLE_KEYS = ('model',)
ADVERSARIAL_KEYS = ('discriminator.base_channels', 'discriminator.num_layers')
LATENT_STATS_FILE = 'latent_stats.json'


@dataclasses.dataclass
class VaeParts:
  """What `build` makes: the model, optimizer, mesh and the train state's shardings.

  With the adversarial loss on, `discriminator` is set and the state's params are
  {'autoencoder', 'discriminator'} (`autoencoder_params` picks the VAE's).
  """
  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  rules: sharding.LogicalRules
  model: autoencoder.AutoencoderKL
  discriminator: discriminator_lib.PatchDiscriminator | None
  optimizer: optax.GradientTransformation
  lr_schedule: optax.Schedule
  init_fn: Callable[[], state_lib.TrainState]
  abstract_state: state_lib.TrainState
  state_shardings: Any


@dataclasses.dataclass
class VaeTrainResult:
  state: state_lib.TrainState
  parts: VaeParts
  first_step: int      # the step this invocation started from (0 for a fresh run)
  last_step: int
  stopped_early: bool  # by the time budget or a signal, before train.steps
  latent_stats: dict   # what latent_stats.json holds


def model_config(config: ml_collections.ConfigDict) -> autoencoder.AutoencoderConfig:
  """The AutoencoderConfig a run's config names (config.model: a preset and overrides)."""
  return autoencoder.run_model_config(config.model.to_dict())


def build(config: ml_collections.ConfigDict, *, devices=None) -> VaeParts:
  """Builds every part from `config` (see configs/vae_world.py); allocates no parameters."""
  mesh = mesh_lib.make_mesh(config.mesh, devices)
  sharding.check_batch_divisible(config.data.batch_size, mesh,
                                 state_lib.grad_accum_steps(config.optim))
  if config.train.image_every < 0:
    raise ValueError(f'train.image_every {config.train.image_every} is negative: use 0 (videos '
                     'only) or N to make every N-th update an image batch.')
  rules = sharding.rules_from_config(config)
  model = autoencoder.AutoencoderKL(model_config(config))
  w = config.world
  autoencoder.check_video(jax.ShapeDtypeStruct((1, w.num_frames, w.height, w.width, 3),
                                               jnp.float32), model.config)
  optimizer = state_lib.make_optimizer(config.optim)
  discriminator = None
  if vae_adversarial.enabled(config):
    discriminator = vae_adversarial.make_discriminator(config)
    optimizer = vae_adversarial.make_optimizer(optimizer, config)

  def init_fn():
    side = model.config.spatial_downsample
    image = jnp.zeros((1, 1, side, side, 3), jnp.float32)

    def model_init(rng):
      # rbg keys: the ~100 parameter initialisers compile ~3x faster than with threefry.
      rbg = jax.random.key(jax.random.bits(rng, dtype=jnp.uint32), impl='rbg')
      params_rng, sample_rng = jax.random.split(rbg)
      params = model.init(params_rng, image, sample_rng)['params']
      if discriminator is None:
        return params
      # The VAE's params are drawn as without the discriminator, from the same key.
      return {vae_adversarial.AUTOENCODER: params, vae_adversarial.DISCRIMINATOR:
              discriminator.init(jax.random.fold_in(rng, 1), image)['params']}

    return state_lib.init_train_state(model_init, optimizer, jax.random.key(config.seed))

  abstract_state, state_shardings = sharding.abstract_state_and_shardings(init_fn, mesh, rules)
  return VaeParts(config=config, mesh=mesh, rules=rules, model=model,
                  discriminator=discriminator, optimizer=optimizer,
                  lr_schedule=state_lib.learning_rate_schedule(config.optim), init_fn=init_fn,
                  abstract_state=abstract_state, state_shardings=state_shardings)


def make_sharded_train_step(parts: VaeParts) -> step_lib.StepFn:
  """The jitted, donated train step on parts.mesh; it compiles once for clips, once for images."""
  cfg = parts.config
  if parts.discriminator is None:
    loss_fn = vae_loss.make_loss_fn(parts.model, cfg.loss)
  else:
    loss_fn = vae_adversarial.make_loss_fn(parts.model, parts.discriminator, cfg.loss)
  if cfg.data.get('permute_channels', False):  # configs from before the option: off
    loss_fn = vae_loss.with_channel_permutations(loss_fn)
  train_step = step_lib.make_train_step(
      loss_fn, parts.optimizer, ema_decay=cfg.optim.ema_decay, lr_schedule=parts.lr_schedule,
      grad_accum_steps=state_lib.grad_accum_steps(cfg.optim))
  if parts.discriminator is not None:
    train_step = vae_adversarial.switch_on_at(train_step, cfg.loss.adversarial_start_step)
  return step_lib.jit_train_step(train_step, parts.state_shardings,
                                 sharding.batch_sharding(parts.mesh), parts.mesh,
                                 rules=parts.rules)


def autoencoder_params(parts: VaeParts, params):
  """The VAE's own params out of the train state's (or its EMA's)."""
  return params if parts.discriminator is None else params[vae_adversarial.AUTOENCODER]


def is_image_step(step: int, image_every: int) -> bool:
  """Whether update number `step` (from 1) trains on images."""
  return image_every > 0 and step % image_every == 0


def as_images(video_bthwc: np.ndarray) -> np.ndarray:
  """Every frame of every clip as its own 1-frame video: [B, T, ...] -> [B·T, 1, ...]."""
  return einops.rearrange(video_bthwc, 'b t h w c -> (b t) 1 h w c')


@functools.partial(jax.jit, static_argnums=0)
def _encode_mean(model: autoencoder.AutoencoderKL, params, video_bthwc):
  """Posterior means of whole clips (one-shot; the sizes training and stats use are small)."""
  return model.apply({'params': params}, video_bthwc, method='encode')[0]


@functools.partial(jax.jit, static_argnums=0)
def _reconstruct(model: autoencoder.AutoencoderKL, params, video_bthwc):
  recon = model.apply({'params': params}, _encode_mean(model, params, video_bthwc), method='decode')
  return jnp.clip(recon, -1.0, 1.0)


def write_reconstruction_grid(workdir: pathlib.Path, step: int, params, parts: VaeParts) -> None:
  """Held-out world clips beside their reconstructions (posterior means, decoded), captioned
  with PSNR, in workdir/samples/<step>/reconstruction.{mp4,png}. Every process calls it (it
  gathers the weights); process 0 writes."""
  params = loop.gather(params)
  if jax.process_index() != 0:
    return
  cfg = parts.config
  clips = reconstruction.world_clips(cfg.world, seed=cfg.seed, split='held_out',
                                     num_clips=cfg.sample.num_clips)
  recon = _reconstruct(parts.model, params, clips)
  psnr_b = np.asarray(reconstruction.psnr(recon, clips).mean(axis=1))
  pairs = [media.to_uint8(np.concatenate([c, r], axis=2)) for c, r in zip(clips, np.asarray(recon))]
  captions = [f'input | reconstruction, {p:.1f} dB' for p in psnr_b]
  media.write_grid(workdir / 'samples' / str(step) / 'reconstruction', pairs, captions,
                   fps=cfg.world.fps)


def measure_latent_stats(config: ml_collections.ConfigDict, model: autoencoder.AutoencoderKL,
                         params) -> dict:
  """Per-channel mean/std of posterior means over config.latent_stats.num_clips train-split
  world clips of seed config.seed + 1 (clips the run did not see), as JSON-ready lists. Every
  process calls it (it gathers the weights) and gets the stats."""
  params = loop.gather(params)
  ls, seed = config.latent_stats, config.seed + 1
  clips = reconstruction.world_clips(config.world, seed=seed, split='train',
                                     num_clips=ls.num_clips)
  means = [_encode_mean(model, params, clips[i:i + ls.batch_size])
           for i in range(0, len(clips), ls.batch_size)]
  stats = autoencoder.latent_stats(means)
  return {'mean': stats['mean'].tolist(), 'std': stats['std'].tolist(),
          'num_clips': ls.num_clips, 'seed': seed, 'split': 'train'}


def train_vae(config: ml_collections.ConfigDict, workdir, *,
              progress: bool = True) -> VaeTrainResult:
  """Trains until config.train.steps or config.train.max_minutes; see the module docstring.

  Writes a reconstruction grid every config.train.sample_every steps (0: never) and at the end,
  then measures the latent stats of the final EMA weights.
  """
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  parts = build(config)
  tc = config.train
  ckpt = checkpoint.Checkpointer(str(workdir / 'checkpoints'), max_to_keep=tc.keep_checkpoints,
                                 save_interval_steps=tc.checkpoint_every)
  state, data_iter = loop.restore_or_init(
      parts, ckpt, lambda: iter(pipeline.world_dataset_from_config(
          config, shard_index=jax.process_index(), shard_count=jax.process_count())),
      keys=COMPATIBLE_KEYS + (ADVERSARIAL_KEYS if parts.discriminator else ()),
      check_saved=vae_adversarial.check_resumable)
  loop.write_config(config, workdir)  # only once the run is known compatible with its checkpoints
  first_step = int(state.step)

  batch_sharding = sharding.batch_sharding(parts.mesh)
  train_step = make_sharded_train_step(parts)
  writer = metrics_lib.MetricWriter(str(workdir))
  deadline = time.monotonic() + 60 * tc.max_minutes if tc.max_minutes > 0 else float('inf')
  bar = tqdm.tqdm(initial=first_step, total=tc.steps, desc='train vae', unit='step',
                  disable=not progress or jax.process_index() != 0, dynamic_ncols=True)
  step, stopped_early, sampled_step = first_step, False, None
  window_start, window_steps = time.perf_counter(), 0
  with preemption.stop_on_signal() as stop:
    while step < tc.steps:
      video_bthwc = next(data_iter)['video']
      images = is_image_step(step + 1, tc.image_every)
      if images:
        video_bthwc = as_images(video_bthwc)
      batch = sharding.shard_batch({'video': video_bthwc}, batch_sharding)
      state, step_metrics = train_step(state, batch)
      step += 1
      window_steps += 1
      bar.update(1)
      last = step == tc.steps
      stop_now = (stop.should_stop() or ckpt.reached_preemption(step)
                  or time.monotonic() > deadline)
      if step % tc.log_every == 0 or last or stop_now or step % tc.checkpoint_every == 0:
        step_metrics = jax.device_get(step_metrics)
        step_lib.check_finite(step_metrics, step)
        rate = window_steps / (time.perf_counter() - window_start)
        frames = config.data.batch_size * config.world.num_frames
        writer.write_scalars(step, {**step_metrics, 'images': float(images),
                                    'steps_per_s': rate, 'frames_per_s': rate * frames})
        bar.set_postfix(psnr=f'{float(step_metrics["psnr"]):.1f}', refresh=False)
        window_start, window_steps = time.perf_counter(), 0
      ckpt.save(step, state, data_iter, config, force=last or stop_now)
      if tc.sample_every and step % tc.sample_every == 0:
        write_reconstruction_grid(workdir, step, autoencoder_params(parts, state.ema_params),
                                  parts)
        sampled_step = step
      if stop_now and not last:
        stopped_early = True
        break
  bar.close()
  ckpt.wait()
  ckpt.close()
  writer.close()
  ema_params = autoencoder_params(parts, state.ema_params)
  if sampled_step != step:
    write_reconstruction_grid(workdir, step, ema_params, parts)
  stats = {'step': step, 'use_ema': True, **measure_latent_stats(config, parts.model, ema_params)}
  if jax.process_index() == 0:
    media.write_json(workdir / LATENT_STATS_FILE, stats)
  return VaeTrainResult(state=state, parts=parts, first_step=first_step, last_step=step,
                        stopped_early=stopped_early, latent_stats=stats)
