"""A Grain random-access source of clips cut from your own video and image files.

A caption file beside the media lists what to read: JSONL lines {"path": ..., "caption": ...}
or a CSV with columns path, caption; paths are relative to the folder. Unreadable files are
skipped (see FolderSource), so one bad file never stops a training run.
"""
import csv
import io
import json
import os
import pathlib

from absl import logging
import av
import numpy as np

from videogen.core import media
from videogen.core import text_files
from videogen.data import clips

PYAV_SUFFIXES = ('.mp4', '.webm', '.mov', '.mkv')
PILLOW_SUFFIXES = ('.gif', '.png', '.jpg', '.jpeg')
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg')  # one frame each (a GIF may animate)
_SHOWN = 10  # Missing or unsupported paths named in an error before the rest are counted.


class FolderSource:
  """Clips {'video' uint8 [num_frames, height, width, 3], 'caption', 'index', 'path'}.

  Record i is a clip of file i at `fps` (None: the file's own), starting at a position drawn
  from (seed, i), scaled so its short side covers the target and centre-cropped. Files shorter
  than the clip, and images, repeat their last frame (an image becomes a still clip). The target
  is height x width, or, with `max_tokens` and `patch_size` instead (native sizes, for packed
  rows), each file's own aspect ratio at the largest size in whole patches whose clip makes at
  most max_tokens tokens (clips.native_size).

  Files are checked lazily: a file that cannot be decoded (empty, corrupt, no video stream) is
  logged once by name, listed in `skipped`, and record i becomes the next readable record
  (i+1, i+2, ... wrapping), the same one on every read. `skipped` is per process: Grain worker
  processes each keep their own list.

  Cost: mp4/webm/mov/mkv are decoded from the keyframe at or before the clip's first frame up
  to its last frame (at most one keyframe interval plus the clip span; libx264 puts keyframes
  at most 250 frames apart, so short files decode from their start), converting only the kept
  frames to RGB. GIFs and images are decoded whole (GIF frames are deltas of earlier ones).
  Measured on 2 busy CPU cores: 9x64x64 clips from bikes.mp4 (640x272, 250 frames) at 12-28
  clips/s at 8 fps, 21-40 at its own 25 fps; decoding the whole file gives 1.2.

  For training (data/pipeline.py): `num_records` makes the source that long, record j a clip of
  file j % len(files) whose start is drawn from (seed, j), so each pass over the files takes
  other clips of them (None: one record per file, j < len(files), as above). `record(j, bucket)`
  reads record j at a bucket's (num_frames, height, width) in place of the source's size
  (buckets). `single_frame_images` makes a PNG/JPEG a 1-frame clip, not a still clip of
  num_frames, for layouts whose clips may differ in length (packed rows).
  """

  def __init__(self, root, *, num_frames: int, height: int | None = None,
               width: int | None = None, fps: float | None = None, captions='captions.jsonl',
               seed: int = 0, max_tokens: int | None = None, patch_size=None,
               num_records: int | None = None, single_frame_images: bool = False):
    clips.check_size_or_budget(num_frames, height, width, max_tokens, patch_size, fps)
    if num_records is not None and num_records < 1:
      raise ValueError(f'num_records={num_records} must be at least 1, or None for one record '
                       'per file.')
    self.max_tokens, self.patch_size = max_tokens, patch_size
    self.root = pathlib.Path(root)
    self.num_frames, self.height, self.width, self.fps = num_frames, height, width, fps
    self.seed = seed
    self.num_records = num_records
    self.single_frame_images = single_frame_images
    self.paths, self.captions = read_captions(self.root / captions)
    _check_paths(self.root, self.paths, self.root / captions)
    self._skipped: dict[str, str] = {}  # path -> why it could not be decoded

  def __len__(self) -> int:
    return self.num_records or len(self.paths)

  def __getitem__(self, index: int) -> dict:
    return self.record(index)

  def record(self, index: int, bucket=None) -> dict:
    """Record `index`; with a bucket (buckets.Bucket), at its frames, height and width."""
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(f'index={index} is outside this source of {len(self)} records.')
    for offset in range(len(self.paths)):
      i = (index + offset) % len(self.paths)
      path = self.paths[i]
      if path in self._skipped:
        continue
      try:
        video = self._read_clip(self.root / path, i if self.num_records is None else index,
                                bucket)
      except (ValueError, OSError, av.FFmpegError) as e:
        self._skipped[path] = str(e)
        logging.warning('Skipping %s (%d of %d files skipped so far): %s', self.root / path,
                        len(self._skipped), len(self.paths), e)
        continue
      return {'video': video, 'caption': self.captions[i], 'index': i, 'path': path}
    raise ValueError(f'None of the {len(self.paths)} files listed under {self.root} can be '
                     f'decoded ({_listed(self.skipped)}); re-export them, e.g. as H.264 mp4.')

  @property
  def skipped(self) -> tuple[str, ...]:
    """Paths (relative to root) found undecodable so far in this process, sorted."""
    return tuple(sorted(self._skipped))

  def _read_clip(self, path: pathlib.Path, draw: int, bucket=None) -> np.ndarray:
    """Clip number `draw` (its start's draw) of the file, at `bucket`'s size or the source's."""
    num_frames = bucket.num_frames if bucket else self.num_frames
    if self.single_frame_images and path.suffix.lower() in IMAGE_SUFFIXES:
      num_frames = 1
    sample = dict(num_frames=num_frames, fps=self.fps, seed=self.seed, index=draw)
    if path.suffix.lower() in PYAV_SUFFIXES:
      frames = read_pyav_clip(path, **sample)
    else:
      frames = media.read_video(path)
      source_fps = media.video_fps(path) if len(frames) > 1 and self.fps else None
      frames = frames[clips.sample_indices(len(frames), source_fps=source_fps, **sample)]
    if bucket:
      size = (bucket.height, bucket.width)
    elif self.max_tokens is None:
      size = (self.height, self.width)
    else:  # the video clips' size, so an image as 1 frame is not shown larger
      size = clips.native_size(frames.shape[1:3], num_frames=self.num_frames,
                               patch_size=self.patch_size, max_tokens=self.max_tokens)
    return clips.resize_crop(frames, *size)

  def __repr__(self) -> str:
    size = (f'height={self.height}, width={self.width}' if self.max_tokens is None else
            f'max_tokens={self.max_tokens}, patch_size={tuple(self.patch_size)}')
    return (f'FolderSource({str(self.root)!r}, {len(self.paths)} files, {len(self)} records, '
            f'num_frames={self.num_frames}, '
            f'{size}, fps={self.fps}, seed={self.seed})')


