"""Scores a text-to-video checkpoint as a world simulator: adherence, motion, physics, permanence,
consistency, each measured from the pixels of its samples (videogen/evals/world_scores.py).

  python experiments/eval_world.py --workdir outputs/demo/run
  python experiments/eval_world.py --workdir reference/world_t2 --prompts 32 --held_out 8 --probes 16
  python experiments/eval_world.py --workdir outputs/packed/run --aspects 1:1,16:9,9:16

Writes OUT (default WORKDIR/eval_world/): report.md (scores per split and category, every video
with why it failed), scores.json (the same, with the command, revision and machine),
grid.{png,mp4}, worst.{png,mp4} and samples/ (mp4 + JSON sidecar each), the
text-controls-motion probe (each of --direction_scenes scenes asked in every direction with one
seed; videogen/evals/direction_probe.py), with --tasks the prompting tasks (tasks/) and, for pixel runs, how far the
first frames reach the last ones inside the model (videogen/evals/influence.py). With --aspects,
prompts of scenes drawn at each aspect's training frame size (config.data.sizes) are sampled at
that size into OUT/aspect_<W>x<H>/, and OUT/aspects.{md,json} compare them, adherence in points
against the square clips. The prompt set is fixed by the run's config and seed, so two
checkpoints of a run are compared on the same prompts.
"""
from absl import app
from absl import flags
from absl import logging

from videogen.core import media
from videogen.core import tables
from videogen.evals import prompting_tasks
from videogen.evals import world_eval
from videogen.inference import generate
from videogen.runtime import huge_pages

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training run or export to evaluate.',
                               required=True)
_OUT = flags.DEFINE_string('out', None, 'Output folder (default: WORKDIR/eval_world).')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: newest).')
_RAW = flags.DEFINE_bool('raw_weights', False, 'Evaluate the trained weights instead of their '
                         'moving average (a training run only; an export holds the average).')
_PROMPTS = flags.DEFINE_integer('prompts', 16, 'Prompts from the training distribution.')
_HELD_OUT = flags.DEFINE_integer('held_out', 8, 'Prompts of held-out combinations (0: none; '
                                 'ignored when the run holds nothing out).')
_PROBES = flags.DEFINE_integer('probes', 8, 'Probe prompts beyond the run\'s own world: '
                               'occluders, falls and pans.')
_DIRECTION_SCENES = flags.DEFINE_integer(
    'direction_scenes', 4, 'Scenes of the text-controls-motion probe, each sampled in all 8 '
    'directions with one seed (0: skip it).')
_STEPS = flags.DEFINE_integer('steps', None, 'Sampler steps (default: the config\'s).')
_CFG = flags.DEFINE_float('cfg', None, 'Text guidance scale (default: the config\'s).')
_CFG_MIN_T = flags.DEFINE_float('cfg_min_t', None, 'Text guidance only at times t >= this '
                                '(0: at every time; default: the config\'s).')
_ASPECTS = flags.DEFINE_list('aspects', [], 'Aspect ratios (width:height, e.g. 1:1,16:9,9:16) to '
                             'compare: each scores prompts of scenes drawn at its training frame '
                             'size, sampled at that size (default: the config\'s clip size only).')
_TASKS = flags.DEFINE_bool('tasks', False, 'Also run and score the prompting tasks (image to '
                           'video, extensions, connect, keyframes, loop, SDEdit) on the world\'s '
                           'renders of the train and held-out prompts (runs with frame '
                           'conditioning).')
_SHIFT = flags.DEFINE_float('shift', None, 'Sampler time-grid shift (default: the run\'s '
                            'training shift).')
_METHOD = flags.DEFINE_enum('method', None, ['euler', 'heun'], 'Sampler (default: the '
                            'config\'s).')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config = generate.load_config(_WORKDIR.value)
  world_eval.check_world_run(config, _WORKDIR.value)
  settings = generate.settings_for(config, steps=_STEPS.value, method=_METHOD.value,
                                   cfg_scale=_CFG.value, cfg_min_t=_CFG_MIN_T.value,
                                   shift=_SHIFT.value)
  out = media.check_writable_folder(_OUT.value or f'{_WORKDIR.value}/eval_world')
  gen = generate.Generator.from_workdir(_WORKDIR.value, step=_STEP.value,
                                        use_ema=not _RAW.value)
  counts = world_eval.PromptCounts(_PROMPTS.value, _HELD_OUT.value, _PROBES.value)
  if _ASPECTS.value:
    print(world_eval.compare_aspects(gen, settings, out, _ASPECTS.value, counts))
    print(f'\n{len(_ASPECTS.value)} aspects at step {gen.step}; reports: {out}')
    return
  result = world_eval.evaluate(gen, settings, out, counts,
                               direction_scenes=_DIRECTION_SCENES.value, tasks=_TASKS.value,
                               command=tables.command_line())
  print(world_eval.summary_table(world_eval.summary(result['scored'])))
  if result['direction']:
    print(f'\ntext controls motion: {result["direction"]["text_controls_motion"]:.0%} '
          f'(chance {result["direction"]["chance"]:.1%})')
  if result['tasks']:
    print('\n' + prompting_tasks.table(result['tasks']))
  print(f'\n{len(result["scored"])} videos at step {gen.step} on {tables.machine()["device"]}; '
        f'report: {result["report"]}')

if __name__ == '__main__':
  huge_pages.reexec_with_huge_pages()
  app.run(main)
