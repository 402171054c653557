"""The main job: train the default CPU model on the world, sample prompts, score and report.

Writes into `out_dir`:
  run/                      the training run (config, checkpoints, metrics, tensorboard)
  samples/NNN_<prompt>.mp4  one video per prompt, each with a JSON sidecar of the same name
  grid.mp4, grid.png        every sample, captioned; truth_grid.* the world's own renders
  curve.png, report.md      the training curve and adherence scores (train / held-out prompts)
Running it again resumes training from the newest checkpoint instead of starting over.
"""
import pathlib

import ml_collections

from videogen import generate
from videogen import media
from videogen.data import world
from videogen.evals import adherence
from videogen.evals import curves
from videogen.evals import prompts as prompts_lib
from videogen.train import loop


def _score_table(prompts, scores) -> str:
  lines = ['| split | prompt | colour | direction (asked → seen) |', '| --- | --- | --- | --- |']
  for p, s in zip(prompts, scores):
    asked = ', '.join(str(adherence.expected_direction(o)) for o in p.scene.objects)
    mark = lambda v: '-' if v is None else ('yes' if v else 'no')
    lines.append(f'| {p.split} | {p.text} | {mark(s["colour"])} | {mark(s["direction"])} '
                 f'({asked} → {", ".join(s["seen"]) or "-"}) |')
  return '\n'.join(lines)


def write_report(out: pathlib.Path, result: loop.TrainResult, gen: generate.Generator,
                 settings: generate.SampleSettings, prompts, scores) -> pathlib.Path:
  """report.md: what ran, the curve, the adherence summary per split and per prompt."""
  rows = loop.read_metrics(out / 'run')
  last = rows[-1] if rows else {}
  lines = [
      '# videogen demo report', '',
      f'Model {result.parts.config.model.variant} trained to step {result.last_step} '
      f'(this invocation: steps {result.first_step} → {result.last_step}'
      f'{", stopped by the time budget" if result.stopped_early else ""}); samples from the '
      f'EMA weights at checkpoint step {gen.step}, {settings.method} with {settings.steps} '
      f'steps, guidance {settings.cfg_scale}.', '',
      f'Last logged: loss {last.get("loss", float("nan")):.4f}, '
      f'{last.get("steps_per_s", float("nan")):.2f} steps/s, '
      f'{last.get("gflops_per_s", float("nan")):.1f} GFLOP/s.', '',
      '![training loss](curve.png)', '', '## Adherence, measured from the pixels', '',
      '| prompts | videos | colour present | moves as asked |', '| --- | --- | --- | --- |']
  for split in sorted({p.split for p in prompts}):
    summary = adherence.summarize([s for p, s in zip(prompts, scores) if p.split == split])
    lines.append(f'| {split} | {summary["videos"]} | {summary["colour_pct"]:.0f}% | '
                 f'{summary["direction_pct"]:.0f}% |')
  lines += ['', 'Samples: `grid.mp4` / `grid.png`; the world\'s renders of the same scenes: '
            '`truth_grid.mp4` / `truth_grid.png`.', '', '## Per prompt', '',
            _score_table(prompts, scores), '']
  path = out / 'report.md'
  path.write_text('\n'.join(lines))
  return path


def run(config: ml_collections.ConfigDict, out_dir, *, num_train_prompts: int = 8,
        num_held_out_prompts: int = 4, progress: bool = True) -> pathlib.Path:
  """Trains (or resumes), samples, scores and reports; returns the report's path."""
  out = pathlib.Path(out_dir)
  result = loop.train(config, out / 'run', progress=progress)
  gen = generate.Generator.from_workdir(out / 'run')
  s = config.sample
  settings = generate.SampleSettings(steps=s.steps, method=s.method, cfg_scale=s.cfg_scale)
  prompts = prompts_lib.world_prompts(config, num_train=num_train_prompts,
                                       num_held_out=num_held_out_prompts)
  texts, seeds = [p.text for p in prompts], [p.seed for p in prompts]
  videos = gen.generate(texts, seeds=seeds, settings=settings)
  gen.write(videos, texts, out / 'samples', seeds=seeds, settings=settings)
  fps = config.world.fps
  media.write_grid(out / 'grid', list(videos), texts, fps=fps)
  w = config.world
  truth = [world.render(p.scene, w.height, w.width, w.num_frames, fps)[0] for p in prompts]
  media.write_grid(out / 'truth_grid', truth, texts, fps=fps)
  scores = [adherence.score_video(v, p.scene) for v, p in zip(videos, prompts)]
  curves.plot_loss(loop.read_metrics(out / 'run'), out / 'curve.png')
  return write_report(out, result, gen, settings, prompts, scores)
