"""The text-controls-motion probe at several checkpoints of one run: when do the words take over
the motion? Each step samples the same scenes, each asked in every direction with one seed
(videogen/evals/direction_probe.py).

  python experiments/probe_training.py --workdir outputs/run --steps 500,1000,1500,2000

Writes OUT (default WORKDIR/probe_training).{json,md}: a row per step (command, revision and
machine in the JSON). Only checkpoints still kept in WORKDIR/checkpoints can be probed (raise
config.train.keep_checkpoints to keep more).
"""
import pathlib

from absl import app
from absl import flags
from absl import logging

from videogen.core import media
from videogen.core import tables
from videogen.evals import direction_probe
from videogen.inference import generate
from videogen.runtime import huge_pages

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training run to probe.', required=True)
_STEPS = flags.DEFINE_list('steps', None, 'Checkpoint steps to probe, e.g. 500,1000.',
                           required=True)
_SCENES = flags.DEFINE_integer('scenes', 4, 'Probe scenes, each sampled in every direction.')
_USE_EMA = flags.DEFINE_bool('use_ema', True, 'Probe the moving average of the weights (as '
                              'sampling does); --nouse_ema probes the trained weights themselves.')
_CFG_SCALE = flags.DEFINE_float('cfg_scale', None, 'Text guidance (default: the run\'s '
                                'config.sample.cfg_scale).')
_CFG_MIN_T = flags.DEFINE_float('cfg_min_t', None, 'Text guidance only at times t >= this (0: at '
                                'every time; default: the run\'s config.sample.cfg_min_t).')
_OUT = flags.DEFINE_string('out', None, 'Output path without suffix (default: '
                           'WORKDIR/probe_training).')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config = generate.load_config(_WORKDIR.value)
  settings = generate.settings_for(config, cfg_scale=_CFG_SCALE.value,
                                   cfg_min_t=_CFG_MIN_T.value)
  try:
    steps = [int(step) for step in _STEPS.value]
  except ValueError as error:
    raise app.UsageError(f'--steps {_STEPS.value} must be whole numbers, e.g. 500,1000.') from error
  rows = direction_probe.over_training(_WORKDIR.value, steps, settings, _SCENES.value,
                                       use_ema=_USE_EMA.value)
  out = pathlib.Path(_OUT.value or f'{_WORKDIR.value}/probe_training')
  command = tables.command_line()
  tables.write_results(out.with_suffix('.json'), 'probe_training', rows, command=command)
  table = tables.markdown_table(rows)
  machine = tables.machine()
  media.write_text(
      out.with_suffix('.md'),
      f'# Text controls motion over training\n\n`{command}` at `{tables.revision()}` on '
      f'{machine["processor"]} ({machine["cpu_count"]} cores, {machine["device"]})\n\n{table}\n')
  print(table)


if __name__ == '__main__':
  huge_pages.reexec_with_huge_pages()
  app.run(main)
