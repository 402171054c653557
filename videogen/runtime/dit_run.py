"""The text-to-video DiT's Run (runtime/run.py), built the same way for training and sampling.

One place decides the model's input shape, the text encoder, the DiT, the optimizer, the mesh
and the state's shardings, so a checkpoint written by the trainer restores in the sampler.
A latent run (config.autoencoder names a VAE run or export) models the VAE's latents of the
world's clips, read from a latent cache; a pixel run ('none') models the pixels of the world's
clips or of a folder's (data.source 'folder'), at the world section's clip size. A LoRA run
(config.lora.rank > 0, runtime/lora.py) trains adapters on a frozen base, config.init_from's
weights: its train state holds the adapters, the run holds the base.
"""
import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, ClassVar

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from videogen.data import latent_cache
from videogen.data import packing
from videogen.data import pipeline
from videogen.data import sizes
from videogen.diffusion import conditioning
from videogen.diffusion import flow
from videogen.models import autoencoder
from videogen.models import dit
from videogen.core import patches
from videogen.models import text
from videogen.parallel import context_attention
from videogen.parallel import mesh as mesh_lib
from videogen.parallel import sharding
from videogen.runtime import lora
from videogen.runtime import run as run_lib
from videogen.runtime import state as state_lib
from videogen.runtime import weights

PIXEL_CHANNELS = 3
# Config sections a checkpoint must agree with to be resumed or sampled.
COMPATIBLE_KEYS = ('model', 'text', 'autoencoder', 'diffusion.prediction', 'conditioning.enabled',
                   'world.height', 'world.width', 'world.num_frames')
# Model options that change how, not what, the DiT computes: a run may resume with others.
FREE_KEYS = ('model.remat', 'model.attention_backend')
# Model options added since runs were first saved, and the value a config without them means:
# the behaviour before them, so older runs and exports restore and resume as they trained.
OLD_RUN_MODEL = {'pos_embed': 'none', 'cross_attn_init': 'zero', 'pooled_text': False}


