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

On a causal VAE's latents only leading frames can be given (PREFIX_TASKS): latent frame j
encodes pixel frames up to r·j and depends on every one of them, so the latents of given frames
are exact only when no frame before them is missing (`causal_latent_mask`).

Shapes: x/frames [B, T, H, W, C], mask [B, T] bool.
"""
import jax
import jax.numpy as jnp
import numpy as np

TASKS = ('text', 'first', 'first_k', 'last_k', 'first_last', 'random')
RANDOM_FRAME_CHANCE = 0.25
# The tasks whose given frames are a clip's first frames: what a latent model can learn.
PREFIX_TASKS = ('text', 'first', 'first_k')


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


def check_prefix_tasks(weights) -> None:
  """Raises unless every task of a {task: weight} mapping with weight > 0 is a PREFIX_TASK."""
  other = sorted(task for task, weight in dict(weights).items()
                 if float(weight) > 0 and task not in PREFIX_TASKS)
  if other:
    raise ValueError(f'conditioning tasks {other} give frames after a missing one, which a '
                     "causal VAE's latents cannot hold exactly: on latents use only "
                     f'{PREFIX_TASKS} (set the others to 0), or conditioning.enabled=False.')


def causal_latent_mask(mask_bt, temporal_downsample: int, latent_frames: int) -> np.ndarray:
  """bool [B, latent_frames]: the latent frames a causal VAE (r = temporal_downsample) encodes
  from given frames alone, for masks [B, T] that give each clip's first P frames: frame 0 is
  latent 0 and latent j covers frames r·(j-1)+1 .. r·j, so latent j is given when r·j < P.
  Raises on a mask that gives a frame after a missing one."""
  mask_bt = np.asarray(mask_bt, bool)
  given_b = mask_bt.sum(axis=1)
  prefix_bt = np.arange(mask_bt.shape[1]) < given_b[:, None]
  if not (mask_bt == prefix_bt).all():
    frames = [np.flatnonzero(m).tolist() for m in mask_bt[(mask_bt != prefix_bt).any(axis=1)]]
    raise ValueError(f'given frames {frames[0]} are not a clip\'s first frames: a latent model '
                     'can only be given leading frames (image-to-video, extend forward), as its '
                     "causal VAE's latent of a frame depends on every frame before it; sample "
                     'other tasks with a pixel model.')
  return temporal_downsample * np.arange(latent_frames) < given_b[:, None]


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
