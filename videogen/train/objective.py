"""The training objective: flow matching with text dropout (for classifier-free guidance) and,
for a frame-conditioned model, one random task per clip whose given frames the loss leaves out
(diffusion/conditioning.py). Batches hold clips of one size, or packed rows of clips of many
sizes (data/packing.py), each segment trained as a clip of its own.

Legend: b batch, m segments of a row, l tokens, p patch values, k a token's pt frames, t frames.
"""
import functools

import jax
import jax.numpy as jnp

from videogen.data import sizes
from videogen.diffusion import conditioning
from videogen.diffusion import flow
from videogen.models import dit
from videogen.runtime import dit_run
from videogen.runtime import state as state_lib
from videogen.train import step as step_lib


def make_loss_fn(parts: dit_run.DitRun):
  """loss_fn(params, batch, rng) for the train step: flow matching with text dropout for CFG
  and, for a frame-conditioned model, one random task per clip whose given frames the loss
  leaves out (diffusion/conditioning.py). A batch of packed rows (it has 'patches') trains each
  segment as a clip of its own (`packed_loss`); any other holds clips of one size."""
  cfg = parts.config
  null_text, null_mask = (jnp.asarray(a) for a in parts.encoder.unconditional())
  if parts.frame_conditioning:
    task_probabilities = conditioning.task_probabilities(cfg.conditioning.tasks)
  # Runs saved before the option drew every time at the one shift.
  near_data = dict(near_data=cfg.diffusion.get('near_data', 0.0),
                   near_data_shift=cfg.diffusion.get('near_data_shift', 1.0))
  loss_min_t = cfg.diffusion.get('loss_min_t', 0.0)  # runs saved before it: no weight over t

  def clips_loss(params, batch, rng):
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
        apply_fn, params, video, text, mask, flow_rng, shift=parts.shift(video.shape[1:]),
        t_mean=cfg.diffusion.t_mean, t_std=cfg.diffusion.t_std, loss_mask=loss_mask,
        loss_min_t=loss_min_t, **near_data)
    return loss, {}

  def rows_loss(params, rows, rng):
    drop_rng, task_rng, t_rng, eps_rng = jax.random.split(rng, 4)
    frames_bm = rows['shapes'][..., 0]
    drop_bm = jax.random.bernoulli(drop_rng, cfg.text.dropout, frames_bm.shape)
    rows = drop_captions(rows, drop_bm, null_text, null_mask)
    t_bm = flow.train_times(t_rng, frames_bm.shape, rows['shift'], cfg.diffusion.t_mean,
                            cfg.diffusion.t_std, **near_data)
    eps_blp = jax.random.normal(eps_rng, rows['patches'].shape, rows['patches'].dtype)
    given_bmt = None
    if parts.frame_conditioning:
      durations = sorted({size.num_frames for size in sizes.table_from_config(cfg)})
      given_bmt = segment_frame_masks(task_rng, frames_bm, durations, task_probabilities)
    return packed_loss(parts, params, rows, t_bm, eps_blp, given_bmt, loss_min_t), {}

  def loss_fn(params, batch, rng):
    return (rows_loss if 'patches' in batch else clips_loss)(params, batch, rng)

  return loss_fn


def drop_captions(rows, drop_bm, null_text_sd, null_mask_s):
  """Packed rows whose dropped segments' captions (drop [B, M]) read the empty prompt.

  A row's text holds each caption's real tokens one after another (packing.segment_text); the
  k-th token of a dropped caption becomes the empty prompt's k-th token, masked like it, so the
  empty prompt's real tokens (a prefix: [CLS] [SEP]) take the front of the caption's span.
  """
  ids_bs = rows['text_segment_ids']
  segments = drop_bm.shape[1]
  in_segment_bsm = ids_bs[..., None] == jnp.arange(1, segments + 1)
  index_bs = (jnp.cumsum(in_segment_bsm, axis=1) * in_segment_bsm).sum(-1) - 1
  index_bs = jnp.clip(index_bs, 0, null_mask_s.shape[0] - 1)
  dropped_bs = (in_segment_bsm & drop_bm[:, None, :]).any(-1)
  text_bsd = jnp.where(dropped_bs[..., None], null_text_sd[index_bs], rows['text'])
  mask_bs = jnp.where(dropped_bs, null_mask_s[index_bs], rows['text_mask'])
  return {**rows, 'text': text_bsd, 'text_mask': mask_bs}