@dataclasses.dataclass
class DitRun(run_lib.Run):
  """What `build` makes; see the module docstring. `model` is the dit.DiT."""
  encoder: text.TextEncoder | None = None
  vae_config: autoencoder.AutoencoderConfig | None = None  # a latent run's VAE; None: pixels
  # A LoRA run's frozen base params as ShapeDtypeStructs with their shardings; None: every
  # parameter trains.
  abstract_base: Any = None

  free_keys: ClassVar[tuple[str, ...]] = FREE_KEYS
  missing_fields: ClassVar[Mapping[str, Any]] = {
      **{f'model.{field}': old for field, old in OLD_RUN_MODEL.items()},
      'text.mask_padding': True,  # runs before the option masked padding
      'lora.rank': 0}  # runs before LoRA trained every weight

  @property
  def compatible_keys(self) -> tuple[str, ...]:
    """COMPATIBLE_KEYS and lora.rank; a LoRA run's whole lora section (a checkpoint holds
    adapters of one rank, on one set of kernels, at one scale)."""
    return COMPATIBLE_KEYS + (('lora',) if self.abstract_base is not None else ('lora.rank',))

  @property
  def init_from_is_base(self) -> bool:
    """True for a LoRA run: config.init_from is its frozen base."""
    return self.abstract_base is not None

  @functools.cached_property
  def base_params(self):
    """A LoRA run's frozen base (`read_base`), read on first use and kept; None when every
    parameter trains."""
    return None if self.abstract_base is None else self.read_base()

  def read_base(self):
    """config.init_from's EMA params (a LoRA run's merged) as this run's frozen base: in this
    model's block layout, on this run's mesh as the base's shardings say (lora.frozen_base)."""
    folder = self.config.init_from
    weights.check_init_from(folder)
    return lora.frozen_base(self.read_weights(folder), self.abstract_base, folder)

  def model_params(self, params, base_params=None):
    """The DiT's params from the train state's (or their EMA): those, or a LoRA run's adapters
    merged onto base_params (default: the run's base)."""
    if self.abstract_base is None:
      return params
    base_params = self.base_params if base_params is None else base_params
    return lora.merge(base_params, params, self.config.lora.alpha, self.config.lora.rank)

  def init_state(self, init_from: str = '') -> state_lib.TrainState:
    """A fresh state (see Run.init_state); a LoRA run's holds fresh adapters (the merged model
    is its base) and reads its base now, so one that does not fit fails before any step."""
    if self.abstract_base is None:
      return super().init_state(init_from)
    base = dit.count_params(self.base_params)
    state = sharding.create_sharded_state(self.init_fn, self.state_shardings, self.mesh,
                                          self.rules)
    adapters = dit.count_params(state.params)
    logging.warning("LoRA: rank %d adapters on %s (%d parameters, %.2f%% of the base's %d); "
                    'base %s frozen.', self.config.lora.rank, ', '.join(self.config.lora.targets),
                    adapters, 100 * adapters / base, base, self.config.init_from)
    return state

  def dataset(self, shard_index: int, shard_count: int):
    """This process's batches of config.data.source (world clips, a folder's clips, a TFDS
    dataset or a latent cache); checks a latent cache fits the model first."""
    source = pipeline.source(self.config)
    if source == 'latent_cache':
      check_latent_cache(self)
      return latent_cache.dataset_from_config(self.config, shard_index=shard_index,
                                              shard_count=shard_count)
    return pipeline.clips_dataset_from_config(self.config, shard_index=shard_index,
                                              shard_count=shard_count)

  def model_batch(self, batch: dict, step: int) -> tuple[dict, dict, dict]:
    """encode_batch's model batch; counts its real tokens (packed rows: their clips' only) and
    the GFLOPs computed (padding included, forward and backward); levels: packed rows' fill."""
    del step  # every update takes the same kind of batch
    model_in = encode_batch(self, batch)
    model_config = self.model.config
    if 'patches' in model_in:
      rows, length = model_in['segment_ids'].shape
      tokens = int(np.count_nonzero(model_in['segment_ids']))
      flops = rows * dit.flops_per_sample(model_config, length, model_in['text'].shape[1])
    else:
      clips = model_in['video'].shape[0]
      per_clip = patches.num_tokens(model_in['video'].shape[1:4], model_config.patch_size)
      tokens = clips * per_clip
      flops = clips * dit.flops_per_sample(model_config, per_clip, model_in['text'].shape[1])
    levels = {'fill': float(batch['fill'])} if batch.get('fill') is not None else {}
    return model_in, {'tokens': tokens, 'gflops': 3 * flops / 1e9}, levels

  @property
  def shape(self) -> tuple[int, int, int, int]:
    """(T, H, W, C) of one training example: the world's clip, or its latent."""
    w = self.config.world
    return self.model_shape(w.num_frames, w.height, w.width)

  def model_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
    """(T, H, W, C) the model works on for clips of this many pixel frames and size."""
    return model_shape(self.vae_config, num_frames, height, width)

  def shift(self, shape=None) -> float:
    """The timestep shift for a clip of `shape` (T, H, W, C); more tokens, more shift."""
    tokens = patches.num_tokens((shape or self.shape)[:3], self.model.config.patch_size)
    d = self.config.diffusion
    return flow.resolution_shift(tokens, d.base_tokens, d.base_shift, d.max_tokens, d.max_shift)

  def read_weights(self, folder: str):
    """The EMA params of the DiT run or export in `folder`, restored as the sampler restores
    them (`restore_params`: onto this process's first device; the shapes are the folder's
    own, a LoRA run's adapters merged onto its base)."""
    return restore_params(folder)[1]

  @property
  def frame_conditioning(self) -> bool:
    """Whether the DiT also sees given frames (see diffusion/conditioning.py)."""
    return frame_conditioning(self.config)

  def apply(self, params, x_bthwc, t_b, text_bld, mask_bl, frames=None, frame_mask_bt=None):
    """The velocity at (x_t, t) for plain (unboxed) params, whatever the DiT predicts; frames
    and their mask (default: none given) only for a frame-conditioned model."""
    model_in = self._with_frames(x_bthwc, frames, frame_mask_bt, x_bthwc.shape[:2],
                                 conditioning.model_input)
    out = self.model.apply({'params': params}, model_in, t_b, text_bld, mask_bl)
    d = self.config.diffusion
    return flow.as_velocity(d.prediction, out, x_bthwc, t_b, d.min_t)

  def apply_packed(self, params, x_blp, t_bm, rows, frames_blp=None, given_blk=None):
    """`apply` for packed rows (data/packing.py): the velocity per token [B, L, P] at noisy
    tokens x [B, L, P] and per-segment times t [B, M]; `rows` holds the batch's segment_ids,
    positions, text, text_mask and text_segment_ids. For a frame-conditioned model, frames are
    the clean tokens and given [B, L, pt] flags which of each token's pt frames are given."""
    pt = self.model.config.patch_size[0]
    model_in = self._with_frames(x_blp, frames_blp, given_blk, (*x_blp.shape[:2], pt),
                                 packed_model_input)
    out_blp = self.model.apply(
        {'params': params}, model_in, rows['segment_ids'], rows['positions'], t_bm,
        rows['text'], rows['text_mask'], rows['text_segment_ids'], method='packed')
    t_bl = dit.segment_values(t_bm, rows['segment_ids'])
    d, tokens = self.config.diffusion, lambda a: a.reshape(-1, a.shape[-1])
    velocity = flow.as_velocity(d.prediction, tokens(out_blp), tokens(x_blp), t_bl.reshape(-1),
                                d.min_t)  # each token as a sample of its own time
    return velocity.reshape(out_blp.shape)

  def _with_frames(self, x, frames, given, given_shape, model_input):
    """The DiT's input: x, or for a frame-conditioned model model_input(x, frames, given) with
    no frame given by default."""
    if not self.frame_conditioning:
      if frames is not None:
        raise ValueError('this model was trained without frame conditioning '
                         '(conditioning.enabled=False): it takes text prompts only.')
      return x
    if frames is None:
      frames, given = jnp.zeros_like(x), jnp.zeros(given_shape, bool)
    return model_input(x, frames, given)


