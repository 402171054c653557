"""Tests for videogen.core.media: file round trips, errors, atomic writes, grids and names."""
import base64
import os

import numpy as np
from PIL import Image
import pytest

from videogen.core import grids
from videogen.core import media


def _smooth_clip(t, h, w):
  """A moving colour gradient, uint8 [t, h, w, 3]: what a video codec handles well."""
  tt, yy, xx = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing='ij')
  rgb = [128 + 100 * np.sin((xx + 2 * tt) / 9), 128 + 100 * np.cos((yy - tt) / 11),
         128 + 60 * np.sin((xx + yy + tt) / 13)]
  return np.stack(rgb, -1).astype(np.uint8)


def _few_colour_clip(t=6, h=20, w=24):
  """At most 27 colours and a repeated frame in the middle (GIF writers merge those)."""
  rng = np.random.default_rng(0)
  clip = (rng.integers(0, 3, (t, h, w, 3)) * 127).astype(np.uint8)
  clip[3] = clip[2]
  return clip


def _listing(folder):
  return sorted(p.name for p in folder.iterdir())


def test_to_uint8_maps_clips_and_rejects_nan():
  x = np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0])
  np.testing.assert_array_equal(media.to_uint8(x), [0, 0, 128, 191, 255, 255])
  np.testing.assert_array_equal(media.to_uint8(x, value_range=(0.0, 1.0)),
                                [0, 0, 0, 128, 255, 255])
  with pytest.raises(ValueError, match='NaN'):
    media.to_uint8(np.array([0.0, np.nan]))
  with pytest.raises(ValueError, match='high > low'):
    media.to_uint8(x, value_range=(1.0, 1.0))


@pytest.mark.parametrize('h, w', [(64, 64), (17, 30)])
def test_mp4_round_trip_is_close_and_pads_odd_sizes_to_even(tmp_path, h, w):
  clip = _smooth_clip(17, h, w)
  path = media.write_video(tmp_path / 'sub' / 'clip.mp4', clip, fps=12.5)
  back = media.read_video(path)
  assert back.shape == (17, h + h % 2, w + w % 2, 3) and back.dtype == np.uint8
  assert np.abs(back[:, :h, :w].astype(int) - clip).mean() < 4
  assert media.video_fps(path) == 12.5
  assert _listing(path.parent) == ['clip.mp4']


def test_one_frame_mp4_and_webm(tmp_path):
  clip = _smooth_clip(1, 32, 32)
  path = media.write_video(tmp_path / 'one.mp4', clip)
  assert media.read_video(path).shape == (1, 32, 32, 3)
  assert media.video_fps(path) == 8.0
  umask = os.umask(0o022)
  os.umask(umask)
  assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # Not a private temporary file's 0o600.
  clip = _smooth_clip(5, 32, 32)
  path = media.write_video(tmp_path / 'clip.webm', clip, fps=30000 / 1001)
  back = media.read_video(path)
  assert back.shape == clip.shape and np.abs(back.astype(int) - clip).mean() < 6
  assert media.video_fps(path) == pytest.approx(29.97, abs=1e-3)


def test_gif_round_trip_is_lossless_with_few_colours(tmp_path):
  clip = _few_colour_clip()
  path = media.write_video(tmp_path / 'clip.gif', clip, fps=8)
  np.testing.assert_array_equal(media.read_video(path), clip)
  assert media.video_fps(path) == pytest.approx(8, rel=0.05)  # Delays are whole centiseconds.
  with Image.open(path) as image:
    assert image.info['loop'] == 0  # Loops forever.


def test_gif_with_many_colours_is_close(tmp_path):
  clip = _smooth_clip(4, 32, 32)
  back = media.read_video(media.write_video(tmp_path / 'clip.gif', clip))
  assert back.shape == clip.shape and np.abs(back.astype(int) - clip).mean() < 15


def test_png_round_trip_is_exact_and_holds_one_frame(tmp_path):
  clip = _smooth_clip(1, 9, 13)
  np.testing.assert_array_equal(media.read_video(media.write_video(tmp_path / 'a.png', clip)),
                                clip)
  np.testing.assert_array_equal(media.read_video(media.write_image(tmp_path / 'b.png', clip[0])),
                                clip)
  jpg = media.read_video(media.write_image(tmp_path / 'c.jpg', clip[0]))
  assert jpg.shape == clip.shape and np.abs(jpg.astype(int) - clip).mean() < 8
  with pytest.raises(ValueError, match='one frame but got 2'):
    media.write_video(tmp_path / 'two.png', _smooth_clip(2, 9, 13))
  with pytest.raises(ValueError, match='still image'):
    media.video_fps(tmp_path / 'a.png')


