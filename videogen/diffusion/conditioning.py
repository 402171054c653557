"""Frame conditioning: one model for text-to-video, image-to-video, extension, connection,
keyframes (the DiT sees which frames are given and their clean values).

The DiT input is [x_t, given frames (zero where not given), mask] on channels, so its input has
2C + 1 channels; the mask is per (latent) frame. Training draws one task per example:
  text        nothing given (text-to-video)
  first       frame 0 (animate an image)
  first_k     frames [0, k), k uniform in [1, T - 1] (extend forward)
  last_k      frames [T - k, T) (extend backward)
  first_last  frames 0 and T - 1 (connect two videos, keyframes at the ends)
  random      each frame with chance 1/4 (keyframes anywhere)
A mask that gives every frame is dropped to none (there would be nothing to learn). The loss
counts only the frames that were not given.

Sampling holds the given frames on their exact straight path: their velocity is noise - frame,
so x_t there is (1 - t) frame + t noise at every step (as training saw) and lands on the frame.

Shapes: x/frames [B, T, H, W, C], mask [B, T] bool.
"""
import jax
import jax.numpy as jnp
import numpy as np

TASKS = ('text', 'first', 'first_k', 'last_k', 'first_last', 'random')
RANDOM_FRAME_CHANCE = 0.25


def task_probabilities(weights) -> np.ndarray:
  """float [len(TASKS)] chances from a {task: weight} mapping (missing tasks weigh 0)."""
  weights = dict(weights)
  unknown = sorted(set(weights) - set(TASKS))
  if unknown:
    raise ValueError(f'conditioning tasks {unknown} are unknown: use some of {TASKS}.')
  w = np.array([float(weights.get(task, 0.0)) for task in TASKS])
  if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
    raise ValueError(f'conditioning task weights {weights} must be finite, >= 0 and sum to a '
                     'positive number: e.g. {"text": 1.0}.')
  return w / w.sum()


def sample_frame_masks(rng, batch: int, num_frames: int, probabilities) -> jax.Array:
  """bool [batch, num_frames]: the given frames of one task per example (see the docstring)."""
  task_rng, k_rng, random_rng = jax.random.split(rng, 3)
  task_b = jax.random.choice(task_rng, len(TASKS), (batch,), p=jnp.asarray(probabilities))
  k_b1 = jax.random.randint(k_rng, (batch, 1), 1, max(num_frames, 2))
  index_t = jnp.arange(num_frames)
  ends_t = (index_t == 0) | (index_t == num_frames - 1)
  masks = [jnp.zeros((batch, num_frames), bool),
           jnp.broadcast_to(index_t == 0, (batch, num_frames)),
           index_t < k_b1,
           index_t >= num_frames - k_b1,
           jnp.broadcast_to(ends_t, (batch, num_frames)),
           jax.random.bernoulli(random_rng, RANDOM_FRAME_CHANCE, (batch, num_frames))]
  mask_bt = jnp.stack(masks, axis=1)[jnp.arange(batch), task_b]
  return mask_bt & ~jnp.all(mask_bt, axis=1, keepdims=True)


def _frame_weights(mask_bt, like):
  """mask [B, T] -> float [B, T, 1, 1, 1] broadcastable against `like` [B, T, H, W, C]."""
  return mask_bt.astype(like.dtype).reshape(mask_bt.shape + (1,) * (like.ndim - 2))


def model_input(x_bthwc, frames_bthwc, mask_bt):
  """[x, frames * mask, mask] on channels: the conditioned DiT's input (2C + 1 channels)."""
  m = _frame_weights(mask_bt, x_bthwc)
  given = frames_bthwc.astype(x_bthwc.dtype) * m
  return jnp.concatenate([x_bthwc, given, jnp.broadcast_to(m, x_bthwc.shape[:-1] + (1,))], -1)


def loss_weights(mask_bt, like):
  """[B, T, 1, 1, 1]: 1 on the frames the model must generate, 0 on the given ones."""
  return _frame_weights(~mask_bt, like)


def hold_given_frames(velocity_fn, frames_bthwc, mask_bt, noise_bthwc):
  """velocity_fn with the given frames' velocity replaced by their path's, noise - frame."""
  m = _frame_weights(mask_bt, noise_bthwc) > 0
  path_velocity = noise_bthwc - frames_bthwc

  def held(x, t_b):
    return jnp.where(m, path_velocity, velocity_fn(x, t_b))

  return held


def paste_given_frames(x_bthwc, frames_bthwc, mask_bt):
  """x with the given frames set exactly to their values (removes float rounding)."""
  return jnp.where(_frame_weights(mask_bt, x_bthwc) > 0, frames_bthwc, x_bthwc)
