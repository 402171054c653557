"""The diffusion transformer: shapes, adaLN-Zero init, logical axes, scan/remat, text, sizes,
packed rows of clips."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videogen.data import packing
from videogen.models import dit


def tiny(**overrides):
  fields = dict(in_channels=4, text_dim=8, dim=32, depth=2, heads=2, mlp_dim=64) | overrides
  return dit.dit_config('T/2', **fields)


def inputs(batch=2, text_length=5):
  keys = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(keys[0], (batch, 2, 4, 6, 4))
  t = jax.random.uniform(keys[1], (batch,))
  text = jax.random.normal(keys[2], (batch, text_length, 8))
  mask = jnp.arange(text_length)[None] < jnp.array([3, text_length])[:batch, None]
  return x, t, text, mask


def abstract_init(config, args=None):
  """Boxed parameter shapes, without compiling the initialisers."""
  return jax.eval_shape(dit.DiT(config).init, jax.random.key(1), *(args or inputs()))


def random_params(config, seed=2):
  """Random values everywhere (no branch is zero any more), in the model's parameter layout."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: jnp.asarray(0.2 * rng.standard_normal(a.shape), a.dtype),
                      nn.unbox(abstract_init(config)))


def test_shapes_and_dtypes():
  args = inputs()
  for config in (tiny(), tiny(dtype='bfloat16', out_channels=3)):
    out = jax.jit(dit.DiT(config).apply)(random_params(config), *args)
    assert out.shape == (2, 2, 4, 6, config.out_channels) and out.dtype == jnp.float32
    assert np.isfinite(out).all() and np.abs(out).max() > 0
  params = nn.unbox(abstract_init(tiny(dtype='bfloat16')))['params']
  assert params['blocks']['ffn_in']['kernel'].dtype == jnp.float32  # param_dtype stays float32


def test_every_block_is_identity_and_output_zero_at_init():
  config = tiny(scan_layers=False)
  args = inputs()
  variables = jax.jit(dit.DiT(config).init)(jax.random.key(1), *args)
  apply = jax.jit(lambda v: dit.DiT(config).apply(v, *args, capture_intermediates=True))
  out, state = apply(variables)
  np.testing.assert_array_equal(out, 0.0)
  seen = state['intermediates']
  tokens = seen['patch_embedding']['__call__'][0]
  for i in range(config.depth):
    np.testing.assert_array_equal(seen[f'blocks_{i}']['__call__'][0][0], tokens)
  assert np.abs(tokens).max() > 0


def test_every_parameter_names_its_logical_axes():
  variables = abstract_init(tiny())
  specs = jax.tree.leaves(nn.get_partition_spec(variables),
                          is_leaf=lambda s: isinstance(s, jax.sharding.PartitionSpec))
  shapes = jax.tree.leaves(nn.unbox(variables))
  assert len(specs) == len(shapes)
  for spec, leaf in zip(specs, shapes):
    assert isinstance(spec, jax.sharding.PartitionSpec) and len(spec) == leaf.ndim
    assert any(name is not None for name in spec), (spec, leaf.shape)
  block_spec = nn.get_partition_spec(variables)['params']['blocks']['self_attn']['q']['kernel']
  assert block_spec == jax.sharding.PartitionSpec('layers', 'embed', 'heads')


def test_scan_and_loop_agree_and_remat_keeps_values_and_grads():
  args = inputs()
  loop_vars = random_params(tiny(scan_layers=False))
  params = dict(loop_vars['params'])
  blocks = [params.pop(f'blocks_{i}') for i in range(2)]
  params['blocks'] = jax.tree.map(lambda *xs: jnp.stack(xs), *blocks)
  scan_vars = {'params': params}
  assert jax.tree.structure(scan_vars) == jax.tree.structure(nn.unbox(abstract_init(tiny())))

  loop_out = jax.jit(dit.DiT(tiny(scan_layers=False)).apply)(loop_vars, *args)
  np.testing.assert_allclose(jax.jit(dit.DiT(tiny()).apply)(scan_vars, *args), loop_out,
                             atol=1e-5)

  def loss_and_grad(config, variables):
    loss = lambda v: jnp.mean(dit.DiT(config).apply(v, *args) ** 2)
    return jax.jit(jax.value_and_grad(loss))(variables)

  scan_loss, scan_grad = loss_and_grad(tiny(), scan_vars)
  for remat in ('dots', 'full'):
    loss, grad = loss_and_grad(tiny(remat=remat), scan_vars)
    np.testing.assert_allclose(loss, scan_loss, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), grad, scan_grad)