def test_grey_and_rgba_images_read_as_rgb(tmp_path):
  grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
  Image.fromarray(grey).save(tmp_path / 'grey.png')
  np.testing.assert_array_equal(media.read_video(tmp_path / 'grey.png')[0],
                                np.repeat(grey[..., None], 3, -1))
  rgba = np.concatenate([_smooth_clip(1, 3, 4)[0], np.full((3, 4, 1), 7, np.uint8)], -1)
  Image.fromarray(rgba).save(tmp_path / 'rgba.png')
  np.testing.assert_array_equal(media.read_video(tmp_path / 'rgba.png')[0], rgba[..., :3])


def test_bad_frames_suffix_and_fps_raise_clear_errors(tmp_path):
  with pytest.raises(ValueError, match='to_uint8'):
    media.write_video(tmp_path / 'a.mp4', np.zeros((2, 8, 8, 3), np.float32))
  with pytest.raises(ValueError, match=r'\[T, H, W, 3\]'):
    media.write_video(tmp_path / 'a.mp4', np.zeros((8, 8, 3), np.uint8))
  with pytest.raises(ValueError, match="'.avi' is not one of"):
    media.write_video(tmp_path / 'a.avi', np.zeros((2, 8, 8, 3), np.uint8))
  with pytest.raises(ValueError, match='fps=0'):
    media.write_video(tmp_path / 'a.mp4', np.zeros((2, 8, 8, 3), np.uint8), fps=0)
  with pytest.raises(ValueError, match='at most 50 fps'):
    media.write_video(tmp_path / 'a.gif', np.zeros((2, 8, 8, 3), np.uint8), fps=60)
  assert _listing(tmp_path) == []


def test_corrupt_missing_and_unknown_files_raise_clear_errors(tmp_path):
  for name in ('noise.mp4', 'noise.gif', 'noise.png'):
    (tmp_path / name).write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(ValueError, match=f'Cannot decode .*{name}.*corrupt'):
      media.read_video(tmp_path / name)
  (tmp_path / 'empty.mp4').touch()
  with pytest.raises(ValueError, match='empty.mp4.*corrupt'):
    media.video_fps(tmp_path / 'empty.mp4')
  with pytest.raises(FileNotFoundError, match='missing.mp4; check the path'):
    media.read_video(tmp_path / 'missing.mp4')
  with pytest.raises(ValueError, match="'.txt' is not one of"):
    media.read_video(tmp_path / 'notes.txt')


def test_failed_writes_leave_no_file_and_no_temp_file(tmp_path):
  clip = np.zeros((2, 8, 8, 3), np.uint8)
  (tmp_path / 'file.txt').write_text('a file, not a folder')
  with pytest.raises(OSError, match='file.txt cannot be created or written.*writable'):
    media.write_video(tmp_path / 'file.txt' / 'out.mp4', clip)
  (tmp_path / 'folder.mp4').mkdir()
  with pytest.raises(IsADirectoryError, match='folder.mp4: it is a folder'):
    media.write_video(tmp_path / 'folder.mp4', clip)
  # The encoder refuses this size after the temporary file exists: it must be removed.
  with pytest.raises(ValueError, match='Cannot encode 2x40000 frames'):
    media.write_video(tmp_path / 'wide.mp4', np.zeros((1, 2, 40000, 3), np.uint8))
  assert _listing(tmp_path) == ['file.txt', 'folder.mp4']


def _upscale(clip, scale):
  return clip.repeat(scale, 1).repeat(scale, 2)


