"""Video and image files: read, write (atomically), safe names, notebook tags.

Frames are uint8 RGB arrays: a video is `frames_thwc` [T, H, W, 3], an image `frame_hwc`
[H, W, 3]. mp4 (H.264) and webm (VP9) go through PyAV, gif and png/jpg through Pillow.
"""
import base64
import contextlib
import fractions
import io
import json
import math
import os
import pathlib
import re
import secrets
import tempfile
import unicodedata

import av
from av.video.reformatter import ColorPrimaries, ColorRange, ColorTrc, Colorspace
import numpy as np
from PIL import Image, ImageSequence

_CODECS = {'.mp4': ('mp4', 'libx264', {'crf': '18', 'preset': 'medium'}),
           '.webm': ('webm', 'libvpx-vp9', {'crf': '30', 'b:v': '0', 'deadline': 'good'})}
_PYAV_READS = ('.mp4', '.webm', '.mov', '.mkv')
_PILLOW_READS = ('.gif', '.png', '.jpg', '.jpeg')
_IMAGE_WRITES = {'.png': 'PNG', '.jpg': 'JPEG', '.jpeg': 'JPEG'}
_GIF_MAX_FPS = 50.0  # GIF delays are whole centiseconds; browsers slow 10 ms delays to 100 ms.
_RESERVED_NAMES = {'CON', 'PRN', 'AUX', 'NUL',
                   *(f'{port}{i}' for port in ('COM', 'LPT') for i in range(1, 10))}


def to_uint8(frames_float, value_range=(-1.0, 1.0)) -> np.ndarray:
  """Maps floats in `value_range` to uint8 [0, 255]: clips, then rounds to nearest."""
  low, high = value_range
  if not high > low:
    raise ValueError(f'value_range={value_range} must be (low, high) with high > low, '
                     'e.g. (-1.0, 1.0).')
  x = np.asarray(frames_float, dtype=np.float32)
  if not np.isfinite(x).all():
    raise ValueError('Frames contain NaN or inf; check the model output before converting.')
  return np.rint(np.clip((x - low) / (high - low), 0.0, 1.0) * 255.0).astype(np.uint8)


def from_uint8(frames_uint8) -> np.ndarray:
  """uint8 [0, 255] -> float32 in [-1, 1], the range models train on (to_uint8's inverse)."""
  return np.asarray(frames_uint8).astype(np.float32) * (2.0 / 255.0) - 1.0


def write_video(path, frames_thwc_uint8, fps: float = 8.0) -> pathlib.Path:
  """Writes a clip by suffix: .mp4 (H.264, crf 18), .webm (VP9), .gif (loops), .png (1 frame).

  mp4/webm store 4:2:0 colour, which needs even sizes: an odd height or width is padded by one
  row/column repeating the edge pixels, so a 17x30 clip reads back as 18x30. A gif with at most
  256 colours in the whole clip is lossless; more colours share one 256-colour palette.
  """
  path = pathlib.Path(path)
  frames = check_video(frames_thwc_uint8)
  suffix = path.suffix.lower()
  if not (fps > 0 and math.isfinite(fps)):
    raise ValueError(f'fps={fps} must be a positive finite number, e.g. 8.0.')
  if suffix == '.png':
    if len(frames) != 1:
      raise ValueError(f'{path} is a png, which holds one frame but got {len(frames)}; '
                       'write .mp4 or .gif, or call write_image once per frame.')
    return write_image(path, frames[0])
  if suffix == '.gif' and fps > _GIF_MAX_FPS:
    raise ValueError(f'fps={fps} is too fast for {path}: GIFs play at most {_GIF_MAX_FPS:g} fps; '
                     'write .mp4 or lower the fps.')
  if suffix not in _CODECS and suffix != '.gif':
    raise ValueError(f'Cannot write video {path}: suffix {suffix!r} is not one of '
                     '.mp4, .webm, .gif, .png; change the suffix.')
  with _atomic_path(path) as tmp:
    _encode(frames, fps, suffix, tmp)
  return path


