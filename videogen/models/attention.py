"""Attention: one dot-product function (the one place to optimise) and the DiT's attention layers.

Both layers follow Wan 2.1: q, k, v, o projections with biases, and QK-RMSNorm over the fused
heads axis (one learned scale per channel of all heads, `norm_q` / `norm_k`).

Packed rows (several clips in one token row, NaViT-style) pass segment ids: a token attends only
to tokens, and text tokens, of its own segment. The layers build a [B, L, S] bool mask from the
ids (1 byte a pair; XLA hoists it out of the block scan and makes it once, beside the float32
logits the 'xla' backend makes per block anyway). jax 0.10.2's `jax.nn.dot_product_attention`
takes no segment ids (its `query_seq_lengths` mask one padded tail per row, not segments), so the
'cudnn' backend gets the same bool mask, which jax turns into an additive [B, 1, L, S] bias.

The 'flash' backend is FlashAttention-2 in plain JAX (`flash_attention`): queries in blocks,
keys in blocks, an online softmax (running max and sum, float32) over the key blocks, and a
`jax.custom_vjp` whose backward recomputes each block's probabilities from the saved
logsumexp, so neither pass holds more than a [B, H, block_q, block_k] block of logits.

Under a mesh whose 'context' axis is larger than 1, self-attention runs as ring attention over
the token axis (videogen/parallel/context_attention.py, einsums whatever the backend);
cross-attention keeps its queries sharded and the short text whole.

Legend: b batch, l query tokens, s key tokens, h heads, d head dim, e model width, f rope pairs;
in `flash_attention`'s blocked layout, n a block index, q / k the tokens of one query / key block.
"""
import functools
from typing import Any

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from videogen.models import rope
from videogen.parallel import context_attention

BACKENDS = ('xla', 'cudnn', 'auto', 'flash')
# The 'flash' backend's block sizes, measured on CPU (experiments/benchmark_attention.py,
# docs/benchmarks.md#attention).
FLASH_BLOCK_Q = 128
FLASH_BLOCK_K = 128
_MIN = float(np.finfo(np.float32).min)


def dot_product_attention(q_blhd, k_bshd, v_bshd, *, mask=None, backend='xla',
                          block_q=FLASH_BLOCK_Q, block_k=FLASH_BLOCK_K):
  """softmax(q k^T / sqrt(d)) v -> [B, L, H, D].

  mask: bool, True = attend; [B, S] masks keys (padded text), [B, L, S] masks pairs (segments).
  A query left with no key to attend to gets zeros (and passes no gradient). Backends: 'xla' =
  einsums with logits and softmax in float32; 'flash' = `flash_attention`, blocks of `block_q`
  queries and `block_k` keys, never the whole [L, S] logits, forward or backward; 'cudnn' =
  cuDNN flash attention (GPU, bfloat16/float16 inputs); 'auto' = whatever
  `jax.nn.dot_product_attention` picks.
  """
  if backend not in BACKENDS:
    raise ValueError(f'attention backend {backend!r} is unknown: use one of {BACKENDS}.')
  mask_bls = None
  if mask is not None:
    mask_bls = jnp.asarray(mask, bool)
    mask_bls = mask_bls[:, None, :] if mask_bls.ndim == 2 else mask_bls
  if backend == 'flash':
    return flash_attention(q_blhd, k_bshd, v_bshd, mask_bls, block_q=block_q, block_k=block_k)
  if backend == 'xla':
    # Heads next to batch before the two matmuls: XLA's CPU backend runs batched dots whose
    # batch dimensions lead faster than ones with a batch dimension between the others.
    q_bhld, k_bhsd, v_bhsd = (einops.rearrange(a, 'b l h d -> b h l d')
                              for a in (q_blhd, k_bshd, v_bshd))
    logits_bhls = jnp.einsum('bhld,bhsd->bhls', q_bhld, k_bhsd,
                             preferred_element_type=jnp.float32) / np.sqrt(q_blhd.shape[-1])
    if mask_bls is not None:
      logits_bhls = jnp.where(mask_bls[:, None], logits_bhls, _MIN)
    probs_bhls = jax.nn.softmax(logits_bhls, axis=-1).astype(v_bshd.dtype)
    out_blhd = einops.rearrange(jnp.einsum('bhls,bhsd->bhld', probs_bhls, v_bhsd),
                                'b h l d -> b l h d')
  else:
    if mask_bls is not None:  # cuDNN takes a whole [B, 1, L, S] mask (its bias), not [B, 1, 1, S]
      mask_bls = jnp.broadcast_to(mask_bls, (q_blhd.shape[0], q_blhd.shape[1], k_bshd.shape[1]))
    out_blhd = jax.nn.dot_product_attention(
        q_blhd, k_bshd, v_bshd, mask=None if mask_bls is None else mask_bls[:, None],
        implementation='cudnn' if backend == 'cudnn' else None)
  if mask_bls is not None:
    out_blhd = out_blhd * jnp.any(mask_bls, axis=-1)[:, :, None, None].astype(out_blhd.dtype)
  return out_blhd


