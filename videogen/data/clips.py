"""Clip sampling shared by the file and TFDS sources: which frames, then resize and crop.

A clip is `num_frames` frames at a target fps starting at a position drawn from (seed, index),
so a record is the same on every read and in every worker. Target frame k shows the source frame
on screen at time k / fps (the latest one that started by then). Frames past the end of a short
source repeat its last frame: a still image is a 1-frame source, so it becomes a still clip.
Numpy and Pillow only (runs in Grain workers).
"""
import math

import numpy as np
from PIL import Image

_EPSILON = 1e-6  # Keeps k * step exact for steps like 25 / 8 despite float rounding.


def check_target(num_frames: int, height: int, width: int, fps: float | None) -> None:
  """Raises one clear error for a clip size or fps that no source can produce."""
  if min(num_frames, height, width) < 1:
    raise ValueError(f'num_frames={num_frames}, height={height}, width={width}: each must be at '
                     'least 1, e.g. num_frames=9, height=64, width=64.')
  if fps is not None and not (fps > 0 and math.isfinite(fps)):
    raise ValueError(f'fps={fps} must be a positive finite number, or None for the file\'s own.')


def check_size_or_budget(num_frames: int, height: int | None, width: int | None,
                         max_tokens: int | None, patch_size, fps: float | None) -> None:
  """Raises one clear error unless a source is given one clip size (height and width) or a
  token budget for each clip's own aspect ratio (max_tokens and the patch_size whose pt divides
  num_frames, at least one patch per frame), and a clip size or fps it can produce."""
  if (max_tokens is None) == (height is None or width is None):
    raise ValueError(f'height={height}, width={width}, max_tokens={max_tokens}: pass height '
                     'and width (one size for every clip) or max_tokens and patch_size (each '
                     "clip's own aspect ratio), not both.")
  if max_tokens is None:
    check_target(num_frames, height, width, fps)
    return
  if patch_size is None or num_frames % patch_size[0]:
    raise ValueError(f'max_tokens needs the patch_size whose pt divides num_frames='
                     f'{num_frames}, got patch_size={patch_size}: e.g. (2, 8, 8) for 8 frames.')
  check_target(num_frames, patch_size[1], patch_size[2], fps)
  native_size((1, 1), num_frames=num_frames, patch_size=patch_size,
              max_tokens=max_tokens)  # fails here for a budget below one patch


def native_size(source_hw, *, num_frames: int, patch_size, max_tokens: int) -> tuple[int, int]:
  """(height, width) in whole patches at about the source's aspect ratio, the largest whose
  `num_frames`-frame clip makes at most `max_tokens` tokens, never above the source's own size
  (but at least one patch). At 64 tokens of 8 frames and patch 2x8x8: 16:9 -> 24x40, 1:1 ->
  32x32, 9:16 -> 40x24, as the world's size table has them."""
  pt, ph, pw = patch_size
  per_frame = max_tokens // -(-num_frames // pt)  # spatial patches in each token frame
  if per_frame < 1:
    raise ValueError(f'max_tokens {max_tokens} is below one patch per frame of a {num_frames}-'
                     f'frame clip ({-(-num_frames // pt)} tokens): raise max_tokens.')
  source_h, source_w = source_hw
  aspect = source_w / source_h
  rows = max(1, min(source_h // ph, math.floor(math.sqrt(per_frame / aspect))))
  cols = max(1, min(source_w // pw, per_frame // rows, round(rows * aspect)))
  return rows * ph, cols * pw


def sample_indices(num_available: int, *, num_frames: int, source_fps: float | None = None,
                   fps: float | None = None, seed: int = 0, index: int = 0) -> np.ndarray:
  """Source frame indices [num_frames] of clip `index`: resampled to `fps`, start from the seed.

  `fps` or `source_fps` None keeps the source's own rate (one source frame per clip frame). The
  start is uniform over the positions where the whole clip fits, 0 when it does not fit.
  """
  if num_available < 1:
    raise ValueError(f'num_available={num_available}: a source needs at least one frame.')
  step = 1.0 if fps is None or source_fps is None else source_fps / fps
  offsets = np.floor(np.arange(num_frames) * step + _EPSILON).astype(np.int64)
  room = max(0, num_available - 1 - int(offsets[-1]))
  start = int(np.random.default_rng((seed, index)).integers(room + 1))
  return np.minimum(start + offsets, num_available - 1)


def resize_crop(frames_thwc: np.ndarray, height: int, width: int) -> np.ndarray:
  """Scales uint8 frames [T, H, W, 3] so the short side covers the target, crops the centre.

  The aspect ratio is kept (no distortion); Pillow's bicubic filter widens with the downscale
  factor, so shrinking is antialiased. Sizes already equal to the target are returned as is.
  """
  _, source_h, source_w, _ = frames_thwc.shape
  if (source_h, source_w) == (height, width):
    return frames_thwc
  scale = min(source_w / width, source_h / height)  # source pixels per target pixel
  box_w, box_h = width * scale, height * scale
  box = ((source_w - box_w) / 2, (source_h - box_h) / 2,
         (source_w + box_w) / 2, (source_h + box_h) / 2)
  return np.stack([np.asarray(Image.fromarray(frame).resize(
      (width, height), Image.Resampling.BICUBIC, box=box)) for frame in frames_thwc])


def sample_clip(frames_thwc: np.ndarray, *, num_frames: int, height: int, width: int,
                source_fps: float | None = None, fps: float | None = None, seed: int = 0,
                index: int = 0) -> np.ndarray:
  """A clip uint8 [num_frames, height, width, 3] cut from decoded frames (sample, then resize)."""
  frames_thwc = np.asarray(frames_thwc)
  if frames_thwc.ndim == 3:
    frames_thwc = frames_thwc[None]  # An image is a 1-frame video.
  if frames_thwc.dtype != np.uint8 or frames_thwc.ndim != 4 or frames_thwc.shape[-1] != 3:
    raise ValueError(f'frames must be uint8 RGB [T, H, W, 3] or [H, W, 3], got '
                     f'{frames_thwc.dtype} {frames_thwc.shape}; store videos as uint8 RGB.')
  indices = sample_indices(len(frames_thwc), num_frames=num_frames, source_fps=source_fps,
                           fps=fps, seed=seed, index=index)
  return resize_crop(frames_thwc[indices], height, width)
