"""Sample settings beyond the sampler's steps: negative prompts (the text guidance's
unconditional branch reads the negative prompt's encoding instead of the empty prompt's; ''
samples as before, and without text guidance a negative prompt changes nothing) and the sampling
shift (None: the run's training shift). On a tiny untrained runlocal DiT."""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videogen.core import media
from videogen.diffusion import samplers
from videogen.inference import generate
from videogen.inference import prompting

import random_generator

PROMPT, NEGATIVE = 'A red circle moves to the right.', 'A blue square moves up.'
SETTINGS = generate.SampleSettings(steps=2, method='euler', cfg_scale=3.0)


@pytest.fixture(scope='module')
def gen():
  return random_generator.runlocal_generator()


def by_hand(gen, null_text, seed=0, settings=SETTINGS):
  """The guided sample written out: the prompt's branch and `null_text` (states, mask) [1, ...]
  as the unconditional one."""
  noise = jax.random.normal(jax.random.key(seed), gen.shape(settings))[None]
  sampler = samplers.make_sampler(gen.run.apply, steps=settings.steps, method=settings.method,
                                  shift=gen.run.shift(noise.shape[1:]),
                                  weights=samplers.guidance_weights(settings.cfg_scale))
  with jax.set_mesh(gen.run.mesh):
    x0 = sampler(gen.params, noise, [gen.run.encoder.encode([PROMPT]), null_text])
  return media.to_uint8(np.asarray(x0))


def sample(gen, **changes):
  return gen.generate([PROMPT], seeds=[0], settings=dataclasses.replace(SETTINGS, **changes))


def test_an_empty_negative_prompt_samples_as_the_empty_prompt_always_did(gen):
  default = gen.generate([PROMPT], seeds=[0], settings=SETTINGS)
  np.testing.assert_array_equal(sample(gen, negative_prompt=''), default)
  null = tuple(a[None] for a in gen.run.encoder.unconditional())
  np.testing.assert_array_equal(default, by_hand(gen, null))


def test_a_negative_prompt_is_the_unconditional_text(gen, monkeypatch):
  steered = sample(gen, negative_prompt=NEGATIVE)
  np.testing.assert_array_equal(steered, by_hand(gen, gen.run.encoder.encode([NEGATIVE])))
  assert not np.array_equal(steered, sample(gen))
  seen, apply = [], gen.run.apply

  def spy(params, x, t_b, text_bld, *rest):
    jax.debug.callback(lambda text: seen.append(np.asarray(text)), text_bld)
    return apply(params, x, t_b, text_bld, *rest)

  monkeypatch.setattr(gen.run, 'apply', spy)
  generate.Generator(gen.run, gen.params, step=0).generate(  # a fresh sampler cache
      [PROMPT], seeds=[0], settings=dataclasses.replace(SETTINGS, negative_prompt=NEGATIVE))
  cond, uncond = np.split(seen[0], 2)  # one pass over [prompt; unconditional]
  np.testing.assert_array_equal(cond, gen.run.encoder.encode([PROMPT])[0])
  np.testing.assert_array_equal(uncond, gen.run.encoder.encode([NEGATIVE])[0])


def test_without_text_guidance_a_negative_prompt_changes_nothing(gen):
  np.testing.assert_array_equal(sample(gen, cfg_scale=1.0, negative_prompt=NEGATIVE),
                                sample(gen, cfg_scale=1.0))
  frames = np.random.default_rng(1).integers(0, 256, (1, 2, 16, 16, 3), np.uint8)
  with_frames = dict(frames=frames, frame_mask=np.array([[True, False]]))
  settings = dataclasses.replace(SETTINGS, cfg_scale=1.0, frame_cfg_scale=1.5)
  plain = gen.generate([PROMPT], settings=settings, **with_frames)
  negative = gen.generate([PROMPT], **with_frames,
                          settings=dataclasses.replace(settings, negative_prompt=NEGATIVE))
  np.testing.assert_array_equal(negative, plain)  # the frame guidance stays text-free


