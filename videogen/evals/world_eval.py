"""Samples a checkpoint on a fixed prompt set of world scenes and scores every video from its pixels.

The prompt set (`prompt_set`) holds captions of seeded scenes training never rendered: scenes of
the training distribution ('train'), held-out combinations ('held_out') and, optionally, probes
of what the world can show beyond the run's own options ('probe': occluders, falls and pans).
Each video gets world_scores' five scores; the report breaks them down by split and by category
(what the scene holds: occluder, fall, move, still, pan, several objects, digit), lists every
video with the reason of each failed score, and shows the worst videos as a captioned grid.
"""
import copy
import dataclasses
import pathlib

import ml_collections
import numpy as np

from videogen.core import grids
from videogen.core import media
from videogen.core import tables
from videogen.data import prompts as prompts_lib
from videogen.data import sizes
from videogen.data import world
from videogen.data import world_render
from videogen.evals import direction_probe
from videogen.evals import influence
from videogen.evals import prompting_tasks
from videogen.evals import world_scores
from videogen.inference import generate

CATEGORY_ORDER = ('all', 'move', 'still', 'fall', 'occluder', 'pan', 'objects>1', 'digit')
# Probes widen the run's own world to every motion and size (occluders need small objects: a
# large one cannot cross a bar within a short clip), with occluders and pans often.
PROBE_OPTIONS = dict(motions=world.MOTIONS, sizes=tuple(world.SIZES), p_occluder=0.8, p_pan=0.3)
PROBE_SEED_OFFSET = 20_000  # probes draw scenes apart from the train and held-out prompts
WORST = 8  # videos in the worst-videos grid


@dataclasses.dataclass(frozen=True)
class ScoredVideo:
  prompt: prompts_lib.Prompt
  scores: world_scores.WorldScores

  @property
  def categories(self) -> list[str]:
    return categories(self.prompt.scene)

  @property
  def mean(self) -> float:
    """The mean of the scores that apply (1 when none does)."""
    values = [getattr(self.scores, name) for name in world_scores.CATEGORIES]
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else 1.0

  def to_json(self) -> dict:
    return {'prompt': self.prompt.text, 'split': self.prompt.split, 'seed': self.prompt.seed,
            'categories': self.categories, 'mean': self.mean,
            **dataclasses.asdict(self.scores)}


def check_world_run(config: ml_collections.ConfigDict, workdir='') -> None:
  """Fails with one sentence unless `config` is a text-to-video run trained on the world."""
  if 'world' not in config or 'variant' not in config.get('model', {}):
    raise ValueError(f'the run {str(workdir)!r} is not a text-to-video model trained on the '
                     'procedural world (its config has no world section or no DiT variant): '
                     'eval_world scores world scenes; pass a run of configs/world.py.')


def categories(scene: world.Scene) -> list[str]:
  """What a scene holds, as report categories ('all' first)."""
  motions = {o.motion for o in scene.objects}
  found = {'all': True, 'move': 'move' in motions, 'still': 'still' in motions,
           'fall': 'fall' in motions, 'occluder': scene.occluder is not None,
           'pan': scene.pan is not None, 'objects>1': len(scene.objects) > 1,
           'digit': any(o.kind == 'digit' for o in scene.objects)}
  return [name for name in CATEGORY_ORDER if found[name]]


def prompt_set(config: ml_collections.ConfigDict, *, num_train: int, num_held_out: int,
               num_probes: int = 0) -> list[prompts_lib.Prompt]:
  """Train and held-out prompts of the run's world (prompts.world_prompts), then probes."""
  prompts = prompts_lib.world_prompts(config, num_train=num_train, num_held_out=num_held_out)
  if num_probes:
    options = world.WorldOptions.from_config(config.world)
    options = dataclasses.replace(options, **PROBE_OPTIONS)
    seed = config.seed + PROBE_SEED_OFFSET
    for index in range(num_probes):
      scene = world.sample_scene(options, seed, index, 'train')
      prompts.append(prompts_lib.Prompt(world.caption(scene, seed + index), scene, 'probe',
                                        index))
  if not prompts:
    raise ValueError('the prompt set is empty: ask for at least one train, held-out or probe '
                     'prompt (e.g. --prompts 16).')
  return prompts


