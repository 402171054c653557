"""Does the text control the motion? The same scene asked in every direction, with one seed.

For each probe scene (one moving object of the run's world, no occluder, no pan, placed so that
its travel stays in view), the captions differ only in the direction phrase (each of the world's
directions: all 8 by default) and are sampled with the SAME noise. A model that follows the
words moves the object every way asked; a model whose motion the noise alone decides gives one
trajectory for all, right once per scene (chance: 1 in 8, 12.5%). The score is the share of
videos whose measured direction (tracking.motion_direction on the asked colour, before the first
bounce) is the asked one.

Legend: T frames, H height, W width.
"""
import dataclasses

import ml_collections
import numpy as np

from videogen.data import prompts as prompts_lib
from videogen.data import world
from videogen.data import world_render
from videogen.evals import motion_classes
from videogen.evals import tracking
from videogen.inference import generate

SEED_OFFSET = 30_000  # probe scenes are drawn apart from training, eval prompts and probes


def probe_options(config: ml_collections.ConfigDict) -> world.WorldOptions:
  """The run's world with one moving object and no occluder or pan."""
  options = world.WorldOptions.from_config(config.world)
  return dataclasses.replace(options, min_objects=1, max_objects=1, motions=('move',),
                             p_occluder=0.0, p_pan=0.0)


def centred(obj: world.ObjectSpec, direction: str, duration: float,
            view: tuple[float, float]) -> world.ObjectSpec:
  """`obj` moving in `direction`, starting where its travel is centred in the view (clipped to
  it), so the clip shows the direction before any bounce."""
  size = world.SIZES[obj.size]
  velocity = np.array(world.DIRECTIONS[direction]) * world.SPEEDS[obj.speed]
  start = np.array(view) / 2 - velocity * duration / 2
  start = np.clip(start, size / 2, np.array(view) - size / 2)
  return dataclasses.replace(obj, direction=direction, x=float(start[0]), y=float(start[1]))


def probe_prompts(config: ml_collections.ConfigDict,
                  num_scenes: int) -> list[list[prompts_lib.Prompt]]:
  """Per probe scene, one prompt per direction of the world (in its order) whose seed is the
  scene's index: the caption's phrasing is fixed per scene, only the direction words change."""
  if num_scenes < 1:
    raise ValueError(f'num_scenes={num_scenes}: the direction probe needs at least one scene, '
                     'e.g. 4.')
  options = probe_options(config)
  seed = config.seed + SEED_OFFSET
  groups = []
  for index in range(num_scenes):
    scene = world.sample_scene(options, seed, index, 'train')
    group = []
    for direction in options.directions:
      obj = centred(scene.objects[0], direction, scene.duration, scene.view)
      asked = dataclasses.replace(scene, objects=(obj,))
      group.append(prompts_lib.Prompt(world.caption(asked, seed + index), asked, 'probe',
                                      index))
    groups.append(group)
  return groups


def measured_direction(frames_thwc: np.ndarray, prompt: prompts_lib.Prompt) -> str:
  """The compass direction the asked object's colour travels in `frames`, or 'still'."""
  side = min(frames_thwc.shape[1:3])
  track = tracking.track(frames_thwc, prompt.scene.objects[0].colour)
  return tracking.motion_direction(track, motion_classes.DIRECTION_MIN_TRAVEL * side)


def score(groups: list[list[prompts_lib.Prompt]], videos: list[np.ndarray]) -> dict:
  """{'text_controls_motion': share of videos moving the asked way, 'chance' (1 / directions),
  'distinct': mean number of different measured directions per scene (all of them = fully
  controlled, 1 = the noise decides), 'videos': [{prompt, seed, asked, measured}]}; videos in
  prompt order."""
  prompts = [p for group in groups for p in group]
  per_group = len(groups[0])
  if len(videos) != len(prompts):
    raise ValueError(f'{len(videos)} videos for {len(prompts)} probe prompts: pass one video '
                     'per prompt, in probe_prompts order.')
  records = [{'prompt': p.text, 'seed': p.seed, 'asked': p.scene.objects[0].direction,
              'measured': measured_direction(v, p)} for p, v in zip(prompts, videos)]
  hits = [r['asked'] == r['measured'] for r in records]
  per_scene = [records[i:i + per_group] for i in range(0, len(records), per_group)]
  distinct = [len({r['measured'] for r in scene if r['measured'] != 'still'})
              for scene in per_scene]
  return {'text_controls_motion': float(np.mean(hits)), 'chance': 1 / per_group,
          'distinct': float(np.mean(distinct)), 'videos': records}


def render_groups(config: ml_collections.ConfigDict,
                  groups: list[list[prompts_lib.Prompt]]) -> list[np.ndarray]:
  """The world's own renders of the probe prompts (the measure's ceiling)."""
  w = config.world
  return [world_render.render_frames(p.scene, w.height, w.width, w.num_frames, w.fps)
          for group in groups for p in group]


def sample_groups(gen, groups: list[list[prompts_lib.Prompt]], settings) -> list[np.ndarray]:
  """A generate.Generator's videos of the probe prompts, each scene's 8 with its one seed."""
  videos = []
  for group in groups:
    batch = gen.generate([p.text for p in group], seeds=[p.seed for p in group],
                         settings=settings)
    videos += list(batch)
  return videos


def run(gen, settings, num_scenes: int) -> dict:
  """Samples and scores the probe on a generate.Generator's run (`score`'s result)."""
  groups = probe_prompts(gen.run.config, num_scenes)
  return score(groups, sample_groups(gen, groups, settings))


def report_lines(result: dict) -> list[str]:
  """Markdown: the probe's score against chance, then asked -> measured per scene."""
  videos = result['videos']
  directions = list(dict.fromkeys(v['asked'] for v in videos))
  lines = [f'**Text controls motion: {100 * result["text_controls_motion"]:.0f}%** of '
           f'{len(videos)} videos move the asked way (chance {100 * result["chance"]:.1f}%; '
           f'{result["distinct"]:.1f} different directions per scene of {len(directions)}). Each '
           f'scene is asked in all {len(directions)} directions with one seed '
           '(`videogen/evals/direction_probe.py`); cells: the direction measured.', '',
           '| seed | ' + ' | '.join(directions) + ' |', '|' + ' --- |' * (len(directions) + 1)]
  for start in range(0, len(videos), len(directions)):
    scene = videos[start:start + len(directions)]
    cells = [('**' if v['asked'] == v['measured'] else '') + v['measured']
             + ('**' if v['asked'] == v['measured'] else '') for v in scene]
    lines.append(f'| {scene[0]["seed"]} | ' + ' | '.join(cells) + ' |')
  return lines


def over_training(workdir, steps, settings, num_scenes: int, use_ema: bool = True) -> list[dict]:
  """The probe at each checkpoint step of a training run (same scenes and seeds each time): one
  row per step with its score and directions per scene, to see when the words take over.
  use_ema False probes the raw (trained) weights instead of their moving average."""
  rows = []
  for step in steps:
    gen = generate.Generator.from_workdir(workdir, step=step, use_ema=use_ema)
    result = run(gen, settings, num_scenes)
    rows.append({'step': gen.step, 'weights': 'ema' if use_ema else 'raw',
                 'cfg_scale': settings.cfg_scale, 'cfg_min_t': settings.cfg_min_t,
                 'text_controls_motion': result['text_controls_motion'],
                 'directions_per_scene': result['distinct'], 'chance': result['chance'],
                 'videos': len(result['videos'])})
  return rows
