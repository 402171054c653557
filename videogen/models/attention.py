"""Attention: one dot-product function (the one place to optimise) and the DiT's attention layers.

Both layers follow Wan 2.1: q, k, v, o projections with biases, and QK-RMSNorm over the fused
heads axis (one learned scale per channel of all heads, `norm_q` / `norm_k`).

Packed rows (several clips in one token row, NaViT-style) pass segment ids: a token attends only
to tokens, and text tokens, of its own segment. The layers build a [B, L, S] bool mask from the
ids (1 byte a pair; XLA hoists it out of the block scan and makes it once, beside the float32
logits the 'xla' backend makes per block anyway). jax 0.10.2's `jax.nn.dot_product_attention`
takes no segment ids (its `query_seq_lengths` mask one padded tail per row, not segments), so the
'cudnn' backend gets the same bool mask, which jax turns into an additive [B, 1, L, S] bias.

Under a mesh whose 'context' axis is larger than 1, self-attention runs as ring attention over
the token axis (videogen/parallel/context_attention.py, einsums whatever the backend);
cross-attention keeps its queries sharded and the short text whole.

Legend: b batch, l query tokens, s key tokens, h heads, d head dim, e model width, f rope pairs.
"""
from typing import Any

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from videogen.models import rope
from videogen.parallel import context_attention

BACKENDS = ('xla', 'cudnn', 'auto')


def dot_product_attention(q_blhd, k_bshd, v_bshd, *, mask=None, backend='xla'):
  """softmax(q k^T / sqrt(d)) v -> [B, L, H, D].

  mask: bool, True = attend; [B, S] masks keys (padded text), [B, L, S] masks pairs (segments).
  A query left with no key to attend to gets zeros. Backends: 'xla' = einsums with logits and
  softmax in float32; 'cudnn' = cuDNN flash attention (GPU, bfloat16/float16 inputs); 'auto' =
  whatever `jax.nn.dot_product_attention` picks.
  """
  if backend not in BACKENDS:
    raise ValueError(f'attention backend {backend!r} is unknown: use one of {BACKENDS}.')
  mask_bls = None
  if mask is not None:
    mask_bls = jnp.asarray(mask, bool)
    mask_bls = mask_bls[:, None, :] if mask_bls.ndim == 2 else mask_bls
  if backend == 'xla':
    logits_bhls = jnp.einsum('blhd,bshd->bhls', q_blhd, k_bshd,
                             preferred_element_type=jnp.float32) / np.sqrt(q_blhd.shape[-1])
    if mask_bls is not None:
      logits_bhls = jnp.where(mask_bls[:, None], logits_bhls, jnp.finfo(jnp.float32).min)
    probs_bhls = jax.nn.softmax(logits_bhls, axis=-1).astype(v_bshd.dtype)
    out_blhd = jnp.einsum('bhls,bshd->blhd', probs_bhls, v_bshd)
  else:
    out_blhd = jax.nn.dot_product_attention(
        q_blhd, k_bshd, v_bshd, mask=None if mask_bls is None else mask_bls[:, None],
        implementation='cudnn' if backend == 'cudnn' else None)
  if mask_bls is not None:
    out_blhd = out_blhd * jnp.any(mask_bls, axis=-1)[:, :, None, None].astype(out_blhd.dtype)
  return out_blhd


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
