"""Diffusion transformer over spacetime patches, laid out like Wan 2.1 so its weights convert.

Tokens: patchify -> linear patch embedding. Time: sinusoidal(1000 t) -> SiLU MLP -> one shared
projection to 6 x width, plus a learned [6, width] offset per block (adaLN-Zero: shift, scale,
gate for attention, then for the MLP). Text: MLP from the text width to the model width. Block:
modulated self-attention (3D RoPE, QK-RMSNorm) -> LayerNorm + cross-attention to the text (not
modulated) -> modulated GELU-tanh MLP. Head: LayerNorm, shift/scale from the time embedding plus
a learned [2, width] table, linear back to patch values, unpatchify. Gates, the cross-attention
output and the head start at zero, so every block is the identity and the output is 0 at init.

The residual stream, norms and modulation stay float32; matmuls run in `config.dtype`.

Native sizes: `DiT.packed` runs rows that pack several clips (each with its own shape, time and
caption) into one token row, NaViT-style. Attention stays within a segment, text attention within
its caption, RoPE uses each token's position in its own clip, and the time modulation is per
segment: the time MLP and projection run once per clip ([B, M, 6, E]), then each token takes its
clip's row ([B, L, 6, E] float32, 24 E bytes a token: 36 KiB at E = 1536, 1.2 GB for a 32k-token
row, where a batch of single clips needs [B, 1, 6, E]), made once and shared by all blocks. A
packed clip's output equals that clip run alone through `__call__` (up to float rounding).

Legend: b batch, t/h/w frames/height/width, c channels, l tokens, s text tokens, e model width,
k the 6 (or 2) modulation rows, f frequency features, p patch values, m segments of a packed row,
i 1, m or l (time and modulation per sample, per segment, or per token once spread).
"""
import dataclasses
from typing import Any

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from videogen.models import attention
from videogen.models import dit_sizes
from videogen.core import patches
from videogen.models import rope

REMAT_POLICIES = {
    'none': None,
    'dots': jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    'full': jax.checkpoint_policies.nothing_saveable,
}
_LENGTH = ('batch', 'length', 'embed')
POS_EMBEDS = ('none', 'sincos')


