"""T5 v1.1 / umT5 encoder in Flax Linen, and where its Hugging Face weights go.

T5 v1.1 and umT5 share one layout: RMSNorm before each sublayer, no biases, unscaled attention
logits plus a learned relative-position bias, a gated-GELU MLP. They differ in one thing: T5
learns one bias table (in its first layer) for all layers, umT5 one table per layer.

Legend: b batch, l/m query/key tokens, d width, h heads, k head width, f MLP width.
"""
import dataclasses
import math
from typing import Any, Mapping

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {'gelu_new': lambda x: nn.gelu(x, approximate=True),
               'gelu_pytorch_tanh': lambda x: nn.gelu(x, approximate=True),
               'gelu': lambda x: nn.gelu(x, approximate=False),
               'relu': nn.relu, 'silu': nn.silu}


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Sizes of a T5-family encoder; per_layer_bias is True for umT5, False for T5."""
  vocab_size: int
  d_model: int
  d_kv: int
  d_ff: int
  num_layers: int
  num_heads: int
  per_layer_bias: bool
  num_buckets: int = 32
  max_distance: int = 128
  eps: float = 1e-6
  activation: str = 'gelu_new'
  gated: bool = True

  @classmethod
  def from_hf(cls, hf: Mapping[str, Any], per_layer_bias: bool) -> 'T5Config':
    """Reads a Hugging Face T5Config / UMT5Config dict (config.json)."""
    proj = hf.get('feed_forward_proj', 'relu')
    gated = proj.startswith('gated-')
    activation = hf.get('dense_act_fn') or ('gelu_new' if proj == 'gated-gelu'
                                             else proj.split('-')[-1])
    if activation not in ACTIVATIONS:
      raise ValueError(f'Activation {activation!r} (feed_forward_proj={proj!r}) is not one of '
                       f'{sorted(ACTIVATIONS)}.')
    return cls(vocab_size=hf['vocab_size'], d_model=hf['d_model'], d_kv=hf['d_kv'],
               d_ff=hf['d_ff'], num_layers=hf['num_layers'], num_heads=hf['num_heads'],
               per_layer_bias=per_layer_bias,
               num_buckets=hf.get('relative_attention_num_buckets', 32),
               max_distance=hf.get('relative_attention_max_distance', 128),
               eps=hf.get('layer_norm_epsilon', 1e-6), activation=activation, gated=gated)


def relative_position_bucket(offset: jax.Array, num_buckets: int, max_distance: int) -> jax.Array:
  """T5's bidirectional bucket of each key-minus-query offset: exact near 0, log-spaced far out."""
  half = num_buckets // 2
  exact = half // 2
  distance = jnp.abs(offset)
  log_ratio = (jnp.log(jnp.maximum(distance, 1).astype(jnp.float32) / exact)
               / math.log(max_distance / exact) * (half - exact))
  far = jnp.minimum(exact + log_ratio.astype(jnp.int32), half - 1)
  return (offset > 0) * half + jnp.where(distance < exact, distance, far)


def _dense(features: int, axes: tuple[str, str], name: str) -> nn.Dense:
  """A bias-free Dense whose kernel carries logical axis names."""
  return nn.Dense(features, use_bias=False, name=name, kernel_init=nn.with_logical_partitioning(
      nn.initializers.lecun_normal(), axes))


def _rms_norm(eps: float, name: str) -> nn.RMSNorm:
  return nn.RMSNorm(epsilon=eps, name=name, scale_init=nn.with_logical_partitioning(
      nn.initializers.ones_init(), ('embed',)))


class RelativeBias(nn.Module):
  """Learned per-head attention bias from bucketed relative positions: [1, h, l, l]."""
  config: T5Config

  @nn.compact
  def __call__(self, length: int) -> jax.Array:
    c = self.config
    table = self.param('embedding', nn.with_logical_partitioning(
        nn.initializers.normal(1.0), (None, 'heads')), (c.num_buckets, c.num_heads))
    positions = jnp.arange(length)
    buckets_lm = relative_position_bucket(positions[None, :] - positions[:, None],
                                          c.num_buckets, c.max_distance)
    return einops.rearrange(table[buckets_lm], 'l m h -> 1 h l m')