def segment_frame_masks(rng, frames_bm, durations, probabilities):
  """bool [B, M, max(durations)]: the given frames of one task per segment, drawn over the
  segment's own frames (conditioning.sample_frame_masks at each duration in `durations`)."""
  longest = max(durations)
  given_bmt = jnp.zeros((*frames_bm.shape, longest), bool)
  for frames in durations:
    given_nt = conditioning.sample_frame_masks(jax.random.fold_in(rng, frames), frames_bm.size,
                                               frames, probabilities)
    given_nt = jnp.pad(given_nt, ((0, 0), (0, longest - frames)))
    given_bmt = jnp.where((frames_bm == frames)[..., None],
                          given_nt.reshape(given_bmt.shape), given_bmt)
  return given_bmt


def packed_loss(parts: dit_run.DitRun, params, rows, t_bm, eps_blp, given_bmt=None,
                loss_min_t: float = 0.0):
  """The flow-matching loss of packed rows (dit_run.encode_batch's) for drawn times per
  segment t [B, M], noise per token eps [B, L, P] and, for a frame-conditioned model, each
  segment's given frames [B, M, T >= its frames]; loss_min_t > 0 weights errors over t
  (flow.weigh_over_t). The mean leaves out padding tokens and given frames, so a row of one clip
  gives the loss the unpacked path gives that clip."""
  x0_blp, ids_bl = rows['patches'], rows['segment_ids']
  batch, length, _ = x0_blp.shape
  segment_bl = jnp.maximum(ids_bl - 1, 0)
  t_bl = dit.segment_values(t_bm, ids_bl)
  tokens = lambda a: a.reshape(batch * length, -1)
  x_t_blp = flow.noise(tokens(x0_blp), tokens(eps_blp), t_bl.reshape(-1)).reshape(x0_blp.shape)
  pt = parts.model.config.patch_size[0]
  counted_blk = jnp.broadcast_to((ids_bl > 0)[..., None], (batch, length, pt))
  frames_blp = given_blk = None
  if given_bmt is not None:  # a token's k-th frame is frame positions_t * pt + k of its clip
    frame_blk = rows['positions'][..., :1] * pt + jnp.arange(pt)
    given_blk = given_bmt[jnp.arange(batch)[:, None, None], segment_bl[..., None], frame_blk]
    frames_blp, counted_blk = x0_blp, counted_blk & ~given_blk
  pred_blp = parts.apply_packed(params, x_t_blp, t_bm, rows, frames_blp, given_blk)
  pred_blp, velocity_blp = flow.weigh_over_t(
      pred_blp, flow.velocity_target(x0_blp, eps_blp), t_bl, loss_min_t)
  by_frame = lambda a: a.reshape(batch, length, pt, -1)
  return flow.loss(by_frame(pred_blp), by_frame(velocity_blp), counted_blk[..., None])


def make_train_step(run: dit_run.DitRun) -> step_lib.StepFn:
  """The (unjitted) train step of `run`: this objective, AdamW, clipping, EMA, accumulation.
  A LoRA run's, train_step(state, batch, base_params), updates the adapters alone (its
  state.params): the loss sees the base with their low-rank updates merged in, and the base is
  a constant, so no gradient reaches it (runtime/lora.py)."""
  loss_fn = make_loss_fn(run)
  make_step = functools.partial(
      step_lib.make_train_step, optimizer=run.optimizer, ema_decay=run.config.optim.ema_decay,
      lr_schedule=run.lr_schedule, grad_accum_steps=state_lib.grad_accum_steps(run.config.optim))
  if run.abstract_base is None:
    return make_step(loss_fn)

  def adapters_step(state, batch, base_params):
    base_params = jax.lax.stop_gradient(base_params)

    def merged_loss(adapters, batch, rng):
      return loss_fn(run.model_params(adapters, base_params), batch, rng)

    return make_step(merged_loss)(state, batch)

  return adapters_step
