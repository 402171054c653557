"""Checks that the training batches say what they show: per data layout, the share of moving
objects whose caption's direction is the one their clip's pixels move (videogen/evals/
caption_motion.py), read from the pipeline the trainer reads.

  python experiments/check_captions.py --batches 12 --out outputs/captions.json

Prints a table (layout, clips, the distinct captions of a batch, moving objects, agreement,
median displacement) and writes it as JSON with the command, revision and machine.
"""
import itertools

from absl import app
from absl import flags
from absl import logging
import numpy as np

from videogen.core import config_args
from videogen.core import tables
from videogen.data import pipeline
from videogen.evals import caption_motion

_CONFIG = config_args.define_config_file('config', 'configs/world.py', 'Config file.',
                                         lock_config=False)
_BATCHES = flags.DEFINE_integer('batches', 12, 'Batches read per layout.')
_LAYOUTS = flags.DEFINE_list('layouts', list(pipeline.LAYOUTS), 'Layouts to check.')
_OUT = flags.DEFINE_string('out', 'outputs/captions.json', 'JSON file to write.')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  rows = []
  for layout in _LAYOUTS.value:
    config = _CONFIG.value.copy_and_resolve_references()
    config.data.layout = layout
    batches = itertools.islice(iter(pipeline.world_dataset_from_config(config)), _BATCHES.value)
    per_batch = [caption_motion.batch_clips(batch, config.model.patch_size) for batch in batches]
    pairs = [pair for batch_pairs in per_batch for pair in batch_pairs]
    # What the text encoder runs on: each batch's distinct captions (it encodes those once).
    distinct = np.mean([len({caption for _, caption in batch_pairs}) for batch_pairs in per_batch])
    result = caption_motion.check(pairs)
    mismatched = sorted({measured for _, measured in result['mismatches']})
    rows.append({'layout': layout, 'clips': len(pairs), 'distinct_captions_per_batch':
                 float(distinct), 'moving': result['moving'],
                 'agree': result['agree'], 'median_displacement_px':
                 result['median_displacement_px'], 'mismatches_read_as': ', '.join(mismatched)})
  print(tables.markdown_table(rows, {'agree': lambda v: f'{100 * v:.1f}%'}))
  path = tables.write_results(_OUT.value, 'check_captions', rows,
                              command=tables.command_line())
  print(f'wrote {path}')


if __name__ == '__main__':
  app.run(main)