@dataclasses.dataclass(frozen=True)
class DiTConfig:
  """Shape and numerics of a DiT; `dit_config` builds one from a size name."""
  dim: int
  depth: int
  heads: int
  mlp_dim: int
  patch_size: tuple[int, int, int]
  in_channels: int
  out_channels: int
  text_dim: int
  freq_dim: int = 256
  qk_norm: bool = True
  scan_layers: bool = True
  remat: str = 'none'  # 'none' | 'dots' (save matmul outputs) | 'full' (save block inputs only)
  attention_backend: str = 'xla'
  dtype: str = 'float32'  # compute dtype of matmuls
  param_dtype: str = 'float32'
  rope_theta: float = 10000.0
  # 'sincos': add rope.sincos_embedding of each token's (t, h, w) position to the patch
  # embedding, so a token knows where and when it is (see _tokens); 'none': RoPE only (Wan).
  pos_embed: str = 'none'
  # The cross-attention output starts at 'zero' (each block adds no text at init) or 'xavier'
  # (Wan 2.1's init: the text reaches the tokens, and its projections get gradients, at once).
  cross_attn_init: str = 'zero'
  # Add a projection of the caption's mean token state to the time embedding, so the text also
  # modulates every block and the head (adaLN, as SD3 adds its pooled text); see `_tokens`.
  pooled_text: bool = False

  def __post_init__(self):
    if self.remat not in REMAT_POLICIES:
      raise ValueError(f'remat {self.remat!r} is unknown: use one of {tuple(REMAT_POLICIES)}.')
    if self.attention_backend not in attention.BACKENDS:
      raise ValueError(f'attention_backend {self.attention_backend!r} is unknown: use one of '
                       f'{attention.BACKENDS}.')
    if self.dim % self.heads:
      raise ValueError(f'width {self.dim} is not divisible by {self.heads} heads: use a width '
                       f'that is a multiple of {self.heads}.')
    rope.rope_split(self.dim // self.heads)
    if self.pos_embed not in POS_EMBEDS:
      raise ValueError(f'pos_embed {self.pos_embed!r} is unknown: use one of {POS_EMBEDS}.')
    if self.cross_attn_init not in ('zero', 'xavier'):
      raise ValueError(f'cross_attn_init {self.cross_attn_init!r} is unknown: use zero or xavier.')
    if len(self.patch_size) != 3 or min(self.patch_size) < 1:
      raise ValueError(f'patch_size {self.patch_size} must be three positive sizes (pt, ph, pw), '
                       'e.g. (1, 2, 2).')
    for field in ('dtype', 'param_dtype'):
      if getattr(self, field) not in ('float32', 'bfloat16', 'float16'):
        raise ValueError(f'{field} {getattr(self, field)!r} is unknown: use float32, bfloat16 '
                         'or float16.')

  @property
  def patch_dim(self) -> int:
    return int(np.prod(self.patch_size))


def dit_config(variant: str, *, in_channels: int, text_dim: int, patch_size=None,
               **overrides) -> DiTConfig:
  """DiTConfig for a size name ("T/2" ... "XL/2", "1.3B", "14B"); out_channels = in_channels
  unless overridden, patch_size overrides the name's patch."""
  fields = dit_sizes.decode(variant)
  if patch_size is not None:
    fields['patch_size'] = tuple(patch_size)
  fields.update(in_channels=in_channels, out_channels=in_channels, text_dim=text_dim)
  unknown = set(overrides) - {f.name for f in dataclasses.fields(DiTConfig)}
  if unknown:
    raise ValueError(f'DiTConfig has no field {sorted(unknown)}: use one of '
                     f'{[f.name for f in dataclasses.fields(DiTConfig)]}.')
  fields.update(overrides)
  return DiTConfig(**fields)


def timestep_embedding(t, dim: int):
  """Sinusoidal features [..., dim] of (already scaled) times [...], cos half first as in Wan."""
  half = dim // 2
  freqs_f = np.exp(-np.log(10000.0) * np.arange(half, dtype=np.float32) / half)
  args_bf = t.astype(jnp.float32)[..., None] * freqs_f
  return jnp.concatenate([jnp.cos(args_bf), jnp.sin(args_bf)], axis=-1)


def _layer_norm(name: str, affine: bool = False, param_dtype: Any = jnp.float32):
  """Wan's LayerNorm: eps 1e-6, computed in float32, learned scale and bias only if affine."""
  init = lambda base: nn.with_logical_partitioning(base, ('embed',))
  return nn.LayerNorm(epsilon=1e-6, use_bias=affine, use_scale=affine, dtype=jnp.float32,
                      param_dtype=param_dtype, scale_init=init(nn.initializers.ones),
                      bias_init=init(nn.initializers.zeros), name=name)


def _modulate(x_ble, shift_bie, scale_bie):
  """adaLN: per-sample ([B, 1, E]) or per-token ([B, L, E]) scale and shift of normalised tokens."""
  return x_ble * (1 + scale_bie) + shift_bie


class Block(nn.Module):
  """One DiT block; returns (x, None) so that `nn.scan` can stack it."""
  config: DiTConfig

  @nn.compact
  def __call__(self, x_ble, context_bse, context_mask_bs, modulation_bike, rope_lf,
               segment_ids_bl=None, context_segment_ids_bs=None):
    """Segment ids (packed rows, both or neither) keep attention within each clip."""
    cfg = self.config
    dtype, param_dtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    attn_kw = dict(dim=cfg.dim, heads=cfg.heads, qk_norm=cfg.qk_norm,
                   backend=cfg.attention_backend, **kw)
    table_ke = self.param(
        'modulation', nn.with_logical_partitioning(nn.initializers.zeros, ('modulation', 'embed')),
        (6, cfg.dim), param_dtype)
    shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = jnp.unstack(
        modulation_bike + table_ke.astype(jnp.float32), axis=2)

    h_ble = _modulate(_layer_norm('norm1')(x_ble), shift_a, scale_a).astype(dtype)
    h_ble = attention.SelfAttention(**attn_kw, name='self_attn')(h_ble, rope_lf, segment_ids_bl)
    x_ble = x_ble + gate_a * h_ble
    h_ble = _layer_norm('norm3', affine=True, param_dtype=param_dtype)(x_ble).astype(dtype)
    x_ble = x_ble + attention.CrossAttention(
        **attn_kw, zero_init_output=cfg.cross_attn_init == 'zero', name='cross_attn')(
        h_ble, context_bse, context_mask_bs, segment_ids_bl, context_segment_ids_bs)
    h_ble = _modulate(_layer_norm('norm2')(x_ble), shift_m, scale_m).astype(dtype)
    h_ble = attention.dense(cfg.mlp_dim, ('embed', 'mlp'), name='ffn_in', **kw)(h_ble)
    h_ble = attention.dense(cfg.dim, ('mlp', 'embed'), name='ffn_out', **kw)(
        nn.gelu(h_ble, approximate=True))
    x_ble = x_ble + gate_m * h_ble
    return nn.with_logical_constraint(x_ble, _LENGTH), None


class DiT(nn.Module):
  """Velocity model: (noisy latent, flow time, text) -> velocity, see the module docstring."""
  config: DiTConfig

  def __call__(self, x_bthwc, t_b, text_bsd, text_mask_bs):
    """x [B, T, H, W, C_in], t [B] in [0, 1] (0 = data, 1 = noise), text [B, S, text_dim],
    text_mask [B, S] bool (False = padding) -> velocity [B, T, H, W, C_out] float32."""
    cfg = self.config
    self._check_inputs(x_bthwc, t_b, text_bsd, text_mask_bs)
    grid_thw = x_bthwc.shape[1:4]
    out_blp = self._tokens(patches.patchify(x_bthwc, cfg.patch_size), t_b[:, None], text_bsd,
                           text_mask_bs, patches.positions(*grid_thw, cfg.patch_size))
    return patches.unpatchify(out_blp, grid_thw, cfg.patch_size)

  def packed(self, patches_blp, segment_ids_bl, positions_bl3, t_bm, text_bsd, text_mask_bs,
             text_segment_ids_bs):
    """Packed rows of clips (videogen/data/packing.py) -> velocity per token, float32.

    patches [B, L, patch_dim * C_in] (patchified values); segment_ids [B, L] int (1..n: the
    token's clip, 0: padding); positions [B, L, 3] int (the token's (t, h, w) patch index in its
    clip); t [B, M] (each segment's flow time: segment id k reads t[:, k - 1], so M is at least
    the largest id, e.g. the packer's max_segments); text [B, S, text_dim], text_mask [B, S]
    bool and text_segment_ids [B, S] int: the captions of all clips in the row, each text token
    tagged with its clip's id. Returns [B, L, patch_dim * C_out]; padding tokens' outputs are finite
    and meaningless. `packing.unpack` cuts the clips out.
    """
    self._check_packed(patches_blp, segment_ids_bl, positions_bl3, t_bm, text_segment_ids_bs)
    self._check_text(patches_blp.shape[0], text_bsd, text_mask_bs)
    return self._tokens(patches_blp, t_bm, text_bsd, text_mask_bs, positions_bl3,
                        segment_ids_bl, text_segment_ids_bs)

  @nn.compact
  def _tokens(self, patches_blp, t_bi, text_bsd, text_mask_bs, positions_i3,
              segment_ids_bl=None, text_segment_ids_bs=None):
    """The shared body: patch tokens -> output tokens [B, L, patch_dim * C_out] float32.

    t is [B, 1] (one time per sample) or [B, M] (per segment: the time MLP runs per segment,
    then each token takes its segment's modulation); positions [L, 3] or [B, L, 3].
    """
    cfg = self.config
    dtype, param_dtype = jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    f32 = dict(dtype=jnp.float32, param_dtype=param_dtype)
    small = nn.initializers.normal(0.02)

    x_ble = attention.dense(cfg.dim, ('patch', 'embed'), name='patch_embedding', **kw)(
        patches_blp.astype(dtype)).astype(jnp.float32)
    if cfg.pos_embed == 'sincos':  # RoPE alone leaves a token blind to where it is
      x_ble = x_ble + rope.sincos_embedding(positions_i3, cfg.dim, cfg.rope_theta)
    x_ble = nn.with_logical_constraint(x_ble, _LENGTH)

    temb_bie = attention.dense(cfg.dim, (None, 'mlp'), name='time_in', kernel_init=small, **f32)(
        timestep_embedding(1000.0 * t_bi, cfg.freq_dim))
    temb_bie = attention.dense(cfg.dim, ('mlp', 'embed'), name='time_out', kernel_init=small,
                               **f32)(nn.silu(temb_bie))
    if cfg.pooled_text:
      pooled_bid = pooled_text(text_bsd, text_mask_bs, text_segment_ids_bs, t_bi.shape[1])
      temb_bie = temb_bie + attention.dense(cfg.dim, ('text_embed', 'embed'), name='text_pooled',
                                            kernel_init=small, **f32)(pooled_bid)
    modulation_bie = attention.dense(
        6 * cfg.dim, ('embed', 'modulation'), name='time_projection',
        kernel_init=nn.initializers.zeros, **f32)(nn.silu(temb_bie))
    modulation_bike = einops.rearrange(modulation_bie, 'b i (k e) -> b i k e', k=6)
    if segment_ids_bl is not None:  # per segment -> per token (i = l)
      temb_bie = segment_values(temb_bie, segment_ids_bl)
      modulation_bike = segment_values(modulation_bike, segment_ids_bl)

    context_bse = attention.dense(cfg.dim, ('text_embed', 'mlp'), name='text_in',
                                  kernel_init=small, **kw)(text_bsd.astype(dtype))
    context_bse = attention.dense(cfg.dim, ('mlp', 'embed'), name='text_out', kernel_init=small,
                                  **kw)(nn.gelu(context_bse, approximate=True))
    context_bse = nn.with_logical_constraint(context_bse, ('batch', 'text_length', 'embed'))

    rope_if = rope.rope_tables(positions_i3, cfg.dim // cfg.heads, cfg.rope_theta)
    block_args = (context_bse, text_mask_bs, modulation_bike, rope_if, segment_ids_bl,
                  text_segment_ids_bs)
    x_ble = self._blocks(x_ble, block_args)

    table_ke = self.param(
        'head_modulation',
        nn.with_logical_partitioning(nn.initializers.zeros, ('modulation', 'embed')),
        (2, cfg.dim), param_dtype)
    shift_bie, scale_bie = jnp.unstack(table_ke.astype(jnp.float32) + temb_bie[:, :, None],
                                       axis=2)
    h_ble = _modulate(_layer_norm('head_norm')(x_ble), shift_bie, scale_bie).astype(dtype)
    out_blp = attention.dense(
        cfg.patch_dim * cfg.out_channels, ('embed', 'patch'), name='head',
        kernel_init=nn.initializers.zeros, **kw)(h_ble)
    return out_blp.astype(jnp.float32)

  def _blocks(self, x_ble, block_args):
    cfg = self.config
    block_cls = Block
    if cfg.remat != 'none':
      block_cls = nn.remat(Block, policy=REMAT_POLICIES[cfg.remat], prevent_cse=not cfg.scan_layers)
    if cfg.scan_layers:
      stack = nn.scan(block_cls, variable_axes={'params': 0}, split_rngs={'params': True},
                      in_axes=(nn.broadcast,) * len(block_args), length=cfg.depth,
                      metadata_params={nn.PARTITION_NAME: 'layers'})
      x_ble, _ = stack(cfg, name='blocks')(x_ble, *block_args)
    else:
      for i in range(cfg.depth):
        x_ble, _ = block_cls(cfg, name=f'blocks_{i}')(x_ble, *block_args)
    return x_ble

  def _check_inputs(self, x_bthwc, t_b, text_bsd, text_mask_bs):
    cfg = self.config
    if x_bthwc.ndim != 5 or x_bthwc.shape[-1] != cfg.in_channels:
      raise ValueError(f'latent shape {x_bthwc.shape} must be [B, T, H, W, {cfg.in_channels}]: '
                       'pass channels-last video latents with the configured in_channels.')
    batch = x_bthwc.shape[0]
    if t_b.shape != (batch,):
      raise ValueError(f'time shape {t_b.shape} must be ({batch},): pass one time per sample.')
    self._check_text(batch, text_bsd, text_mask_bs)

  def _check_packed(self, patches_blp, segment_ids_bl, positions_bl3, t_bm, text_segment_ids_bs):
    width = self.config.patch_dim * self.config.in_channels
    if patches_blp.ndim != 3 or patches_blp.shape[-1] != width:
      raise ValueError(f'patches shape {patches_blp.shape} must be [B, L, {width}]: pass '
                       'patchified tokens (patch_dim * in_channels values each).')
    row_bl = patches_blp.shape[:2]
    for name, array, shape in (('segment_ids', segment_ids_bl, row_bl),
                               ('positions', positions_bl3, (*row_bl, 3))):
      if array.shape != shape:
        raise ValueError(f'{name} shape {array.shape} must be {shape}: pass one per token of '
                         'the packed row (packing.PackedDataset makes them).')
    if t_bm.ndim != 2 or t_bm.shape[0] != row_bl[0]:
      raise ValueError(f't shape {t_bm.shape} must be [{row_bl[0]}, M]: pass one time per '
                       'segment of each row (M: the most segments a row holds).')
    if not jnp.issubdtype(segment_ids_bl.dtype, jnp.integer):
      raise ValueError(f'segment_ids dtype {segment_ids_bl.dtype} must be an integer type: pass '
                       'int32 ids (0 = padding).')
    if text_segment_ids_bs.ndim != 2 or text_segment_ids_bs.shape[0] != row_bl[0]:
      raise ValueError(f'text_segment_ids shape {text_segment_ids_bs.shape} must be '
                       f'[{row_bl[0]}, S]: pass one segment id per text token.')

  def _check_text(self, batch, text_bsd, text_mask_bs):
    cfg = self.config
    if text_bsd.ndim != 3 or text_bsd.shape[0] != batch or text_bsd.shape[-1] != cfg.text_dim:
      raise ValueError(f'text shape {text_bsd.shape} must be [{batch}, S, {cfg.text_dim}]: pass '
                       'text-encoder tokens of the configured text_dim.')
    if text_mask_bs.shape != text_bsd.shape[:2]:
      raise ValueError(f'text mask shape {text_mask_bs.shape} must be {text_bsd.shape[:2]}: '
                       'pass one bool per text token.')


def pooled_text(text_bsd, text_mask_bs, text_segment_ids_bs, segments: int):
  """The mean of each caption's real token states, float32 [B, M, D]: one caption per sample
  (M = 1, no segment ids) or per segment of a packed row (id k -> row k - 1)."""
  if text_segment_ids_bs is None:
    weights_bsm = text_mask_bs[..., None]
  else:
    weights_bsm = (text_segment_ids_bs[..., None] == jnp.arange(1, segments + 1)) & (
        text_mask_bs[..., None])
  weights_bsm = weights_bsm.astype(jnp.float32)
  total_bmd = jnp.einsum('bsm,bsd->bmd', weights_bsm, text_bsd.astype(jnp.float32))
  return total_bmd / jnp.maximum(weights_bsm.sum(1), 1.0)[..., None]


def segment_values(values_bm, segment_ids_bl):
  """Per-segment values [B, M, ...] -> per token [B, L, ...]: segment id k reads values[:, k - 1]
  (padding, id 0, reads the first segment's; its outputs are meaningless anyway)."""
  index_bl = jnp.maximum(segment_ids_bl - 1, 0)
  index = index_bl.reshape(*index_bl.shape, *(1,) * (values_bm.ndim - 2))
  return jnp.take_along_axis(values_bm, index, axis=1)


def block_layout(params: dict, scan_layers: bool) -> dict:
  """`params` (a DiT's, or any dict holding its blocks) with the blocks laid out for
  scan_layers: stacked under 'blocks' [depth, ...] (True) or one 'blocks_<i>' per block
  (False). The two layouts hold the same numbers, so a run of one can start from the other's
  weights (init_from); params already in the asked layout come back as they are."""
  unrolled = sorted((k for k in params if k.startswith('blocks_') and k[7:].isdigit()),
                    key=lambda k: int(k[7:]))
  if scan_layers and unrolled:
    rest = {k: v for k, v in params.items() if k not in unrolled}
    return {**rest, 'blocks': jax.tree.map(lambda *b: np.stack(b),
                                           *(params[k] for k in unrolled))}
  if not scan_layers and 'blocks' in params:
    depth = len(jax.tree.leaves(params['blocks'])[0])
    rest = {k: v for k, v in params.items() if k != 'blocks'}
    return {**rest, **{f'blocks_{i}': jax.tree.map(lambda b, i=i: b[i], params['blocks'])
                       for i in range(depth)}}
  return params


def count_params(params) -> int:
  """Number of parameters in a (boxed or unboxed, concrete or abstract) parameter tree."""
  return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(params)))


def flops_per_sample(config: DiTConfig, num_tokens: int, text_length: int) -> float:
  """Forward FLOPs (2 x multiply-adds) of one sample's matmuls and attention; training ~ 3x."""
  e, n, s = config.dim, num_tokens, text_length
  per_block = (
      2 * 4 * n * e * e  # self-attention q, k, v, o
      + 2 * 2 * n * n * e  # q k^T and probs v over all tokens
      + 2 * 2 * n * e * e + 2 * 2 * s * e * e  # cross-attention q, o and k, v
      + 2 * 2 * n * s * e  # cross-attention scores and mix
      + 2 * 2 * n * e * config.mlp_dim)  # MLP in and out
  patch_in = config.patch_dim * config.in_channels
  patch_out = config.patch_dim * config.out_channels
  outer = (2 * n * e * (patch_in + patch_out)  # patch embedding and head
           + 2 * s * e * (config.text_dim + e)  # text MLP
           + 2 * e * (config.freq_dim + e + 6 * e))  # time MLP and projection
  return float(config.depth * per_block + outer)
