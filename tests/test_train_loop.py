"""The training loop, sampling API and runners end to end on the tiny (runlocal) config."""
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import world as world_config
from videogen.core import media
from videogen.inference import generate
from videogen.jobs import main_job
from videogen.runtime import dit_run
from videogen.train import loop

import runner_env

pytestmark = pytest.mark.integration  # trains end to end, runs the runners and the main job

REPO = pathlib.Path(__file__).resolve().parents[1]


def tiny_config(steps=4, echo=1):
  config = world_config.get_config('runlocal=True')
  config.train.steps = steps
  config.train.checkpoint_every = 2
  config.data.echo = echo
  return config


@pytest.mark.parametrize('echo', [1, 3])  # 3: the save at step 2 falls inside an echoed batch
def test_resume_is_bit_identical(tmp_path, echo):
  straight = loop.train(dit_run.build(tiny_config(4, echo)), tmp_path / 'straight',
                        progress=False)
  first = loop.train(dit_run.build(tiny_config(2, echo)), tmp_path / 'resumed', progress=False)
  assert first.last_step == 2
  second = loop.train(dit_run.build(tiny_config(4, echo)), tmp_path / 'resumed', progress=False)
  assert (second.first_step, second.last_step) == (2, 4)
  for a, b in zip(jax.tree.leaves(straight.state), jax.tree.leaves(second.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  rows = loop.read_metrics(tmp_path / 'resumed')
  assert [r['step'] for r in rows] == [1, 2, 3, 4]
  assert all(np.isfinite(r['loss']) and r['tokens_per_s'] > 0 for r in rows)


def test_sample_hook_writes_a_grid(trained_run):
  grid = media.read_video(trained_run / 'samples' / '2' / 'grid.mp4')
  assert grid.shape[0] == 2 and grid.shape[-1] == 3


def test_generator_samples_requested_shapes_and_writes_sidecars(trained_run, tmp_path):
  gen = generate.Generator.from_workdir(trained_run)
  settings = generate.SampleSettings(steps=2, method='euler', cfg_scale=2.0, num_frames=1,
                                     height=24, width=8)
  videos = gen.generate(['a red circle', ''], seeds=[0, 1], settings=settings)
  assert videos.shape == (2, 1, 24, 8, 3) and videos.dtype == np.uint8
  again = gen.generate(['a red circle', ''], seeds=[0, 1], settings=settings)
  np.testing.assert_array_equal(videos, again)  # seeds fix the noise
  paths = gen.write(videos, ['a red circle', ''], tmp_path / 'out', seeds=[0, 1],
                    settings=settings)
  assert sorted(p.suffix for p in paths) == ['.json', '.json', '.png', '.png']
  with pytest.raises(ValueError, match='height 30'):
    gen.generate(['x'], settings=generate.SampleSettings(height=30))
  with pytest.raises(MemoryError, match='GiB'):
    gen.generate(['x'], settings=generate.SampleSettings(num_frames=64, height=2048,
                                                         width=2048))


def test_missing_run_and_incompatible_config_are_clear_errors(trained_run, tmp_path):
  with pytest.raises(FileNotFoundError, match='train first'):
    generate.Generator.from_workdir(tmp_path / 'nothing')
  changed = tiny_config(steps=4)
  changed.model.patch_size = (1, 4, 4)
  with pytest.raises(ValueError, match='model.patch_size'):
    loop.train(dit_run.build(changed), trained_run, progress=False)
  assert generate.load_config(trained_run).model.patch_size == [1, 8, 8]  # left untouched


def _run(*args):
  env = runner_env.one_device()
  result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def test_runners_train_then_sample_a_readable_mp4(tmp_path):
  _run('experiments/train.py', '--config', 'configs/world.py:runlocal=True',
       f'--workdir={tmp_path}', '--config.train.steps=2')
  out = _run('experiments/sample.py', f'--workdir={tmp_path}', '--prompt=a blue square moves up',
             '--steps=2', '--num_frames=4', f'--out={tmp_path}/s')
  mp4 = [line for line in out.splitlines() if line.endswith('.mp4')]
  assert len(mp4) == 1
  assert media.read_video(mp4[0]).shape == (4, 16, 16, 3)
  out = _run('experiments/sample.py', f'--workdir={tmp_path}', '--prompt=a blue square moves up',
             '--task=extend', f'--video={mp4[0]}', '--frames=3', '--direction=backward',
             '--steps=2', f'--out={tmp_path}/e')
  extended = [line for line in out.splitlines() if line.endswith('.mp4')]
  assert media.read_video(extended[0]).shape == (7, 16, 16, 3)
  sidecar = json.loads(pathlib.Path(extended[0]).with_suffix('.json').read_text())
  assert sidecar['task'] == 'extend'


def test_export_holds_the_sampling_weights(trained_run, tmp_path):
  gen = generate.Generator.from_workdir(trained_run)
  exported = generate.Generator.from_workdir(gen.export(tmp_path / 'export', note='test'))
  assert exported.step == gen.step
  settings = generate.SampleSettings(steps=2, method='euler', cfg_scale=1.0)
  np.testing.assert_array_equal(gen.generate(['a red circle'], settings=settings),
                                exported.generate(['a red circle'], settings=settings))
  half = generate.Generator.from_workdir(gen.export(tmp_path / 'bf16', dtype='bfloat16'))
  for a, b in zip(jax.tree.leaves(half.params), jax.tree.leaves(gen.params)):
    assert a.dtype == b.dtype  # read back in the config's param_dtype, bfloat16-rounded
    np.testing.assert_array_equal(np.asarray(a),
                                  np.asarray(b.astype(jnp.bfloat16).astype(b.dtype)))


def test_an_export_can_store_sampling_defaults_over_the_runs(trained_run, tmp_path):
  gen = generate.Generator.from_workdir(trained_run)
  before = gen.run.config.sample.to_dict()
  out = gen.export(tmp_path / 'export', sample={'cfg_min_t': 0.7, 'steps': 3})
  settings = generate.settings_for(generate.load_config(out))
  assert (settings.cfg_min_t, settings.steps, settings.method) == (0.7, 3, before['method'])
  assert gen.run.config.sample.to_dict() == before  # the loaded run's own config is untouched
  with pytest.raises(ValueError, match=r"sample fields \['cfg'\] are not sampling defaults"):
    gen.export(tmp_path / 'bad', sample={'cfg': 2.0})
  with pytest.raises(ValueError, match='cfg_min_t 1.5 must be in'):
    gen.export(tmp_path / 'bad', sample={'cfg_min_t': 1.5})
  assert not (tmp_path / 'bad').exists()  # a bad value fails before anything is written


def test_main_job_writes_samples_grids_and_report(tmp_path):
  report = main_job.run(tiny_config(steps=2), tmp_path, reference=None, num_train_prompts=2,
                    num_held_out_prompts=1, progress=False)
  text = report.read_text()
  assert 'held_out' in text and '| physics | permanence |' in text
  for task in ('image_to_video', 'extend_forward', 'extend_backward', 'connect', 'keyframes',
               'loop', 'edit'):
    assert f'| {task} |' in text
    assert media.read_video(tmp_path / 'tasks' / f'{task}.mp4').shape[-1] == 3
  mp4s = sorted((tmp_path / 'samples').glob('*.mp4'))
  assert len(mp4s) == 3 and all(p.with_suffix('.json').exists() for p in mp4s)
  for name in ('grid.mp4', 'grid.png', 'truth_grid.png', 'curve.png'):
    assert (tmp_path / name).stat().st_size > 0
