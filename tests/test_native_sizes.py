"""Native sizes: the size distribution, the packed loss against the unpacked one, and training
end to end with packed rows and with shape buckets (resuming exactly)."""
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import world as world_config
from videogen.data import packing
from videogen.data import sizes
from videogen.diffusion import conditioning
from videogen.diffusion import flow
from videogen.core import patches
from videogen.runtime import dit_run
from videogen.train import loop
from videogen.train import objective

ASPECTS = dict(aspects=('1:1', '16:9', '9:16', '4:3'), aspect_weights=(0.6, 0.15, 0.15, 0.1))
DURATIONS = dict(durations=(8, 4, 2), duration_weights=(0.8, 0.1, 0.1))


def test_default_sizes_keep_the_square_clip_common_and_fit_a_row():
  config = world_config.get_config()
  table = sizes.table_from_config(config)
  shapes = {(b.num_frames, b.height, b.width): b.weight for b in table}
  assert shapes[(8, 32, 32)] == pytest.approx(0.48)
  assert {(h, w) for _, h, w in shapes} == {(32, 32), (24, 40), (40, 24), (24, 32)}
  for shape in shapes:
    assert packing.check_fits(shape, config.data.row_length, config.model.patch_size) <= 64


def test_drawn_sizes_follow_the_weights_and_repeat_per_seed():
  table = sizes.size_table(side=32, patch_size=(2, 8, 8), row_length=64, **ASPECTS, **DURATIONS)
  draw = sizes.ClipSizes(table, seed=0)
  drawn = [draw(i) for i in range(20_000)]
  for bucket in table:
    share = np.mean([d == bucket for d in drawn])
    assert share == pytest.approx(bucket.weight, abs=0.01)
  assert drawn[:50] == [sizes.ClipSizes(table, seed=0)(i) for i in range(50)]
  assert drawn[:50] != [sizes.ClipSizes(table, seed=1)(i) for i in range(50)]
  per_batch = sizes.ClipSizes(table, seed=0, group=8)
  assert len({per_batch(i) for i in range(8, 16)}) == 1


@pytest.mark.parametrize('changes, match', [
    (dict(aspects=(), aspect_weights=()), 'give at least one'),
    (dict(aspect_weights=(0, 0, 0, 0)), 'not all zero'),
    (dict(durations=(8, 4), duration_weights=(1.0,)), 'one weight for each'),
    (dict(aspects=('16/9',), aspect_weights=(1.0,)), 'width:height'),
    (dict(durations=(3,), duration_weights=(1.0,)), 'frames 3 is not divisible by patch'),
    (dict(side=64), 'makes 256 tokens, more than row_length 64'),
])
def test_bad_size_tables_name_the_value(changes, match):
  args = dict(side=32, patch_size=(2, 8, 8), row_length=64, **ASPECTS, **DURATIONS) | changes
  with pytest.raises(ValueError, match=match):
    sizes.size_table(**args)


def test_segment_frame_masks_keep_each_task_within_its_clip():
  last_k = conditioning.task_probabilities({'last_k': 1.0})
  frames_bm = jnp.array([[4, 2, 1, 0]] * 64)
  masks = jax.jit(lambda rng: objective.segment_frame_masks(rng, frames_bm, (1, 2, 4), last_k))
  given = np.asarray(masks(jax.random.key(0)))
  assert given.shape == (64, 4, 4)
  assert not given[:, 0, 0].any() and given[:, 0, 3].all()  # the last k of 4, k in 1..3
  assert len({tuple(row) for row in given[:, 0]}) == 3
  np.testing.assert_array_equal(given[:, 1], [[False, True, False, False]] * 64)
  assert not given[:, 2:].any()  # an image's one frame would be all of it; padding gets none


