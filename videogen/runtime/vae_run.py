"""The video autoencoder's Run (runtime/run.py): world clips in, the VAE (and, with the
adversarial loss on, its discriminator) trained; also how its latent statistics are measured.

Images and videos train in one run: every `train.image_every`-th update (counting from 1) takes
each frame of its batch's world clips alone, as a 1-frame video, which trains the causal
encoder's first-frame path that images and image-to-video use; the rest take whole clips of
1 + r·k frames. Which updates are images depends only on the step, so a resumed run repeats it.

With the adversarial loss on (config.loss.adversarial_weight > 0; train/vae_adversarial.py),
the state's params are {'autoencoder', 'discriminator'}, one optimizer per part.

Legend: b batch, t frames, h/w height/width, c channels.
"""
import dataclasses
import functools
import json
import pathlib
from typing import ClassVar

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from videogen.data import pipeline
from videogen.models import autoencoder
from videogen.models import discriminator as discriminator_lib
from videogen.parallel import mesh as mesh_lib
from videogen.parallel import sharding
from videogen.runtime import checkpoint
from videogen.runtime import run as run_lib
from videogen.runtime import state as state_lib

# Config sections a checkpoint must agree with to be resumed or restored; with the adversarial
# loss on, also the discriminator's shape (whether it is on at all: `check_saved`).
COMPATIBLE_KEYS = ('model',)
ADVERSARIAL_KEYS = ('discriminator.base_channels', 'discriminator.num_layers')
LATENT_STATS_FILE = 'latent_stats.json'
EXPORT_INFO_FILE = 'export.json'  # an export's step (and notes), beside autoencoder.json
AUTOENCODER, DISCRIMINATOR = 'autoencoder', 'discriminator'  # the adversarial state's players


@dataclasses.dataclass
class VaeRun(run_lib.Run):
  """What `build` makes. `model` is the autoencoder.AutoencoderKL; `discriminator` is set when
  the adversarial loss is on (`autoencoder_params` then picks the VAE's params)."""
  discriminator: discriminator_lib.PatchDiscriminator | None = None

  description: ClassVar[str] = 'train vae'
  progress_metric: ClassVar[str] = 'psnr'

  def dataset(self, shard_index: int, shard_count: int):
    """This process's batches of config.data.source's clips (the world's, a folder's, TFDS's)."""
    return pipeline.clips_dataset_from_config(self.config, shard_index=shard_index,
                                              shard_count=shard_count)

  def model_batch(self, batch: dict, step: int) -> tuple[dict, dict, dict]:
    """{'video'}: the clips, or on an image update each of their frames alone; counts frames,
    levels: whether the update took images."""
    video_bthwc = batch['video']
    images = is_image_step(step + 1, self.config.train.image_every)
    if images:
      video_bthwc = as_images(video_bthwc)
    frames = video_bthwc.shape[0] * video_bthwc.shape[1]
    return {'video': video_bthwc}, {'frames': frames}, {'images': float(images)}

  def check_saved(self, saved: ml_collections.ConfigDict) -> None:
    """Also raises when a checkpoint saved with the adversarial loss on is resumed with it off,
    or the other way round: the two states hold different params (the weight may change)."""
    saved_weight = saved.get('loss', {}).get('adversarial_weight', 0.0)
    saved_on = saved_weight > 0
    if saved_on != adversarial(self.config):
      effect, fix = ('switches the adversarial loss on', 'a positive weight') if saved_on else (
          'leaves it off', '0')
      raise ValueError(f'the checkpoint was saved with loss.adversarial_weight {saved_weight}, '
                       f'which {effect}, but this run has {self.config.loss.adversarial_weight}'
                       f': resume with {fix} or start a new workdir.')
    super().check_saved(saved)

  @property
  def compatible_keys(self) -> tuple[str, ...]:
    return COMPATIBLE_KEYS + (ADVERSARIAL_KEYS if self.discriminator is not None else ())

  def autoencoder_params(self, params):
    """The VAE's own params out of the train state's (or its EMA's)."""
    return params if self.discriminator is None else params[AUTOENCODER]

  def read_weights(self, folder: str):
    """The VAE's EMA params of the run or export in `folder` (`restore_params`), in this run's
    layout: a discriminator, when on, starts fresh (an export holds none)."""
    params = restore_params(folder)[0]
    return params if self.discriminator is None else {AUTOENCODER: params}


