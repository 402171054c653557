"""Renders clips of the procedural world: mp4 + gif per clip, JSON ground truth, a captioned grid.

  python experiments/render_world.py --out outputs/world --num_clips 16
  python experiments/render_world.py --config.world.height=64 --config.world.num_frames=17

Scene contents and sizes come from the `world` section of the config (configs/world.py).
"""
from absl import app
from absl import flags
from absl import logging

from videogen.core import config_args
from videogen.data import preview
from videogen.data import world

_CONFIG = config_args.define_config_file(
    'config', 'configs/world.py', 'Config file; its `world` section sets what is rendered.',
    lock_config=True)
_OUT = flags.DEFINE_string('out', 'outputs/world', 'Output folder (created if missing).')
_NUM_CLIPS = flags.DEFINE_integer('num_clips', 16, 'How many clips to render.')
_SPLIT = flags.DEFINE_enum('split', 'train', ['train', 'held_out'],
                           "'train' never shows held-out combinations; 'held_out' always does.")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  config = _CONFIG.value
  paths = preview.render_clips(world.WorldOptions.from_config(config.world), _OUT.value,
                               seed=config.seed, num_clips=_NUM_CLIPS.value, split=_SPLIT.value)
  print(f'wrote {len(paths)} files to {_OUT.value}')


if __name__ == '__main__':
  app.run(main)
