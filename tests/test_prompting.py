"""Every prompting task end to end on the tiny frame-conditioned run: inputs come back exactly,
lengths and overlaps are right, SDEdit's strength ends behave, bad input is a clear error."""
import dataclasses

import jax
import numpy as np
import pytest

from configs import world as world_config
from videogen.inference import generate
from videogen.core import media
from videogen.inference import prompting
from videogen.runtime import dit_run

pytestmark = pytest.mark.integration  # samples every task from a trained run

SETTINGS = generate.SampleSettings(steps=2, method='euler', cfg_scale=2.0, frame_cfg_scale=1.5)
PROMPT = 'A red circle moves to the right.'
# The given frames come back exact by construction (the sampler pastes them into its result,
# and uint8 -> [-1, 1] -> uint8 is lossless), so the asserts on them check where each task puts
# its inputs and that the Generator hands them to the sampler; that they are held on their path
# while sampling is checked in tests/test_conditioning.py.


@pytest.fixture(scope='module')
def gen(trained_run):
  return generate.Generator.from_workdir(trained_run)


def clip(num_frames, seed=0, height=16, width=16):
  return np.random.default_rng(seed).integers(0, 256, (num_frames, height, width, 3), np.uint8)


def test_image_to_video_starts_on_the_image_read_from_a_file(gen, tmp_path):
  image = clip(1)[0]
  path = media.write_image(tmp_path / 'still.png', image)
  video = prompting.image_to_video(gen, path, PROMPT, settings=SETTINGS)
  assert video.shape == (2, 16, 16, 3) and video.dtype == np.uint8
  np.testing.assert_array_equal(video[0], image)
  written = media.write_video(tmp_path / 'out.mp4', video, fps=8)
  assert media.read_video(written).shape == video.shape


def test_keyframes_land_where_asked_and_bad_indices_are_clear_errors(gen):
  settings = dataclasses.replace(SETTINGS, num_frames=4)
  a, b = clip(1, 1)[0], clip(1, 2)[0]
  video = prompting.keyframes(gen, {1: a, -1: b}, PROMPT, settings=settings)
  assert video.shape[0] == 4
  np.testing.assert_array_equal(video[1], a)
  np.testing.assert_array_equal(video[3], b)
  with pytest.raises(ValueError, match='keyframe index 4 is outside a 4-frame video'):
    prompting.keyframes(gen, {4: a}, PROMPT, settings=settings)
  with pytest.raises(ValueError, match='keyframe index -4 collides'):
    prompting.keyframes(gen, {0: a, -4: b}, PROMPT, settings=settings)


@pytest.mark.parametrize('direction', ['forward', 'backward'])
def test_extension_over_several_windows_keeps_the_input_and_reaches_the_length(gen, direction):
  settings = dataclasses.replace(SETTINGS, num_frames=4)
  video = clip(3)
  longer = prompting.extend(gen, video, PROMPT, frames=5, direction=direction, context=2,
                            settings=settings)
  assert longer.shape == (8, 16, 16, 3)  # windows add 2 + 2 + 1 frames
  kept = longer[:3] if direction == 'forward' else longer[5:]
  np.testing.assert_array_equal(kept, video)
  again = prompting.extend(gen, video, PROMPT, frames=5, direction=direction, context=2,
                           settings=settings)
  np.testing.assert_array_equal(longer, again)
  with pytest.raises(ValueError, match='has 3 frames but extending needs at least context=4'):
    prompting.extend(gen, video, PROMPT, frames=2, context=4,
                     settings=dataclasses.replace(SETTINGS, num_frames=6))


def test_connect_starts_as_a_ends_and_ends_as_b_begins(gen):
  a, b = clip(3, 3), clip(3, 4)
  bridge = prompting.connect(gen, a, b, PROMPT, frames=2, settings=SETTINGS)
  assert bridge.shape == (4, 16, 16, 3)
  np.testing.assert_array_equal(bridge[0], a[-1])
  np.testing.assert_array_equal(bridge[-1], b[0])


def test_loop_returns_the_clip_then_a_bridge_back_to_its_start(gen):
  video = clip(2, 5)
  looped = prompting.loop(gen, video, PROMPT, frames=2, settings=SETTINGS)
  assert looped.shape == (4, 16, 16, 3)
  np.testing.assert_array_equal(looped[:2], video)
  from_text = prompting.loop(gen, PROMPT, frames=2, settings=SETTINGS)
  assert from_text.shape == (4, 16, 16, 3)


def test_edit_strength_zero_returns_the_input_and_one_ignores_it(gen):
  video = clip(2, 6)
  np.testing.assert_array_equal(
      prompting.edit(gen, video, PROMPT, strength=0.0, settings=SETTINGS), video)
  plain = gen.generate([PROMPT], seeds=[7], settings=SETTINGS)[0]
  np.testing.assert_array_equal(
      prompting.edit(gen, video, PROMPT, strength=1.0, seed=7, settings=SETTINGS), plain)
  with pytest.raises(ValueError, match='strength 1.5 is outside'):
    prompting.edit(gen, video, PROMPT, strength=1.5)


def test_inputs_of_another_aspect_are_cropped_with_a_warning_or_refused_when_strict(gen):
  wide = clip(1, 8, height=16, width=32)[0]
  with pytest.warns(UserWarning, match='32x16'):
    video = prompting.image_to_video(gen, wide, PROMPT, settings=SETTINGS)
  assert video.shape == (2, 16, 16, 3)
  with pytest.raises(ValueError, match='aspect 2.000'):
    prompting.image_to_video(gen, wide, PROMPT, settings=SETTINGS, strict=True)
  with pytest.raises(ValueError, match='not a uint8 RGB video'):
    prompting.image_to_video(gen, np.zeros((16, 16), np.float32), PROMPT)


def test_a_text_only_model_refuses_frames_with_a_clear_error():
  config = world_config.get_config('runlocal=True')
  config.conditioning.enabled = False
  parts = dit_run.build(config, devices=jax.devices()[:1])
  text_only = generate.Generator(parts, parts.init_fn().ema_params, step=0)
  assert parts.model.config.in_channels == 3
  with pytest.raises(ValueError, match='trained without frame conditioning'):
    prompting.image_to_video(text_only, clip(1)[0], PROMPT, settings=SETTINGS)


def test_task_inputs_are_checked_before_sampling():
  inputs = prompting.TaskInputs
  prompting.check_inputs('text', inputs())
  prompting.check_inputs('extend', inputs(video='a.mp4', frames=8))
  assert prompting.parse_keyframes(['0:a.png', '-1:b.png']) == {0: 'a.png', -1: 'b.png'}
  for task, given, message in [
      ('extend', inputs(video='a.mp4'), 'the extend task needs --frames'),
      ('connect', inputs(video='a.mp4'), 'the connect task needs --video_b'),
      ('image', inputs(), 'the image task needs --image'),
      ('keyframes', inputs(), 'the keyframes task needs --keyframe INDEX:PATH'),
      ('keyframes', inputs(keyframes=('a.png',)), "keyframe 'a.png' is not INDEX:PATH"),
      ('morph', inputs(), "task 'morph' is unknown")]:
    with pytest.raises(ValueError, match=message):
      prompting.check_inputs(task, given)