def write_image(path, frame_hwc_uint8) -> pathlib.Path:
  """Writes one uint8 RGB frame as .png (exact) or .jpg/.jpeg (quality 95)."""
  path = pathlib.Path(path)
  image_format = _IMAGE_WRITES.get(path.suffix.lower())
  if image_format is None:
    raise ValueError(f'Cannot write image {path}: suffix {path.suffix!r} is not one of '
                     f'{", ".join(_IMAGE_WRITES)}; change the suffix.')
  frame = check_video(frame_hwc_uint8, what='frame_hwc_uint8', ndim=3)
  with _atomic_path(path) as tmp:
    Image.fromarray(frame).save(tmp, format=image_format, quality=95)
  return path


def read_video(path) -> np.ndarray:
  """Reads mp4/webm/mov/mkv/gif/png/jpg as uint8 RGB [T, H, W, 3]; stills are one frame.

  Grey and RGBA inputs become RGB (alpha is dropped). GIF writers merge repeated frames into one
  longer frame; those are repeated again here, so a gif written by write_video reads back with
  its frame count, unless all its frames were identical (then it is one frame).
  """
  path = _check_readable(path)
  if path.suffix.lower() in _PYAV_READS:
    frames, _ = _read_pyav(path)
  else:
    frames, durations_ms = _read_pillow(path)
    if len(frames) > 1:
      base = min(durations_ms)
      frames = [f for f, d in zip(frames, durations_ms) for _ in range(round(d / base))]
  return stack_frames(frames, path)


def stack_frames(frames, path) -> np.ndarray:
  """The decoded frames of `path` as one [T, H, W, 3] array, or one sentence when their sizes
  differ (a stream whose resolution changes midway)."""
  sizes = sorted({frame.shape[:2] for frame in frames})
  if len(sizes) > 1:
    listed = ', '.join(f'{h}x{w}' for h, w in sizes)
    raise ValueError(f'{path} has frames of {len(sizes)} sizes ({listed}, HxW); re-export it at '
                     'one size, e.g. ffmpeg -i IN -vf scale=W:H OUT.mp4.')
  return np.stack(frames)


def video_fps(path) -> float:
  """Frames per second of a video file (a gif's from its shortest frame delay)."""
  path = _check_readable(path)
  if path.suffix.lower() in _IMAGE_WRITES:
    raise ValueError(f'{path} is a still image and has no frame rate; use a video file.')
  if path.suffix.lower() in _PYAV_READS:
    return _read_pyav(path, decode=False)[1]
  return 1000.0 / min(_read_pillow(path)[1])


def write_json(path, data) -> pathlib.Path:
  """Writes `data` as indented JSON, atomically (sidecars beside videos, reports)."""
  return write_text(path, json.dumps(data, indent=1))


def write_text(path, text: str) -> pathlib.Path:
  """Writes `text` atomically: a crash mid-write leaves the old file whole."""
  path = pathlib.Path(path)
  with _atomic_path(path) as tmp:
    tmp.write_text(text)
  return path


def check_writable_folder(folder, example: str = 'outputs/samples') -> pathlib.Path:
  """Creates `folder` and proves it writable, or raises one sentence naming it; call it before
  the work whose results go there."""
  out = pathlib.Path(folder)
  try:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=out):
      pass
  except OSError as e:
    raise OSError(f'cannot write to output folder {str(out)!r} ({e.strerror}): '
                  f'choose a folder you can write, e.g. --out={example}') from None
  return out


def safe_filename(text: str, max_length: int = 80) -> str:
  """A file name from free text (e.g. a prompt): ASCII letters, digits, '-' and '_' only.

  Accents fold to ASCII, everything else (separators, dots, spaces, control characters, emoji)
  becomes one '_'. Deterministic, at most `max_length` characters, 'untitled' when empty.
  """
  if max_length < 1:
    raise ValueError(f'max_length={max_length} must be at least 1.')
  ascii_text = unicodedata.normalize('NFKD', str(text)).encode('ascii', 'ignore').decode()
  name = re.sub(r'[^A-Za-z0-9-]+', '_', ascii_text).strip('_-')[:max_length].strip('_-')
  if name.upper() in _RESERVED_NAMES:  # Names Windows refuses, whatever the suffix.
    name = f'_{name}'[:max_length]
  return name or 'untitled'[:max_length]


