"""Trains the causal video VAE on the procedural world; resumes from WORKDIR's newest checkpoint.

  python experiments/train_vae.py --config configs/vae_world.py --workdir outputs/vae_world
  python experiments/train_vae.py --config configs/vae_world.py --workdir outputs/vae_world \
      --minutes 30 --config.train.steps=5000 --config.optim.total_steps=5000
  python experiments/train_vae.py --config configs/vae_world.py --workdir outputs/vae_tuned \
      --config.init_from=outputs/vae_world   # a new run from a VAE run's or export's weights

Writes WORKDIR/{config.json, checkpoints/<step>/, tb/, metrics.jsonl, samples/<step>/,
latent_stats.json}. SIGTERM (or the --minutes budget) saves a checkpoint before exiting; running
the same command again continues exactly. Evaluate with experiments/eval_vae.py --workdir WORKDIR.
"""
from absl import app
from absl import flags
from absl import logging

import cluster_flags
from videogen.core import config_args
from videogen.parallel import distributed
from videogen.runtime import huge_pages
from videogen.runtime import vae_run
from videogen.train import hooks
from videogen.train import loop

_CONFIG = config_args.define_config_file(
    'config', 'configs/vae_world.py', 'Config file (`path:arg` passes arg to its get_config).',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run folder: checkpoints, metrics, config.',
                               required=True)
_RESTORE_FALLBACK = flags.DEFINE_bool(
    'restore_fallback', False, 'When the newest checkpoint cannot be read, resume from the newest '
    'one that can (the unreadable folders are renamed <step>.unreadable).')
_MINUTES = flags.DEFINE_float('minutes', None, 'Wall-time budget of this invocation (default: '
                              'config.train.max_minutes; training also stops at train.steps).')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  cluster_flags.initialize()  # before anything touches a device
  config = _CONFIG.value
  if _MINUTES.value is not None:
    config.train.max_minutes = _MINUTES.value
  run = vae_run.build(config)
  result = loop.train(run, _WORKDIR.value, hooks=hooks.defaults(run, _WORKDIR.value),
                      restore_fallback=_RESTORE_FALLBACK.value)
  if distributed.is_main_process():
    print(f'trained to step {result.last_step}; checkpoints in {_WORKDIR.value}/checkpoints, '
          f'latent stats in {_WORKDIR.value}/{vae_run.LATENT_STATS_FILE}')


if __name__ == '__main__':
  huge_pages.reexec_with_huge_pages()
  app.run(main)
