"""LoRA against a full fine-tune (videogen/jobs/finetune.py): both start from one base and learn a
new world for the same steps; a row each with its world scores and checkpoint size.

  python experiments/finetune_compare.py --base reference/world_t2 --kinds digit --digits 0,1 \
      --steps 600 --out outputs/finetune_digits

The new world is the base's with --kinds, --colours and --digits replaced (by default a kind the
base never drew: handwritten digits). Each variant trains into OUT/<variant>/run (run again to
resume) and is scored on the new world's training prompts into OUT/<variant>/row.json;
OUT/finetune.{json,md} gather the rows.
"""
from absl import app
from absl import flags
from absl import logging

from videogen.core import tables
from videogen.jobs import finetune
from videogen.runtime import huge_pages

_BASE = flags.DEFINE_string('base', 'reference/world_t2', 'The run or export both variants start '
                            'from.')
_KINDS = flags.DEFINE_list('kinds', ['digit'], "The new world's kinds (circle, square, triangle, "
                           'digit).')
_COLOURS = flags.DEFINE_list('colours', None, "The new world's colours (default: the base's).")
_DIGITS = flags.DEFINE_list('digits', None, "The new world's digits, for the digit kind "
                            "(default: the base's, 0-9).")
_VARIANTS = flags.DEFINE_list('variants', list(finetune.VARIANTS),
                              f'Variants to run, of {list(finetune.VARIANTS)}.')
_STEPS = flags.DEFINE_integer('steps', 400, 'Fine-tuning steps of every variant (equal budget).')
_BATCH = flags.DEFINE_integer('batch_size', 32, 'Clips per step of every variant (the world '
                              "config's batch; an export's config holds its sampling batch, 1).")
_PROMPTS = flags.DEFINE_integer('prompts', 16, 'Prompts of the new world scored per variant.')
_OUT = flags.DEFINE_string('out', 'outputs/finetune', 'Output folder.')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  world = {'kinds': tuple(_KINDS.value), 'held_out': ()}
  if _COLOURS.value:
    world['colours'] = tuple(_COLOURS.value)
  if _DIGITS.value:
    world['digits'] = tuple(int(digit) for digit in _DIGITS.value)
  for variant in _VARIANTS.value:
    finetune.run_variant(_BASE.value, world, variant, _OUT.value, steps=_STEPS.value,
                         batch_size=_BATCH.value, num_prompts=_PROMPTS.value)
  print(finetune.table(_OUT.value, tables.command_line()))


if __name__ == '__main__':
  huge_pages.reexec_with_huge_pages()
  app.run(main)