def perturbed_params(parts):
  """The initial parameters plus noise, so that the (zero-initialised) head sees its input."""
  params = jax.jit(lambda: nn.unbox(parts.init_fn()).params)()
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  return tree.unflatten([p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


@pytest.mark.parametrize('loss_min_t', [0.0, 0.99])
def test_packed_loss_of_one_clip_rows_equals_the_unpacked_loss(loss_min_t):
  config = world_config.get_config('runlocal=True')
  config.model.patch_size = (2, 8, 8)  # a token holds 2 frames: the task mask is per frame
  config.world.num_frames = 4
  parts = dit_run.build(config)
  params = perturbed_params(parts)
  rng = np.random.default_rng(0)
  video = rng.uniform(-1, 1, (2, 4, 16, 16, 3)).astype(np.float32)
  captions = ['a red circle moves left', 'a blue square falls']
  batch = dit_run.encode_batch(parts, {'video': video, 'caption': np.array(captions)})
  given_bt = jnp.array([[True, False, False, False], [False, False, True, True]])
  flow_rng = jax.random.key(3)
  unpacked_loss = jax.jit(lambda p, c: flow.flow_matching_loss(
      lambda p, x, t, txt, m: parts.apply(p, x, t, txt, m, video, given_bt), p, video,
      batch['text'], batch['text_mask'], flow_rng, shift=parts.shift(), loss_min_t=c,
      loss_mask=conditioning.loss_weights(given_bt, video)), static_argnums=1)
  unpacked, aux = unpacked_loss(params, loss_min_t)
  if loss_min_t:  # every time falls below 0.99, so the weight over t changes the loss
    assert float(unpacked) < 0.99 * float(unpacked_loss(params, 0.0)[0])

  row_length, tokens = 12, 8  # one clip of 8 tokens, then 4 padding tokens
  rows = [packing.pack_row([{'video': v, 'caption': c}], row_length, (2, 8, 8), max_segments=2)
          for v, c in zip(video, captions)]
  rows = dit_run.encode_batch(parts, {k: np.stack([r[k] for r in rows]) for k in rows[0]})
  eps = jax.random.normal(jax.random.split(flow_rng)[1], video.shape)
  eps_blp = np.array(rng.normal(size=rows['patches'].shape), np.float32)
  eps_blp[:, :tokens] = patches.patchify(eps, (2, 8, 8))
  t_bm = jnp.stack([aux['t'], jnp.full(2, 0.3)], axis=1)
  given_bmt = jnp.stack([given_bt, ~given_bt], axis=1)
  packed_loss = jax.jit(lambda *args: objective.packed_loss(parts, *args, loss_min_t))
  packed = packed_loss(params, rows, t_bm, eps_blp, given_bmt)
  np.testing.assert_allclose(packed, unpacked, rtol=1e-5)

  noisy = dict(rows, patches=rows['patches'].copy())
  noisy['patches'][:, tokens:] = rng.normal(size=noisy['patches'][:, tokens:].shape) * 10
  eps_blp[:, tokens:] *= 10
  np.testing.assert_allclose(packed_loss(params, noisy, t_bm, eps_blp, given_bmt), packed,
                             rtol=1e-6)


def test_a_dropped_caption_in_a_packed_row_reads_as_the_empty_prompt():
  parts = dit_run.build(world_config.get_config('runlocal=True'))
  clips = [{'video': np.zeros((1, 16, 16, 3), np.float32), 'caption': c}
           for c in ('a red circle moves left', 'a blue square falls')]
  encode = lambda captions: dit_run.encode_batch(parts, {k: v[None] for k, v in packing.pack_row(
      [dict(c, caption=t) for c, t in zip(clips, captions)], 8, (1, 8, 8), 4).items()})
  rows = encode([c['caption'] for c in clips])
  null_text, null_mask = (jnp.asarray(a) for a in parts.encoder.unconditional())
  dropped = jax.jit(objective.drop_captions)(rows, jnp.array([[False, True, False, False]]),
                                             null_text, null_mask)
  want = encode(['a red circle moves left', ''])
  np.testing.assert_array_equal(dropped['text_mask'], want['text_mask'])
  real = want['text_mask']
  np.testing.assert_allclose(np.asarray(dropped['text'])[real], want['text'][real], atol=1e-6)
  assert real.sum() < rows['text_mask'].sum()  # the empty prompt is shorter than the caption


def layout_config(layout, steps):
  """runlocal with `layout` over square clips and images: two sizes, so two compilations."""
  config = world_config.get_config('runlocal=True')
  config.data.layout = layout
  config.data.sizes.update(aspects=('1:1',), aspect_weights=(1.0,))
  config.train.update(steps=steps, checkpoint_every=2)
  return config


@pytest.mark.integration  # trains end to end
def test_buckets_train_and_resume_bit_identically(tmp_path):
  straight = loop.train(dit_run.build(layout_config('buckets', 4)), tmp_path / 'straight',
                        progress=False)
  shutil.copytree(tmp_path / 'straight' / 'checkpoints' / '2',
                  tmp_path / 'resumed' / 'checkpoints' / '2')  # as if stopped after step 2
  resumed = loop.train(dit_run.build(layout_config('buckets', 4)), tmp_path / 'resumed',
                       progress=False)
  assert (resumed.first_step, resumed.last_step) == (2, 4)
  for a, b in zip(jax.tree.leaves(straight.state), jax.tree.leaves(resumed.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert all(np.isfinite(r['loss']) for r in loop.read_metrics(tmp_path / 'resumed'))
  with pytest.raises(ValueError, match="data.layout 'buckets', not 'packed'.*layout=buckets"):
    loop.train(dit_run.build(layout_config('packed', 6)), tmp_path / 'resumed', progress=False)


@pytest.mark.integration  # trains end to end
def test_packed_rows_train_and_log_their_fill(tmp_path):
  # Resuming packed rows exactly: tests/test_train_loop.py (runlocal's layout is 'packed').
  assert world_config.get_config('runlocal=True').data.layout == 'packed'
  loop.train(dit_run.build(layout_config('packed', 2)), tmp_path, progress=False)
  rows = loop.read_metrics(tmp_path)
  assert len(rows) == 2 and all(np.isfinite(r['loss']) and 0.5 < r['fill'] <= 1 for r in rows)
