r"""Encodes clips once with a trained VAE and the text encoder into a latent cache: the world's,
a folder's or a TFDS dataset's.

  python experiments/encode_dataset.py --vae_workdir outputs/vae_world --out cache/world \
      --num_records 4096
  python experiments/encode_dataset.py --vae_workdir outputs/vae_tiny --out cache/tiny \
      --config configs/world.py:runlocal=True --num_records 64 --batch_size 8
  python experiments/encode_dataset.py --vae_workdir outputs/vae_mine --out cache/mine \
      --config configs/folder.py --config.data.root=DIR --num_records 1024

The DiT config (--config) says what is encoded: its data.source (the world section's scene
contents, or the folder or TFDS dataset it names), clip size, seed, data.split and text
encoder. Each clip is the smallest 1 + r_t·k frames at or above world.num_frames (8 -> 9 for a
4x temporal VAE), since the causal VAE takes 1 + r_t·k frames; a folder's or TFDS dataset's
records are the first of its shuffle (record j: file or example j % their count, as training
reads them).
OUT gets ArrayRecord shards of float16 latents and caption states plus cache.json; read them with
videogen.data.latent_cache.LatentCacheSource or latent_dataset. See videogen/data/latent_cache.py.
Train a DiT on it with the same config's latent variant:

  python experiments/train.py --config configs/world.py:latent=True --workdir outputs/latent \
      --config.autoencoder=outputs/vae_world --config.data.cache_dir=cache/world
"""
import pathlib
import time

from absl import app
from absl import flags
from absl import logging

from videogen.core import config_args
from videogen.inference import vae as vae_lib
from videogen.data import latent_cache
from videogen.models import text
from videogen.runtime import huge_pages

_CONFIG = config_args.define_config_file(
    'config', 'configs/world.py', 'DiT config whose data source, world size, seed, data.split '
    'and text settings define what is encoded (`path:arg` passes arg to its get_config).',
    lock_config=True)
_VAE_WORKDIR = flags.DEFINE_string(
    'vae_workdir', None, 'A trained VAE: a run of experiments/train_vae.py or an export of it.',
    required=True)
_OUT = flags.DEFINE_string('out', None, 'Cache folder to write (must not hold a cache yet).',
                           required=True)
_STEP = flags.DEFINE_integer('step', None, 'VAE checkpoint step (default: newest).')
_NUM_RECORDS = flags.DEFINE_integer('num_records', 1024, 'Clips to encode: records 0 .. N-1 '
                                    'of the source.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 16, 'Clips per VAE call.')
_RECORDS_PER_SHARD = flags.DEFINE_integer('records_per_shard', 1024,
                                          'Records per ArrayRecord shard file.')
_SPLIT = flags.DEFINE_string('split', None, "World split ('train' or 'held_out') or a TFDS "
                             "dataset's (default: the config's data.split).")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO.
  config = _CONFIG.value
  vae = vae_lib.Autoencoder.from_workdir(_VAE_WORKDIR.value, step=_STEP.value)
  encoder = text.encoder_from_config(config.text)
  start = time.perf_counter()
  metadata = latent_cache.encode_source(
      config, vae, encoder, _OUT.value, vae_workdir=_VAE_WORKDIR.value,
      num_records=_NUM_RECORDS.value, batch_size=_BATCH_SIZE.value,
      records_per_shard=_RECORDS_PER_SHARD.value, split=_SPLIT.value)
  seconds = time.perf_counter() - start
  size = sum(f.stat().st_size for f in pathlib.Path(_OUT.value).iterdir())
  n = metadata['num_records']
  print(f"wrote {n} records of latents {metadata['latent_shape']} to {_OUT.value} in "
        f"{len(metadata['shards'])} shards: {size:,} bytes on disk ({size / n:,.0f} per record), "
        f'{n / seconds:.1f} records/s')


if __name__ == '__main__':
  huge_pages.reexec_with_huge_pages()
  app.run(main)
