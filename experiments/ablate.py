"""Equal-budget ablations: variants of one config (videogen/jobs/ablation.py), a row each.

  python experiments/ablate.py --variants recipe,before --steps 1200 --out outputs/ablation
  # the smallest failing case: one red circle at fast speed, 8 directions
  python experiments/ablate.py --variants recipe,before --steps 1200 --out outputs/ablation_min \
      --config.world.colours="('red',)" --config.world.kinds="('circle',)" \
      --config.world.speeds="('fast',)" --config.world.held_out="()" --config.data.layout=fixed

Each variant trains into OUT/<variant>/run (run again to resume), is scored (text-controls-motion
probe, world scores of training prompts, temporal influence) into OUT/<variant>/row.json; then
OUT/ablation.{json,md} gather every variant's row in OUT, so variants run in parallel processes
into one OUT add up to one table.
"""
from absl import app
from absl import flags
from absl import logging

import cluster_flags
from videogen.core import config_args
from videogen.core import tables
from videogen.jobs import ablation
from videogen.runtime import huge_pages

_CONFIG = config_args.define_config_file('config', 'configs/world.py', 'Base config.',
                                         lock_config=True)
_VARIANTS = flags.DEFINE_list('variants', ['recipe'],
                              f'Variants to run, of {list(ablation.VARIANTS)}.')
_STEPS = flags.DEFINE_integer('steps', 1000, 'Training steps of every variant (equal budget).')
_OUT = flags.DEFINE_string('out', 'outputs/ablation', 'Output folder.')
_PROMPTS = flags.DEFINE_integer('prompts', 16, 'Training-distribution prompts scored per variant.')
_SCENES = flags.DEFINE_integer('probe_scenes', 4, 'Scenes of the direction probe (x 8 videos).')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  cluster_flags.initialize(_CONFIG.value)  # before anything touches a device
  for variant in _VARIANTS.value:
    ablation.run_variant(_CONFIG.value, variant, _OUT.value, steps=_STEPS.value,
                         num_prompts=_PROMPTS.value, probe_scenes=_SCENES.value)
  print(ablation.table(_OUT.value, tables.command_line()))


if __name__ == '__main__':
  huge_pages.reexec_with_huge_pages()
  app.run(main)
