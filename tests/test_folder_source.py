"""FolderSource on real files written here: shapes, captions, fps, crops, bad files, Grain."""
import json
import logging

import grain
import numpy as np
import pytest

from videogen.core import media
from videogen.data import clips
from videogen.data import folder_source
from videogen.data import footage
from videogen.data import packing

CAPTIONS = {'ramp16.mp4': 'a grey ramp at 16 fps', 'ramp8.gif': 'a grey ramp at 8 fps',
            'stripe.png': 'a white stripe, centred', 'tall.webm': 'a tall noisy clip',
            'corrupt.mp4': 'random bytes', 'empty.mp4': 'nothing at all'}
BAD = ('corrupt.mp4', 'empty.mp4')


def _ramp(num_frames, height, width, first, step):
  """Frame i is flat grey at first + step * i, so a frame's level tells its index."""
  levels = first + step * np.arange(num_frames, dtype=np.uint8)
  return np.broadcast_to(levels[:, None, None, None], (num_frames, height, width, 3)).copy()


def _write_captions(root, rows):
  (root / 'captions.jsonl').write_text(
      ''.join(json.dumps({'path': p, 'caption': c}) + '\n' for p, c in rows))


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  root = tmp_path_factory.mktemp('media')
  media.write_video(root / 'ramp16.mp4', _ramp(20, 32, 48, 10, 10), fps=16)
  media.write_video(root / 'ramp8.gif', _ramp(10, 24, 24, 0, 20), fps=8)
  stripe = np.zeros((40, 120, 3), np.uint8)
  stripe[:, 56:64] = 255  # 8 columns wide, centred on x = 60
  media.write_image(root / 'stripe.png', stripe)
  noise = np.random.default_rng(0).integers(0, 256, (6, 64, 32, 3), dtype=np.uint8)
  media.write_video(root / 'tall.webm', noise, fps=8)
  (root / 'corrupt.mp4').write_bytes(np.random.default_rng(1).bytes(4096))
  (root / 'empty.mp4').write_bytes(b'')
  _write_captions(root, CAPTIONS.items())
  return root


def _source(root, **kwargs):
  return folder_source.FolderSource(root, **{'num_frames': 3, 'height': 16, 'width': 16,
                                             **kwargs})


def _frame_numbers(video, first, step):
  """Which _ramp frame each clip frame is, from its mean grey level."""
  return np.rint((video.astype(np.float32).mean(axis=(1, 2, 3)) - first) / step).astype(int)


def test_records_are_clips_of_the_target_size_with_their_captions(root):
  source = _source(root, fps=8)
  assert len(source) == len(CAPTIONS)
  for index, path in enumerate(CAPTIONS):
    record = source[index]
    assert record['video'].shape == (3, 16, 16, 3) and record['video'].dtype == np.uint8
    if path not in BAD:
      assert (record['path'], record['index']) == (path, index)
      assert record['caption'] == CAPTIONS[path]


def test_corrupt_and_empty_files_are_skipped_once_by_name(root, caplog):
  source = _source(root)
  bad_index = list(CAPTIONS).index('corrupt.mp4')
  with caplog.at_level(logging.WARNING):
    records = [source[bad_index] for _ in range(2)]
  assert records[0]['index'] == records[1]['index'] == 0  # wraps to the next readable file
  np.testing.assert_array_equal(records[0]['video'], source[0]['video'])
  assert source.skipped == BAD
  assert sum('corrupt.mp4' in r.getMessage() for r in caplog.records) == 1


def test_a_16_fps_file_at_8_fps_takes_every_other_frame(root):
  index = list(CAPTIONS).index('ramp16.mp4')
  native = _source(root, num_frames=4, height=32, width=48)[index]['video']
  halved = _source(root, num_frames=4, height=32, width=48, fps=8)[index]['video']
  assert np.diff(_frame_numbers(native, 10, 10)).tolist() == [1, 1, 1]
  assert np.diff(_frame_numbers(halved, 10, 10)).tolist() == [2, 2, 2]


def test_an_8_fps_gif_at_16_fps_shows_each_frame_twice(root):
  video = _source(root, num_frames=6, height=24, width=24, fps=16)[1]['video']
  assert np.diff(_frame_numbers(video, 0, 20)).tolist() == [0, 1, 0, 1, 0]  # each frame shown twice


def test_frame_indices_follow_the_frame_on_screen():
  offsets = clips.sample_indices(1000, num_frames=9, source_fps=25, fps=8, seed=0, index=0)
  assert (offsets - offsets[0]).tolist() == [0, 3, 6, 9, 12, 15, 18, 21, 25]
  short = clips.sample_indices(3, num_frames=5, seed=0, index=0)
  assert short.tolist() == [0, 1, 2, 2, 2]  # past the end, the last frame holds


def test_crop_keeps_the_aspect_and_the_centre(root):
  frame = _source(root, num_frames=1)[2]['video'][0].astype(np.float32)
  profile = frame.mean(axis=(0, 2)) / 255  # column brightness
  centre = (profile * (np.arange(16) + 0.5)).sum() / profile.sum()
  assert abs(centre - 8.0) < 0.1
  # 8 of the 40 source columns the 16 px crop covers: 3.2 px wide; squeezing all 120 into
  # 16 px would give 1.07 px.
  assert abs(profile.sum() - 3.2) < 0.2


def test_images_and_short_files_repeat_their_last_frame(root):
  still = _source(root, num_frames=3)[2]['video']
  assert (still == still[:1]).all()
  gif = _source(root, num_frames=12, height=24, width=24)[1]['video']
  assert _frame_numbers(gif, 0, 20)[-3:].tolist() == [9, 9, 9]