def sample_and_score(gen: generate.Generator, prompts: list[prompts_lib.Prompt],
                     settings: generate.SampleSettings, out=None, *,
                     batch_size: int = 16) -> tuple[list[ScoredVideo], list[np.ndarray]]:
  """Samples every prompt (in batches), scores each video; with `out`, writes the mp4s and
  sidecars to out/samples and the captioned grid to out/grid.*. Returns (scored, videos)."""
  if not prompts:
    raise ValueError('no prompts to sample: pass a non-empty prompt set.')
  fps = gen.run.config.world.fps
  videos = []
  for start in range(0, len(prompts), batch_size):
    chunk = prompts[start:start + batch_size]
    texts, seeds = [p.text for p in chunk], [p.seed for p in chunk]
    batch = gen.generate(texts, seeds=seeds, settings=settings)
    if out is not None:
      gen.write(batch, texts, pathlib.Path(out) / 'samples', seeds=seeds, settings=settings,
                start=start)
    videos += list(batch)
  if out is not None:
    grids.write_grid(pathlib.Path(out) / 'grid', videos, [p.text for p in prompts], fps=fps)
  scored = [ScoredVideo(p, world_scores.score_video(v, p.scene, fps))
            for p, v in zip(prompts, videos)]
  return scored, videos


def at_aspect(config: ml_collections.ConfigDict, settings: generate.SampleSettings,
              aspect: str) -> tuple[ml_collections.ConfigDict, generate.SampleSettings]:
  """The run's config with its world at the training frame size of `aspect` ('16:9',
  width:height; about data.sizes.side² pixels in whole patches, sizes.frame_size), so that
  prompt_set draws scenes of that view, and `settings` sampling at that size."""
  height, width = sizes.frame_size(sizes.parse_aspect(aspect), config.data.sizes.side,
                                   config.model.patch_size)
  config = copy.deepcopy(config)
  config.world.update(height=height, width=width)
  return config, dataclasses.replace(settings, height=height, width=width,
                                     num_frames=config.world.num_frames)


def aspect_rows(results: dict[str, tuple[generate.SampleSettings, list[ScoredVideo]]],
                reference: str = '1:1') -> list[dict]:
  """One row per aspect {'aspect', 'size', 'videos', <score>..., 'adherence_vs_<reference>'
  (points)}, from each aspect's (settings, scored videos) as eval_world --aspects makes them."""
  rows = []
  for aspect, (settings, scored) in results.items():
    means = world_scores.summarize([s.scores for s in scored])
    rows.append({'aspect': aspect, 'size': f'{settings.height}x{settings.width}',
                 'videos': len(scored), **{k: None if np.isnan(v) else v
                                           for k, v in means.items()}})
  base = next((row['adherence'] for row in rows if row['aspect'] == reference), None)
  for row in rows:
    row[f'adherence_vs_{reference}'] = (None if base is None or row['adherence'] is None
                                        else 100 * (row['adherence'] - base))
  return rows


def aspect_table(rows: list[dict]) -> str:
  """aspect_rows as markdown: scores in percent, the adherence difference in points."""
  points = lambda v: '-' if v is None else f'{v:+.0f}'
  formats = {k: points if k.startswith('adherence_vs') else percent for k in rows[0]
             if k.startswith('adherence_vs') or k in world_scores.CATEGORIES}
  return tables.markdown_table(rows, formats)


def summary(scored: list[ScoredVideo]) -> list[dict]:
  """Rows {'split', 'category', 'videos', <score>: mean or None} for each split (and 'all
  splits') × category that has videos."""
  splits = ['all splits'] + sorted({s.prompt.split for s in scored},
                                   key=['train', 'held_out', 'probe'].index)
  rows = []
  for split in splits:
    in_split = [s for s in scored if split == 'all splits' or s.prompt.split == split]
    for category in CATEGORY_ORDER:
      chosen = [s for s in in_split if category in s.categories]
      if not chosen:
        continue
      means = world_scores.summarize([s.scores for s in chosen])
      rows.append({'split': split, 'category': category, 'videos': len(chosen),
                   **{k: None if np.isnan(v) else v for k, v in means.items()}})
  return rows


