"""Captioned grids of clips: an animated grid (mp4, webm, gif) and a contact sheet (png).

Clips are uint8 [T, H, W, 3] (videogen.core.media's convention).
"""
import functools
import math
import pathlib

import einops
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from videogen.core import media

_BACKGROUND, _TEXT = 0, 235  # Grid background and caption grey levels.


def caption_grid(videos, captions, *, columns=None, scale=None, caption_lines=3,
                 pad=4) -> np.ndarray:
  """Tiles clips in rows x columns with each caption wrapped under its clip: [T_max, GH, GW, 3].

  Every clip is upscaled by one integer `scale` (nearest; default: the largest clip's long side
  becomes at least 128 px) and centred in a cell of the largest scaled size. Shorter clips hold
  their last frame. Captions longer than `caption_lines` lines end in '...'.
  """
  clips = [media.check_video(v, what=f'videos[{i}]') for i, v in enumerate(videos)]
  if not clips or len(captions) != len(clips):
    raise ValueError(f'Got {len(clips)} videos and {len(captions)} captions; pass one caption '
                     'per video and at least one video.')
  scale = media.default_scale(clips) if scale is None else scale
  columns = math.ceil(math.sqrt(len(clips))) if columns is None else columns
  if scale < 1 or columns < 1 or caption_lines < 0 or pad < 0:
    raise ValueError(f'scale={scale} and columns={columns} must be >= 1, caption_lines='
                     f'{caption_lines} and pad={pad} >= 0.')
  rows = math.ceil(len(clips) / columns)
  tile_h = max(c.shape[1] for c in clips) * scale
  cell_w = max(c.shape[2] for c in clips) * scale
  font = _font(int(np.clip(cell_w // 10, 10, 24)))
  line_h = font.getbbox('Agy')[3] + 2
  cell_h = tile_h + (pad + caption_lines * line_h if caption_lines else 0)
  canvas = Image.new('L', (columns * cell_w + (columns + 1) * pad,
                           rows * cell_h + (rows + 1) * pad), _BACKGROUND)
  draw = ImageDraw.Draw(canvas)
  origins = [(pad + (i // columns) * (cell_h + pad), pad + (i % columns) * (cell_w + pad))
             for i in range(len(clips))]
  for (top, left), caption in zip(origins, captions):
    for k, line in enumerate(_wrap(str(caption), font, cell_w, caption_lines)):
      x = left + (cell_w - font.getlength(line)) / 2
      draw.text((x, top + tile_h + pad + k * line_h), line, font=font, fill=_TEXT)
  t_max = max(len(c) for c in clips)
  grid = np.repeat(np.asarray(canvas)[None, :, :, None], 3, axis=3).repeat(t_max, axis=0)
  for (top, left), clip in zip(origins, clips):
    tile = einops.repeat(clip, 't h w c -> t (h sh) (w sw) c', sh=scale, sw=scale)
    y = top + (tile_h - tile.shape[1]) // 2
    x = left + (cell_w - tile.shape[2]) // 2
    grid[:, y:y + tile.shape[1], x:x + tile.shape[2]] = tile[np.minimum(np.arange(t_max),
                                                                        len(clip) - 1)]
  return grid


def write_grid(path, videos, captions, fps=8.0, formats=('mp4', 'png')) -> list[pathlib.Path]:
  """Writes a captioned grid as `<path>.<format>` for each format; returns the paths.

  'mp4', 'webm' and 'gif' hold the animated grid. 'png' is a contact sheet: each clip becomes a
  filmstrip of (up to) 4 evenly spaced time steps, left to right, captioned once.
  """
  path = pathlib.Path(path)
  if path.suffix.lower() in ('.mp4', '.webm', '.gif', '.png'):
    path = path.with_suffix('')
  unknown = set(formats) - {'mp4', 'webm', 'gif', 'png'}
  if unknown or not formats:
    raise ValueError(f'formats={formats} must be a non-empty subset of mp4, webm, gif, png.')
  clips = [media.check_video(v, what=f'videos[{i}]') for i, v in enumerate(videos)]
  written = []
  for fmt in formats:
    out = path.with_name(f'{path.name}.{fmt}')
    if fmt == 'png':
      media.write_image(out, _contact_sheet(clips, captions))
    else:
      media.write_video(out, caption_grid(clips, captions), fps)
    written.append(out)
  return written


@functools.lru_cache(maxsize=8)
def _font(size: int):
  """Pillow's bundled scalable font (no system fonts needed), else its fixed bitmap font."""
  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # Pillow < 10.1 has no size argument.
    return ImageFont.load_default()


def _wrap(text, font, width, max_lines) -> list[str]:
  """Greedy word wrap to `width` pixels; over-long words break, overflow ends in '...'."""
  lines, line = [], ''
  for word in text.split():
    candidate = f'{line} {word}'.strip()
    if font.getlength(candidate) <= width:
      line = candidate
      continue
    if line:
      lines.append(line)
    while len(word) > 1 and font.getlength(word) > width:
      cut = 1
      while font.getlength(word[:cut + 1]) <= width:
        cut += 1
      lines.append(word[:cut])
      word = word[cut:]
    line = word
  lines += [line] if line else []
  if len(lines) > max_lines and max_lines:
    last = lines[max_lines - 1]
    while last and font.getlength(last + '...') > width:
      last = last[:-1]
    lines = lines[:max_lines - 1] + [last.rstrip() + '...']
  return lines[:max_lines]


def _contact_sheet(clips, captions, steps=4) -> np.ndarray:
  """One image: each clip as a filmstrip of `steps` evenly spaced times (shorter clips hold)."""
  t_max = max(len(c) for c in clips)
  times = np.unique(np.linspace(0, t_max - 1, min(steps, t_max)).round().astype(int))
  scale = media.default_scale(clips)
  gap = math.ceil(8 / scale)  # About 8 px between frames after upscaling.
  strips = []
  for clip in clips:
    held = clip[np.minimum(times, len(clip) - 1)]
    held = np.pad(held, ((0, 0), (0, 0), (0, gap), (0, 0)), constant_values=_BACKGROUND)
    strips.append(einops.rearrange(held, 't h w c -> 1 h (t w) c')[:, :, :-gap])
  columns = max(1, round(math.sqrt(len(clips) / len(times))))
  return caption_grid(strips, captions, columns=columns, scale=scale)[0]
