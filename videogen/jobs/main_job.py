"""The main job: train the default CPU model on the world, sample prompts, score and report.

Writes into `out_dir`:
  run/                      the training run (config, checkpoints, metrics, tensorboard)
  samples/NNN_<prompt>.mp4  one video per prompt from this run, each with a JSON sidecar
  grid.mp4, grid.png        this run's samples, captioned; truth_grid.* the world's own renders
  reference/                the same prompts sampled from the shipped reference checkpoint
                            (trained longer by the same code; see reference/README.md)
  tasks/<task>.{mp4,png}    prompting tasks (image-to-video, extension, connect, keyframes, loop,
                            SDEdit) on the world's renders of the same prompts, input beside output
  curve.png, report.md      the training curve, world scores (adherence, motion, physics,
                            permanence, consistency; evals/world_eval.py) per model, split and
                            category, the text-controls-motion probe (evals/direction_probe.py)
                            per model, and the prompting tasks' scores
Running it again resumes training from the newest checkpoint instead of starting over.
"""
import pathlib

import jax
import ml_collections

from videogen.core import grids
from videogen.core import media
from videogen.core import tables
from videogen.data import world_render
from videogen.evals import curves
from videogen.evals import direction_probe
from videogen.evals import prompting_tasks
from videogen.evals import world_eval
from videogen.inference import generate
from videogen.runtime import dit_run
from videogen.train import loop

REFERENCE = pathlib.Path(__file__).resolve().parents[2] / 'reference' / 'world_t2'


def write_report(out: pathlib.Path, result: loop.TrainResult,
                 settings: generate.SampleSettings, scored: dict, task_scores=None,
                 directions: dict | None = None, command: str | None = None) -> pathlib.Path:
  """report.md: what ran, the curve, the world scores per model, split and category, the
  text-controls-motion probe, the prompting tasks, and every video's scores. `scored`: {model
  name: (generator, scored)}; `directions`: {model name: direction_probe.run's result}."""
  rows = loop.read_metrics(out / 'run')
  last = rows[-1] if rows else {}
  machine = tables.machine()
  lines = [
      '# videogen demo report', '',
      f'Made by `{command or "videogen.jobs.main_job.run"}` at revision `{tables.revision()}` on '
      f'{machine["processor"]} ({machine["cpu_count"]} cores, {machine["device"]}).', '',
      f'**This run**: model {result.run.config.model.variant} trained to step '
      f'{result.last_step} (this invocation: steps {result.first_step} → {result.last_step}'
      f'{", stopped by the time budget" if result.stopped_early else ""}). Samples use the EMA '
      f'weights, {settings.method} with {settings.steps} steps, {settings.guidance()}.',
      '',
      f'Last logged: loss {last.get("loss", float("nan")):.4f}, '
      f'{last.get("steps_per_s", float("nan")):.2f} steps/s, '
      f'{last.get("gflops_per_s", float("nan")):.1f} GFLOP/s.', '',
      '![training loss](curve.png)', '', '## World scores, measured from the pixels', '',
      'Each score is a mean over the videos where it applies (`videogen/evals/world_scores.py`'
      '; `-`: never applies); `experiments/eval_world.py` runs the same evaluation on any '
      'checkpoint with more prompts.', '']
  for name, (gen, scored_videos) in scored.items():
    rows = [r for r in world_eval.summary(scored_videos) if r['category'] == 'all']
    lines += [world_eval.summary_table(rows, model=f'{name} (step {gen.step})'), '']
  lines += ['This run\'s samples: `grid.mp4` / `grid.png`; the reference\'s: '
            '`reference/grid.*`; the world\'s renders of the same scenes: `truth_grid.*`.']
  for name, direction in (directions or {}).items():
    lines += ['', f'## Does the text control the motion? {name}', '',
              *direction_probe.report_lines(direction)]
  if task_scores:
    lines += ['', '## Prompting with images and videos (this run)', '',
              'Each task runs on the world\'s render of every prompt above (clips training never '
              'saw); `tasks/<task>.*` shows input beside output. See '
              '`videogen/evals/prompting_tasks.py` for each measure.', '',
              prompting_tasks.table(task_scores)]
  for name, (gen, scored_videos) in scored.items():
    lines += ['', f'## Per prompt: {name}', '', world_eval.per_video_table(scored_videos)]
  path = out / 'report.md'
  media.write_text(path, '\n'.join(lines) + '\n')
  return path


def run(config: ml_collections.ConfigDict, out_dir, *, reference=REFERENCE,
        num_train_prompts: int = 16, num_held_out_prompts: int = 8,
        num_direction_scenes: int = 4, progress: bool = True,
        command: str | None = None) -> pathlib.Path:
  """Trains (or resumes), samples this run and the reference, scores, reports; returns the
  report's path. `reference=None` (or a missing folder) skips the reference."""
  out = pathlib.Path(out_dir)
  result = loop.train(dit_run.build(config), out / 'run', progress=progress)
  settings = generate.settings_for(config)
  prompts = world_eval.prompt_set(config, num_train=num_train_prompts,
                                  num_held_out=num_held_out_prompts)
  gen = generate.Generator.from_workdir(out / 'run')  # every process: the restore may sync them
  if jax.process_index() != 0:  # in a multi-process job, process 0 samples, scores and reports
    return out / 'report.md'
  scored = {'this run': (gen, world_eval.sample_and_score(gen, prompts, settings, out)[0])}
  if reference and (pathlib.Path(reference) / 'params').is_dir():
    ref = generate.Generator.from_workdir(reference)
    scored['reference'] = (ref, world_eval.sample_and_score(ref, prompts, settings,
                                                            out / 'reference')[0])
  directions = {name: direction_probe.run(g, settings, num_direction_scenes)
                for name, (g, _) in scored.items()} if num_direction_scenes else None
  w = config.world
  truth = [world_render.render_frames(p.scene, w.height, w.width, w.num_frames, w.fps)
           for p in prompts]
  grids.write_grid(out / 'truth_grid', truth, [p.text for p in prompts], fps=w.fps)
  task_scores = None
  if gen.run.frame_conditioning:
    task_scores = prompting_tasks.score_tasks(gen, prompts, truth, settings, out)
  curves.plot_loss(loop.read_metrics(out / 'run'), out / 'curve.png')
  return write_report(out, result, settings, scored, task_scores, directions, command)
