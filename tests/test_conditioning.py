"""Frame conditioning: task masks, the model input, the loss mask and held frames in sampling."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from videogen.diffusion import conditioning
from videogen.diffusion import flow
from videogen.diffusion import samplers


def masks_for(task, batch=64, num_frames=6, seed=0):
  probabilities = conditioning.task_probabilities({task: 1.0})
  return np.asarray(conditioning.sample_frame_masks(jax.random.key(seed), batch, num_frames,
                                                    probabilities))


def test_each_task_gives_its_frames():
  assert not masks_for('text').any()
  first = masks_for('first')
  assert first[:, 0].all() and not first[:, 1:].any()
  for task, prefix in (('first_k', True), ('last_k', False)):
    masks = masks_for(task)
    counts = masks.sum(1)
    assert counts.min() >= 1 and counts.max() <= 5 and len(set(counts)) > 2, task
    for row, k in zip(masks, counts):
      expected = np.arange(6) < k if prefix else np.arange(6) >= 6 - k
      np.testing.assert_array_equal(row, expected)
  ends = masks_for('first_last')
  assert ends[:, [0, -1]].all() and not ends[:, 1:-1].any()
  random = masks_for('random', batch=512)
  assert 0.15 < random.mean() < 0.35 and not random.all(axis=1).any()


def test_task_proportions_follow_the_weights_and_single_frames_are_never_all_given():
  probabilities = conditioning.task_probabilities({'text': 3.0, 'first': 1.0})
  masks = np.asarray(conditioning.sample_frame_masks(jax.random.key(1), 4000, 4, probabilities))
  assert abs((~masks.any(1)).mean() - 0.75) < 0.03
  images = masks_for('first', num_frames=1)
  assert not images.any()  # a 1-frame clip given whole would leave nothing to learn


def test_bad_task_weights_raise():
  with pytest.raises(ValueError, match="'zoom'"):
    conditioning.task_probabilities({'zoom': 1.0})
  with pytest.raises(ValueError, match='sum to a positive number'):
    conditioning.task_probabilities({'text': 0.0})
  with pytest.raises(ValueError, match='>= 0'):
    conditioning.task_probabilities({'text': 1.0, 'first': -0.5})


def test_model_input_stacks_noisy_given_and_mask_channels():
  x = jnp.full((1, 3, 2, 2, 3), 0.5)
  frames = jnp.full((1, 3, 2, 2, 3), -0.7)
  mask = jnp.array([[True, False, True]])
  model_in = np.asarray(conditioning.model_input(x, frames, mask))
  assert model_in.shape == (1, 3, 2, 2, 7)
  np.testing.assert_array_equal(model_in[..., :3], 0.5)
  np.testing.assert_allclose(model_in[0, [0, 2], ..., 3:6], -0.7)
  np.testing.assert_array_equal(model_in[0, 1, ..., 3:6], 0.0)  # zero where not given
  np.testing.assert_array_equal(model_in[0, :, 0, 0, 6], [1.0, 0.0, 1.0])


def test_loss_ignores_the_given_frames():
  x0 = jax.random.normal(jax.random.key(2), (2, 4, 2, 2, 3))
  given = jnp.array([[True, False, False, False], [False, False, True, True]])
  frame_in = given[:, :, None, None, None]

  def oracle_except_given(params, x_t, t_b, text, text_mask):
    exact = flow.as_velocity('data', x0, x_t, t_b, min_t=0.0)  # = eps - x0 on the path
    return jnp.where(frame_in, exact + 100.0, exact)

  args = (oracle_except_given, None, x0, None, None, jax.random.key(3))
  masked, _ = flow.flow_matching_loss(*args, loss_mask=conditioning.loss_weights(given, x0))
  unmasked, _ = flow.flow_matching_loss(*args)
  assert float(masked) < 1e-6 and float(unmasked) > 1000


@pytest.mark.parametrize('task', ['first', 'first_k', 'last_k', 'first_last', 'random'])
def test_oracle_sampler_reproduces_the_target_and_keeps_given_frames_exact(task):
  target = jax.random.uniform(jax.random.key(4), (3, 6, 2, 2, 3), minval=-1, maxval=1)
  given = jnp.asarray(masks_for(task, batch=3, seed=5))
  # A model that knows the clip and steers every frame to it, except that it would drag the
  # given frames elsewhere: holding them must win there, the model everywhere else.
  oracle = lambda params, x, t_b: jnp.where(
      given[:, :, None, None, None], x + 9.0, (x - target) / t_b[:, None, None, None, None])
  sampler = samplers.make_sampler(oracle, steps=8, method='heun')
  noise = jax.random.normal(jax.random.key(6), target.shape)
  frames = jnp.where(given[:, :, None, None, None], target, 0.0)
  x0 = sampler(None, noise, [()], frames=frames, frame_mask=given)
  np.testing.assert_allclose(x0, target, atol=1e-5)
  # Exact by construction (the sampler pastes the given frames into its result), so this
  # checks the paste; the held path is checked by the next two tests.
  np.testing.assert_array_equal(np.asarray(x0)[np.asarray(given)],
                                np.asarray(target)[np.asarray(given)])


def _clip_and_given(seed=7):
  """A [2, 4, 2, 2, 3] clip, noise and a mask giving different frames per example."""
  frames = jax.random.uniform(jax.random.key(seed), (2, 4, 2, 2, 3), minval=-1, maxval=1)
  noise = jax.random.normal(jax.random.key(seed + 1), frames.shape)
  given = jnp.array([[True, False, False, True], [False, True, False, False]])
  return frames, noise, given


def _drag(x, t_b):
  return x + 9.0  # a velocity that pulls every frame off its path


@pytest.mark.parametrize('method', samplers.METHODS)
def test_every_model_call_sees_the_given_frames_on_their_straight_path(method):
  """Training showed the model x_t = (1 - t) frame + t noise on the given frames, so the
  sampler must feed it exactly that at every call, whatever the model says there."""
  frames, noise, given = _clip_and_given()
  seen = []

  def dragging_model(params, x, t_b):
    record = lambda *x_and_t: seen.append(tuple(np.asarray(a) for a in x_and_t))
    jax.debug.callback(record, x, t_b)
    return _drag(x, t_b)

  sampler = samplers.make_sampler(dragging_model, steps=4, method=method)
  jax.block_until_ready(sampler(None, noise, [()], frames=frames, frame_mask=given))
  jax.effects_barrier()
  assert len(seen) == {'euler': 4, 'heun': 7, 'ab2': 4, 'unipc': 4, 'fm_euler': 4}[method]
  # The time of the state each call sees: the call's own, except that 'unipc' tells the model
  # diffusers' integer timestep, a little below it.
  sigmas, times = samplers.schedule(4, method)
  rows, drift = np.asarray(given), 0.0
  for x, t_b in seen:
    t = np.interp(t_b, times[::-1], sigmas[-2::-1])[:, None, None, None, None]
    on_path = (1 - t) * np.asarray(frames) + t * np.asarray(noise)
    np.testing.assert_allclose(x[rows], on_path[rows], atol=1e-5)
    drift = max(drift, np.abs(x[~rows] - on_path[~rows]).max())
  assert drift > 1.0  # the other frames do follow the model


def test_held_velocity_lands_on_the_given_frames_without_pasting():
  frames, noise, given = _clip_and_given(seed=9)
  held = conditioning.hold_given_frames(_drag, frames, given, noise)
  x0 = np.asarray(samplers.sample(held, noise, steps=5, method='heun', shift=3.0))
  rows = np.asarray(given)
  np.testing.assert_allclose(x0[rows], np.asarray(frames)[rows], atol=1e-5)


def test_causal_latent_mask_gives_latents_of_given_frames_only():
  """At r = 4, 9 frames are 3 latents: frame 0, frames 1-4, frames 5-8."""
  given_p = np.array([0, 1, 4, 5, 8, 9])
  mask_pt = np.arange(9) < given_p[:, None]
  expected = [[0, 0, 0], [1, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 0], [1, 1, 1]]
  np.testing.assert_array_equal(conditioning.causal_latent_mask(mask_pt, 4, 3),
                                np.array(expected, bool))
  with pytest.raises(ValueError, match=r"given frames \[0, 2\] are not a clip's first frames"):
    conditioning.causal_latent_mask(np.array([[1, 0, 1, 0, 0]], bool), 4, 2)
  conditioning.check_prefix_tasks({'text': 1.0, 'first_k': 0.5, 'last_k': 0.0})
  with pytest.raises(ValueError, match=r"tasks \['first_last', 'random'\] give frames after"):
    conditioning.check_prefix_tasks({'text': 1.0, 'random': 0.1, 'first_last': 0.2})
