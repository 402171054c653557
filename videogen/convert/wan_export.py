"""A Wan 2.1 text-to-video checkpoint -> an export that `sample.py --workdir` and `init_from` read.

The source is a Diffusers release folder (`transformer/`, `vae/`, `text_encoder/`, `tokenizer/`),
or the original release's DiT safetensors with `--vae` and `--text_encoder` folders beside it.
The export holds config.json (the given config, configs/world.py's latent one by default, set to
Wan's model, text encoder and sampler), params/ (the DiT, Orbax, written from its shardings),
vae/ (the VAE as an export of its own) and export.json. The umT5 text encoder is not copied
(11 GB in bfloat16): the config names the source's files, so keep them where they are, or edit
text.* in config.json.

Everything is written under OUT.partial/ and renamed to OUT at the end: a failed conversion
leaves no half-written export.
"""
import dataclasses
import json
import math
import pathlib
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from videogen.convert import checkpoint_files
from videogen.convert import wan_dit
from videogen.convert import wan_vae
from videogen.core import media
from videogen.models import dit
from videogen.parallel import mesh as mesh_lib
from videogen.parallel import sharding
from videogen.runtime import checkpoint
from videogen.runtime import dit_run

VAE_FOLDER = 'vae'  # inside the export; config.autoencoder names it relative to the export
# Wan 2.1's sampling defaults (its pipeline and generate.py): UniPC, 50 steps, guidance 5, flow
# shift 3 (480p; Wan uses 5 at 720p: pass --shift 5 to sample.py), 512 umT5 positions (every
# caption is padded to them with zero states, which the DiT attends to: their number matters).
SAMPLER = dict(method='unipc', steps=50, cfg_scale=5.0)
FLOW_SHIFT = 3.0
TEXT_LENGTH = 512


@dataclasses.dataclass(frozen=True)
class Sources:
  """Where a Wan checkpoint's parts are."""
  transformer: pathlib.Path
  vae: pathlib.Path
  text_encoder: pathlib.Path
  tokenizer: pathlib.Path

  @classmethod
  def find(cls, src, *, vae=None, text_encoder=None, tokenizer=None) -> 'Sources':
    """The parts of a Diffusers release folder `src`, or of the original release's DiT (its
    folder or .safetensors file, config.json beside it) with the other parts named; raises one
    sentence naming what is missing."""
    src = pathlib.Path(src)
    root = src if src.is_dir() else src.parent
    transformer = root / 'transformer' if (root / 'transformer').is_dir() else src
    parts = cls(transformer=transformer, vae=pathlib.Path(vae or root / 'vae'),
                text_encoder=pathlib.Path(text_encoder or root / 'text_encoder'),
                tokenizer=pathlib.Path(tokenizer or root / 'tokenizer'))
    for name, path in dataclasses.asdict(parts).items():
      if not path.exists():
        raise FileNotFoundError(
            f'{name} {path} does not exist: pass the folder of a Wan 2.1 Diffusers release '
            '(transformer/, vae/, text_encoder/, tokenizer/), or name this part with '
            f"--{'src' if name == 'transformer' else name} (the original release has no "
            "safetensors VAE or text encoder: take the Diffusers release's).")
    return parts

  def transformer_config(self) -> dict:
    """The transformer's config.json (Diffusers' or the original release's)."""
    folder = self.transformer if self.transformer.is_dir() else self.transformer.parent
    path = folder / 'config.json'
    if not path.is_file():
      raise FileNotFoundError(f"{path} is missing: the converter reads the model's shape from "
                              "the config.json that comes with the transformer's weights.")
    return json.loads(path.read_text())

  def text_files(self) -> dict:
    """text.{weights, tokenizer, config} for the umT5 encoder."""
    index = sorted(self.text_encoder.glob('*.safetensors.index.json'))
    weights = index[0] if index else next(iter(sorted(self.text_encoder.glob('*.safetensors'))),
                                          None)
    tokenizer = self.tokenizer / 'tokenizer.json'
    for path in (weights, tokenizer, self.text_encoder / 'config.json'):
      if path is None or not path.is_file():
        raise FileNotFoundError(f'{path or self.text_encoder} is missing: the umT5 text encoder '
                                'needs text_encoder/ (config.json + safetensors) and '
                                'tokenizer/tokenizer.json of the Diffusers release.')
    return dict(weights=str(weights.absolute()), tokenizer=str(tokenizer.absolute()),
                config=str((self.text_encoder / 'config.json').absolute()))


