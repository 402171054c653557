"""The main job: train the default CPU model on the world (resuming), then sample and report.

  python experiments/main.py                       # about 12 minutes of training on 2 cores
  # longer (continues the same run):
  python experiments/main.py --minutes 60 --config.train.steps=12000 --config.optim.total_steps=12000

Writes outputs/demo/: samples (mp4 + JSON sidecar per prompt), grid.mp4/png, truth_grid.*,
curve.png and report.md with the world scores (adherence, motion, physics, permanence,
consistency) on train and held-out prompts, and the prompting tasks' scores.
"""
from absl import app
from absl import flags
from absl import logging

import cluster_flags
from videogen.core import config_args
from videogen.core import tables
from videogen.jobs import main_job
from videogen.runtime import huge_pages

_CONFIG = config_args.define_config_file('config', 'configs/world.py', 'Config file.',
                                         lock_config=True)
_OUT = flags.DEFINE_string('out', 'outputs/demo', 'Output folder (holds the run too).')
_MINUTES = flags.DEFINE_float('minutes', 12.0, 'Training wall-time budget of this invocation '
                              '(training also stops at config.train.steps: raise it, and '
                              'config.optim.total_steps, to train longer).')
_PROMPTS = flags.DEFINE_integer('prompts', 16, 'Train-distribution prompts sampled and scored '
                                '(each also runs every prompting task).')
_HELD_OUT = flags.DEFINE_integer('held_out', 8, 'Held-out prompts (combinations training never '
                                 'sees) sampled and scored.')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  config = _CONFIG.value
  cluster_flags.initialize(config)  # before anything touches a device
  config.train.max_minutes = _MINUTES.value
  print('report:', main_job.run(config, _OUT.value, num_train_prompts=_PROMPTS.value,
                               num_held_out_prompts=_HELD_OUT.value,
                               command=tables.command_line()))


if __name__ == '__main__':
  huge_pages.reexec_with_huge_pages()
  app.run(main)