def _block_count_and_size(length: int, block: int) -> tuple[int, int]:
  """The fewest blocks of at most `block` tokens that cover `length`, made equal in size (so
  1,000 tokens in blocks of 512 are 2 blocks of 500, no padding); (count, size)."""
  if block < 1:
    raise ValueError(f'attention block size {block} must be at least 1, e.g. 128.')
  count = -(-length // block)
  return count, -(-length // count)


def flash_attention(q_blhd, k_bshd, v_bshd, mask_bls=None, *, block_q=FLASH_BLOCK_Q,
                    block_k=FLASH_BLOCK_K):
  """softmax(q k^T / sqrt(d)) v -> [B, L, H, D] in blocks (FlashAttention-2), in plain JAX.

  mask_bls: bool [B or 1, L or 1, S], True = attend (a [B, 1, S] key mask stays that small). The
  rows are cut into blocks of at most `block_q` queries and `block_k` keys, padded inside to
  whole blocks (padded keys masked out, padded queries sliced off). The logits, the running max
  and sum and the output accumulator are float32 whatever the input dtype; probabilities meet
  `v` in v's dtype, as in the 'xla' backend. A query with no key to attend to gets zeros and no
  gradient, as in the 'xla' backend. The backward pass recomputes each block's probabilities
  from the saved logsumexp, so the scratch memory of either pass grows with L·block_k (or
  block_q·S) and the saved residuals with L, never with L·S.
  """
  length, head_dim, keys = q_blhd.shape[1], q_blhd.shape[3], k_bshd.shape[1]
  nq, bq = _block_count_and_size(length, block_q)
  nk, bk = _block_count_and_size(keys, block_k)
  if mask_bls is None and nk * bk != keys:
    mask_bls = jnp.ones((1, 1, keys), bool)  # only to mask the padded keys out
  mask_nnbqk = None
  if mask_bls is not None:
    mask_b, mask_l = mask_bls.shape[:2]
    mask_bls = jnp.pad(mask_bls, ((0, 0), (0, nq * bq - length if mask_l > 1 else 0),
                                  (0, nk * bk - keys)))  # pads with False: never attended
    if mask_l > 1:
      mask_nnbqk = einops.rearrange(mask_bls, 'b (n q) (m k) -> n m b q k', q=bq, k=bk)
    else:
      mask_nnbqk = jnp.broadcast_to(
          einops.rearrange(mask_bls, 'b 1 (m k) -> m b 1 k', k=bk), (nq, nk, mask_b, 1, bk))
  to_blocks = lambda x_bthd, count, size: einops.rearrange(
      jnp.pad(x_bthd, ((0, 0), (0, count * size - x_bthd.shape[1]), (0, 0), (0, 0))),
      'b (n t) h d -> n b h t d', t=size)
  out_nbhqd = _flash(to_blocks(q_blhd, nq, bq), to_blocks(k_bshd, nk, bk),
                     to_blocks(v_bshd, nk, bk), mask_nnbqk, 1.0 / np.sqrt(head_dim))
  return einops.rearrange(out_nbhqd, 'n b h q d -> b (n q) h d')[:, :length]


def _block_logits(q_bhqd, k_bhkd, mask_bqk, scale: float):
  """One block's float32 logits, masked pairs at float32's minimum."""
  logits_bhqk = jnp.einsum('bhqd,bhkd->bhqk', q_bhqd, k_bhkd,
                           preferred_element_type=jnp.float32) * scale
  if mask_bqk is not None:
    logits_bhqk = jnp.where(mask_bqk[:, None], logits_bhqk, _MIN)
  return logits_bhqk


def _flash_forward(q_nbhqd, k_nbhkd, v_nbhkd, mask_nnbqk, scale: float):
  """(out [n, B, H, q, D] in v's dtype, logsumexp [n, B, H, q] float32): query blocks one after
  another, each folding in the key blocks one after another with an online softmax."""

  def query_block(args):
    q_bhqd, mask_nbqk = args

    def key_block(carry, kv):
      max_bhq, sum_bhq, acc_bhqd = carry
      k_bhkd, v_bhkd, mask_bqk = kv
      logits_bhqk = _block_logits(q_bhqd, k_bhkd, mask_bqk, scale)
      new_max_bhq = jnp.maximum(max_bhq, jnp.max(logits_bhqk, axis=-1))
      # Until a row meets a key it may attend to, its max stays _MIN and its masked pairs
      # count exp(0) = 1; the first real logit's correction exp(_MIN - max) = 0 erases them.
      probs_bhqk = jnp.exp(logits_bhqk - new_max_bhq[..., None])
      correction_bhq = jnp.exp(max_bhq - new_max_bhq)
      acc_bhqd = correction_bhq[..., None] * acc_bhqd + jnp.einsum(
          'bhqk,bhkd->bhqd', probs_bhqk.astype(v_bhkd.dtype), v_bhkd,
          preferred_element_type=jnp.float32)
      return (new_max_bhq, correction_bhq * sum_bhq + jnp.sum(probs_bhqk, axis=-1),
              acc_bhqd), None

    stats_shape = q_bhqd.shape[:-1]
    init = (jnp.full(stats_shape, _MIN, jnp.float32), jnp.zeros(stats_shape, jnp.float32),
            jnp.zeros(q_bhqd.shape, jnp.float32))
    (max_bhq, sum_bhq, acc_bhqd), _ = jax.lax.scan(key_block, init,
                                                   (k_nbhkd, v_nbhkd, mask_nbqk))
    # A row that met no key it may attend to outputs zeros; its logsumexp is +inf, so that the
    # backward's exp(s - lse) is 0 there.
    empty_bhq = max_bhq == _MIN
    out_bhqd = jnp.where(empty_bhq[..., None], 0.0, acc_bhqd / sum_bhq[..., None])
    lse_bhq = jnp.where(empty_bhq, jnp.inf, max_bhq + jnp.log(sum_bhq))
    return out_bhqd.astype(v_nbhkd.dtype), lse_bhq

  return jax.lax.map(query_block, (q_nbhqd, mask_nnbqk))


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _flash(q_nbhqd, k_nbhkd, v_nbhkd, mask_nnbqk, scale: float):
  """Blocked attention on blocked operands ([n, B, H, tokens, D]; mask [nq, nk, B, q, k])."""
  return _flash_forward(q_nbhqd, k_nbhkd, v_nbhkd, mask_nnbqk, scale)[0]


def _flash_fwd(q_nbhqd, k_nbhkd, v_nbhkd, mask_nnbqk, scale: float):
  out_nbhqd, lse_nbhq = _flash_forward(q_nbhqd, k_nbhkd, v_nbhkd, mask_nnbqk, scale)
  return out_nbhqd, (q_nbhqd, k_nbhkd, v_nbhkd, mask_nnbqk, out_nbhqd, lse_nbhq)


def _flash_bwd(scale: float, residuals, dout_nbhqd):
  """FlashAttention-2's backward: key blocks one after another, each meeting every query block
  and recomputing P = exp(s - lse); dV = P^T dO, dP = dO V^T, dS = P (dP - rowsum(dO O)),
  dQ = dS K, dK = dS^T Q (both times the scale). dK and dV of a key block are accumulated over
  the query blocks, dQ over the key blocks."""
  q_nbhqd, k_nbhkd, v_nbhkd, mask_nnbqk, out_nbhqd, lse_nbhq = residuals
  delta_nbhq = jnp.sum(dout_nbhqd.astype(jnp.float32) * out_nbhqd.astype(jnp.float32), axis=-1)
  mask_nnbqk = None if mask_nnbqk is None else jnp.swapaxes(mask_nnbqk, 0, 1)  # key block first

  def key_block(dq_nbhqd, kv):
    k_bhkd, v_bhkd, mask_nbqk = kv

    def query_block(carry, qs):
      dk_bhkd, dv_bhkd = carry
      q_bhqd, dout_bhqd, lse_bhq, delta_bhq, mask_bqk = qs
      logits_bhqk = _block_logits(q_bhqd, k_bhkd, mask_bqk, scale)
      probs_bhqk = jnp.exp(logits_bhqk - lse_bhq[..., None])
      dv_bhkd = dv_bhkd + jnp.einsum('bhqk,bhqd->bhkd', probs_bhqk.astype(dout_bhqd.dtype),
                                     dout_bhqd, preferred_element_type=jnp.float32)
      dprobs_bhqk = jnp.einsum('bhqd,bhkd->bhqk', dout_bhqd, v_bhkd,
                               preferred_element_type=jnp.float32)
      dlogits_bhqk = (probs_bhqk * (dprobs_bhqk - delta_bhq[..., None])).astype(q_bhqd.dtype)
      dk_bhkd = dk_bhkd + jnp.einsum('bhqk,bhqd->bhkd', dlogits_bhqk, q_bhqd,
                                     preferred_element_type=jnp.float32)
      dq_bhqd = jnp.einsum('bhqk,bhkd->bhqd', dlogits_bhqk, k_bhkd,
                           preferred_element_type=jnp.float32)
      return (dk_bhkd, dv_bhkd), dq_bhqd

    zeros = jnp.zeros(k_bhkd.shape, jnp.float32)
    (dk_bhkd, dv_bhkd), dq_part_nbhqd = jax.lax.scan(
        query_block, (zeros, zeros), (q_nbhqd, dout_nbhqd, lse_nbhq, delta_nbhq, mask_nbqk))
    return dq_nbhqd + dq_part_nbhqd, (dk_bhkd * scale, dv_bhkd)

  dq_nbhqd, (dk_nbhkd, dv_nbhkd) = jax.lax.scan(
      key_block, jnp.zeros(q_nbhqd.shape, jnp.float32), (k_nbhkd, v_nbhkd, mask_nnbqk))
  return ((dq_nbhqd * scale).astype(q_nbhqd.dtype), dk_nbhkd.astype(k_nbhkd.dtype),
          dv_nbhkd.astype(v_nbhkd.dtype), None)


_flash.defvjp(_flash_fwd, _flash_bwd)


def dense(features: int, axes: tuple[str | None, str], *, name: str, dtype: Any,
          param_dtype: Any, kernel_init=nn.initializers.xavier_uniform()) -> nn.Dense:
  """nn.Dense whose kernel and bias carry logical axis names `axes` (input, output)."""
  return nn.Dense(
      features, dtype=dtype, param_dtype=param_dtype, name=name,
      kernel_init=nn.with_logical_partitioning(kernel_init, axes),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), axes[-1:]))