def percent(value) -> str:
  """A share as a whole percent; '-' for None (a score that does not apply)."""
  return '-' if value is None else f'{100 * value:.0f}%'


def summary_table(rows: list[dict], *, model: str | None = None) -> str:
  """The summary rows as markdown (scores in percent; '-' where a score never applies)."""
  keys = ['split', 'category', 'videos', *world_scores.CATEGORIES]
  rows = [({'model': model} if model else {}) | {k: row[k] for k in keys} for row in rows]
  return tables.markdown_table(rows, {name: percent for name in world_scores.CATEGORIES})


def per_video_table(scored: list[ScoredVideo]) -> str:
  """One row per video: split, prompt, each score, and why the failed ones failed."""
  lines = ['| # | split | prompt | ' + ' | '.join(world_scores.CATEGORIES) + ' | why |',
           '|' + ' --- |' * (len(world_scores.CATEGORIES) + 4)]
  for i, s in enumerate(scored):
    cells = [percent(getattr(s.scores, name)) for name in world_scores.CATEGORIES]
    why = '; '.join(f'{k}: {v}' for k, v in s.scores.reasons.items()).replace('|', '/')
    lines.append(f'| {i} | {s.prompt.split} | {s.prompt.text} | {" | ".join(cells)} | {why} |')
  return '\n'.join(lines)


def write_worst(out, scored: list[ScoredVideo], videos: list[np.ndarray], fps: float,
                count: int = WORST) -> list[pathlib.Path]:
  """out/worst.{png,mp4}: the `count` videos of lowest mean score, captioned with the prompt
  and the first failed score's reason."""
  order = sorted(range(len(scored)), key=lambda i: scored[i].mean)[:count]
  captions = []
  for i in order:
    reasons = scored[i].scores.reasons
    first = next(iter(reasons.items()), None)
    why = f' [{first[0]}: {first[1]}]' if first else ''
    captions.append(f'#{i} {scored[i].mean:.0%}: {scored[i].prompt.text}{why}')
  return grids.write_grid(pathlib.Path(out) / 'worst', [videos[i] for i in order], captions,
                          fps=fps)


def write_report(out, gen: generate.Generator, scored: list[ScoredVideo],
                 videos: list[np.ndarray], settings: generate.SampleSettings, *,
                 title: str = 'World simulation scores', direction: dict | None = None,
                 spread: list[dict] | None = None, tasks: list | None = None,
                 command: str | None = None) -> pathlib.Path:
  """out/report.md and out/scores.json (summary rows plus every video, with the command,
  revision and machine), and out/worst.*; `direction` (direction_probe.run's result) adds the
  text-controls-motion probe to both, `spread` (influence.on_world_prompts') how far the first
  frames reach the last ones, and `tasks` (prompting_tasks.score_tasks') the prompting tasks."""
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  rows = summary(scored)
  write_worst(out, scored, videos, gen.run.config.world.fps)
  media.write_json(out / 'scores.json', {
      **tables.provenance(command),
      'step': gen.step, 'settings': dataclasses.asdict(settings), 'summary': rows,
      'videos': [s.to_json() for s in scored],
      **({'direction_probe': direction} if direction else {}),
      **({'temporal_influence': spread} if spread else {}),
      **({'prompting_tasks': [dataclasses.asdict(t) for t in tasks]} if tasks else {})})
  lines = [f'# {title}', '',
           f'Model {gen.run.config.model.variant} at step {gen.step}; {len(scored)} prompts '
           f'sampled with {settings.method}, {settings.steps} steps, '
           f'{settings.guidance()}. Scores are measured from the pixels '
           '(`videogen/evals/world_scores.py`); each is a mean over the videos where it applies.',
           '', summary_table(rows), '',
           'Samples: `grid.*` and `samples/`; the lowest-scoring videos: `worst.png` / '
           '`worst.mp4`.', '']
  if direction:
    lines += ['## Does the text control the motion?', '',
              *direction_probe.report_lines(direction), '']
  if spread:
    lines += ['## How far the first frames reach the last ones', '',
              'Mean |change| of the clean-data prediction when the first quarter of the frames '
              'is re-noised, at those frames and at as many last ones; the same for the left '
              'half of every frame against the right half (`videogen/evals/influence.py`).', '',
              *influence.report_lines(spread), '']
  if tasks:
    lines += ['## Prompting with images and videos', '',
              'Each task runs on the world\'s render of every train and held-out prompt (clips '
              'training never saw); only the frames the model made are scored '
              '(`videogen/evals/prompting_tasks.py`); `tasks/<task>.*` shows input beside output.',
              '', prompting_tasks.table(tasks), '']
  lines += ['## Per video', '', per_video_table(scored)]
  path = out / 'report.md'
  media.write_text(path, '\n'.join(lines) + '\n')
  return path


