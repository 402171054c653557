"""Trains a text-to-video DiT on the procedural world; resumes from WORKDIR's newest checkpoint.

  python experiments/train.py --config configs/world.py --workdir outputs/run
  python experiments/train.py --config configs/world.py:variant=S/2 --workdir outputs/s2 \
      --config.train.steps=20000 --config.data.batch_size=64
  python experiments/train.py --config configs/world.py --workdir outputs/finetune \
      --config.init_from=reference/world_t2   # start from a run's or an export's weights

Writes WORKDIR/{config.json, checkpoints/<step>/, tb/, metrics.jsonl, samples/<step>/ every
config.train.sample_every steps}. SIGTERM saves a
checkpoint before exiting; running the same command again continues exactly.
--config.init_from (a training run or an export) starts a run that has no checkpoint yet from that
folder's EMA params, wherever parameter path and shape agree (logged: loaded, new, dropped); a
parameter of another shape stops it. The optimizer starts fresh; once WORKDIR has checkpoints,
resuming wins over init_from.
"""
from absl import app
from absl import flags
from absl import logging

import cluster_flags
from videogen.core import config_args
from videogen.parallel import distributed
from videogen.runtime import dit_run
from videogen.runtime import huge_pages
from videogen.train import hooks
from videogen.train import loop

_CONFIG = config_args.define_config_file(
    'config', 'configs/world.py', 'Config file (`path:arg` passes arg to its get_config).',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run folder: checkpoints, metrics, config.',
                               required=True)
_RESTORE_FALLBACK = flags.DEFINE_bool(
    'restore_fallback', False, 'When the newest checkpoint cannot be read, resume from the newest '
    'one that can (the unreadable folders are renamed <step>.unreadable).')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  cluster_flags.initialize(_CONFIG.value)  # before anything touches a device
  run = dit_run.build(_CONFIG.value)
  result = loop.train(run, _WORKDIR.value, hooks=hooks.defaults(run, _WORKDIR.value),
                      restore_fallback=_RESTORE_FALLBACK.value)
  if distributed.is_main_process():
    print(f'trained to step {result.last_step}; checkpoints in {_WORKDIR.value}/checkpoints')


if __name__ == '__main__':
  huge_pages.reexec_with_huge_pages()
  app.run(main)
