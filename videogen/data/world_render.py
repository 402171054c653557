"""Rendering a world scene (data/world.py) to pixels with numpy, with its per-frame truth.

Sprites are drawn once per (kind, digit, variant, resolution) and placed with exact area
coverage, so an object's pixels sum to its area at any size. Shapes: C colour channels, T
frames, H height, W width, R sprite resolution.
"""
import functools

import numpy as np

from videogen.data import digits
from videogen.data import world


def render(scene: world.Scene, height: int, width: int, num_frames: int,
           fps: float) -> tuple[np.ndarray, dict]:
  """Frames uint8 [T, H, W, 3] and per-frame ground truth in view pixels, where pixel (row i,
  column j) spans [j, j+1) x [i, i+1).

  Truth: {'scene', 'fps', 'camera': view origin in world pixels per frame, 'objects': per object
  {'colour', 'kind', 'digit', 'centre' [[x, y]] (area centroid), 'bbox' [[x0, y0, x1, y1]]
  (whole shape, may reach outside the view), 'state' (out_of_view: under half of it in view;
  occluded: under half of it visible; else visible), 'visible_fraction'}}.
  """
  return _render(scene, height, width, num_frames, fps, with_truth=True)


def render_frames(scene: world.Scene, height: int, width: int, num_frames: int,
                  fps: float) -> np.ndarray:
  """`render`'s frames alone, skipping the truth (what training reads: about a third faster)."""
  return _render(scene, height, width, num_frames, fps, with_truth=False)[0]


def _render(scene: world.Scene, height: int, width: int, num_frames: int, fps: float, *,
            with_truth: bool) -> tuple[np.ndarray, dict | None]:
  world.check_render_size(height, width, num_frames, fps)
  view_w, view_h = scene.view
  if abs(width - height * view_w / view_h) > 1:
    raise ValueError(f'{height}x{width} (HxW) does not match the scene aspect {view_w / view_h:.3f}'
                     ' (W/H); render at that aspect or sample with WorldOptions of this size.')
  times = np.arange(num_frames) / fps
  scale = np.array([width / view_w, height / view_h])  # pixels per world unit, x and y
  world_wh, camera0 = world.world_box(scene.view, scene.duration, scene.pan)
  camera_t2 = _camera(scene, world_wh, camera0, times)
  frames_cthw = _background(scene, camera_t2, scale, height, width)
  frames_cthw = np.broadcast_to(frames_cthw, (3, num_frames, height, width)).copy()
  alphas, truths = [], []
  for obj in scene.objects:
    size = world.SIZES[obj.size]
    corner_t2 = (world.box_centres(obj, world_wh, times) - size / 2 - camera_t2) * scale
    sprite, area, centroid, ink_box = _sprite(obj.kind, obj.digit, obj.variant,
                                              _sprite_resolution(size * scale.max()))
    alpha_thw = _place(sprite, corner_t2, size * scale, height, width)
    _paint(frames_cthw, alpha_thw, world.PALETTE[obj.colour])
    alphas.append(alpha_thw)
    extent = size * scale
    truths.append({'colour': obj.colour, 'kind': obj.kind, 'digit': obj.digit,
                   'centre': corner_t2 + centroid * extent,
                   'bbox': np.concatenate([corner_t2 + ink_box[:2] * extent,
                                           corner_t2 + ink_box[2:] * extent], axis=1),
                   'area': area * extent.prod()})
  clear_thw = np.ones((num_frames, height, width), np.float32)  # light that reaches the eye
  if scene.occluder is not None:
    bar_thw = _occluder_alpha(scene.occluder, camera_t2, scale, height, width)
    _paint(frames_cthw, bar_thw, world.OCCLUDER_COLOUR)
    clear_thw = clear_thw - bar_thw
  np.clip(frames_cthw, 0, 255, out=frames_cthw)
  frames = np.ascontiguousarray(np.moveaxis((frames_cthw + 0.5).astype(np.uint8), 0, -1))
  if not with_truth:
    return frames, None
  for alpha_thw, truth in zip(reversed(alphas), reversed(truths)):
    area = truth.pop('area')
    in_view = np.minimum(alpha_thw.sum((1, 2)) / area, 1.0)
    visible = np.minimum((alpha_thw * clear_thw).sum((1, 2)) / area, 1.0)
    clear_thw = clear_thw * (1 - alpha_thw)
    truth['state'] = np.where(in_view < 0.5, 'out_of_view',
                              np.where(visible < 0.5, 'occluded', 'visible')).tolist()
    truth['visible_fraction'] = np.round(visible, 4).tolist()
    truth['centre'] = np.round(truth['centre'], 3).tolist()
    truth['bbox'] = np.round(truth['bbox'], 3).tolist()
  return frames, {'scene': scene.to_dict(), 'fps': float(fps),
                  'camera': np.round(camera_t2 * scale, 3).tolist(), 'objects': truths}