class T5Block(nn.Module):
  """Pre-norm encoder block: self-attention with relative bias, then a (gated) MLP."""
  config: T5Config

  @nn.compact
  def __call__(self, x_bld: jax.Array, mask_bl: jax.Array, bias_bhlm: jax.Array | None):
    c = self.config
    if c.per_layer_bias:
      bias_bhlm = RelativeBias(c, name='relative_bias')(x_bld.shape[1])
    inner = c.num_heads * c.d_kv
    split = lambda t: einops.rearrange(t, 'b l (h k) -> b l h k', h=c.num_heads)
    y_bld = _rms_norm(c.eps, 'attention_norm')(x_bld)
    q_blhk, k_blhk, v_blhk = (split(_dense(inner, ('embed', 'heads'), n)(y_bld))
                              for n in ('q', 'k', 'v'))
    o_blhk = jax.nn.dot_product_attention(q_blhk, k_blhk, v_blhk, bias=bias_bhlm,
                                          mask=mask_bl[:, None, None, :], scale=1.0)
    x_bld = x_bld + _dense(c.d_model, ('heads', 'embed'), 'o')(
        einops.rearrange(o_blhk, 'b l h k -> b l (h k)'))
    y_bld = _rms_norm(c.eps, 'mlp_norm')(x_bld)
    act = ACTIVATIONS[c.activation]
    if c.gated:
      h_blf = (act(_dense(c.d_ff, ('embed', 'mlp'), 'wi_0')(y_bld))
               * _dense(c.d_ff, ('embed', 'mlp'), 'wi_1')(y_bld))
    else:
      h_blf = act(_dense(c.d_ff, ('embed', 'mlp'), 'wi')(y_bld))
    return x_bld + _dense(c.d_model, ('mlp', 'embed'), 'wo')(h_blf)


class T5Encoder(nn.Module):
  """T5 / umT5 encoder: token ids [b, l] and a bool mask [b, l] -> hidden states [b, l, d]."""
  config: T5Config

  @nn.compact
  def __call__(self, ids_bl: jax.Array, mask_bl: jax.Array) -> jax.Array:
    c = self.config
    x_bld = nn.Embed(c.vocab_size, c.d_model, name='shared', embedding_init=(
        nn.with_logical_partitioning(nn.initializers.normal(1.0), ('vocab', 'embed'))))(ids_bl)
    bias_bhlm = None if c.per_layer_bias else RelativeBias(c, name='relative_bias')(
        ids_bl.shape[1])
    for i in range(c.num_layers):
      x_bld = T5Block(c, name=f'block_{i}')(x_bld, mask_bl.astype(bool), bias_bhlm)
    return _rms_norm(c.eps, 'final_norm')(x_bld)


def hf_names(config: T5Config) -> dict[tuple[str, ...], str | tuple[str, ...]]:
  """Our parameter path -> the Hugging Face T5/umT5 encoder tensor name (or names) it comes from.

  The embedding may be stored as 'shared.weight' or as its tied copy 'encoder.embed_tokens.weight'.
  """
  names = {('shared', 'embedding'): ('shared.weight', 'encoder.embed_tokens.weight'),
           ('final_norm', 'scale'): 'encoder.final_layer_norm.weight'}
  bias = 'layer.0.SelfAttention.relative_attention_bias.weight'
  if not config.per_layer_bias:
    names[('relative_bias', 'embedding')] = f'encoder.block.0.{bias}'
  mlp = ('wi_0', 'wi_1', 'wo') if config.gated else ('wi', 'wo')
  for i in range(config.num_layers):
    block, hf = f'block_{i}', f'encoder.block.{i}'
    if config.per_layer_bias:
      names[(block, 'relative_bias', 'embedding')] = f'{hf}.{bias}'
    names[(block, 'attention_norm', 'scale')] = f'{hf}.layer.0.layer_norm.weight'
    names[(block, 'mlp_norm', 'scale')] = f'{hf}.layer.1.layer_norm.weight'
    for n in ('q', 'k', 'v', 'o'):
      names[(block, n, 'kernel')] = f'{hf}.layer.0.SelfAttention.{n}.weight'
    for n in mlp:
      names[(block, n, 'kernel')] = f'{hf}.layer.1.DenseReluDense.{n}.weight'
  return names
