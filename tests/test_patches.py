"""Spacetime patches, 3D RoPE and the attention function."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videogen.models import attention
from videogen.core import patches
from videogen.models import rope


def test_patchify_shapes_and_roundtrip():
  x = jax.random.normal(jax.random.key(0), (2, 4, 6, 8, 3))
  tokens = patches.patchify(x, (2, 3, 4))
  assert tokens.shape == (2, 2 * 2 * 2, 2 * 3 * 4 * 3)
  assert tokens.dtype == x.dtype
  assert patches.num_tokens((4, 6, 8), (2, 3, 4)) == 8
  np.testing.assert_array_equal(patches.unpatchify(tokens, (4, 6, 8), (2, 3, 4)), x)


def test_token_is_one_box_and_positions_follow_token_order():
  x = np.arange(1 * 2 * 4 * 6 * 1, dtype=np.float32).reshape(1, 2, 4, 6, 1)
  patch = (1, 2, 3)
  tokens = np.asarray(patches.patchify(x, patch))
  pos = patches.positions(2, 4, 6, patch)
  assert pos.dtype == np.int32 and pos.shape == (tokens.shape[1], 3)
  for n, (t, h, w) in enumerate(pos):
    box = x[0, t, 2 * h:2 * h + 2, 3 * w:3 * w + 3, :]
    np.testing.assert_array_equal(tokens[0, n], box.reshape(-1))
  assert pos.max(axis=0).tolist() == [1, 1, 1]


def test_indivisible_grid_names_the_shape_and_fix():
  with pytest.raises(ValueError, match=r'height 30 is not divisible by patch height 4.*28 or 32'):
    patches.patchify(jnp.zeros((1, 2, 30, 32, 3)), (1, 4, 4))
  with pytest.raises(ValueError, match='frames 3'):
    patches.positions(3, 4, 4, (2, 2, 2))


def test_rope_split_is_even_and_complete():
  for head_dim in (6, 16, 32, 64, 128):
    parts = rope.rope_split(head_dim)
    assert sum(parts) == head_dim and all(p % 2 == 0 and p > 0 for p in parts)
  assert rope.rope_split(128) == (44, 42, 42)
  with pytest.raises(ValueError, match='head dim 7'):
    rope.rope_split(7)


def test_rope_scores_depend_only_on_relative_position():
  head_dim = 16
  q = jax.random.normal(jax.random.key(1), (1, 12, 2, head_dim))
  k = jax.random.normal(jax.random.key(2), (1, 12, 2, head_dim))
  pos = patches.positions(3, 2, 2, (1, 1, 1))

  def scores(offset):
    cos, sin = rope.rope_tables(pos + offset, head_dim)
    return jnp.einsum('blhd,bshd->bhls', rope.apply_rope(q, cos, sin), rope.apply_rope(k, cos, sin))

  base = scores(np.zeros(3, np.int32))
  np.testing.assert_allclose(scores(np.array([5, 17, 3])), base, atol=1e-4)
  assert not np.allclose(base, jnp.einsum('blhd,bshd->bhls', q, k), atol=1e-2)
  cos, sin = rope.rope_tables(pos, head_dim)
  assert cos.shape == (12, head_dim // 2) and rope.apply_rope(q, cos, sin).shape == q.shape


def reference_attention(q, k, v, mask_bls=None):
  """softmax(q k^T / sqrt(d)) v in float64 numpy, over the keys the mask allows (True =
  attend); a query with no key to attend to gets zeros."""
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  logits = np.einsum('blhd,bshd->bhls', q, k) / np.sqrt(q.shape[-1])
  if mask_bls is not None:
    logits = np.where(mask_bls[:, None], logits, -np.inf)
  top = logits.max(-1, keepdims=True)
  weights = np.exp(logits - np.where(np.isfinite(top), top, 0.0))
  total = weights.sum(-1, keepdims=True)
  probs = np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)
  return np.einsum('bhls,bshd->blhd', probs, v)


KEY_MASK = np.array([[True] * 3 + [False] * 2, [True] * 5])  # [B, S]: padded keys
PAIR_MASK = np.broadcast_to(KEY_MASK[:, None], (2, 5, 5)).copy()  # [B, L, S]: segments
PAIR_MASK[0, :3, 3:] = PAIR_MASK[0, 3:, :3] = False  # two segments in row 0
PAIR_MASK[1, 0] = False  # a query with no key


@pytest.mark.parametrize('mask', [None, KEY_MASK, PAIR_MASK], ids=['none', 'keys', 'pairs'])
@pytest.mark.parametrize('backend', attention.BACKENDS)
def test_every_attention_backend_matches_a_plain_softmax(backend, mask):
  if backend == 'cudnn' and jax.default_backend() != 'gpu':
    pytest.skip('cuDNN attention runs on GPUs only')
  # cuDNN takes bfloat16 (tolerance: its 8-bit mantissa); the others float32, which rounds
  # to ~3e-7 here: 2e-6 allows that, far below what a wrong scale or mask costs.
  dtype, tolerance = (jnp.bfloat16, 2e-2) if backend == 'cudnn' else (jnp.float32, 2e-6)
  rng = jax.random.split(jax.random.key(3), 3)
  q, k, v = (jax.random.normal(r, (2, 5, 2, 8)).astype(dtype) for r in rng)
  mask_bls = None if mask is None else np.broadcast_to(
      mask[:, None] if mask.ndim == 2 else mask, (2, 5, 5))
  out = attention.dot_product_attention(q, k, v, mask=mask, backend=backend)
  assert out.shape == q.shape and out.dtype == dtype
  expected = reference_attention(q.astype(jnp.float32), k.astype(jnp.float32),
                                 v.astype(jnp.float32), mask_bls)
  np.testing.assert_allclose(np.asarray(out, np.float64), expected, rtol=tolerance,
                             atol=tolerance)


def test_unknown_attention_backend_is_named():
  x = jnp.zeros((1, 2, 1, 8))
  with pytest.raises(ValueError, match="'splash'"):
    attention.dot_product_attention(x, x, x, backend='splash')


def test_attention_bfloat16_stays_close():
  rng = jax.random.split(jax.random.key(4), 3)
  q, k, v = (jax.random.normal(r, (1, 16, 2, 8)) for r in rng)
  out = attention.dot_product_attention(*(a.astype(jnp.bfloat16) for a in (q, k, v)))
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(out.astype(jnp.float32), attention.dot_product_attention(q, k, v),
                             atol=3e-2)


def test_rope_tables_per_packed_row_match_one_shared_table():
  head_dim = 16
  q = jax.random.normal(jax.random.key(5), (2, 12, 2, head_dim))
  positions_bl3 = np.stack([patches.positions(3, 2, 2, (1, 1, 1)),
                            patches.positions(1, 3, 4, (1, 1, 1))])
  cos_blf, sin_blf = rope.rope_tables(positions_bl3, head_dim)
  assert cos_blf.shape == (2, 12, head_dim // 2)
  for row in range(2):
    cos, sin = rope.rope_tables(positions_bl3[row], head_dim)
    np.testing.assert_array_equal(rope.apply_rope(q, cos_blf, sin_blf)[row],
                                  rope.apply_rope(q[row:row + 1], cos, sin)[0])


def test_segment_mask_keeps_attention_within_a_segment_and_padding_finite():
  rng = jax.random.split(jax.random.key(6), 3)
  q, k, v = (jax.random.normal(r, (1, 6, 2, 8)) for r in rng)
  segment_ids = jnp.array([[1, 1, 1, 2, 2, 0]])
  mask = attention.segment_mask(segment_ids, segment_ids)
  assert mask.shape == (1, 6, 6) and bool(mask[0, 5, 5]) and not bool(mask[0, 0, 3])
  for backend in ('xla', 'auto'):
    out = attention.dot_product_attention(q, k, v, mask=mask, backend=backend)
    assert np.isfinite(out).all()
    for span in (slice(0, 3), slice(3, 5)):
      np.testing.assert_allclose(out[:, span], attention.dot_product_attention(
          q[:, span], k[:, span], v[:, span]), atol=1e-5)
  layer = attention.CrossAttention(dim=16, heads=2)
  x, context = jnp.ones((1, 6, 16)), jnp.ones((1, 3, 16))
  with pytest.raises(ValueError, match='must be given together'):
    layer.init(jax.random.key(0), x, context, jnp.ones((1, 3), bool), segment_ids)
