"""The scaling study: DiT sizes trained on the same world data for compute budgets base, 4x, 16x
(in training FLOPs), each checkpoint sampled on one fixed prompt set and scored from its pixels.

Budgets are counted as FLOPs so that sizes compare fairly: a budget of B FLOPs is
B / (3 x forward FLOPs of a batch) steps, so a model 4x as costly per step gets 4x fewer steps.
Each size trains once, to its 16x budget, and is evaluated when it passes each smaller budget
(the run stops there, writes its checkpoint, is scored, then resumes exactly). One learning-rate
schedule spans the whole run, so the base and 4x points are checkpoints in the middle of a
longer schedule, as in the talk's base / 4x / 32x comparison of one training run; a model
trained for the base budget alone, its schedule ended, would score a little higher there.

The study's world adds falls, small objects and occluders to the default CPU world, so physics
and permanence through occlusion are measured on scenes like those it trained on.
Writes into `out`: runs/<size>/ (each size's training run), evals/<size>_<budget>x/ (world_eval
reports, with each checkpoint's sample grid and videos), scaling.json (a row per size and
budget), scaling.md and scaling.png (loss and each score against compute). Running it again
resumes the runs and skips the evaluations done.
"""
import dataclasses
import json
import math
import pathlib

import jax
import ml_collections
import numpy as np

from videogen.inference import generate
from videogen.evals import curves
from videogen.core import media
from videogen.core import tables
from videogen.evals import world_eval
from videogen.evals import world_scores
from videogen.models import dit
from videogen.core import patches
from videogen.runtime import dit_run
from videogen.train import loop

# The study's world: the default CPU world (one object on black, 32x32x8) plus falls, small
# objects (only they cross an occluder within 8 frames) and occluders.
WORLD = dict(motions=('move', 'fall'), sizes=('small', 'large'), p_occluder=0.5)


@dataclasses.dataclass(frozen=True)
class Study:
  """Which sizes, which budgets (multiples of the base), and the base in steps of `unit`."""
  sizes: tuple[str, ...]
  multipliers: tuple[int, ...]
  base_steps: int      # the base budget: this many steps of the `unit` model ...
  unit: str = 'T/2'    # ... at the config's batch and clip size
  num_prompts: int = 24


STUDIES = {
    # Two sizes, a base of 10 T/2 steps (the 16x run: 160 steps).
    'quick': Study(sizes=('N/2', 'T/2'), multipliers=(1, 4, 16), base_steps=10, num_prompts=8),
    # Three widths (64, 128, 192; depth 4) up to 16 x 200 = 3,200 T/2 steps of compute: the
    # config's recipe puts the words in charge of the motion at about 2,000 T/2 steps on the
    # default world (docs/motion.md), so the 16x budget lies past that crossover and the base
    # before it.
    'full': Study(sizes=('N/2', 'T/2', 'XS/2'), multipliers=(1, 4, 16), base_steps=200),
}