def packed_model_input(x_blp, frames_blp, given_blk):
  """conditioning.model_input on patch tokens: the tokens of [x, frames * given, given] from
  tokens [B, L, pt*ph*pw*C] and given [B, L, pt] (a token's pt frames, in patchify's
  (pt, ph, pw, c) order), as patchifying the unpacked model input would make them."""
  b, l, _ = x_blp.shape
  pt = given_blk.shape[-1]
  as_clips = lambda a: a.reshape(b * l, pt, -1, 1, PIXEL_CHANNELS)  # a token: a pt-frame clip
  model_in = conditioning.model_input(as_clips(x_blp), as_clips(frames_blp),
                                      given_blk.reshape(b * l, pt))
  return model_in.reshape(b, l, -1)


def frame_conditioning(config: ml_collections.ConfigDict) -> bool:
  """config.conditioning.enabled; runs exported before frame conditioning existed read False."""
  return bool(config.get('conditioning', {}).get('enabled', False))


def model_shape(vae_config: autoencoder.AutoencoderConfig | None, num_frames: int, height: int,
                width: int) -> tuple[int, int, int, int]:
  """(T, H, W, C) of clips of (num_frames, height, width): pixels without a VAE, else the
  latent of the clip rendered at latent_cache.cache_frame_count frames (8 -> 9 -> 3 at r_t 4),
  as the cache stores it; decoded samples are trimmed back to num_frames."""
  if vae_config is None:
    return (num_frames, height, width, PIXEL_CHANNELS)
  frames = latent_cache.cache_frame_count(num_frames, vae_config.temporal_downsample)
  return autoencoder.latent_shape(vae_config, frames, height, width)


