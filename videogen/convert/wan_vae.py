"""Wan 2.1's VAE from its Diffusers release (`AutoencoderKLWan`, the `vae/` folder) into
videogen's causal VAE (models/autoencoder.py), which computes the same function.

  vae = wan_vae.load_vae('Wan2.1-T2V-1.3B-Diffusers/vae')   # an inference.vae.Autoencoder
  z = vae.encode(video)       # [B, 1 + 4k, H, W, 3] in [-1, 1] -> normalised latents

Names: our layers keep the original release's indices (downsamples_i, upsamples_i, middle_i),
which Diffusers regroups: its encoder keeps the flat index (down_blocks.i), its decoder nests
resnets and the upsampler per level (up_blocks.l.resnets.j, up_blocks.l.upsamplers.0), and the
middle becomes mid_block.{resnets.0, attentions.0, resnets.1}. Tensors: conv weights [out, in,
t, h, w] -> kernel [t, h, w, in, out] (2D: [out, in, h, w] -> [h, w, in, out]; the attention's
1x1 convs -> dense [in, out]); RMS norm gamma [C, 1, 1(, 1)] -> scale [C].

Latent statistics: Diffusers' latents_mean and latents_std are what our runs measure as
latent_stats ({'mean': [C], 'std': [C]}, used as (z - mean) / std), so they pass unchanged.
"""
import json
import pathlib
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from videogen.convert.checkpoint_files import CheckpointFiles
from videogen.inference import vae as vae_lib
from videogen.models import autoencoder

_CONFIG_FILE = 'config.json'
# Diffusers config fields that our VAE supports at one value only, Wan 2.1's.
_FIXED = dict(in_channels=3, out_channels=3, is_residual=False, patch_size=None, attn_scales=[])


def vae_config_from_diffusers(config_json: dict) -> autoencoder.AutoencoderConfig:
  """The AutoencoderConfig of an AutoencoderKLWan config.json (its dict); raises for what our
  VAE cannot express (Wan 2.2's residual VAE, patchified input, attention outside the middle,
  a decoder of another width, time compressed on other than the deepest levels)."""
  for field, value in _FIXED.items():
    if config_json.get(field, value) != value:
      raise ValueError(f'AutoencoderKLWan {field}={config_json[field]!r} is not supported (only '
                       f'{value!r}, as in Wan 2.1): convert a Wan 2.1 VAE.')
  base = config_json.get('base_dim', 96)
  if config_json.get('decoder_base_dim') not in (None, base):
    raise ValueError(f'AutoencoderKLWan decoder_base_dim={config_json["decoder_base_dim"]} differs '
                     f'from base_dim={base}, which our decoder cannot do: convert a VAE whose '
                     'decoder_base_dim is null.')
  multipliers = tuple(config_json.get('dim_mult', (1, 2, 4, 4)))
  stages = tuple(config_json.get('temperal_downsample', (False, True, True)))
  time_stages = sum(stages)
  if len(stages) != len(multipliers) - 1 or stages != (False,) * (len(stages) - time_stages) + (
      True,) * time_stages:
    raise ValueError(f'AutoencoderKLWan temperal_downsample={list(stages)} must hold one flag per '
                     f'downsample ({len(multipliers) - 1}), the True ones last, as in Wan 2.1: '
                     'only the deepest levels may halve time.')
  return autoencoder.AutoencoderConfig(
      base_channels=base, channel_multipliers=multipliers,
      num_res_blocks=config_json.get('num_res_blocks', 2),
      latent_channels=config_json.get('z_dim', 16),
      spatial_downsample=2 ** (len(multipliers) - 1), temporal_downsample=2 ** time_stages)


def latent_stats_from_diffusers(config_json: dict) -> dict[str, np.ndarray]:
  """{'mean': [C], 'std': [C]} from latents_mean and latents_std, as `autoencoder.normalize`
  and `inference.vae.Autoencoder` take them."""
  channels = config_json.get('z_dim', 16)
  stats = {key: np.asarray(config_json.get(f'latents_{key}', ()), np.float32)
           for key in ('mean', 'std')}
  for key, value in stats.items():
    if value.shape != (channels,):
      raise ValueError(f'AutoencoderKLWan latents_{key} holds {value.size} values, not z_dim='
                       f'{channels}: give one per latent channel.')
  if np.any(stats['std'] <= 0):
    raise ValueError(f'AutoencoderKLWan latents_std {stats["std"].tolist()} must be positive: '
                     'fix the config.json.')
  return stats


