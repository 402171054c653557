"""The world evaluation runner and the scaling study, end to end on tiny runs."""
import json
import pathlib
import subprocess
import sys

import pytest

from configs import world as world_config
from videogen.jobs import scaling
from videogen.evals import world_eval
from videogen.evals import world_scores
from videogen.train import loop

import runner_env

pytestmark = pytest.mark.integration  # runner subprocesses

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run(*args, check=True):
  env = runner_env.one_device()
  result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
  if check:
    assert result.returncode == 0, result.stderr[-3000:]
  return result


def test_eval_world_scores_a_checkpoint_and_reports(trained_run, tmp_path):
  out = tmp_path / 'eval'
  _run('experiments/eval_world.py', f'--workdir={trained_run}', '--prompts=2', '--held_out=1',
       '--probes=2', '--tasks', f'--out={out}')
  result = json.loads((out / 'scores.json').read_text())
  assert '--tasks' in result['command'] and result['revision'] and result['machine']['processor']
  # The tasks run on the train and held-out prompts' renders, never on the probes.
  tasks = {t['task']: t for t in result['prompting_tasks']}
  assert {'image_to_video', 'extend_forward', 'extend_backward', 'edit'} <= set(tasks)
  assert all(t['given_error'] == 0 for t in tasks.values() if t['task'] != 'edit')
  assert '## Prompting with images and videos' in (out / 'report.md').read_text()
  assert (out / 'tasks' / 'extend_forward.png').stat().st_size > 0
  assert [v['split'] for v in result['videos']] == ['train', 'train', 'held_out', 'probe',
                                                    'probe']
  for video in result['videos']:
    for name in world_scores.CATEGORIES:
      assert video[name] is None or 0.0 <= video[name] <= 1.0
  splits = {(row['split'], row['category']) for row in result['summary']}
  assert {('all splits', 'all'), ('train', 'all'), ('held_out', 'all'),
          ('probe', 'all')} <= splits
  report = (out / 'report.md').read_text()
  assert '| split | category | videos | adherence | motion | physics |' in report
  assert len(list((out / 'samples').glob('*.mp4'))) == 5
  for name in ('worst.png', 'worst.mp4', 'grid.png'):
    assert (out / name).stat().st_size > 0


def test_eval_world_refuses_a_run_that_is_not_a_world_model(tmp_path):
  (tmp_path / 'config.json').write_text(json.dumps({'model': {'preset': 'tiny'}}))
  result = _run('experiments/eval_world.py', f'--workdir={tmp_path}', check=False)
  assert result.returncode != 0
  assert 'is not a text-to-video model trained on the procedural world' in result.stderr


def test_an_empty_prompt_set_is_an_error():
  with pytest.raises(ValueError, match='the prompt set is empty'):
    world_eval.prompt_set(world_config.get_config(), num_train=0, num_held_out=0)


def test_scaling_budgets_are_equal_in_flops():
  config = world_config.get_config()
  steps = scaling.schedule(config, scaling.STUDIES['full'])
  for size, by_budget in steps.items():
    per_step = scaling.cost(scaling.study_config(config, size))[0]
    for multiplier, count in by_budget.items():
      unit = scaling.STUDIES['full'].base_steps * scaling.cost(
          scaling.study_config(config, 'T/2'))[0]
      assert abs(count * per_step - multiplier * unit) <= per_step / 2
  assert steps['N/2'][16] > steps['T/2'][16] > steps['XS/2'][16]


def test_scaling_study_trains_evaluates_and_resumes(tmp_path):
  config = world_config.get_config('runlocal=True')
  study = scaling.Study(sizes=('N/2',), multipliers=(1,), base_steps=1, num_prompts=1)
  rows = scaling.run(config, study, tmp_path, progress=False)
  assert [(r['size'], r['multiplier'], r['steps']) for r in rows] == [
      ('N/2', 1, 3)]  # N/2 costs a third of T/2 (the unit) per step
  assert 0 < rows[0]['params'] < 1e6 and rows[0]['flops'] > 0
  for name in ('scaling.md', 'scaling.png', 'scaling.json'):
    assert (tmp_path / name).stat().st_size > 0
  assert (tmp_path / 'evals' / 'N_2_1x' / 'report.md').exists()
  logged = len(loop.read_metrics(tmp_path / 'runs' / 'N_2'))
  again = scaling.run(config, study, tmp_path, progress=False)  # resumes: nothing left to do
  assert again == rows and len(loop.read_metrics(tmp_path / 'runs' / 'N_2')) == logged


def test_probe_training_probes_each_asked_step(trained_run, tmp_path):
  out = tmp_path / 'probe'
  _run('experiments/probe_training.py', f'--workdir={trained_run}', '--steps=2', '--scenes=1',
       '--nouse_ema', '--cfg_scale=2.5', '--cfg_min_t=0.5', f'--out={out}')
  result = json.loads(out.with_suffix('.json').read_text())
  row, = result['rows']
  assert row['step'] == 2 and row['videos'] == 8 and row['chance'] == 0.125
  assert row['weights'] == 'raw' and row['cfg_scale'] == 2.5 and row['cfg_min_t'] == 0.5
  assert 0.0 <= row['text_controls_motion'] <= 1.0 and 0 <= row['directions_per_scene'] <= 8
  assert result['command'].startswith('python experiments/probe_training.py')
  header = '| step | weights | cfg_scale | cfg_min_t | text_controls_motion |'
  assert header in out.with_suffix('.md').read_text()
  bad = _run('experiments/probe_training.py', f'--workdir={trained_run}', '--steps=two',
             check=False)
  assert bad.returncode != 0 and '--steps' in bad.stderr
