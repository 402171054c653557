"""Rendering world clips to disk: files, sidecars, grid, and a clear error for a bad folder."""
import json
import pathlib
import subprocess
import sys

import pytest

from videogen.core import media
from videogen.data import preview
from videogen.data import world
from videogen.data import world_render
from videogen.data import world_source

pytestmark = pytest.mark.integration  # runner subprocesses

REPO = pathlib.Path(__file__).resolve().parents[1]
OPTIONS = world.WorldOptions(height=16, width=24, num_frames=3, fps=6.0)


def test_render_clips_writes_videos_sidecars_and_grid(tmp_path):
  paths = preview.render_clips(OPTIONS, tmp_path, seed=1, num_clips=2)
  names = sorted(p.name for p in paths)
  assert names == ['clip_00000.gif', 'clip_00000.json', 'clip_00000.mp4', 'clip_00001.gif',
                   'clip_00001.json', 'clip_00001.mp4', 'grid.mp4', 'grid.png']
  sidecar = json.loads((tmp_path / 'clip_00001.json').read_text())
  # The sidecar's caption is the one training reads for the same clip.
  assert sidecar['caption'] == world_source.WorldSource(OPTIONS, seed=1)[1]['caption']
  assert len(sidecar['truth']['objects'][0]['centre']) == 3
  frames, _ = world_render.render(world.sample_scene(OPTIONS, 1, 0), 16, 24, 3, 6.0)
  assert (media.read_video(tmp_path / 'clip_00000.gif') == frames).all()  # gif is lossless
  assert not list(tmp_path.glob('.*'))  # no temporary files left behind


def test_unwritable_folder_is_one_clear_error(tmp_path):
  blocker = tmp_path / 'file.txt'
  blocker.write_text('not a folder')
  with pytest.raises(OSError, match='cannot write to output folder'):
    preview.render_clips(OPTIONS, blocker / 'out', seed=0, num_clips=1)


def test_runner_help_explains_flags_and_renders(tmp_path):
  run = lambda *args: subprocess.run([sys.executable, 'experiments/render_world.py', *args],
                                     cwd=REPO, capture_output=True, text=True, timeout=120)
  helped = run('--helpfull')
  assert '--num_clips' in helped.stdout and 'held-out' in helped.stdout
  done = run(f'--out={tmp_path}', '--num_clips=1', '--config.world.height=16',
             '--config.world.width=16', '--config.world.num_frames=2')
  assert done.returncode == 0, done.stderr[-2000:]
  # The --config.world flags reach the renderer: 2 frames of 16 x 16.
  assert media.read_video(tmp_path / 'clip_00000.mp4').shape == (2, 16, 16, 3)
  assert (tmp_path / 'grid.png').exists()
  bad = run(f'--out={tmp_path}', '--config.world.colours=("purple",)')
  assert bad.returncode != 0 and 'purple' in bad.stderr