class _Attention(nn.Module):
  """Projections and QK-RMSNorm shared by self- and cross-attention."""
  dim: int
  heads: int
  qk_norm: bool = True
  backend: str = 'xla'
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  zero_init_output: bool = False

  def setup(self):
    if self.dim % self.heads:
      raise ValueError(f'width {self.dim} is not divisible by {self.heads} heads: use a width '
                       f'that is a multiple of {self.heads}.')
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    self.q, self.k, self.v = (
        dense(self.dim, ('embed', 'heads'), name=name, **kw) for name in 'qkv')
    out_init = (nn.initializers.zeros_init() if self.zero_init_output
                else nn.initializers.xavier_uniform())
    self.o = dense(self.dim, ('heads', 'embed'), name='o', kernel_init=out_init, **kw)
    if self.qk_norm:
      self.norm_q, self.norm_k = (
          nn.RMSNorm(epsilon=1e-6, dtype=jnp.float32, param_dtype=self.param_dtype, name=name,
                     scale_init=nn.with_logical_partitioning(nn.initializers.ones, ('heads',)))
          for name in ('norm_q', 'norm_k'))

  def _attend(self, x_ble, context_bse, attend, *, rope_lf=None):
    """attend(q [B, L, H, D], k, v [B, S, H, D]) -> [B, L, H, D] mixes the projected tokens."""
    context_attention.check_heads(self.heads)
    q_ble, k_bse, v_bse = self.q(x_ble), self.k(context_bse), self.v(context_bse)
    if self.qk_norm:
      q_ble = self.norm_q(q_ble).astype(v_bse.dtype)
      k_bse = self.norm_k(k_bse).astype(v_bse.dtype)
    split = lambda y: einops.rearrange(y, 'b l (h d) -> b l h d', h=self.heads)
    q_blhd, k_bshd, v_bshd = split(q_ble), split(k_bse), split(v_bse)
    if rope_lf is not None:
      q_blhd, k_bshd = rope.apply_rope(q_blhd, *rope_lf), rope.apply_rope(k_bshd, *rope_lf)
    out_blhd = attend(q_blhd, k_bshd, v_bshd)
    return self.o(einops.rearrange(out_blhd, 'b l h d -> b l (h d)'))


