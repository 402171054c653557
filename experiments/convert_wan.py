"""Converts a downloaded Wan 2.1 text-to-video checkpoint into an export videogen samples and
fine-tunes from.

  python experiments/convert_wan.py --src Wan2.1-T2V-1.3B-Diffusers --out outputs/wan_1.3b
  python experiments/sample.py --workdir outputs/wan_1.3b --prompt "A cat walks on the grass."

--src is a Diffusers release folder (transformer/, vae/, text_encoder/, tokenizer/), or the
original release's DiT .safetensors file (or folder) with --vae, --text_encoder and --tokenizer
naming the Diffusers release's other parts. Only safetensors are read, never pickles. Nothing is
downloaded. The DiT is converted tensor by tensor straight into its FSDP shards over this host's
devices (--fsdp), so no host holds the whole model; the memory plan is printed and stored in
export.json. A training run starts from the export with --config.init_from=OUT (and
--config.autoencoder=OUT/vae for its latents).
"""
from absl import app
from absl import flags
from absl import logging

from videogen.convert import wan_export
from videogen.core import config_args
from videogen.core import tables

_CONFIG = config_args.define_config_file(
    'config', 'configs/world.py:latent=True', "The export's config before Wan's model, text "
    'encoder, VAE and sampler are set in it (its other sections are what a fine-tune trains with).')

_SRC = flags.DEFINE_string('src', None, 'Wan 2.1 Diffusers release folder, or the original '
                           "release's DiT safetensors.", required=True)
_OUT = flags.DEFINE_string('out', None, 'Export folder to write (must not exist).', required=True)
_VAE = flags.DEFINE_string('vae', None, 'vae/ folder (default: SRC/vae).')
_TEXT_ENCODER = flags.DEFINE_string('text_encoder', None,
                                    'text_encoder/ folder (default: SRC/text_encoder).')
_TOKENIZER = flags.DEFINE_string('tokenizer', None, 'tokenizer/ folder (default: SRC/tokenizer).')
_FRAMES = flags.DEFINE_integer('num_frames', 81, 'Default clip length sample.py draws (1 + 4k).')
_HEIGHT = flags.DEFINE_integer('height', 480, 'Default clip height (a multiple of 16).')
_WIDTH = flags.DEFINE_integer('width', 832, 'Default clip width (a multiple of 16).')
_PARAM_DTYPE = flags.DEFINE_enum('param_dtype', 'float32', ['float32', 'bfloat16'],
                                 'Dtype the DiT params are stored in.')
_DTYPE = flags.DEFINE_enum('dtype', 'bfloat16', ['float32', 'bfloat16'],
                           "The DiT's matmul dtype when sampling (float32 on CPU for exactness).")
_TEXT_LENGTH = flags.DEFINE_integer(
    'text_length', wan_export.TEXT_LENGTH, "Caption positions the DiT attends to (Wan's "
    'max_sequence_length; its model was trained with 512).')
_ATTENTION = flags.DEFINE_enum(
    'attention_backend', 'flash', ['flash', 'xla', 'cudnn'],
    "The DiT's attention: 'flash' never holds a 480p x 81 clip's [32,760 x 32,760] logits per "
    "head (xla would: 51 GB); 'cudnn' is faster on a GPU.")
_FSDP = flags.DEFINE_integer('fsdp', -1, 'Devices the params are sharded over (-1: all).')
_ALLOW_UNUSED = flags.DEFINE_bool('allow_unused', False,
                                  'Drop tensors the model has no place for instead of refusing.')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  out, plan = wan_export.convert(
      _CONFIG.value, _SRC.value, _OUT.value, vae=_VAE.value, text_encoder=_TEXT_ENCODER.value,
      tokenizer=_TOKENIZER.value, num_frames=_FRAMES.value, height=_HEIGHT.value,
      width=_WIDTH.value, param_dtype=_PARAM_DTYPE.value, dtype=_DTYPE.value,
      text_length=_TEXT_LENGTH.value, attention_backend=_ATTENTION.value, fsdp=_FSDP.value,
      allow_unused=_ALLOW_UNUSED.value, info={'revision': tables.revision()})
  size = lambda n: f'{n / 2**30:.2f} GiB' if n >= 2**30 else f'{n / 2**20:.2f} MiB'
  print(f"DiT params {size(plan['params_bytes'])}, per device {size(plan['per_device_bytes'])}, "
        f"host peak while converting {size(plan['host_peak_bytes'])}")
  print('exported to', out)


if __name__ == '__main__':
  app.run(main)
