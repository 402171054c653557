"""The 'flash' attention backend: values and gradients equal a float64 softmax for every mask the
layers pass, odd lengths, cross-attention and bfloat16; its backward holds no [L, S] matrix; the
DiT selects it by config."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from test_dit import packed_inputs, random_params, tiny
from videogen.models import attention
from videogen.models import dit


def reference(q_blhd, k_bshd, v_bshd, mask_bls):
  """softmax(q k^T / sqrt(d)) v in whatever precision the inputs have (float64 here), masked
  pairs out, zeros for a query with no key; no NaN in its gradients (the double-where trick)."""
  logits = jnp.einsum('blhd,bshd->bhls', q_blhd, k_bshd) / np.sqrt(q_blhd.shape[-1])
  mask = jnp.broadcast_to(mask_bls[:, None], logits.shape)
  top = jax.lax.stop_gradient(jnp.max(jnp.where(mask, logits, -jnp.inf), -1, keepdims=True))
  weights = jnp.where(mask, jnp.exp(jnp.where(mask, logits, 0.0) - jnp.where(
      jnp.isfinite(top), top, 0.0)), 0.0)
  total = jnp.sum(weights, -1, keepdims=True)
  probs = weights / jnp.where(total > 0, total, 1.0)
  return jnp.einsum('bhls,bshd->blhd', probs, v_bshd)


def case(batch, length, keys, heads, head_dim, mask_kind, seed=0):
  """Random q, k, v, a linear functional's weights and a bool mask of the kind the layers pass:
  None, 'keys' [B, S] (padded text) or 'segments' [B, L, S] (packed rows, one query row empty)."""
  rng = np.random.default_rng(seed)
  q, w = (rng.standard_normal((batch, length, heads, head_dim)) for _ in range(2))
  k, v = (rng.standard_normal((batch, keys, heads, head_dim)) for _ in range(2))
  mask = None
  if mask_kind == 'keys':
    mask = np.arange(keys)[None] < np.array([keys - 3, keys])[:batch, None]
  elif mask_kind == 'segments':  # segments cross the 16-token blocks' borders
    ids = np.zeros((batch, length), np.int32)
    ids[0, :21], ids[0, 21:45], ids[1, :30], ids[1, 30:] = 1, 2, 1, 3
    mask = np.asarray(attention.segment_mask(ids, ids))
    mask[1, 7] = False  # a query with no key to attend to
  return q, k, v, w, mask


def reference_value_and_grads(q, k, v, w, mask):
  """float64 output and d(sum(w * out))/d(q, k, v), from float64 copies of the inputs."""
  with jax.enable_x64(True):
    f64 = lambda a: jnp.asarray(np.asarray(a, np.float64))
    mask_bls = np.ones((q.shape[0], 1, k.shape[1]), bool) if mask is None else (
        mask[:, None] if mask.ndim == 2 else mask)
    loss = lambda q, k, v: jnp.sum(f64(w) * reference(q, k, v, mask_bls))
    out = reference(f64(q), f64(k), f64(v), mask_bls)
    grads = jax.grad(loss, argnums=(0, 1, 2))(f64(q), f64(k), f64(v))
    return np.asarray(out), [np.asarray(g) for g in grads]


def flash_value_and_grads(q, k, v, w, mask, dtype=jnp.float32, **blocks):
  """The flash backend's output and gradients of sum(w * out), jitted, in `dtype`."""
  q, k, v = (jnp.asarray(a, dtype) for a in (q, k, v))
  attend = lambda q, k, v: attention.dot_product_attention(q, k, v, mask=mask, backend='flash',
                                                           **blocks)
  loss = lambda q, k, v: jnp.sum(jnp.asarray(w, jnp.float32) * attend(q, k, v).astype(
      jnp.float32))
  out, grads = jax.jit(lambda *a: (attend(*a), jax.grad(loss, argnums=(0, 1, 2))(*a)))(q, k, v)
  assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
  return np.asarray(out, np.float64), [np.asarray(g, np.float64) for g in grads]


@pytest.mark.parametrize('shape, mask_kind, blocks', [
    ((2, 48, 48, 2, 16), None, dict(block_q=16, block_k=16)),
    ((2, 48, 48, 2, 16), 'keys', dict(block_q=16, block_k=16)),
    ((2, 48, 48, 2, 16), 'segments', dict(block_q=16, block_k=16)),
    ((2, 48, 48, 2, 16), 'segments', dict(block_q=48, block_k=8)),  # all queries in one block
    ((2, 37, 37, 2, 8), None, dict(block_q=16, block_k=16)),  # 3 blocks of 13: 2 padded tokens
    ((2, 37, 37, 2, 8), 'keys', dict(block_q=16, block_k=16)),
    ((2, 40, 11, 3, 12), 'keys', dict(block_q=16, block_k=8)),  # cross-attention, head dim 12
    ((2, 5, 29, 1, 24), None, dict(block_q=16, block_k=8)),  # fewer queries than keys
], ids=['plain', 'keys', 'segments', 'one_query_block', 'odd_length', 'odd_length_keys',
        'cross', 'short_queries'])