def html_video(path_or_frames, fps=8.0) -> str:
  """An HTML <video> tag (autoplay, loop) holding the clip as base64 mp4 with a gif fallback.

  A path is read from disk (an mp4 is embedded as is, other files at their own fps); an array
  is uint8 [T, H, W, 3] at `fps`. Small clips display enlarged with crisp pixels.
  """
  if isinstance(path_or_frames, (str, os.PathLike)):
    path = _check_readable(path_or_frames)
    frames = read_video(path)
    fps = fps if path.suffix.lower() in _IMAGE_WRITES else video_fps(path)
    mp4 = path.read_bytes() if path.suffix.lower() == '.mp4' else _encode_bytes(frames, fps, '.mp4')
  else:
    frames = check_video(path_or_frames, what='path_or_frames')
    mp4 = _encode_bytes(frames, fps, '.mp4')
  gif = _encode_bytes(frames, min(fps, _GIF_MAX_FPS), '.gif')
  width = frames.shape[2] * default_scale([frames])
  return (f'<video width="{width}" autoplay loop muted playsinline controls '
          'style="image-rendering: pixelated">'
          f'<source src="data:video/mp4;base64,{base64.b64encode(mp4).decode()}" '
          'type="video/mp4">'
          f'<img width="{width}" src="data:image/gif;base64,{base64.b64encode(gif).decode()}">'
          '</video>')


def check_video(frames, what='frames_thwc_uint8', ndim=4) -> np.ndarray:
  frames = np.asarray(frames)
  if frames.dtype != np.uint8 or frames.ndim != ndim or frames.shape[-1] != 3 or not frames.size:
    shape = '[T, H, W, 3]' if ndim == 4 else '[H, W, 3]'
    raise ValueError(f'{what} must be non-empty uint8 RGB of shape {shape}, got {frames.dtype} '
                     f'{frames.shape}; convert floats with to_uint8.')
  return frames


def _check_readable(path) -> pathlib.Path:
  path = pathlib.Path(path)
  if path.suffix.lower() not in _PYAV_READS + _PILLOW_READS:
    raise ValueError(f'Cannot read {path}: suffix {path.suffix!r} is not one of '
                     f'{", ".join(_PYAV_READS + _PILLOW_READS)}; convert the file first.')
  if not path.is_file():
    raise FileNotFoundError(f'No media file at {path}; check the path.')
  return path


def default_scale(clips, target_side=128) -> int:
  """The integer upscale that brings the largest clip's long side to at least `target_side`."""
  return max(1, math.ceil(target_side / max(max(c.shape[1:3]) for c in clips)))


@contextlib.contextmanager
def _atomic_path(path: pathlib.Path):
  """Yields a temporary path beside `path`, renamed onto it only when the block succeeds."""
  if path.is_dir():
    raise IsADirectoryError(f'Cannot write {path}: it is a folder; pass a file path.')
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f'.{path.name}.{secrets.token_hex(4)}.tmp'
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # Honours the umask.
  except OSError as e:
    raise OSError(f'Cannot write {path}: its folder {path.parent} cannot be created or written '
                  f'({e.strerror or e}); choose a writable output folder.') from None
  try:
    yield tmp
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise


def _encode(frames, fps, suffix, file):
  """Encodes validated frames to a path or binary file object in the format of `suffix`."""
  if suffix == '.gif':
    _encode_gif(frames, fps, file)
    return
  try:
    _encode_pyav(frames, fps, suffix, file)
  except av.FFmpegError as e:
    raise ValueError(f'Cannot encode {frames.shape[1]}x{frames.shape[2]} frames at {fps:g} fps '
                     f'as {suffix} ({e.strerror or e}); use a smaller frame size or a common '
                     'fps.') from None