def test_caption_grid_layout_holds_last_frames_and_draws_captions():
  clips = [_smooth_clip(5, 32, 32), _smooth_clip(3, 16, 24), _smooth_clip(1, 32, 32)]
  captions = ['a long caption that needs wrapping over more than one line', 'short 🎬', '']
  grid = grids.caption_grid(clips, captions, pad=4)
  cell = 128  # Default scale 4 brings the long side 32 to 128 px; 2 columns, 2 rows.
  assert grid.dtype == np.uint8 and grid.shape[0] == 5 and grid.shape[2] == 2 * cell + 3 * 4
  caption_h = (grid.shape[1] - 3 * 4) // 2 - cell
  assert caption_h > 0
  np.testing.assert_array_equal(grid[:, 4:132, 4:132], _upscale(clips[0], 4))
  y, x = 4 + (cell - 64) // 2, 136 + (cell - 96) // 2  # The smaller clip is centred.
  np.testing.assert_array_equal(grid[:3, y:y + 64, x:x + 96], _upscale(clips[1], 4))
  np.testing.assert_array_equal(grid[4, y:y + 64, x:x + 96], _upscale(clips[1][2:], 4)[0])
  row2 = 4 + cell + caption_h + 4
  np.testing.assert_array_equal(grid[4, row2:row2 + cell, 4:132], _upscale(clips[2], 4)[0])
  strips = [grid[0, top + cell:top + cell + caption_h, left:left + cell]
            for top, left in ((4, 4), (4, 136), (row2, 4))]
  ink_rows = [(strip > 128).any(axis=(1, 2)).sum() for strip in strips]
  assert ink_rows[0] > 1.5 * ink_rows[1] > 0  # The long caption wraps onto a second line.
  assert ink_rows[2] == 0  # Empty caption, empty strip.
  assert (grid[:, row2:, 136:] == 0).all()  # No fourth clip.
  with pytest.raises(ValueError, match='2 videos and 1 captions'):
    grids.caption_grid(clips[:2], ['one'])


def test_caption_grid_explicit_columns_and_scale():
  clips = [_smooth_clip(2, 8, 10)] * 3
  grid = grids.caption_grid(clips, ['a', 'b', 'c'], columns=3, scale=2, caption_lines=0, pad=1)
  assert grid.shape == (2, 1 + 16 + 1, 1 + 3 * (20 + 1), 3)


def test_write_grid_writes_mp4_and_contact_sheet(tmp_path):
  clips = [_smooth_clip(7, 16, 16), _smooth_clip(3, 16, 16)]
  paths = grids.write_grid(tmp_path / 'grid.mp4', clips, ['first', 'second'], fps=4)
  assert paths == [tmp_path / 'grid.mp4', tmp_path / 'grid.png']
  video = media.read_video(paths[0])
  assert video.shape[0] == 7 and media.video_fps(paths[0]) == 4
  sheet = media.read_video(paths[1])[0]
  # One clip per row, 4 time steps across: much wider than a single tile, taller than one row.
  assert sheet.shape[1] > 4 * 128 and sheet.shape[0] > 2 * 128
  tile = _upscale(clips[0][6:], 8)[0]  # The last time step, scale 8.
  np.testing.assert_array_equal(sheet[4:132, -132:-4], tile)
  assert grids.write_grid(tmp_path / 'a.cat', clips, ['x', 'y'], formats=('gif',)) == [
      tmp_path / 'a.cat.gif']  # Only media suffixes are replaced.
  with pytest.raises(ValueError, match='subset of mp4, webm, gif, png'):
    grids.write_grid(tmp_path / 'x', clips, ['a', 'b'], formats=('avi',))


@pytest.mark.parametrize('text, expected', [
    ('../../etc/passwd', 'etc_passwd'),
    ('a/b\\c', 'a_b_c'),
    ('A cat, jumping!  Über-fast: café?', 'A_cat_jumping_Uber-fast_cafe'),
    ('🐱🐶', 'untitled'),
    ('', 'untitled'),
    ('..', 'untitled'),
    ('line\nbreak\x00\ttab', 'line_break_tab'),
    ('con', '_con'),
    ('x' * 300, 'x' * 80),
])
def test_safe_filename_on_hostile_inputs(text, expected):
  assert media.safe_filename(text) == expected


def test_safe_filename_bounds_length_without_trailing_separators():
  assert media.safe_filename('ab cd ef', max_length=3) == 'ab'
  assert len(media.safe_filename('word ' * 100)) <= 80
  with pytest.raises(ValueError, match='max_length=0'):
    media.safe_filename('x', max_length=0)


def test_html_video_embeds_mp4_and_gif(tmp_path):
  clip = _smooth_clip(3, 16, 16)
  tag = media.html_video(clip, fps=4)
  assert tag.startswith('<video') and tag.endswith('</video>')
  assert 'data:video/mp4;base64,' in tag and 'data:image/gif;base64,' in tag
  assert 'width="128"' in tag  # 16 px shown 8x larger.
  path = media.write_video(tmp_path / 'clip.mp4', clip, fps=4)
  mp4_b64 = media.html_video(path).split('data:video/mp4;base64,')[1].split('"')[0]
  assert base64.b64decode(mp4_b64) == path.read_bytes()  # An mp4 file is embedded as is.
