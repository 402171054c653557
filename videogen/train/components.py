"""The parts of a text-to-video run that training and sampling build the same way from a config.

One place decides the model's input shape, the text encoder, the DiT, the optimizer, the mesh
and the state's shardings, so a checkpoint written by the trainer restores in the sampler.
"""
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from videogen.data import packing
from videogen.data import sizes
from videogen.diffusion import conditioning
from videogen.diffusion import flow
from videogen.models import dit
from videogen.models import patches
from videogen.models import text
from videogen.parallel import context_attention
from videogen.parallel import mesh as mesh_lib
from videogen.parallel import sharding
from videogen.train import state as state_lib

PIXEL_CHANNELS = 3


@dataclasses.dataclass
class Components:
  """What `build` makes; see the module docstring."""
  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  rules: sharding.LogicalRules
  encoder: text.TextEncoder
  model: dit.DiT
  optimizer: optax.GradientTransformation
  lr_schedule: optax.Schedule
  init_fn: Callable[[], state_lib.TrainState]
  abstract_state: state_lib.TrainState
  state_shardings: Any

  @property
  def shape(self) -> tuple[int, int, int, int]:
    """(T, H, W, C) of one training example."""
    w = self.config.world
    return (w.num_frames, w.height, w.width, PIXEL_CHANNELS)

  def shift(self, shape=None) -> float:
    """The timestep shift for a clip of `shape` (T, H, W, C); more tokens, more shift."""
    tokens = patches.num_tokens((shape or self.shape)[:3], self.model.config.patch_size)
    d = self.config.diffusion
    return flow.resolution_shift(tokens, d.base_tokens, d.base_shift, d.max_tokens, d.max_shift)

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


def build(config: ml_collections.ConfigDict, *, devices=None) -> Components:
  """Builds every part from `config` (see configs/world.py); allocates no parameters."""
  if config.autoencoder != 'none':
    raise ValueError(f"autoencoder {config.autoencoder!r} is not available yet: use 'none' "
                     '(the model trains on pixels).')
  mesh = mesh_lib.make_mesh(config.mesh, devices)
  sharding.check_batch_divisible(config.data.batch_size, mesh,
                                 state_lib.grad_accum_steps(config.optim))
  rules = sharding.rules_from_config(config)
  encoder = text.encoder_from_config(config.text)
  m = config.model
  if frame_conditioning(config):
    conditioning.task_probabilities(config.conditioning.tasks)
  in_channels = 2 * PIXEL_CHANNELS + 1 if frame_conditioning(config) else PIXEL_CHANNELS
  model_config = dit.dit_config(
      m.variant, in_channels=in_channels, out_channels=PIXEL_CHANNELS, text_dim=encoder.dim,
      patch_size=m.patch_size,
      remat=m.remat, scan_layers=m.scan_layers, attention_backend=m.attention_backend,
      dtype=m.dtype, param_dtype=m.param_dtype)
  model = dit.DiT(model_config)
  w = config.world
  patches.check_divisible((w.num_frames, w.height, w.width), model_config.patch_size)
  check_mesh_fits_model(config, model_config, mesh)
  if config.diffusion.prediction not in flow.PREDICTIONS:
    raise ValueError(f'diffusion.prediction {config.diffusion.prediction!r} is unknown: use one '
                     f'of {flow.PREDICTIONS}.')
  optimizer = state_lib.make_optimizer(config.optim)

  def init_fn():
    x = jnp.zeros((1, w.num_frames, w.height, w.width, in_channels), jnp.float32)
    txt = jnp.zeros((1, encoder.max_length, encoder.dim), jnp.float32)
    mask = jnp.ones((1, encoder.max_length), bool)
    model_init = lambda rng: model.init(rng, x, jnp.zeros((1,)), txt, mask)['params']
    return state_lib.init_train_state(model_init, optimizer, jax.random.key(config.seed))

  abstract_state, state_shardings = sharding.abstract_state_and_shardings(init_fn, mesh, rules)
  return Components(config=config, mesh=mesh, rules=rules, encoder=encoder, model=model,
                    optimizer=optimizer, lr_schedule=state_lib.learning_rate_schedule(config.optim),
                    init_fn=init_fn, abstract_state=abstract_state,
                    state_shardings=state_shardings)


def check_mesh_fits_model(config: ml_collections.ConfigDict, model_config: dit.DiTConfig,
                          mesh: jax.sharding.Mesh) -> None:
  """Fails before compiling when 'tensor' does not divide the heads, or 'context' a token row
  (the world's clip; data.row_length when packed; every size of the table in buckets)."""
  context_attention.check_heads(model_config.heads, mesh)
  context = mesh.shape['context']
  if context == 1:
    return
  shapes = [(config.world.num_frames, config.world.height, config.world.width)]
  if config.data.get('layout') == 'buckets':
    shapes += [(b.num_frames, b.height, b.width) for b in sizes.table_from_config(config)]
  rows = [patches.num_tokens(shape, model_config.patch_size) for shape in shapes]
  if config.data.get('layout') == 'packed':
    rows.append(config.data.row_length)
  for length in rows:
    context_attention.check_length(length, context)


def parameter_layout(parts: Components) -> dict[str, dict[str, list]]:
  """Every DiT parameter's shape, logical axes and mesh axes on parts.mesh
  (sharding.layout_table); shapes only, nothing is allocated."""
  with sharding.sharding_context(parts.mesh, parts.rules):
    boxed = jax.eval_shape(parts.init_fn)
  return sharding.layout_table(boxed.params, parts.state_shardings.params)


def encode_batch(parts: Components, batch: dict) -> dict:
  """Host batch -> model batch (numpy). Clips {'video', 'caption'} -> {'video', 'text',
  'text_mask'}; packed rows {'patches', 'segment_ids', 'positions', 'shapes', 'captions' [B, M]}
  -> the rows plus their captions' real tokens laid out for DiT.packed in data.text_row_length
  tokens ('text', 'text_mask', 'text_segment_ids') and each segment's timestep shift for its
  token count ('shift' [B, M])."""
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