@dataclasses.dataclass(frozen=True)
class PromptCounts:
  """How many prompts of each kind an evaluation samples (prompt_set's arguments)."""
  train: int = 16
  held_out: int = 8
  probes: int = 8


def evaluate(gen: generate.Generator, settings: generate.SampleSettings, out,
             counts: PromptCounts = PromptCounts(), *, direction_scenes: int = 4,
             tasks: bool = False, command: str | None = None) -> dict:
  """Samples and scores the run's prompt set, the text-controls-motion probe (direction_scenes
  scenes; 0 skips it), for pixel runs the temporal influence and, with `tasks` (a run with frame
  conditioning), the prompting tasks on the world's renders of the train and held-out prompts;
  writes OUT's report. Returns {'report': path, 'scored', 'direction' (or None), 'tasks'}."""
  out = pathlib.Path(out)
  prompts = prompt_set(gen.run.config, num_train=counts.train, num_held_out=counts.held_out,
                       num_probes=counts.probes)
  scored, videos = sample_and_score(gen, prompts, settings, out)
  direction = direction_probe.run(gen, settings, direction_scenes) if direction_scenes else None
  spread = None if gen.run.vae_config else influence.on_world_prompts(
      gen, [p for p in prompts if p.split == 'train'] or prompts)
  task_scores = None
  if tasks and gen.run.frame_conditioning:
    w = gen.run.config.world
    given = [p for p in prompts if p.split != 'probe']
    truths = [world_render.render_frames(p.scene, w.height, w.width, w.num_frames, w.fps)
              for p in given]
    task_scores = prompting_tasks.score_tasks(gen, given, truths, settings, out)
  report = write_report(out, gen, scored, videos, settings, direction=direction, spread=spread,
                        tasks=task_scores, command=command)
  return {'report': report, 'scored': scored, 'direction': direction, 'tasks': task_scores}


def compare_aspects(gen: generate.Generator, settings: generate.SampleSettings, out,
                    aspects, counts: PromptCounts = PromptCounts()) -> str:
  """Scores prompts of scenes drawn at each aspect's training size, sampled at that size, into
  OUT/aspect_<W>x<H>/; writes OUT/aspects.{md,json}, adherence in points against the first
  aspect. Returns the table."""
  out, results = pathlib.Path(out), {}
  for aspect in aspects:
    aspect_config, at = at_aspect(gen.run.config, settings, aspect)
    prompts = prompt_set(aspect_config, num_train=counts.train, num_held_out=counts.held_out,
                         num_probes=counts.probes)
    folder = out / f'aspect_{aspect.replace(":", "x")}'
    scored, videos = sample_and_score(gen, prompts, at, folder)
    write_report(folder, gen, scored, videos, at, title=f'World simulation scores at {aspect}')
    results[aspect] = (at, scored)
  rows = aspect_rows(results)
  table = aspect_table(rows)
  media.write_text(out / 'aspects.md', f'# Scores by aspect ratio, step {gen.step}\n\n{table}\n')
  tables.write_results(out / 'aspects.json', 'eval_world_aspects', rows)
  return table