def _camera(scene: world.Scene, world_wh: np.ndarray, camera0: tuple[float, float],
            times: np.ndarray) -> np.ndarray:
  """[T, 2] view origin in world units; it stops at the world's edge on longer renders."""
  velocity = world.PAN_SPEED * np.array(world.DIRECTIONS[scene.pan] if scene.pan else (0.0, 0.0))
  return np.clip(np.array(camera0) + times[:, None] * velocity, 0,
                 world_wh - np.array(scene.view))


def _sprite_resolution(size_px: float) -> int:
  """Texels per sprite side: at least one per pixel, a power of two between 32 and 256."""
  return int(np.clip(2 ** np.ceil(np.log2(max(size_px, 1.0))), 32, 256))


@functools.lru_cache(maxsize=256)
def _sprite(kind: str, digit: int | None, variant: int,
            resolution: int) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
  """Alpha [R, R] of a shape filling the unit box, its area, centroid (x, y) and ink box
  (x0, y0, x1, y1), all as fractions of the box."""
  if kind == 'digit':
    alpha = digits.digit_sprite(digit, variant, resolution)
  else:
    fine = 4 * resolution  # 4x4 supersampling per texel
    centres = (np.arange(fine) + 0.5) / fine
    x, y = centres[None, :], centres[:, None]
    inside = {'circle': (x - 0.5) ** 2 + (y - 0.5) ** 2 <= 0.25,
              'square': np.ones((fine, fine), bool),
              'triangle': np.abs(x - 0.5) <= y / 2}[kind]
    alpha = inside.reshape(resolution, 4, resolution, 4).mean((1, 3)).astype(np.float32)
  axis = (np.arange(resolution) + 0.5) / resolution
  area = float(alpha.mean())
  centroid = np.array([(alpha.sum(0) * axis).sum(), (alpha.sum(1) * axis).sum()]) / alpha.sum()
  cols, rows = np.nonzero(alpha.max(0) > 0.5)[0], np.nonzero(alpha.max(1) > 0.5)[0]
  ink_box = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]) / resolution
  return alpha, area, centroid, ink_box


def _coverage(start_px: np.ndarray, length_px: float, texels: int, pixels: int) -> np.ndarray:
  """[T, pixels, texels]: how much of pixel p's span [p, p+1) each texel of a strip covers, for a
  strip of `texels` equal texels laid from start_px[t] over length_px pixels."""
  edges = (start_px[:, None] + length_px * np.arange(texels + 1) / texels).astype(np.float32)
  pixel = np.arange(pixels, dtype=np.float32)[None, :, None]
  covered = np.minimum(edges[:, None, 1:], pixel + 1) - np.maximum(edges[:, None, :-1], pixel)
  return np.maximum(covered, 0.0)