def export_config(base: ml_collections.ConfigDict, fields: dict, text_files: dict, *,
                  num_frames: int, height: int, width: int, param_dtype: str, dtype: str,
                  text_length: int = TEXT_LENGTH,
                  attention_backend: str = 'flash') -> ml_collections.ConfigDict:
  """`base` (configs/world.py's latent config, the sections a fine-tune trains with) set to
  Wan's DiT, text encoder, VAE and sampler; the clip size is what `sample.py` draws by default."""
  text_config = json.loads(pathlib.Path(text_files['config']).read_text())
  if text_config.get('d_model') != fields['text_dim']:
    raise ValueError(f"The text encoder's width {text_config.get('d_model')} is not the "
                     f"transformer's text_dim {fields['text_dim']}: pass the text_encoder/ of "
                     'the same release.')
  if fields['freq_dim'] != 256:
    raise ValueError(f"freq_dim {fields['freq_dim']} is not Wan 2.1's 256, which this DiT uses: "
                     'convert a Wan 2.1 transformer.')
  config = ml_collections.ConfigDict(base.to_dict())  # an unlocked copy
  config.model.variant = wan_dit.variant_name(fields)
  config.world.update(num_frames=num_frames, height=height, width=width)
  config.model.update(patch_size=fields['patch_size'], pos_embed='none', pooled_text=False,
                      cross_attn_init='xavier', param_dtype=param_dtype, dtype=dtype,
                      attention_backend=attention_backend)
  config.autoencoder = VAE_FOLDER
  config.text.update(encoder='umt5', max_length=text_length, mask_padding=False, dropout=0.1,
                     **text_files)
  config.conditioning.enabled = False
  config.diffusion.update(prediction='velocity', base_shift=FLOW_SHIFT, max_shift=FLOW_SHIFT)
  config.sample.update(SAMPLER)
  return config


def memory_plan(abstract_params, shardings, source: wan_dit.Source) -> dict:
  """Bytes: the converted params in all, on each device (JAX's shard shapes), and the host's
  peak (the largest tensor read at once, as float32)."""
  leaves = jax.tree.leaves(abstract_params)
  per_device = sum(math.prod(s.shard_shape(x.shape)) * x.dtype.itemsize
                   for x, s in zip(leaves, jax.tree.leaves(shardings)))
  largest = max(4 * math.prod(source.shape(name)) for name in source.names())
  return dict(params_bytes=sum(x.size * x.dtype.itemsize for x in leaves),
              per_device_bytes=per_device, host_peak_bytes=largest)


def convert(base: ml_collections.ConfigDict, src, out, *, vae=None, text_encoder=None,
            tokenizer=None, num_frames: int = 81,
            height: int = 480, width: int = 832, param_dtype: str = 'float32',
            dtype: str = 'bfloat16', text_length: int = TEXT_LENGTH,
            attention_backend: str = 'flash', fsdp: int = -1, allow_unused: bool = False,
            devices=None, info: dict | None = None) -> tuple[pathlib.Path, dict]:
  """Converts the checkpoint at `src` into an export at `out` whose config is `base` set to Wan's
  parts (`export_config`); (out, memory plan)."""
  out = pathlib.Path(out)
  if out.exists():
    raise FileExistsError(f'{out} exists: pass a new --out folder (nothing is overwritten).')
  sources = Sources.find(src, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer)
  fields = wan_dit.config_fields(sources.transformer_config())
  config = export_config(base, fields, sources.text_files(), num_frames=num_frames, height=height,
                         width=width, param_dtype=param_dtype, dtype=dtype,
                         text_length=text_length, attention_backend=attention_backend)
  devices = jax.devices() if devices is None else list(devices)
  config.mesh.update(data=1, fsdp=fsdp, context=1, tensor=1)
  mesh = mesh_lib.make_mesh(config.mesh, devices)
  model = dit.DiT(dit_run.dit_config(  # what the export's params restore into
      config.model, in_channels=fields['in_channels'], out_channels=fields['out_channels'],
      text_dim=fields['text_dim']))
  boxed = jax.eval_shape(
      model.init, jax.random.key(0), jnp.zeros((1, 1, 2, 2, fields['in_channels'])),
      jnp.zeros((1,)), jnp.zeros((1, 1, fields['text_dim'])), jnp.ones((1, 1), bool))['params']
  abstract = nn.unbox(boxed)
  shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh,
                                          sharding.rules_from_config(config))
  source = wan_dit.Source(checkpoint_files.CheckpointFiles(sources.transformer))
  wan_dit.check(source, abstract, model.config.scan_layers, allow_unused=allow_unused)
  plan = memory_plan(abstract, shardings, source)
  vae_model = wan_vae.load_vae(sources.vae)
  partial = out.with_name(out.name + '.partial')
  shutil.rmtree(partial, ignore_errors=True)
  try:
    params = wan_dit.convert(source, abstract, shardings, model.config.scan_layers)
    checkpoint.save_params(partial / 'params', params)
    vae_model.export(partial / VAE_FOLDER, source=str(sources.vae))
    config.mesh.update(data=-1, fsdp=1)  # sampling_run's; a trainer sets its own
    media.write_text(partial / 'config.json', config.to_json_best_effort(indent=1))
    media.write_json(partial / 'export.json', {
        'step': 0, 'converted_from': str(pathlib.Path(src).absolute()), **plan, **(info or {})})
    partial.rename(out)
  except BaseException:
    shutil.rmtree(partial, ignore_errors=True)
    raise
  return out, plan