def restore_params(workdir, *, step: int | None = None, use_ema: bool = True):
  """(params, step, run): the VAE's own params at `step` (default: the newest) of a run of
  experiments/train_vae.py, EMA ones unless use_ema=False, on this process's first device,
  and that run's VaeRun; or an export's (autoencoder.json + params/ + export.json: EMA params
  of one step), with run None."""
  workdir = pathlib.Path(workdir)
  device = jax.local_devices()[0]
  if (workdir / 'params').is_dir():
    model = autoencoder.AutoencoderKL(autoencoder.config_from_workdir(workdir))
    side = model.config.spatial_downsample
    image = jnp.zeros((1, 1, side, side, 3))
    shapes = jax.eval_shape(model.init, jax.random.key(0), image, jax.random.key(1))['params']
    sharded = jax.sharding.SingleDeviceSharding(device)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharded),
                            nn.unbox(shapes))
    params = ocp.StandardCheckpointer().restore((workdir / 'params').absolute(), abstract)
    return params, json.loads((workdir / EXPORT_INFO_FILE).read_text())['step'], None
  if not (workdir / 'config.json').is_file():
    raise FileNotFoundError(f'no trained VAE in {str(workdir)!r} (missing config.json): train '
                            f'first with experiments/train_vae.py --workdir {workdir}')
  config = ml_collections.ConfigDict(json.loads((workdir / 'config.json').read_text()))
  config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, context=1, tensor=1))
  run = build(config, devices=[device])
  ckpt = checkpoint.Checkpointer(str(workdir / 'checkpoints'))
  step = ckpt.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f'no checkpoint in {str(workdir)!r}: train first with '
                            f'experiments/train_vae.py --workdir {workdir}')
  state = ckpt.restore(run.abstract_state, step=step)
  ckpt.close()
  return run.autoencoder_params(state.ema_params if use_ema else state.params), step, run


def model_config(config: ml_collections.ConfigDict) -> autoencoder.AutoencoderConfig:
  """The AutoencoderConfig a run's config names (config.model: a preset and overrides)."""
  return autoencoder.run_model_config(config.model.to_dict())


def adversarial(config: ml_collections.ConfigDict) -> bool:
  """Whether config.loss.adversarial_weight > 0 (configs from before it: off); fails on bad
  values."""
  weight = config.loss.get('adversarial_weight', 0.0)
  start = config.loss.get('adversarial_start_step', 0)
  if weight < 0:
    raise ValueError(f'loss.adversarial_weight {weight} is negative: use 0 to switch the '
                     'adversarial loss off, or a positive weight.')
  if start < 0:
    raise ValueError(f'loss.adversarial_start_step {start} is negative: use 0 to start at the '
                     'first update, or the step after the reconstruction warm-up.')
  if weight == 0:
    return False
  d = config.discriminator
  if d.base_channels < 1 or d.num_layers < 1 or d.learning_rate <= 0:
    raise ValueError(f'discriminator.base_channels {d.base_channels}, num_layers {d.num_layers} '
                     f'and learning_rate {d.learning_rate} must all be positive.')
  return True


