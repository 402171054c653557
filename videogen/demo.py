"""The main job: train the default CPU model on the world, sample prompts, score and report.

Writes into `out_dir`:
  run/                      the training run (config, checkpoints, metrics, tensorboard)
  samples/NNN_<prompt>.mp4  one video per prompt from this run, each with a JSON sidecar
  grid.mp4, grid.png        this run's samples, captioned; truth_grid.* the world's own renders
  reference/                the same prompts sampled from the shipped reference checkpoint
                            (trained longer by the same code; see reference/README.md)
  tasks/<task>.{mp4,png}    prompting tasks (image-to-video, extension, connect, keyframes, loop,
                            SDEdit) on the world's renders of the same prompts, input beside output
  curve.png, report.md      the training curve, adherence scores (train / held-out prompts) and
                            the prompting tasks' scores
Running it again resumes training from the newest checkpoint instead of starting over.
"""
import pathlib

import ml_collections

from videogen import generate
from videogen import media
from videogen.data import world
from videogen.evals import adherence
from videogen.evals import curves
from videogen.evals import prompting_tasks
from videogen.evals import prompts as prompts_lib
from videogen.train import loop

REFERENCE = pathlib.Path(__file__).resolve().parents[1] / 'reference' / 'world_t2'


def _mark(value) -> str:
  return '-' if value is None else ('yes' if value else 'no')


def _score_table(prompts, scores) -> str:
  lines = ['| split | prompt | colour | direction (asked → seen) |', '| --- | --- | --- | --- |']
  for p, s in zip(prompts, scores):
    asked = ', '.join(str(adherence.expected_direction(o)) for o in p.scene.objects)
    lines.append(f'| {p.split} | {p.text} | {_mark(s["colour"])} | {_mark(s["direction"])} '
                 f'({asked} → {", ".join(s["seen"]) or "-"}) |')
  return '\n'.join(lines)


def _summary_rows(name: str, prompts, scores) -> list[str]:
  rows = []
  for split in sorted({p.split for p in prompts}):
    summary = adherence.summarize([s for p, s in zip(prompts, scores) if p.split == split])
    rows.append(f'| {name} | {split} | {summary["videos"]} | {summary["colour_pct"]:.0f}% | '
                f'{summary["direction_pct"]:.0f}% |')
  return rows


def sample_and_score(gen: generate.Generator, prompts, out: pathlib.Path,
                     settings: generate.SampleSettings) -> list[dict]:
  """Samples every prompt, writes mp4s + sidecars and a grid into `out`, returns the scores."""
  texts, seeds = [p.text for p in prompts], [p.seed for p in prompts]
  videos = gen.generate(texts, seeds=seeds, settings=settings)
  gen.write(videos, texts, out / 'samples', seeds=seeds, settings=settings)
  media.write_grid(out / 'grid', list(videos), texts, fps=gen.parts.config.world.fps)
  return [adherence.score_video(v, p.scene) for v, p in zip(videos, prompts)]


def write_report(out: pathlib.Path, result: loop.TrainResult,
                 settings: generate.SampleSettings, prompts, scored: dict,
                 task_scores=None) -> pathlib.Path:
  """report.md: what ran, the curve, the adherence summary per model and split, per prompt."""
  rows = loop.read_metrics(out / 'run')
  last = rows[-1] if rows else {}
  lines = [
      '# videogen demo report', '',
      f'**This run**: model {result.parts.config.model.variant} trained to step '
      f'{result.last_step} (this invocation: steps {result.first_step} → {result.last_step}'
      f'{", stopped by the time budget" if result.stopped_early else ""}). Samples use the EMA '
      f'weights, {settings.method} with {settings.steps} steps, guidance {settings.cfg_scale}.',
      '',
      f'Last logged: loss {last.get("loss", float("nan")):.4f}, '
      f'{last.get("steps_per_s", float("nan")):.2f} steps/s, '
      f'{last.get("gflops_per_s", float("nan")):.1f} GFLOP/s.', '',
      '![training loss](curve.png)', '', '## Adherence, measured from the pixels', '',
      '| model | prompts | videos | colour present | moves as asked |',
      '| --- | --- | --- | --- | --- |']
  for name, (gen, scores) in scored.items():
    lines += _summary_rows(f'{name} (step {gen.step})', prompts, scores)
  lines += ['', 'This run\'s samples: `grid.mp4` / `grid.png`; the reference\'s: '
            '`reference/grid.*`; the world\'s renders of the same scenes: `truth_grid.*`.']
  if task_scores:
    lines += ['', '## Prompting with images and videos (this run)', '',
              'Each task runs on the world\'s render of every prompt above (clips training never '
              'saw); `tasks/<task>.*` shows input beside output. See '
              '`videogen/evals/prompting_tasks.py` for each measure.', '',
              prompting_tasks.table(task_scores)]
  for name, (gen, scores) in scored.items():
    lines += ['', f'## Per prompt: {name}', '', _score_table(prompts, scores)]
  path = out / 'report.md'
  path.write_text('\n'.join(lines) + '\n')
  return path


def run(config: ml_collections.ConfigDict, out_dir, *, reference=REFERENCE,
        num_train_prompts: int = 8, num_held_out_prompts: int = 4,
        progress: bool = True) -> pathlib.Path:
  """Trains (or resumes), samples this run and the reference, scores, reports; returns the
  report's path. `reference=None` (or a missing folder) skips the reference."""
  out = pathlib.Path(out_dir)
  result = loop.train(config, out / 'run', progress=progress)
  s = config.sample
  settings = generate.SampleSettings(steps=s.steps, method=s.method, cfg_scale=s.cfg_scale)
  prompts = prompts_lib.world_prompts(config, num_train=num_train_prompts,
                                       num_held_out=num_held_out_prompts)
  gen = generate.Generator.from_workdir(out / 'run')
  scored = {'this run': (gen, sample_and_score(gen, prompts, out, settings))}
  if reference and (pathlib.Path(reference) / 'params').is_dir():
    ref = generate.Generator.from_workdir(reference)
    scored['reference'] = (ref, sample_and_score(ref, prompts, out / 'reference', settings))
  w = config.world
  truth = [world.render(p.scene, w.height, w.width, w.num_frames, w.fps)[0] for p in prompts]
  media.write_grid(out / 'truth_grid', truth, [p.text for p in prompts], fps=w.fps)
  task_scores = None
  if gen.parts.frame_conditioning:
    task_scores = prompting_tasks.score_tasks(gen, prompts, truth, settings, out)
  curves.plot_loss(loop.read_metrics(out / 'run'), out / 'curve.png')
  return write_report(out, result, settings, prompts, scored, task_scores)