def read_captions(caption_file) -> tuple[list[str], list[str]]:
  """(paths, captions) from a .jsonl ({"path", "caption"} per line) or .csv (path, caption)."""
  caption_file = pathlib.Path(caption_file)
  if not caption_file.is_file():
    raise FileNotFoundError(f'No caption file at {caption_file}; write one beside the media '
                            '(captions.jsonl lines {"path": ..., "caption": ...} or a CSV with '
                            'columns path, caption) or pass captions=<its name>.')
  suffix = caption_file.suffix.lower()
  if suffix not in ('.csv', '.jsonl'):
    raise ValueError(f'Caption file {caption_file} must end in .jsonl or .csv; rename it.')
  text = text_files.read_utf8(caption_file, 'caption file')
  if suffix == '.csv':
    rows = list(csv.DictReader(io.StringIO(text, newline='')))
  else:
    rows = [_json_row(line, n, caption_file) for n, line in enumerate(text.splitlines(), 1)
            if line.strip()]
  if not rows:
    raise ValueError(f'{caption_file} lists no files; add a row per video or image.')
  bad = [n for n, row in enumerate(rows, 1) if not row.get('path') or row.get('caption') is None]
  if bad:
    raise ValueError(f'{caption_file} rows {_listed(map(str, bad))} lack a path or a caption; '
                     'give every row both (an empty caption is "").')
  return [str(row['path']) for row in rows], [str(row['caption']) for row in rows]


