"""How far the first frames reach the last ones: a frame-by-frame denoiser scores 0, one that
mixes every frame scores about 1, and the spatial control tells space from time."""
import jax.numpy as jnp
import numpy as np
import pytest

from videogen.evals import influence


def _model(denoise):
  """apply_fn whose clean-data prediction at (x_t, t) is denoise(x_t)."""
  return lambda params, x, t_b, text, mask: (x - denoise(x)) / t_b[:, None, None, None, None]


CLIPS = np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 8, 3)).astype(np.float32)
TEXT, MASK = jnp.zeros((2, 4, 5)), jnp.ones((2, 4), bool)


def test_a_frame_by_frame_model_does_not_reach_the_last_frames():
  rows = influence.temporal_influence(_model(lambda x: 0.5 * x), None, CLIPS, TEXT, MASK)
  assert [r['t'] for r in rows] == list(influence.TIMES)
  for r in rows:
    assert r['near'] > 0.1 and r['far'] == 0 and r['ratio'] == 0
    assert r['space_far'] == 0  # pixel by pixel: nothing crosses space either


def test_a_model_mixing_all_frames_reaches_them_equally():
  mix = lambda x: jnp.broadcast_to(x.mean(1, keepdims=True), x.shape)
  rows = influence.temporal_influence(_model(mix), None, CLIPS, TEXT, MASK)
  for r in rows:
    assert r['ratio'] == pytest.approx(1, rel=1e-5)
    assert r['space_far'] == 0  # mixes time only


def test_too_short_a_clip_is_refused():
  with pytest.raises(ValueError, match='at least 4 frames'):
    influence.temporal_influence(_model(lambda x: x), None, CLIPS[:, :3], TEXT, MASK)