def test_padded_text_is_ignored_and_real_text_is_not():
  x, t, text, mask = inputs()
  variables = random_params(tiny())
  apply = jax.jit(dit.DiT(tiny()).apply)
  out = apply(variables, x, t, text, mask)
  changed_padding = text.at[0, 3:].set(100.0)
  np.testing.assert_allclose(apply(variables, x, t, changed_padding, mask), out, atol=1e-5)
  changed_real = text.at[0, 0].add(1.0)
  assert np.abs(apply(variables, x, t, changed_real, mask) - out)[0].max() > 1e-3


@pytest.mark.parametrize('pos_embed', dit.POS_EMBEDS)
def test_only_an_absolute_position_embedding_lets_a_token_know_where_it_is(pos_embed):
  """Every token the same (as in pure noise, statistically): with RoPE alone attention sees only
  offsets, and all tokens output the same; 'sincos' tells each token its (t, h, w)."""
  config = tiny(pos_embed=pos_embed)
  x, t, text, mask = inputs()
  x = jnp.ones_like(x)
  out = dit.DiT(config).apply(random_params(config), x, t, text, mask)
  # Patch (1, 2, 2): the first pixel of every token, against the first token's.
  spread = float(jnp.abs(out[:, :, 0::2, 0::2] - out[:, :1, :1, :1]).max())
  if pos_embed == 'none':
    assert spread < 1e-4
  else:
    assert spread > 1e-2


def test_sizes_decode_and_wan_13b_has_its_parameter_count():
  assert dit.dit_config('S/2', in_channels=4, text_dim=8).heads == 6
  xl = dit.dit_config('XL/4', in_channels=4, text_dim=8)
  assert (xl.dim, xl.depth, xl.patch_size) == (1152, 28, (1, 4, 4))
  assert dit.dit_config('B/2', in_channels=4, text_dim=8, patch_size=(2, 2, 2)).patch_size == (
      2, 2, 2)
  wan = dit.dit_config('1.3B', in_channels=16, text_dim=4096)
  shapes = jax.eval_shape(dit.DiT(wan).init, jax.random.key(0), jnp.zeros((1, 1, 2, 2, 16)),
                          jnp.zeros((1,)), jnp.zeros((1, 1, 4096)), jnp.ones((1, 1), bool))
  assert dit.count_params(shapes) == 1_418_996_800  # Wan2.1-T2V-1.3B
  with pytest.raises(ValueError, match=r'M/2.*N/2, T/2, XS/2, S/2, B/2, L/2, XL/2, 1\.3B, 14B'):
    dit.dit_config('M/2', in_channels=4, text_dim=8)
  with pytest.raises(ValueError, match='remat'):
    tiny(remat='some')
  with pytest.raises(ValueError, match='no field'):
    tiny(width=3)


def test_bad_inputs_raise_one_clear_error():
  x, t, text, mask = inputs()
  model = dit.DiT(tiny())
  with pytest.raises(ValueError, match=r'latent shape \(2, 2, 4, 6, 3\)'):
    model.init(jax.random.key(0), x[..., :3], t, text, mask)
  with pytest.raises(ValueError, match='width 5'):
    model.init(jax.random.key(0), x[:, :, :, :5], t, text, mask)


def test_flops_match_xla_cost_analysis():
  config = tiny(mlp_dim=128, dim=64, scan_layers=False)  # XLA counts a scan body only once
  args = inputs()
  lowered = jax.jit(dit.DiT(config).apply).lower(random_params(config), *args)
  xla_flops = lowered.cost_analysis()['flops']
  ours = 2 * dit.flops_per_sample(config, num_tokens=2 * 2 * 3, text_length=5)
  assert 0.7 < ours / xla_flops < 1.05, (ours, xla_flops)


# Three clips of different shapes (a 1-frame image among them), each with its own time and
# caption, packed into rows of 40 tokens (patch (1, 2, 2): 18 + 6 + 8 = 32 real tokens).
CLIP_SHAPES = ((3, 4, 6), (1, 6, 4), (2, 2, 8))
TEXT_LENGTHS = (3, 5, 2)