def latent_autoencoder(config: ml_collections.ConfigDict) -> autoencoder.AutoencoderConfig | None:
  """The config of the VAE whose latents the model learns (None for pixels), read without its
  weights; raises when data.source, data.layout or the conditioning tasks do not fit it."""
  source = pipeline.source(config)
  if config.autoencoder == 'none':
    if source == 'latent_cache':
      raise ValueError("data.source 'latent_cache' needs the VAE its cache was made with: pass "
                       '--config.autoencoder=<VAE run or export>.')
    return None
  if source != 'latent_cache':
    raise ValueError(f'autoencoder {config.autoencoder!r} trains on latents, which data.source '
                     f"{source!r} does not give: pass --config.data.source=latent_cache "
                     '--config.data.cache_dir=<folder of experiments/encode_dataset.py>.')
  if pipeline.layout(config) != 'fixed':
    raise ValueError(f'data.layout {pipeline.layout(config)!r} is not available on latents (a '
                     'latent cache holds clips of one size): pass --config.data.layout=fixed.')
  if frame_conditioning(config):
    conditioning.check_prefix_tasks(config.conditioning.tasks)
  return autoencoder.config_from_workdir(config.autoencoder)


def dit_config(model: ml_collections.ConfigDict, *, in_channels: int, out_channels: int,
               text_dim: int) -> dit.DiTConfig:
  """The DiTConfig of a config's model section for these input, output and text widths (an
  option older runs lack takes its OLD_RUN_MODEL value)."""
  return dit.dit_config(
      model.variant, in_channels=in_channels, out_channels=out_channels, text_dim=text_dim,
      patch_size=model.patch_size, remat=model.remat, scan_layers=model.scan_layers,
      attention_backend=model.attention_backend, dtype=model.dtype,
      param_dtype=model.param_dtype,
      **{field: model.get(field, old) for field, old in OLD_RUN_MODEL.items()})


def sampling_run(config: ml_collections.ConfigDict, devices=None, *,
                 init_from: str | None = None) -> DitRun:
  """The run's DitRun on `devices` (default: this process's first device), whatever mesh
  and batch it trained with; init_from, when given, replaces a LoRA run's base."""
  config = ml_collections.ConfigDict(config.to_dict())  # an unlocked copy
  config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, context=1, tensor=1))
  config.data.batch_size = 1
  if init_from is not None:
    config.init_from = str(init_from)
  return build(config, devices=devices or jax.local_devices()[:1])


def restore_params(workdir, *, base=None, step: int | None = None, use_ema: bool = True,
                   devices=None) -> tuple[DitRun, Any, int]:
  """(run, params, step): the DiT weights at `step` (default: the newest) of the run or export
  in `workdir`, EMA ones unless use_ema=False, on `devices` (weights.restore_params with
  sampling_run); a LoRA run's adapters come merged onto its base, config.init_from's weights or
  `base`'s when given (another run or export of the same model)."""
  make_run = sampling_run
  if base is not None:
    lora.check_lora_run(weights.load_config(workdir), workdir)
    make_run = lambda config, devices: sampling_run(config, devices, init_from=base)
  run, params, step = weights.restore_params(workdir, make_run, step=step, use_ema=use_ema,
                                             devices=devices)
  if run.abstract_base is None:
    return run, params, step
  try:
    base_params = run.read_base()  # not kept: the merged params replace it
  except ValueError as error:
    if base is None:
      raise
    raise ValueError(f'the adapters of {str(workdir)!r} do not fit the base {str(base)!r}: '
                     f'{error}') from error
  return run, run.model_params(params, base_params), step