def test_a_tall_webm_is_cropped_at_its_middle(root):
  index = list(CAPTIONS).index('tall.webm')
  clip = _source(root, num_frames=6, height=16, width=32)[index]['video']
  full = media.read_video(root / 'tall.webm')
  np.testing.assert_array_equal(clip, full[:, 24:40])  # 6 frames counted from the duration


def test_same_seed_same_clips_other_seeds_start_elsewhere(root):
  index = list(CAPTIONS).index('ramp16.mp4')
  first = [_frame_numbers(_source(root, seed=s)[index]['video'], 10, 10)[0] for s in range(6)]
  again = [_frame_numbers(_source(root, seed=s)[index]['video'], 10, 10)[0] for s in range(6)]
  assert first == again and len(set(first)) > 1


def test_seeking_decodes_the_frames_a_full_read_gives(tmp_path):
  bikes = footage.write_footage_folder(tmp_path) / 'bikes.mp4'  # 250 frames, 6 keyframes
  full = media.read_video(bikes)
  for index in (0, 5, 11):
    clip = folder_source.read_pyav_clip(bikes, num_frames=9, fps=8, seed=3, index=index)
    wanted = clips.sample_indices(len(full), num_frames=9, source_fps=25, fps=8, seed=3,
                                  index=index)
    np.testing.assert_array_equal(clip, full[wanted])


def test_real_footage_reads_through_the_folder_source(tmp_path):
  root = footage.write_footage_folder(tmp_path)
  source = folder_source.FolderSource(root, num_frames=5, height=36, width=44, fps=10)
  record = source[list(footage.CAPTIONS).index('carphone_pristine.mp4')]
  assert record['video'].shape == (5, 36, 44, 3)
  assert record['video'].std() > 20  # a real scene, not a flat frame
  assert record['caption'] == footage.CAPTIONS['carphone_pristine.mp4']
  assert not source.skipped


def test_missing_paths_raise_one_error_naming_them(tmp_path):
  names = [f'gone_{i:02d}.mp4' for i in range(12)]
  _write_captions(tmp_path, [(n, 'x') for n in names])
  with pytest.raises(FileNotFoundError, match='lists 12 paths') as error:
    _source(tmp_path)
  assert all(n in str(error.value) for n in names[:10]) and 'and 2 more' in str(error.value)
  assert names[11] not in str(error.value)


def test_csv_captions(root, tmp_path):
  (tmp_path / 'stills').mkdir()
  (tmp_path / 'stills' / 'a.png').write_bytes((root / 'stripe.png').read_bytes())
  (tmp_path / 'list.csv').write_text('path,caption\nstills/a.png,"white, centred, still"\n')
  source = _source(tmp_path, captions='list.csv')
  assert source[0]['caption'] == 'white, centred, still'


def test_a_grain_pipeline_batches_it_past_the_bad_files(root):
  batches = list(grain.MapDataset.source(_source(root, fps=8)).batch(2))
  assert [b['video'].shape for b in batches] == [(2, 3, 16, 16, 3)] * 3
  assert list(batches[1]['caption']) == [CAPTIONS['stripe.png'], CAPTIONS['tall.webm']]
  assert list(batches[2]['path']) == ['ramp16.mp4', 'ramp16.mp4']  # in place of the bad two


@pytest.mark.parametrize('source_hw, want', [((36, 64), (24, 40)), ((64, 64), (32, 32)),
                                             ((64, 36), (40, 24)), ((8, 200), (8, 128)),
                                             ((12, 12), (8, 8))])
def test_native_size_keeps_the_aspect_within_the_token_budget(source_hw, want):
  size = clips.native_size(source_hw, num_frames=8, patch_size=(2, 8, 8), max_tokens=64)
  assert size == want  # the wide strip is capped by the budget, the small file by its own size


def test_native_sizes_keep_each_files_aspect_and_pack_into_rows(root):
  source = _source(root, height=None, width=None, max_tokens=32, patch_size=(1, 8, 8))
  clips_by_path = {r['path']: r['video'] for r in (source[i] for i in range(len(source)))}
  assert clips_by_path['ramp16.mp4'].shape == (3, 16, 24, 3)  # 32x48: 3:2
  assert clips_by_path['tall.webm'].shape == (3, 32, 16, 3)  # 64x32: 1:2, 8 of 10 patches
  assert clips_by_path['stripe.png'].shape == (3, 8, 24, 3)  # 40x120: 1:3
  to_float = lambda r: {'video': r['video'].astype(np.float32) / 127.5 - 1,
                        'caption': r['caption']}
  ds = grain.MapDataset.source(source).map(to_float).to_iter_dataset()
  batch = next(iter(packing.PackedDataset(ds, row_length=32, patch_size=(1, 8, 8),
                                          rows_per_batch=2, buffer_size=8)))
  assert batch['patches'].shape == (2, 32, 192) and 0 < float(batch['fill']) <= 1


@pytest.mark.parametrize('kwargs, match', [
    (dict(max_tokens=32, patch_size=(1, 8, 8)), 'not both'),
    (dict(height=None, width=None), 'pass height and width'),
    (dict(height=None, width=None, max_tokens=32, patch_size=(2, 8, 8)), 'pt divides'),
    (dict(height=None, width=None, max_tokens=2, patch_size=(1, 8, 8)), 'below one patch'),
])
def test_native_size_arguments_are_checked(root, kwargs, match):
  with pytest.raises(ValueError, match=match):
    _source(root, **kwargs)