def segment_mask(segment_ids_bl, context_segment_ids_bs):
  """bool [B, L, S]: True where query token l and key token s carry the same segment id."""
  return segment_ids_bl[:, :, None] == context_segment_ids_bs[:, None, :]


class SelfAttention(_Attention):
  """Self-attention with QK-RMSNorm and 3D RoPE, over all tokens or within segments."""

  def __call__(self, x_ble, rope_lf, segment_ids_bl=None):
    """x [B, L, E]; rope_lf = (cos, sin), each [L, D // 2] or [B, L, D // 2], from
    `rope.rope_tables`; segment_ids [B, L] int restricts attention to equal ids (padding, id 0,
    attends to padding, so no softmax row is empty). Ring attention under a 'context' mesh."""
    if context_attention.context_size() > 1:
      attend = lambda q, k, v: context_attention.ring_attention(q, k, v, segment_ids_bl)
    else:
      mask = None if segment_ids_bl is None else segment_mask(segment_ids_bl, segment_ids_bl)
      attend = lambda q, k, v: dot_product_attention(q, k, v, mask=mask, backend=self.backend)
    return self._attend(x_ble, x_ble, attend, rope_lf=rope_lf)


class CrossAttention(_Attention):
  """Attention from tokens to text tokens, skipping padded text (`context_mask_bs` False) and,
  in packed rows, the text of other segments.

  Set `zero_init_output` so a new residual branch adds nothing (adaLN-Zero has no gate here).
  """

  def __call__(self, x_ble, context_bse, context_mask_bs, segment_ids_bl=None,
               context_segment_ids_bs=None):
    """segment_ids [B, L] and context_segment_ids [B, S]: both or neither (packed rows)."""
    if (segment_ids_bl is None) != (context_segment_ids_bs is None):
      raise ValueError('segment_ids_bl and context_segment_ids_bs must be given together: pass '
                       'the segment id of every token and of every text token, or neither.')
    mask = context_mask_bs
    if segment_ids_bl is not None:
      mask = context_mask_bs[:, None, :] & segment_mask(segment_ids_bl, context_segment_ids_bs)
    return self._attend(x_ble, context_bse, lambda q, k, v: dot_product_attention(
        q, k, v, mask=mask, backend=self.backend))