def build(config: ml_collections.ConfigDict, *, devices=None,
          encoder: text.TextEncoder | None = None) -> DitRun:
  """Builds every part from `config` (see configs/world.py); allocates no parameters. `encoder`
  replaces the text encoder config.text names: one already loaded, or (benchmarks) a stand-in
  of another text shape."""
  state_lib.train_steps(config.train)
  lora.check_config(config)
  vae_config = latent_autoencoder(config)
  mesh = mesh_lib.make_mesh(config.mesh, devices)
  rules = sharding.rules_from_config(config)
  sharding.check_batch_divisible(config.data.batch_size, mesh, rules,
                                 state_lib.grad_accum_steps(config.optim))
  encoder = encoder or text.encoder_from_config(config.text)
  m = config.model
  if frame_conditioning(config):
    conditioning.task_probabilities(config.conditioning.tasks)
  w = config.world
  shape = model_shape(vae_config, w.num_frames, w.height, w.width)
  channels = shape[-1]
  in_channels = 2 * channels + 1 if frame_conditioning(config) else channels
  model_config = dit_config(m, in_channels=in_channels, out_channels=channels,
                            text_dim=encoder.dim)
  model = dit.DiT(model_config)
  patch = model_config.patch_size
  if vae_config is not None and any(p > 0 and n % p for n, p in zip(shape, patch)):
    raise ValueError(f'model.patch_size {tuple(patch)} does not divide the '
                     f'latent {shape[:3]} of {w.num_frames}x{w.height}x{w.width} clips at the '
                     f"VAE's {vae_config.compression} compression: pass a patch size whose "
                     "sides divide it, e.g. --config.model.patch_size='(1, 1, 1)'.")
  patches.check_divisible(shape[:3], patch)
  check_mesh_fits_model(config, model_config, mesh, shape[:3])
  if config.diffusion.prediction not in flow.PREDICTIONS:
    raise ValueError(f'diffusion.prediction {config.diffusion.prediction!r} is unknown: use one '
                     f'of {flow.PREDICTIONS}.')
  optimizer = state_lib.make_optimizer(config.optim)

  def model_init(rng):
    x = jnp.zeros((1, *shape[:3], in_channels), jnp.float32)
    txt = jnp.zeros((1, encoder.max_length, encoder.dim), jnp.float32)
    mask = jnp.ones((1, encoder.max_length), bool)
    return model.init(rng, x, jnp.zeros((1,)), txt, mask)['params']

  trained_init, abstract_base = model_init, None
  if lora.enabled(config):  # the state trains adapters; the base's layout is the model's
    abstract_base = sharding.abstract_state_and_shardings(
        lambda: model_init(jax.random.key(0)), mesh, rules)[0]
    lora.check_rank(lora.target_kernels(abstract_base, config.lora.targets), config.lora.rank)
    trained_init = lambda rng: lora.init_adapters(
        jax.eval_shape(model_init, rng), config.lora.rank, config.lora.targets, rng)

  def init_fn():
    return state_lib.init_train_state(trained_init, optimizer, jax.random.key(config.seed))

  abstract_state, state_shardings = sharding.abstract_state_and_shardings(init_fn, mesh, rules)
  return DitRun(config=config, mesh=mesh, rules=rules, encoder=encoder, model=model,
                    optimizer=optimizer, lr_schedule=state_lib.learning_rate_schedule(config.optim),
                    init_fn=init_fn, abstract_state=abstract_state,
                    state_shardings=state_shardings, vae_config=vae_config,
                    abstract_base=abstract_base)


def check_latent_cache(parts: DitRun) -> dict:
  """Raises unless data.cache_dir holds latents of this run's VAE, text encoder and clip size;
  returns its metadata ({} for a pixel run). The trainer calls it before reading data."""
  if parts.vae_config is None:
    return {}
  cache_dir = latent_cache.cache_dir_from_config(parts.config)
  metadata = latent_cache.check_compatible(
      cache_dir, compression=parts.vae_config.compression,
      latent_channels=parts.vae_config.latent_channels, text_encoder=parts.encoder.name,
      text_dim=parts.encoder.dim)
  w = parts.config.world
  got = (tuple(metadata['latent_shape']),  # a cache of other clips may not record their frames
         metadata['source'].get('model_num_frames', w.num_frames), metadata['text']['max_length'])
  want = (parts.shape, w.num_frames, parts.encoder.max_length)
  if got != want:
    raise ValueError(f'the latent cache {cache_dir!r} holds latents {got[0]} of {got[1]}-frame '
                     f'clips and text of {got[2]} tokens but the model expects {want[0]} of '
                     f'{w.num_frames}x{w.height}x{w.width} clips and {want[2]}: rebuild the '
                     'cache with experiments/encode_dataset.py and this config.')
  return metadata