def test_prompting_tasks_take_the_negative_prompt_from_their_settings(gen):
  still = np.random.default_rng(2).integers(0, 256, (16, 16, 3), np.uint8)
  settings = dataclasses.replace(SETTINGS, frame_cfg_scale=1.5)  # all four branches
  plain = prompting.image_to_video(gen, still, PROMPT, settings=settings)
  steered = prompting.image_to_video(
      gen, still, PROMPT, settings=dataclasses.replace(settings, negative_prompt=NEGATIVE))
  np.testing.assert_array_equal(steered[0], still)  # the given frame still comes back
  assert not np.array_equal(steered, plain)


def test_the_sidecar_records_the_negative_prompt(gen, tmp_path):
  settings = dataclasses.replace(SETTINGS, negative_prompt=NEGATIVE)
  videos = np.zeros((1, 2, 16, 16, 3), np.uint8)
  paths = gen.write(videos, [PROMPT], tmp_path, seeds=[0], settings=settings)
  sidecar = json.loads(next(p for p in paths if p.suffix == '.json').read_text())
  assert sidecar['negative_prompt'] == NEGATIVE and sidecar['cfg_scale'] == 3.0


def test_a_negative_prompt_that_is_not_text_is_a_clear_error():
  with pytest.raises(ValueError, match=r"^negative_prompt None must be a str: pass the text"):
    generate.SampleSettings(negative_prompt=None)


def test_with_frames_the_negative_prompt_moves_only_the_text_guidance():
  x, t = jnp.ones((2, 5)), jnp.array([0.3, 0.6])
  v_both, v_negative, v_frames, v_none = 2.0 * x, 3.0 * x, 5.0 * x, -1.0 * x
  model = lambda params, x, t_b, scale: scale[:, None] * x
  branches = [(jnp.full((2,), 2.0),), (jnp.full((2,), 3.0),), (jnp.full((2,), 5.0),),
              (jnp.full((1,), -1.0),)]
  text_scale, frame_scale = 3.0, 2.0
  velocity_fn = samplers.guided_velocity(model, None, branches, samplers.guidance_weights(
      text_scale, frame_scale, negative=True))
  expected = (v_both + (text_scale - 1) * (v_both - v_negative)
              + (frame_scale - 1) * (v_frames - v_none))
  np.testing.assert_allclose(velocity_fn(x, t), expected, rtol=1e-6)
  assert samplers.guidance_weights(1.0, 2.0, negative=True)[1] == 0  # cfg 1: no negative branch
  merged = samplers.guidance_weights(text_scale, frame_scale)  # negative = frames-only branch
  with_empty = samplers.guidance_weights(text_scale, frame_scale, negative=True)
  assert merged == (with_empty[0], with_empty[1] + with_empty[2], with_empty[3])


def test_the_sampling_shift_defaults_to_the_training_shift_and_can_differ(gen):
  default = gen.generate([PROMPT], seeds=[0], settings=SETTINGS)
  training_shift = gen.run.shift(gen.shape(SETTINGS))
  np.testing.assert_array_equal(sample(gen, shift=training_shift), default)
  assert not np.array_equal(sample(gen, shift=1.0), default)
  with pytest.raises(ValueError, match='shift 0 must be a positive number'):
    dataclasses.replace(SETTINGS, shift=0)


def test_a_guidance_interval_turns_text_guidance_off_below_cfg_min_t(gen):
  # The grid of 2 euler steps calls the model at t = 1 and at the shifted midpoint, below 0.99.
  default = gen.generate([PROMPT], seeds=[0], settings=SETTINGS)
  np.testing.assert_array_equal(sample(gen, cfg_min_t=0.0), default)
  unguided = sample(gen, cfg_scale=1.0)
  interval = sample(gen, cfg_min_t=0.99)
  assert not np.array_equal(interval, default) and not np.array_equal(interval, unguided)
  config = gen.run.config.copy_and_resolve_references()
  config.sample.cfg_min_t = 0.5
  assert generate.settings_for(config).cfg_min_t == 0.5
  assert 't >= 0.5' in generate.settings_for(config).guidance()
  with pytest.raises(ValueError, match='cfg_min_t 1 must be in'):
    dataclasses.replace(SETTINGS, cfg_min_t=1)
