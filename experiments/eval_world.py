"""Scores a text-to-video checkpoint as a world simulator: adherence, motion, physics, permanence,
consistency, each measured from the pixels of its samples (videogen/evals/world_scores.py).

  python experiments/eval_world.py --workdir outputs/demo/run
  python experiments/eval_world.py --workdir reference/world_t2 --prompts 32 --held_out 8 --probes 16

Writes OUT (default WORKDIR/eval_world/): report.md (scores per split and category, every video
with why it failed), scores.json, grid.{png,mp4}, worst.{png,mp4} and samples/ (mp4 + JSON
sidecar each). The prompt set is fixed by the run's config and seed, so two checkpoints of a
run are compared on the same prompts.
"""
from absl import app
from absl import flags
from absl import logging

from videogen import generate
from videogen.evals import tables
from videogen.evals import world_eval

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training run or export to evaluate.',
                               required=True)
_OUT = flags.DEFINE_string('out', None, 'Output folder (default: WORKDIR/eval_world).')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: newest).')
_PROMPTS = flags.DEFINE_integer('prompts', 16, 'Prompts from the training distribution.')
_HELD_OUT = flags.DEFINE_integer('held_out', 8, 'Prompts of held-out combinations (0: none; '
                                 'ignored when the run holds nothing out).')
_PROBES = flags.DEFINE_integer('probes', 8, 'Probe prompts beyond the run\'s own world: '
                               'occluders, falls and pans.')
_STEPS = flags.DEFINE_integer('steps', None, 'Sampler steps (default: the config\'s).')
_CFG = flags.DEFINE_float('cfg', None, 'Text guidance scale (default: the config\'s).')
_METHOD = flags.DEFINE_enum('method', None, ['euler', 'heun'], 'Sampler (default: the '
                            'config\'s).')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config = generate.load_config(_WORKDIR.value)
  world_eval.check_world_run(config, _WORKDIR.value)
  s = config.sample
  settings = generate.SampleSettings(steps=_STEPS.value or s.steps,
                                     method=_METHOD.value or s.method,
                                     cfg_scale=s.cfg_scale if _CFG.value is None else _CFG.value)
  prompts = world_eval.prompt_set(config, num_train=_PROMPTS.value,
                                  num_held_out=_HELD_OUT.value,
                                  num_probes=_PROBES.value)
  gen = generate.Generator.from_workdir(_WORKDIR.value, step=_STEP.value)
  out = _OUT.value or f'{_WORKDIR.value}/eval_world'
  scored, videos = world_eval.sample_and_score(gen, prompts, settings, out)
  report = world_eval.write_report(out, gen, scored, videos, settings)
  print(world_eval.summary_table(world_eval.summary(scored)))
  print(f'\n{len(scored)} videos at step {gen.step} on {tables.machine()["device"]}; '
        f'report: {report}')


if __name__ == '__main__':
  app.run(main)