def test_flash_values_and_gradients_equal_a_float64_softmax(shape, mask_kind, blocks):
  q, k, v, w, mask = case(*shape, mask_kind)
  want_out, want_grads = reference_value_and_grads(q, k, v, w, mask)
  got_out, got_grads = flash_value_and_grads(q, k, v, w, mask, **blocks)
  # float32 rounding here is ~1e-7 of values of order 1; a wrong mask, scale or correction term
  # moves them by more than 1e-2.
  np.testing.assert_allclose(got_out, want_out, atol=2e-6, rtol=0)
  for got, want in zip(got_grads, want_grads):
    assert np.abs(want).max() > 0.1
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_a_query_with_no_key_gets_zeros_and_no_gradient_as_in_xla():
  q, k, v, w, mask = case(2, 48, 48, 2, 16, 'segments')
  out, (dq, _, _) = flash_value_and_grads(q, k, v, w, mask, block_q=16, block_k=16)
  assert np.isfinite(out).all() and np.isfinite(dq).all()
  np.testing.assert_array_equal(out[1, 7], 0.0)
  np.testing.assert_array_equal(dq[1, 7], 0.0)
  xla = attention.dot_product_attention(*(jnp.asarray(a, jnp.float32) for a in (q, k, v)),
                                        mask=mask, backend='xla')
  np.testing.assert_allclose(out, xla, atol=2e-6, rtol=0)


@pytest.mark.parametrize('mask_kind', [None, 'segments'])
def test_flash_in_bfloat16_stays_close_to_float64(mask_kind):
  q, k, v, w, mask = case(2, 48, 48, 2, 16, mask_kind)
  round_bf16 = lambda a: np.asarray(jnp.asarray(a, jnp.bfloat16), np.float64)
  q, k, v = (round_bf16(a) for a in (q, k, v))  # the reference sees the same inputs
  want_out, want_grads = reference_value_and_grads(q, k, v, w, mask)
  got_out, got_grads = flash_value_and_grads(q, k, v, w, mask, jnp.bfloat16,
                                             block_q=16, block_k=16)
  # bfloat16 keeps 8 bits of mantissa (relative rounding 2^-9 ~ 2e-3): outputs of order 1 and
  # gradients of order 5 land within a few roundings.
  np.testing.assert_allclose(got_out, want_out, atol=2e-2, rtol=0)
  for got, want in zip(got_grads, want_grads):
    np.testing.assert_allclose(got, want, atol=5e-2 * np.abs(want).max(), rtol=0)


def temp_bytes(backend, batch, length, heads, head_dim, **blocks):
  """Compiled scratch memory of value and gradients of sum(w * attention) (self-attention)."""
  shape = jax.ShapeDtypeStruct((batch, length, heads, head_dim), jnp.float32)
  loss = lambda q, k, v, w: jnp.sum(w * attention.dot_product_attention(
      q, k, v, backend=backend, **blocks))
  grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
  return grad.lower(shape, shape, shape, shape).compile().memory_analysis().temp_size_in_bytes


def test_flash_backward_holds_no_full_logit_matrix():
  batch, length, heads, head_dim = 2, 2048, 2, 8
  logits_bytes = batch * heads * length * length * 4  # one float32 [B, H, L, L]: 67 MB
  # The measure can tell: the 'xla' backward keeps at least one such matrix (its probabilities).
  assert temp_bytes('xla', batch, length, heads, head_dim) >= logits_bytes
  # Flash keeps O(L) residuals (0.26 MB each) and a few [B, H, 128, 128] blocks (0.26 MB).
  flash_bytes = temp_bytes('flash', batch, length, heads, head_dim, block_q=128, block_k=128)
  assert flash_bytes < logits_bytes / 8


def test_bad_block_size_is_named():
  x = jnp.zeros((1, 4, 1, 8))
  with pytest.raises(ValueError, match='block size 0 must be at least 1'):
    attention.dot_product_attention(x, x, x, backend='flash', block_q=0)


def test_dit_config_selects_flash_and_it_equals_xla_on_packed_rows():
  args, _, _ = packed_inputs()
  results = {}
  for backend in ('xla', 'flash'):
    config = tiny(attention_backend=backend)
    params = random_params(config)
    apply = functools.partial(dit.DiT(config).apply, method='packed')
    loss = lambda p: jnp.sum(jnp.sin(apply(p, *args)))
    uses_custom_vjp = 'custom_vjp_call' in str(jax.make_jaxpr(jax.grad(loss))(params))
    assert uses_custom_vjp == (backend == 'flash')
    results[backend] = jax.jit(jax.value_and_grad(loss))(params)
  (want_loss, want_grads), (got_loss, got_grads) = results['xla'], results['flash']
  np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
  for got, want in zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads)):
    np.testing.assert_allclose(got, want, atol=1e-4 * max(np.abs(want).max(), 1.0), rtol=0)
  with pytest.raises(ValueError, match="attention_backend 'flahs' is unknown"):
    tiny(attention_backend='flahs')
