"""The scaling study: DiT sizes x compute budgets on the world, each scored as a world simulator.

  python experiments/scaling.py --study quick      # 2 sizes x 3 budgets, the short one
  python experiments/scaling.py --study full       # 3 sizes x 3 budgets, reference/scaling/

Writes OUT (default outputs/scaling_<study>/): scaling.md and scaling.json (a row per size and
budget: parameters, steps, training FLOPs, loss, the five world scores), scaling.png (each
against compute), evals/<size>_<budget>x/ (a world_eval report per checkpoint) and runs/. Run it
again to resume where it stopped. See videogen/jobs/scaling.py for how budgets are counted.
"""
from absl import app
from absl import flags
from absl import logging

import cluster_flags
from videogen.core import config_args
from videogen.jobs import scaling
from videogen.runtime import huge_pages

_CONFIG = config_args.define_config_file('config', 'configs/world.py', 'Base config (the '
                                         'study sets the world and the DiT size).',
                                         lock_config=True)
_STUDY = flags.DEFINE_enum('study', 'quick', list(scaling.STUDIES), 'Which study to run.')
_OUT = flags.DEFINE_string('out', None, 'Output folder (default: outputs/scaling_<study>).')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  cluster_flags.initialize(_CONFIG.value)  # before anything touches a device
  study = scaling.STUDIES[_STUDY.value]
  out = _OUT.value or f'outputs/scaling_{_STUDY.value}'
  rows = scaling.run(_CONFIG.value, study, out)
  print(scaling.table(rows))
  print(f'\nwrote {out}/scaling.md, scaling.json, scaling.png')


if __name__ == '__main__':
  huge_pages.reexec_with_huge_pages()
  app.run(main)