def adversarial_optimizer(autoencoder_optimizer: optax.GradientTransformation,
                          config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The VAE's optimizer on params['autoencoder']; on params['discriminator'] clipping and Adam
  at a constant discriminator.learning_rate (it starts late, so the VAE's warm-up and cosine
  schedule, counted from step 0, would mean nothing to it). Clipping is per part."""
  d = config.discriminator
  discriminator_optimizer = optax.chain(
      optax.clip_by_global_norm(config.optim.grad_clip),
      optax.adam(d.learning_rate, b1=d.b1, b2=d.b2))
  return optax.multi_transform(
      {AUTOENCODER: autoencoder_optimizer, DISCRIMINATOR: discriminator_optimizer},
      {AUTOENCODER: AUTOENCODER, DISCRIMINATOR: DISCRIMINATOR})


def build(config: ml_collections.ConfigDict, *, devices=None) -> VaeRun:
  """Builds every part from `config` (see configs/vae_world.py); allocates no parameters."""
  state_lib.train_steps(config.train)
  mesh = mesh_lib.make_mesh(config.mesh, devices)
  rules = sharding.rules_from_config(config)
  sharding.check_batch_divisible(config.data.batch_size, mesh, rules,
                                 state_lib.grad_accum_steps(config.optim))
  if config.train.image_every < 0:
    raise ValueError(f'train.image_every {config.train.image_every} is negative: use 0 (videos '
                     'only) or N to make every N-th update an image batch.')
  model = autoencoder.AutoencoderKL(model_config(config))
  w = config.world
  autoencoder.check_video(jax.ShapeDtypeStruct((1, w.num_frames, w.height, w.width, 3),
                                               jnp.float32), model.config)
  optimizer = state_lib.make_optimizer(config.optim)
  discriminator = None
  if adversarial(config):
    d = config.discriminator
    discriminator = discriminator_lib.PatchDiscriminator(base_channels=d.base_channels,
                                                         num_layers=d.num_layers)
    optimizer = adversarial_optimizer(optimizer, config)

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
      return {AUTOENCODER: params,
              DISCRIMINATOR: discriminator.init(jax.random.fold_in(rng, 1), image)['params']}

    return state_lib.init_train_state(model_init, optimizer, jax.random.key(config.seed))

  abstract_state, state_shardings = sharding.abstract_state_and_shardings(init_fn, mesh, rules)
  return VaeRun(config=config, mesh=mesh, rules=rules, model=model, optimizer=optimizer,
                lr_schedule=state_lib.learning_rate_schedule(config.optim), init_fn=init_fn,
                abstract_state=abstract_state, state_shardings=state_shardings,
                discriminator=discriminator)


def is_image_step(step: int, image_every: int) -> bool:
  """Whether update number `step` (from 1) trains on images."""
  return image_every > 0 and step % image_every == 0


def as_images(video_bthwc: np.ndarray) -> np.ndarray:
  """Every frame of every clip as its own 1-frame video: [B, T, ...] -> [B·T, 1, ...]."""
  return einops.rearrange(video_bthwc, 'b t h w c -> (b t) 1 h w c')


@functools.partial(jax.jit, static_argnums=0)
def encode_mean(model: autoencoder.AutoencoderKL, params, video_bthwc):
  """Posterior means of whole clips (one-shot; the sizes training and stats use are small)."""
  return model.apply({'params': params}, video_bthwc, method='encode')[0]


def measure_latent_stats(config: ml_collections.ConfigDict, model: autoencoder.AutoencoderKL,
                         params) -> dict:
  """Per-channel mean/std of posterior means over config.latent_stats.num_clips train-split
  clips of config.data.source drawn with seed config.seed + 1 (world clips the run did not
  see; a folder's clips in another order), as JSON-ready lists. `params` must be whole on this
  process (gather a sharded multi-process state first)."""
  ls, seed = config.latent_stats, config.seed + 1
  clips = pipeline.source_clips(config, num_clips=ls.num_clips, seed=seed, split='train')
  means = [encode_mean(model, params, clips[i:i + ls.batch_size])
           for i in range(0, len(clips), ls.batch_size)]
  stats = autoencoder.latent_stats(means)
  return {'mean': stats['mean'].tolist(), 'std': stats['std'].tolist(),
          'num_clips': ls.num_clips, 'seed': seed, 'split': 'train'}