def _place(sprite: np.ndarray, corner_t2: np.ndarray, extent: np.ndarray, height: int,
           width: int) -> np.ndarray:
  """[T, H, W] exact pixel coverage of a sprite whose box starts at corner_t2 (pixels).

  Coverage is computed in a window of the pixels the box can touch and pasted into the frame.
  """
  span_x, span_y = (int(v) for v in np.ceil(extent) + 1)
  first_t2 = np.floor(corner_t2).astype(int)
  local_t2 = corner_t2 - first_t2
  rows_tnr = _coverage(local_t2[:, 1], extent[1], sprite.shape[0], span_y)
  cols_tmr = _coverage(local_t2[:, 0], extent[0], sprite.shape[1], span_x)
  window_tnm = np.minimum((rows_tnr @ sprite) @ cols_tmr.transpose(0, 2, 1), 1.0)
  padded_thw = np.zeros((len(corner_t2), height + 2 * span_y, width + 2 * span_x), np.float32)
  for t, (x, y) in enumerate(first_t2):
    if -span_x < x < width and -span_y < y < height:  # touches the view
      padded_thw[t, y + span_y:y + 2 * span_y, x + span_x:x + 2 * span_x] = window_tnm[t]
  return padded_thw[:, span_y:span_y + height, span_x:span_x + width]


def _paint(frames_cthw: np.ndarray, alpha_thw: np.ndarray, colour: tuple[int, int, int]) -> None:
  """Lays a colour over the frames in place with per-pixel opacity alpha_thw."""
  clear_thw = 1 - alpha_thw
  for channel, value in zip(frames_cthw, colour):
    channel *= clear_thw
    channel += alpha_thw * np.float32(value)


def _occluder_alpha(occluder: world.Occluder, camera_t2: np.ndarray, scale: np.ndarray, height: int,
                    width: int) -> np.ndarray:
  """[T, H, W] 0/1 coverage of the bar, which spans the world across the axis it blocks.

  Its edges snap outward to whole pixels, so an object inside the bar leaves no partial pixels.
  """
  axis = 0 if occluder.orientation == 'vertical' else 1
  start = (occluder.centre - occluder.width / 2 - camera_t2[:, axis]) * scale[axis]
  first, last = np.floor(start), np.ceil(start + occluder.width * scale[axis])
  strip = np.arange((width, height)[axis])[None] - first[:, None]
  strip = ((strip >= 0) & (strip < (last - first)[:, None])).astype(np.float32)
  shape = (len(start), 1, width) if axis == 0 else (len(start), height, 1)
  return np.broadcast_to(strip.reshape(shape), (len(start), height, width))


def _background(scene: world.Scene, camera_t2: np.ndarray, scale: np.ndarray, height: int,
                width: int) -> np.ndarray:
  """[3, T or 1, H, W] float32 background, drawn in world coordinates so a pan moves it."""
  base = np.float32(world.BACKGROUNDS[scene.background])[:, None, None, None]
  if scene.background_style == 'plain':
    return np.broadcast_to(base, (3, 1, height, width))
  if scene.pan is None:
    camera_t2 = camera_t2[:1]
  x_t1w = camera_t2[:, 0, None, None] + (np.arange(width) + 0.5)[None, None] / scale[0]
  y_th1 = camera_t2[:, 1, None, None] + (np.arange(height) + 0.5)[None, :, None] / scale[1]
  rng = np.random.default_rng(scene.background_seed)
  if scene.background_style == 'gradient':  # 16 levels per world unit along a random direction
    angle = rng.uniform(0, 2 * np.pi)
    shade_thw = 16 * (np.cos(angle) * (x_t1w - 0.5) + np.sin(angle) * (y_th1 - 0.5))
  else:  # texture: three faint plane waves, +-10 levels; sin(a+b) split keeps it separable
    shade_thw = 0.0
    for _ in range(3):
      freq, angle, phase = rng.uniform(6, 20), rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)
      a_t1w = freq * np.cos(angle) * x_t1w + phase
      b_th1 = freq * np.sin(angle) * y_th1
      shade_thw = shade_thw + 6 * (np.sin(a_t1w) * np.cos(b_th1) + np.cos(a_t1w) * np.sin(b_th1))
  return (base + shade_thw[None]).astype(np.float32)