def _diffusers_name(path: tuple[str, ...], config: autoencoder.AutoencoderConfig) -> str:
  """Diffusers' name for our parameter at `path` (e.g. ('decoder', 'upsamples_2', 'resample',
  'kernel') -> 'decoder.up_blocks.0.upsamplers.0.resample.1.weight')."""
  if len(path) == 2:  # the posterior's and the decoder's 1x1x1 convs
    return {'conv1': 'quant_conv', 'conv2': 'post_quant_conv'}[path[0]] + '.' + (
        'weight' if path[1] == 'kernel' else 'bias')
  part, block, *rest = path
  names = {'conv1': 'conv_in', 'head_conv': 'conv_out', 'head_norm': 'norm_out',
           'middle_0': 'mid_block.resnets.0', 'middle_1': 'mid_block.attentions.0',
           'middle_2': 'mid_block.resnets.1'}
  if block in names:
    block = names[block]
  elif block.startswith('downsamples_'):
    block = f'down_blocks.{block.split("_")[1]}'
  else:  # upsamples_i: num_res_blocks + 1 residual blocks then the upsampler, per level
    level, index = divmod(int(block.split('_')[1]), config.num_res_blocks + 2)
    inner = 'upsamplers.0' if index == config.num_res_blocks + 1 else f'resnets.{index}'
    block = f'up_blocks.{level}.{inner}'
  leaves = {'shortcut': 'conv_shortcut', 'resample': 'resample.1', 'kernel': 'weight',
            'scale': 'gamma'}
  return '.'.join([part, block, *(leaves.get(name, name) for name in rest)])


def _from_torch(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[tuple[int, ...], Callable]:
  """(Diffusers' shape, the map of its tensor to ours) for our parameter of `shape`."""
  if path[-1] == 'scale':  # the attention's norm is over images [C, 1, 1], the others videos
    ones = (1, 1) if path[-2] == 'norm' else (1, 1, 1)
    return (*shape, *ones), lambda x: x.reshape(shape)
  if path[-1] == 'bias':
    return shape, lambda x: x
  if len(shape) == 5:
    kt, kh, kw, fan_in, fan_out = shape
    return (fan_out, fan_in, kt, kh, kw), lambda x: np.transpose(x, (2, 3, 4, 1, 0))
  if len(shape) == 4:
    kh, kw, fan_in, fan_out = shape
    return (fan_out, fan_in, kh, kw), lambda x: np.transpose(x, (2, 3, 1, 0))
  fan_in, fan_out = shape  # the attention's 1x1 convs
  return (fan_out, fan_in, 1, 1), lambda x: x[:, :, 0, 0].T


def _param_shapes(config: autoencoder.AutoencoderConfig) -> dict:
  """Our VAE's parameter shapes (jax.ShapeDtypeStruct leaves), nothing computed."""
  model = autoencoder.AutoencoderKL(config)
  s = config.spatial_downsample
  video = jnp.zeros((1, 1 + config.temporal_downsample, s, s, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), video, jax.random.key(1)))
  return nn.unbox(variables['params'])


def vae_params_from_diffusers(tensors: CheckpointFiles,
                              config: autoencoder.AutoencoderConfig) -> dict:
  """Our VAE's params (float32 numpy) from the tensors of a Diffusers AutoencoderKLWan; raises
  naming any tensor that is missing, of the wrong shape, or left over."""
  shapes = traverse_util.flatten_dict(_param_shapes(config))
  params, used = {}, set()
  for path, leaf in shapes.items():
    name = _diffusers_name(path, config)
    expected, convert = _from_torch(path, leaf.shape)
    if name not in tensors:
      raise ValueError(f'Tensor {name} is missing from the checkpoint: is it the Wan 2.1 VAE its '
                       'config.json describes?')
    stored = tensors.shape(name)
    if stored != expected:
      raise ValueError(f'Tensor {name} has shape {stored}, not {expected} as the '
                       'config.json implies: pass the config.json that came with these weights.')
    params[path] = convert(tensors.get(name))
    used.add(name)
  unused = sorted(set(tensors.keys()) - used)
  if unused:
    raise ValueError(f'Tensors {unused[:5]} ({len(unused)} in all) have no place in the VAE '
                     'config.json describes: pass the config.json that came with these weights.')
  return traverse_util.unflatten_dict(params)


def load_vae(folder, **kwargs) -> vae_lib.Autoencoder:
  """An inference.vae.Autoencoder (weights, latent statistics) from a Diffusers AutoencoderKLWan
  folder (config.json + safetensors); kwargs go to Autoencoder (e.g. chunk_latent_frames)."""
  folder = pathlib.Path(folder)
  if not (folder / _CONFIG_FILE).is_file():
    raise FileNotFoundError(f'{folder} has no {_CONFIG_FILE}: pass the vae/ folder of a Wan 2.1 '
                            'Diffusers release.')
  config_json = json.loads((folder / _CONFIG_FILE).read_text())
  if config_json.get('_class_name', 'AutoencoderKLWan') != 'AutoencoderKLWan':
    raise ValueError(f'{folder / _CONFIG_FILE} describes a {config_json["_class_name"]}, not an '
                     'AutoencoderKLWan: pass the vae/ folder of a Wan 2.1 release.')
  config = vae_config_from_diffusers(config_json)
  params = vae_params_from_diffusers(CheckpointFiles(folder), config)
  return vae_lib.Autoencoder(config, jax.tree.map(jnp.asarray, params),
                             latent_stats_from_diffusers(config_json), **kwargs)
