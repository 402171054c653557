"""Colour tracking: masks robust to approximate colours, centroids, directions with bounces."""
import numpy as np
import pytest

from videogen.data import world
from videogen.evals import tracking


def _clip_with_square(colour_rgb, corners, size=6, shape=(32, 48), background=(18, 26, 84)):
  """uint8 [T, H, W, 3]: a square of `colour_rgb` with its top-left at each (x, y) corner."""
  frames = np.empty((len(corners), *shape, 3), np.uint8)
  frames[:] = background
  for frame, (x, y) in zip(frames, corners):
    frame[y:y + size, x:x + size] = colour_rgb
  return frames


def test_mask_finds_noisy_palette_colours_and_ignores_others():
  rng = np.random.default_rng(0)
  frames = _clip_with_square(world.PALETTE['orange'], [(5, 4)])
  noisy = np.clip(frames + rng.integers(-25, 26, frames.shape), 0, 255).astype(np.uint8)
  for clip in (frames, noisy):
    mask = tracking.colour_mask(clip, 'orange')
    assert mask.sum() == 36 and mask[0, 4:10, 5:11].all()
    for other in ('red', 'yellow', 'white', 'blue'):
      assert not tracking.colour_mask(clip, other).any()


def test_track_gives_pixel_centroids_and_nan_when_absent():
  frames = _clip_with_square(world.PALETTE['cyan'], [(0, 0), (10, 3), (20, 6)])
  frames[2] = world.BACKGROUNDS['navy']
  track = tracking.track(frames, 'cyan')
  np.testing.assert_allclose(track[:2], [[3.0, 3.0], [13.0, 6.0]])
  assert np.isnan(track[2]).all()
  assert tracking.colour_present(frames, 'cyan') and not tracking.colour_present(frames, 'red')


@pytest.mark.parametrize('name', list(world.DIRECTIONS))
def test_direction_of_straight_tracks(name):
  dx, dy = world.DIRECTIONS[name]
  track = np.array([[20 + 3 * t * dx, 20 + 3 * t * dy] for t in range(6)])
  assert tracking.motion_direction(track, 4.0) == name


def test_direction_ignores_what_happens_after_a_bounce_and_skips_nans():
  right_then_back = np.array([[x, 10.0] for x in (2, 6, 10, 14, 11, 7, 3, 0, -2)])
  assert tracking.motion_direction(right_then_back, 3.0) == 'right'
  up_right_off_the_top = np.array([[2 * t, 10 - 2 * t if t < 4 else 2 * t - 6] for t in range(9)])
  assert tracking.motion_direction(up_right_off_the_top, 3.0) == 'up-right'
  falling = np.array([[5.0, y] for y in (0, 2, 8, 18, 12, 9, 9, 12, 18)])
  falling[1] = np.nan
  assert tracking.motion_direction(falling, 3.0) == 'down'
  jitter = np.array([[10.0, 10.0], [10.5, 9.6], [9.7, 10.2], [10.2, 10.4]])
  assert tracking.motion_direction(jitter, 2.0) == 'still'
  assert tracking.motion_direction(np.full((4, 2), np.nan), 2.0) == 'still'


def test_bad_inputs_raise():
  frames = _clip_with_square(world.PALETTE['red'], [(0, 0)])
  with pytest.raises(ValueError, match='purple'):
    tracking.colour_mask(frames, 'purple')
  with pytest.raises(ValueError, match=r'\(32, 48, 3\)'):
    tracking.colour_mask(frames[0], 'red')