def study_config(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
  """`config` with the study's world and the DiT `variant` (a copy; the input is untouched), on
  fixed clips: the study varies the model on one clip size, and `cost` counts that clip."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.world.update(WORLD)
  config.data.layout = 'fixed'
  config.model.variant = variant
  return config


def cost(config: ml_collections.ConfigDict) -> tuple[float, int]:
  """(training FLOPs of one step: 3 x the forward FLOPs of the config's batch of clips, the
  DiT's parameter count)."""
  parts = dit_run.build(config)
  w = config.world
  tokens = patches.num_tokens((w.num_frames, w.height, w.width), parts.model.config.patch_size)
  flops = 3 * config.data.batch_size * dit.flops_per_sample(parts.model.config, tokens,
                                                             parts.encoder.max_length)
  return flops, int(sum(np.prod(x.shape) for x in jax.tree.leaves(parts.abstract_state.params)))


def schedule(config: ml_collections.ConfigDict, study: Study) -> dict[str, dict[int, int]]:
  """{size: {multiplier: steps}}: the step at which each size has spent each budget."""
  base_flops = study.base_steps * cost(study_config(config, study.unit))[0]
  steps = {}
  for size in study.sizes:
    per_step = cost(study_config(config, size))[0]
    steps[size] = {m: max(1, round(m * base_flops / per_step)) for m in study.multipliers}
  return steps


def _mean_loss(workdir: pathlib.Path, step: int) -> float:
  """Mean training loss logged over the last fifth of the steps up to `step`."""
  rows = [r for r in loop.read_metrics(workdir) if 'loss' in r and 0.8 * step <= r['step'] <= step]
  return float(np.mean([r['loss'] for r in rows])) if rows else float('nan')


def run(config: ml_collections.ConfigDict, study: Study, out, *,
        progress: bool = True) -> list[dict]:
  """Trains and evaluates every size at every budget (see the module docstring); returns rows."""
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  steps = schedule(config, study)
  results_path = out / 'scaling.json'
  done = {(r['size'], r['multiplier']): r for r in
          (json.loads(results_path.read_text())['rows'] if results_path.exists() else [])}
  prompts = world_eval.prompt_set(study_config(config, study.unit), num_train=study.num_prompts,
                                  num_held_out=0)
  settings = generate.settings_for(config)
  for size in study.sizes:
    cfg = study_config(config, size)
    last = steps[size][study.multipliers[-1]]
    cfg.optim.warmup_steps = min(cfg.optim.warmup_steps, max(1, last // 10))
    cfg.optim.total_steps = max(last, cfg.optim.warmup_steps + 1)
    cfg.train.update(log_every=max(1, steps[size][study.multipliers[0]] // 5),
                     checkpoint_every=last, keep_checkpoints=1, sample_every=0)
    per_step, params = cost(cfg)
    workdir = out / 'runs' / size.replace('/', '_')
    for multiplier in study.multipliers:
      if (size, multiplier) in done:
        continue
      cfg.train.steps = steps[size][multiplier]
      if progress:
        print(f'{size}: {multiplier}x budget = {cfg.train.steps} steps '
              f'({cfg.train.steps * per_step:.3g} FLOPs)', flush=True)
      loop.train(dit_run.build(cfg), workdir, progress=progress)
      gen = generate.Generator.from_workdir(workdir)
      eval_dir = out / 'evals' / f'{size.replace("/", "_")}_{multiplier}x'
      scored, videos = world_eval.sample_and_score(gen, prompts, settings, eval_dir)
      world_eval.write_report(eval_dir, gen, scored, videos, settings,
                              title=f'{size} at {multiplier}x the base budget')
      means = world_scores.summarize([v.scores for v in scored])
      done[size, multiplier] = {
          'size': size, 'params': params, 'multiplier': multiplier, 'steps': cfg.train.steps,
          'flops': cfg.train.steps * per_step, 'loss': _mean_loss(workdir, cfg.train.steps),
          **{k: None if math.isnan(v) else v for k, v in means.items()}}
      rows = [done[key] for key in sorted(done, key=lambda k: (study.sizes.index(k[0]), k[1]))
              if key[0] in study.sizes]
      write_rows(results_path, rows)
  rows = [done[size, m] for size in study.sizes for m in study.multipliers]
  media.write_text(out / 'scaling.md', table(rows) + '\n')
  curves.plot_against_compute(rows, ['loss', *world_scores.CATEGORIES], out / 'scaling.png')
  return rows


def write_rows(path, rows: list[dict]) -> None:
  """scaling.json (atomically, by tables.write_results): a rerun resumes from it, and a crash
  mid-write would otherwise leave a half file that loses every result done."""
  tables.write_results(path, 'scaling', rows)


def table(rows: list[dict]) -> str:
  """Markdown: one row per size and budget, scores in percent."""
  head = ['size', 'params', 'budget', 'steps', 'train FLOPs', 'loss', *world_scores.CATEGORIES]
  lines = ['| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)]
  for r in rows:
    cells = [r['size'], f'{r["params"] / 1e6:.2f}M', f'{r["multiplier"]}x', str(r['steps']),
             f'{r["flops"]:.2g}', f'{r["loss"]:.4f}',
             *[world_eval.percent(r[k]) for k in world_scores.CATEGORIES]]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)
