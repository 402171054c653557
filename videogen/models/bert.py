"""BERT encoder in Flax Linen (the all-MiniLM-L6-v2 layout), and where its Hugging Face weights go.

Legend: b batch, l tokens, d width, h heads, k head width.
"""
import dataclasses
from typing import Any, Mapping

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Sizes of a BERT encoder; the defaults are all-MiniLM-L6-v2's."""
  vocab_size: int = 30522
  width: int = 384
  depth: int = 6
  num_heads: int = 12
  mlp_dim: int = 1536
  max_positions: int = 512
  type_vocab_size: int = 2
  eps: float = 1e-12

  @classmethod
  def from_hf(cls, hf: Mapping[str, Any]) -> 'BertConfig':
    """Reads a Hugging Face BertConfig dict (config.json)."""
    if hf.get('hidden_act', 'gelu') != 'gelu':
      raise ValueError(f"hidden_act={hf['hidden_act']!r} is not supported: only exact 'gelu'.")
    return cls(vocab_size=hf['vocab_size'], width=hf['hidden_size'],
               depth=hf['num_hidden_layers'], num_heads=hf['num_attention_heads'],
               mlp_dim=hf['intermediate_size'], max_positions=hf['max_position_embeddings'],
               type_vocab_size=hf.get('type_vocab_size', 2), eps=hf.get('layer_norm_eps', 1e-12))


def _dense(features: int, axes: tuple[str, str], name: str) -> nn.Dense:
  """A biased Dense whose kernel and bias carry logical axis names."""
  return nn.Dense(
      features, name=name,
      kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), axes),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), axes[1:]))


def _layer_norm(eps: float, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(
      epsilon=eps, name=name,
      scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ('embed',)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ('embed',)))


def _embed(num: int, width: int, axes: tuple[str | None, str], name: str) -> nn.Embed:
  return nn.Embed(num, width, name=name, embedding_init=nn.with_logical_partitioning(
      nn.initializers.normal(0.02), axes))


class BertLayer(nn.Module):
  """Post-norm transformer layer: self-attention, then a GELU MLP."""
  config: BertConfig

  @nn.compact
  def __call__(self, x_bld: jax.Array, mask_bl: jax.Array) -> jax.Array:
    c = self.config
    split = lambda t: einops.rearrange(t, 'b l (h k) -> b l h k', h=c.num_heads)
    q_blhk = split(_dense(c.width, ('embed', 'heads'), 'query')(x_bld))
    k_blhk = split(_dense(c.width, ('embed', 'heads'), 'key')(x_bld))
    v_blhk = split(_dense(c.width, ('embed', 'heads'), 'value')(x_bld))
    o_blhk = jax.nn.dot_product_attention(q_blhk, k_blhk, v_blhk,
                                          mask=mask_bl[:, None, None, :])
    o_bld = _dense(c.width, ('heads', 'embed'), 'attention_out')(
        einops.rearrange(o_blhk, 'b l h k -> b l (h k)'))
    x_bld = _layer_norm(c.eps, 'attention_norm')(x_bld + o_bld)
    h_blf = nn.gelu(_dense(c.mlp_dim, ('embed', 'mlp'), 'intermediate')(x_bld), approximate=False)
    y_bld = _dense(c.width, ('mlp', 'embed'), 'output')(h_blf)
    return _layer_norm(c.eps, 'output_norm')(x_bld + y_bld)


class Bert(nn.Module):
  """BERT encoder: token ids [b, l] and a bool mask [b, l] -> hidden states [b, l, d]."""
  config: BertConfig

  @nn.compact
  def __call__(self, ids_bl: jax.Array, mask_bl: jax.Array) -> jax.Array:
    c = self.config
    if ids_bl.shape[1] > c.max_positions:
      raise ValueError(f'{ids_bl.shape[1]} tokens exceed the {c.max_positions} positions of this '
                       'BERT: use a smaller max_length.')
    x_bld = (_embed(c.vocab_size, c.width, ('vocab', 'embed'), 'word_embeddings')(ids_bl)
             + _embed(c.max_positions, c.width, (None, 'embed'), 'position_embeddings')(
                 jnp.arange(ids_bl.shape[1]))
             + _embed(c.type_vocab_size, c.width, (None, 'embed'), 'token_type_embeddings')(
                 jnp.zeros_like(ids_bl)))
    x_bld = _layer_norm(c.eps, 'embeddings_norm')(x_bld)
    for i in range(c.depth):
      x_bld = BertLayer(c, name=f'layer_{i}')(x_bld, mask_bl.astype(bool))
    return x_bld


def hf_names(config: BertConfig) -> dict[tuple[str, ...], str]:
  """Our parameter path -> the Hugging Face BertModel tensor name it comes from."""
  names = {('word_embeddings', 'embedding'): 'embeddings.word_embeddings.weight',
           ('position_embeddings', 'embedding'): 'embeddings.position_embeddings.weight',
           ('token_type_embeddings', 'embedding'): 'embeddings.token_type_embeddings.weight',
           ('embeddings_norm', 'scale'): 'embeddings.LayerNorm.weight',
           ('embeddings_norm', 'bias'): 'embeddings.LayerNorm.bias'}
  ours_to_hf = {'query': 'attention.self.query', 'key': 'attention.self.key',
                'value': 'attention.self.value', 'attention_out': 'attention.output.dense',
                'attention_norm': 'attention.output.LayerNorm',
                'intermediate': 'intermediate.dense', 'output': 'output.dense',
                'output_norm': 'output.LayerNorm'}
  for i in range(config.depth):
    for ours, hf in ours_to_hf.items():
      prefix = f'encoder.layer.{i}.{hf}'
      first = 'scale' if ours.endswith('norm') else 'kernel'
      names[(f'layer_{i}', ours, first)] = f'{prefix}.weight'
      names[(f'layer_{i}', ours, 'bias')] = f'{prefix}.bias'
  return names