def _encode_pyav(frames, fps, suffix, file):
  """H.264 or VP9 in 4:2:0, which needs even sizes: pads odd ones by repeating the edge."""
  container_format, codec, options = _CODECS[suffix]
  frames = np.pad(frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0)),
                  mode='edge')
  rate = fractions.Fraction(float(fps)).limit_denominator(1001)  # 29.97 -> 30000/1001.
  with av.open(file, mode='w', format=container_format) as container:
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], 'yuv420p'
    stream.options = options
    # Say how the pixels were converted (BT.601 matrix, video range, sRGB colours) so players
    # do not guess: many assume BT.709 for large frames and would shift the colours.
    context = stream.codec_context
    context.colorspace, context.color_range = Colorspace.ITU601, ColorRange.MPEG
    context.color_primaries, context.color_trc = ColorPrimaries.BT709, ColorTrc.IEC61966_2_1
    for frame in frames:
      container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')))
    container.mux(stream.encode())


def _encode_gif(frames, fps, file):
  """One palette for the whole clip: exact when it has <= 256 colours, median cut otherwise."""
  keys = np.dot(frames.astype(np.uint32), np.array([1 << 16, 1 << 8, 1], np.uint32))
  colours, index = np.unique(keys, return_inverse=True)
  if len(colours) <= 256:
    palette = np.stack([colours >> 16, (colours >> 8) & 255, colours & 255], -1).astype(np.uint8)
    images = [Image.fromarray(i.astype(np.uint8)) for i in index.reshape(keys.shape)]
    for image in images:
      image.putpalette(palette.tobytes())
  else:
    step = max(1, len(frames) // 16)  # Palette from at most ~16 frames, stacked.
    palette_image = Image.fromarray(np.concatenate(frames[::step], axis=0)).quantize(256)
    images = [Image.fromarray(f).quantize(palette=palette_image) for f in frames]
  images[0].save(file, format='GIF', save_all=True, append_images=images[1:], loop=0,
                 duration=1000.0 / fps, optimize=False)


def _encode_bytes(frames, fps, suffix) -> bytes:
  buffer = io.BytesIO()
  _encode(frames, fps, suffix, buffer)
  return buffer.getvalue()


def _read_pyav(path, decode=True):
  """Returns (frames, fps) of the first video stream; `decode=False` leaves frames empty."""
  try:
    with av.open(str(path)) as container:
      if not container.streams.video:
        raise ValueError(f'{path} has no video stream; pass a video file.')
      stream = container.streams.video[0]
      rate = stream.average_rate or stream.guessed_rate or stream.base_rate
      stream.thread_type = 'AUTO'
      frames = [f.to_ndarray(format='rgb24') for f in container.decode(stream)] if decode else []
  except av.FFmpegError as e:
    raise ValueError(f'Cannot decode {path} ({e.strerror or e}); the file is corrupt or not a '
                     'video, re-export it (e.g. as H.264 mp4).') from None
  if decode and not frames:
    raise ValueError(f'{path} holds no decodable frames; re-export it (e.g. as H.264 mp4).')
  if not rate:
    raise ValueError(f'{path} declares no frame rate; re-export it with a fixed fps.')
  return frames, float(rate)


def _read_pillow(path):
  """Returns (frames, per-frame durations in ms) of a gif or still image."""
  frames, durations = [], []
  try:
    with Image.open(path) as image:
      for frame in ImageSequence.Iterator(image):
        frames.append(np.asarray(frame.convert('RGB')))
        duration = frame.info.get('duration', 0)
        durations.append(duration if duration > 10 else 100)  # Browsers' rule for tiny delays.
  except (OSError, SyntaxError, ValueError) as e:
    reason = getattr(e, 'strerror', None) or e
    raise ValueError(f'Cannot decode {path} ({reason}); the file is corrupt or not an image, '
                     're-export it.') from None
  return frames, durations
