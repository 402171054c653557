"""Fine-tune converted Wan 2.1 weights: the config of an export of experiments/convert_wan.py,
starting from its weights and training on latents of its VAE.

Usage:
  python experiments/encode_dataset.py --vae_workdir outputs/wan_1.3b/vae --out outputs/wan_cache \
      --config configs/wan.py:export=outputs/wan_1.3b
  python experiments/train.py --config configs/wan.py:export=outputs/wan_1.3b \
      --config.data.cache_dir=outputs/wan_cache --workdir outputs/wan_ft
The export's config.json is the model, text encoder (umT5, captions padded to 512 positions the
DiT attends to), VAE and sampler of the converted weights, and configs/world.py's other sections
(data, optimizer, mesh: set them for your hardware, e.g. --config.mesh.fsdp=8
--config.data.batch_size=8 --config.model.remat=full; docs/scale_out.md plans them). Given an
export, `init_from` is the export and `autoencoder` its VAE, so a new run starts from Wan's
weights (and a run with checkpoints resumes from its own).
"""
import json
import pathlib

import ml_collections

from videogen.core import config_args
from videogen.runtime import lora


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_args.parse_arg(arg, export='')
  if not arg.export:
    raise ValueError('configs/wan.py needs the export to fine-tune: pass '
                     '--config configs/wan.py:export=OUT (an experiments/convert_wan.py --out).')
  export = pathlib.Path(arg.export)
  if not (export / 'config.json').is_file() or not (export / 'params').is_dir():
    raise FileNotFoundError(f'{export} is not an export of experiments/convert_wan.py (no '
                            'config.json and params/): convert the checkpoint first.')
  config = ml_collections.ConfigDict(json.loads((export / 'config.json').read_text()))
  config.init_from = str(export.absolute())
  config.autoencoder = str((export / config.autoencoder).absolute())
  config.data.update(source='latent_cache', layout='fixed')
  if 'lora' not in config:  # exports converted before LoRA: full fine-tuning unless asked
    config.lora = ml_collections.ConfigDict(lora.DEFAULTS)
  return config
