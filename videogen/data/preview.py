"""Writes rendered world clips to disk: mp4 + gif per clip, a JSON sidecar, a captioned grid."""
import os
import pathlib

import tqdm

from videogen.core import grids
from videogen.core import media
from videogen.data import world
from videogen.data import world_render


def check_writable(out_dir: str | os.PathLike) -> pathlib.Path:
  """Creates `out_dir` and proves it writable, or raises one sentence naming it."""
  return media.check_writable_folder(out_dir, example='outputs/world')


def render_clips(options: world.WorldOptions, out_dir, *, seed: int, num_clips: int,
                 split: str = 'train', formats=('mp4', 'gif')) -> list[pathlib.Path]:
  """Renders clips 0..num_clips-1 of (seed, split) and writes them with sidecars and a grid.

  Returns the written paths. Each clip `clip_00003.mp4` has `clip_00003.json` holding its
  caption, scene spec and per-frame ground truth; `grid.mp4`/`grid.png` show all clips captioned.
  """
  if num_clips < 1:
    raise ValueError(f'num_clips {num_clips} must be at least 1.')
  out = check_writable(out_dir)
  written, videos, captions = [], [], []
  for index in tqdm.trange(num_clips, desc='rendering', unit='clip'):
    scene = world.sample_scene(options, seed, index, split)
    frames, truth = world_render.render(scene, options.height, options.width, options.num_frames,
                                 options.fps)
    text = world.clip_caption(scene, seed, index)
    name = f'clip_{index:05d}'
    for fmt in formats:
      written.append(media.write_video(out / f'{name}.{fmt}', frames, fps=options.fps))
    written.append(media.write_json(out / f'{name}.json', {
        'caption': text, 'seed': seed, 'index': index, 'split': split, 'truth': truth}))
    videos.append(frames)
    captions.append(text)
  written += grids.write_grid(out / 'grid', videos, captions, fps=options.fps)
  return written
