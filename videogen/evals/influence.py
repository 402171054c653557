"""How far information crosses time inside a trained model: re-noise the first frames of a clip
and measure how much the model's clean-data prediction x0 moves at those frames and at the last
ones.

A model that follows an object through time must move its prediction of the last frames when
the first ones change (the object's start decides where it ends). `temporal_influence` gives,
per flow time t, the mean |change of x0| at the re-noised first frames ('near') and at as many
last frames ('far'), and their ratio far / near. The spatial control re-noises the left half of
every frame and reads the right half: attention across space, for comparison.

Legend: B clips, T frames, H height, W width, C channels.
"""
import jax
import jax.numpy as jnp
import numpy as np

from videogen.core import media
from videogen.data import world_render

TIMES = (0.9, 0.6, 0.3)


def _x0(apply_fn, params, x_t, t, text, mask):
  """The clean-data prediction x_t - t v from the model's velocity at (x_t, t)."""
  t_b = jnp.full(x_t.shape[:1], t, jnp.float32)
  return x_t - t * apply_fn(params, x_t, t_b, text, mask)


def temporal_influence(apply_fn, params, clips_bthwc, text, mask, *, frames: int = 2,
                       times=TIMES, seed: int = 0) -> list[dict]:
  """Per t: {'t', 'near', 'far', 'ratio', 'space_near', 'space_far', 'space_ratio'} for model
  inputs clips [B, T, H, W, C] (model space, e.g. pixels in [-1, 1]) with text [B, S, D] and
  mask [B, S]; apply_fn(params, x, t_b, text, mask) -> velocity (Components.apply)."""
  clips = jnp.asarray(clips_bthwc, jnp.float32)
  length, width = clips.shape[1], clips.shape[3]
  if length < 2 * frames:
    raise ValueError(f'clips of {length} frames cannot show {frames} re-noised first frames '
                     f'and {frames} last ones: pass clips of at least {2 * frames} frames.')
  eps_key, other_key = jax.random.split(jax.random.key(seed))
  eps = jax.random.normal(eps_key, clips.shape)
  other = jax.random.normal(other_key, clips.shape)
  first = jnp.arange(length) < frames
  left = jnp.arange(width) < width // 2
  renoise_time = jnp.where(first[None, :, None, None, None], other, eps)
  renoise_space = jnp.where(left[None, None, None, :, None], other, eps)
  predict = jax.jit(lambda x_t, t: _x0(apply_fn, params, x_t, t, text, mask))
  rows = []
  for t in times:
    noisy = lambda e: (1 - t) * clips + t * e
    base = predict(noisy(eps), t)
    change_time = np.abs(np.asarray(predict(noisy(renoise_time), t) - base))
    change_space = np.abs(np.asarray(predict(noisy(renoise_space), t) - base))
    near, far = change_time[:, :frames].mean(), change_time[:, -frames:].mean()
    space_near = change_space[:, :, :, :width // 2].mean()
    space_far = change_space[:, :, :, width // 2:].mean()
    rows.append({'t': float(t), 'near': float(near), 'far': float(far),
                 'ratio': float(far / near), 'space_near': float(space_near),
                 'space_far': float(space_far), 'space_ratio': float(space_far / space_near)})
  return rows


def on_world_prompts(gen, prompts, times=TIMES) -> list[dict]:
  """`temporal_influence` of a pixel run's generate.Generator on the world's renders of eval
  prompts (evals/prompts.py), re-noising the first quarter of the frames (at least one)."""
  w = gen.run.config.world
  clips = np.stack([world_render.render_frames(p.scene, w.height, w.width, w.num_frames, w.fps)
                    for p in prompts])
  text, mask = gen.run.encoder.encode([p.text for p in prompts])
  return temporal_influence(gen.run.apply, gen.params,
                            jnp.asarray(media.from_uint8(clips)), text, mask,
                            frames=max(1, w.num_frames // 4), times=times)


def report_lines(rows: list[dict]) -> list[str]:
  """Markdown: the influence of the first frames on the last ones (and, for comparison, of the
  left half on the right half) per flow time."""
  lines = ['| t | first frames (near) | last frames (far) | far / near | left half | right half '
           '| right / left |', '|' + ' --- |' * 7]
  for r in rows:
    lines.append(f'| {r["t"]:g} | {r["near"]:.4f} | {r["far"]:.4f} | {r["ratio"]:.2f} | '
                 f'{r["space_near"]:.4f} | {r["space_far"]:.4f} | {r["space_ratio"]:.2f} |')
  return lines