def read_pyav_clip(path, *, num_frames: int, fps: float | None, seed: int,
                   index: int) -> np.ndarray:
  """The frames uint8 [num_frames, H, W, 3] of clip `index` of a video, seeking to its start.

  Frames are identified by timestamp (constant frame rate assumed). If seeking lands after the
  clip's start, as in some broken files, the file is decoded again from its first frame.
  """
  with av.open(str(path)) as container:
    if not container.streams.video:
      raise ValueError(f'{path} has no video stream.')
    stream = container.streams.video[0]
    stream.thread_type = 'AUTO'
    rate = float(stream.average_rate or stream.guessed_rate or 0)
    if not rate:
      raise ValueError(f'{path} declares no frame rate.')
    wanted = clips.sample_indices(_frame_count(container, stream, rate), num_frames=num_frames,
                                  source_fps=rate, fps=fps, seed=seed, index=index)
    frames = _decode(container, stream, rate, wanted, seek=bool(wanted[0] > 0))
  if frames is None:
    with av.open(str(path)) as container:
      frames = _decode(container, container.streams.video[0], rate, wanted, seek=False)
  if frames is None:
    raise ValueError(f'{path} holds no decodable frames.')
  return media.stack_frames(frames, path)


def _frame_count(container, stream, rate: float) -> int:
  """Frames in the stream: as declared (mp4), else from the duration (webm declares none)."""
  if stream.frames:
    return stream.frames
  if stream.duration:
    return max(1, round(float(stream.duration * stream.time_base) * rate))
  return max(1, round((container.duration or 0) / av.time_base * rate))


def _decode(container, stream, rate: float, wanted: np.ndarray, seek: bool):
  """Frames (a list) at the `wanted` (sorted) indices, each the latest decoded at or before it.

  Returns None when nothing was decoded, or when a seek overshot the first wanted frame.
  """
  first, last = int(wanted[0]), int(wanted[-1])
  origin = stream.start_time or 0
  if seek:
    container.seek(origin + int(first / rate / stream.time_base), stream=stream)
  kept, position, before = {}, -1, None  # before: the last frame preceding `first`
  for frame in container.decode(stream):
    position = (round(float((frame.pts - origin) * stream.time_base) * rate)
                if frame.pts is not None else position + 1)
    if seek and not kept and before is None and position > first:
      return None
    if position > last:
      break
    if position < first:
      before = frame
    else:
      kept[position] = frame.to_ndarray(format='rgb24')
  if before is not None and first not in kept:
    kept[first] = before.to_ndarray(format='rgb24')
  if not kept:
    return None
  positions = np.array(sorted(kept))
  chosen = positions[np.maximum(np.searchsorted(positions, wanted, side='right') - 1, 0)]
  return [kept[p] for p in chosen]


def _check_paths(root: pathlib.Path, paths: list[str], caption_file: pathlib.Path) -> None:
  """One error naming every listed path that leaves the folder, is missing or is of a type no
  reader handles. Paths are relative and stay inside root (a symlink inside it may point
  anywhere), so a caption file cannot make a run read files it was not given."""
  outside = [p for p in paths if os.path.isabs(p) or
             os.path.normpath(p).split(os.sep)[0] == os.pardir]
  if outside:
    raise ValueError(f'{caption_file} lists paths outside {root} ({_listed(outside)}); move those '
                     f'files into {root} and list them relative to it.')
  unsupported = [p for p in paths if pathlib.Path(p).suffix.lower() not in
                 PYAV_SUFFIXES + PILLOW_SUFFIXES]
  if unsupported:
    raise ValueError(f'{caption_file} lists files of unsupported types ({_listed(unsupported)}); '
                     f'convert them to one of {", ".join(PYAV_SUFFIXES + PILLOW_SUFFIXES)}.')
  missing = [p for p in paths if not (root / p).is_file()]
  if missing:
    raise FileNotFoundError(f'{caption_file} lists {len(missing)} paths that are not files under '
                            f'{root} ({_listed(missing)}); fix the paths (relative to {root}) or '
                            'remove those rows.')


def _listed(names) -> str:
  """Up to _SHOWN names, then how many more."""
  names = list(names)
  more = f' and {len(names) - _SHOWN} more' if len(names) > _SHOWN else ''
  return ', '.join(names[:_SHOWN]) + more


def _json_row(line: str, number: int, caption_file: pathlib.Path) -> dict:
  try:
    row = json.loads(line)
  except json.JSONDecodeError as e:
    raise ValueError(f'{caption_file} line {number} is not JSON ({e.msg}); write one object '
                     'per line, e.g. {"path": "a.mp4", "caption": "..."}.') from None
  return row if isinstance(row, dict) else {}
