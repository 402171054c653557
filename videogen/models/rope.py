"""3D rotary position embedding over (t, h, w) token positions, computed from the positions.

The head dim is cut into three even parts, one per axis, as in Wan 2.1: of its c = head_dim // 2
rotation pairs, height and width get c // 3 each and time gets the rest (head_dim 128 -> 44 time,
42 height, 42 width dims). Each part has its own frequency ladder theta ** (-2i / part_dim), so any
T, H, W works with no table sized to a maximum. Pairs are adjacent elements (x[2i], x[2i + 1]),
Wan's complex-number layout, so converted weights see the same rotation.

Legend: b batch, l tokens, h heads, d head dim, n positions, f = d // 2 rotation pairs; `...` any
leading axes (one table for all samples [L, F], or one per sample [B, L, F] for packed rows).
"""
import einops
import jax.numpy as jnp
import numpy as np


def rope_split(head_dim: int) -> tuple[int, int, int]:
  """The (time, height, width) parts of `head_dim`, each even, summing to it."""
  if head_dim % 2 or head_dim < 6:
    raise ValueError(f'head dim {head_dim} cannot carry 3D RoPE: use an even head dim of at '
                     'least 6 (model width / heads), e.g. 64 or 128.')
  pairs = head_dim // 2
  return 2 * (pairs - 2 * (pairs // 3)), 2 * (pairs // 3), 2 * (pairs // 3)


def rope_tables(positions_n3, head_dim: int, theta: float = 10000.0):
  """(cos, sin), each float32 [..., head_dim // 2], for tokens at integer (t, h, w) positions
  [..., 3]."""
  positions_n3 = jnp.asarray(positions_n3, jnp.float32)
  angles = []
  for axis, part in enumerate(rope_split(head_dim)):
    freqs_f = theta ** (-np.arange(0, part, 2, dtype=np.float32) / part)
    angles.append(positions_n3[..., axis, None] * freqs_f)
  angles_nf = jnp.concatenate(angles, axis=-1)
  return jnp.cos(angles_nf), jnp.sin(angles_nf)


def sincos_embedding(positions_n3, dim: int, theta: float = 10000.0):
  """float32 [..., dim]: each token's (t, h, w) position as sines and cosines, the width cut into
  the three parts `rope_split` cuts a head into, each axis on its own frequency ladder. Added to
  the tokens, it tells every token where it is in absolute terms (RoPE gives attention only
  offsets between tokens), for any T, H, W."""
  positions_n3 = jnp.asarray(positions_n3, jnp.float32)
  features = []
  for axis, part in enumerate(rope_split(dim)):
    freqs_f = theta ** (-np.arange(0, part, 2, dtype=np.float32) / part)
    angles = positions_n3[..., axis, None] * freqs_f
    features += [jnp.sin(angles), jnp.cos(angles)]
  return jnp.concatenate(features, axis=-1)


def apply_rope(x_blhd, cos_lf, sin_lf):
  """Rotates each adjacent pair of `x_blhd` by its token's angle (computed in float32); the
  tables are [L, F] (shared by the batch) or [B, L, F] (one per packed row)."""
  x_blhf2 = einops.rearrange(x_blhd.astype(jnp.float32), '... (f two) -> ... f two', two=2)
  x0, x1 = x_blhf2[..., 0], x_blhf2[..., 1]
  cos, sin = cos_lf[..., None, :], sin_lf[..., None, :]
  rotated = jnp.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], axis=-1)
  return einops.rearrange(rotated, '... f two -> ... (f two)').astype(x_blhd.dtype)