def check_mesh_fits_model(config: ml_collections.ConfigDict, model_config: dit.DiTConfig,
                          mesh: jax.sharding.Mesh, grid_thw) -> None:
  """Fails before compiling when the heads' mesh axes do not divide the heads, or the tokens'
  a token row (the model's clip `grid_thw`; data.row_length when packed; every size of the table
  in buckets)."""
  rules = sharding.rules_from_config(config)
  context_attention.check_heads(model_config.heads, mesh, rules)
  context = context_attention.context_size(mesh, rules)
  if context == 1:
    return
  shapes = [tuple(grid_thw)]
  if config.data.get('layout') == 'buckets':
    shapes += [(b.num_frames, b.height, b.width) for b in sizes.table_from_config(config)]
  rows = [patches.num_tokens(shape, model_config.patch_size) for shape in shapes]
  if config.data.get('layout') == 'packed':
    rows.append(config.data.row_length)
  for length in rows:
    context_attention.check_length(length, context)


def parameter_layout(parts: DitRun) -> dict[str, dict[str, list]]:
  """Every DiT parameter's shape, logical axes and mesh axes on parts.mesh
  (sharding.layout_table); shapes only, nothing is allocated."""
  with sharding.sharding_context(parts.mesh, parts.rules):
    boxed = jax.eval_shape(parts.init_fn)
  return sharding.layout_table(boxed.params, parts.state_shardings.params)


def encode_batch(parts: DitRun, batch: dict) -> dict:
  """Host batch -> model batch (numpy). Clips {'video', 'caption'} -> {'video', 'text',
  'text_mask'}; a latent cache's {'latents', 'text', 'text_mask', ...} -> the same, its latents
  as 'video' and its text as cached (no encoder call); packed rows {'patches', 'segment_ids',
  'positions', 'shapes', 'captions' [B, M]} -> the rows plus their captions' real tokens laid
  out for DiT.packed in data.text_row_length tokens ('text', 'text_mask', 'text_segment_ids')
  and each segment's timestep shift for its token count ('shift' [B, M])."""
  if 'latents' in batch:
    return {'video': batch['latents'], 'text': batch['text'], 'text_mask': batch['text_mask']}
  if 'patches' not in batch:
    text_bld, mask_bl = parts.encoder.encode([str(c) for c in np.asarray(batch['caption'])])
    return {'video': batch['video'], 'text': text_bld, 'text_mask': mask_bl}
  captions_bm, shapes_bm3 = np.asarray(batch['captions']), np.asarray(batch['shapes'])
  text_nsd, mask_ns = parts.encoder.encode([str(c) for c in captions_bm.reshape(-1)])
  text, text_mask, text_segment_ids = packing.segment_text(
      text_nsd.reshape(*captions_bm.shape, *text_nsd.shape[1:]),
      mask_ns.reshape(*captions_bm.shape, -1), shapes_bm3,
      parts.config.data.get('text_row_length'))
  shapes = {tuple(shape) for shape in shapes_bm3.reshape(-1, 3).tolist() if shape[0]}
  shifts = {shape: parts.shift((*shape, PIXEL_CHANNELS)) for shape in shapes}
  shift_bm = np.array([[shifts.get(tuple(shape), 1.0) for shape in row]
                       for row in shapes_bm3.tolist()], np.float32)
  rows = {key: batch[key] for key in ('patches', 'segment_ids', 'positions', 'shapes')}
  return {**rows, 'text': text, 'text_mask': text_mask, 'text_segment_ids': text_segment_ids,
          'shift': shift_bm}