def packed_inputs(rows=((0, 1, 2), (2, 0)), row_length=40, max_segments=4, text_length=5):
  """Two packed rows of the clips (the second in another order) with per-segment captions and
  times; the packing batch; each clip's (video, time, caption, mask) in unpack order."""
  rng = np.random.default_rng(5)
  clips = [rng.standard_normal((*shape, 4)).astype(np.float32) for shape in CLIP_SHAPES]
  texts = [rng.standard_normal((text_length, 8)).astype(np.float32) for _ in CLIP_SHAPES]
  masks = [np.arange(text_length) < n for n in TEXT_LENGTHS]
  times = np.array([0.15, 0.6, 0.9], np.float32)
  examples = [{'video': clip, 'caption': str(i)} for i, clip in enumerate(clips)]
  packed = [packing.pack_row([examples[i] for i in row], row_length, (1, 2, 2), max_segments)
            for row in rows]
  batch = {key: np.stack([row[key] for row in packed]) for key in packed[0]}
  order_bm = np.array([list(row) + [0] * (max_segments - len(row)) for row in rows])
  text, mask, text_ids = packing.segment_text(
      np.stack(texts)[order_bm], np.stack(masks)[order_bm], batch['shapes'])
  t_bm = times[order_bm]  # each segment's time
  args = (batch['patches'], batch['segment_ids'], batch['positions'], t_bm, text, mask, text_ids)
  alone = [(i, clips[i], times[i], texts[i], masks[i]) for row in rows for i in row]
  return args, batch, alone


@pytest.mark.parametrize('options', [{}, {'pos_embed': 'sincos', 'pooled_text': True}])
def test_packed_clips_match_each_clip_run_alone(options):
  """Also with absolute positions (each clip's own) and pooled text (each segment's caption)."""
  config = tiny(**options)
  variables = random_params(config)
  args, batch, alone = packed_inputs()
  out_blp = jax.jit(functools.partial(dit.DiT(config).apply, method='packed'))(variables, *args)
  assert out_blp.shape == (2, 40, 4 * 4) and np.isfinite(out_blp).all()
  unpacked = packing.unpack(out_blp, batch['segment_ids'], batch['shapes'], (1, 2, 2))
  assert len(unpacked) == len(alone) == 5
  apply = jax.jit(dit.DiT(config).apply)
  wants = {}
  for got, (i, clip, t, text, mask) in zip(unpacked, alone):
    if i not in wants:
      wants[i] = apply(variables, clip[None], jnp.array([t]), text[None], mask[None])[0]
    assert got.shape == wants[i].shape and np.abs(wants[i]).max() > 1e-2
    np.testing.assert_allclose(got, wants[i], atol=1e-5, rtol=0)


def test_padding_tokens_change_no_real_token():
  config = tiny()
  variables = random_params(config)
  args, batch, _ = packed_inputs()
  padding = batch['segment_ids'] == 0
  rng = np.random.default_rng(6)
  patches_blp, segment_ids, positions, *rest = args
  changed = (np.where(padding[..., None], 50 * rng.standard_normal(patches_blp.shape),
                      patches_blp).astype(np.float32), segment_ids,
             np.where(padding[..., None], 7, positions), *rest)
  apply = jax.jit(functools.partial(dit.DiT(config).apply, method='packed'))
  out, out_changed = apply(variables, *args), apply(variables, *changed)
  assert np.isfinite(out_changed).all()
  np.testing.assert_allclose(np.asarray(out_changed)[~padding], np.asarray(out)[~padding],
                             atol=1e-6, rtol=0)


def test_bad_packed_inputs_raise_one_clear_error():
  args, _, _ = packed_inputs()
  model = dit.DiT(tiny())
  with pytest.raises(ValueError, match=r'patches shape \(2, 40, 12\) must be \[B, L, 16\]'):
    model.init(jax.random.key(0), args[0][..., :12], *args[1:], method='packed')
  with pytest.raises(ValueError, match=r't shape \(4,\) must be \[2, M\]'):
    model.init(jax.random.key(0), *args[:3], args[3][0], *args[4:], method='packed')
  with pytest.raises(ValueError, match='segment_ids dtype float32'):
    model.init(jax.random.key(0), args[0], args[1].astype(np.float32), *args[2:],
               method='packed')
