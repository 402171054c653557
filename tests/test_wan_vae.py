"""Wan 2.1's VAE converted from Diffusers computes what Diffusers computes.

tests/data/wan/vae/ is a tiny random AutoencoderKLWan and vae_golden.npz its encoding and
decoding by Diffusers (experiments/wan_parity.py, which needs torch; these tests do not).

Tolerance: rtol 1e-4 with atol 1e-5 on values of order 1 (|mean| <= 3.2, |logvar| <= 4.1,
|pixels| <= 0.8). We measured at most 3.4e-6 absolute error, which is float32 rounding: Diffusers
itself in float32 is as far from Diffusers in float64. The atol keeps near-zero values, whose
relative error means nothing, from failing.

Legend: b batch, t frames, h/w height/width, c channels.
"""
import json
import pathlib

import einops
import jax
import numpy as np
import pytest
from safetensors import numpy as safetensors_numpy

from videogen.convert import wan_vae
from videogen.convert.checkpoint_files import CheckpointFiles
from videogen.models import autoencoder
from videogen.models import autoencoder_blocks
from videogen.models import autoencoder_chunks

DATA = pathlib.Path(__file__).parent / 'data' / 'wan'
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


def channels_last(x_bcthw):
  return einops.rearrange(x_bcthw, 'b c t h w -> b t h w c')


@pytest.fixture(scope='module')
def golden():
  with np.load(DATA / 'vae_golden.npz') as data:
    return {key: channels_last(value) for key, value in data.items()}


@pytest.fixture(scope='module')
def config_json():
  return json.loads((DATA / 'vae' / 'config.json').read_text())


@pytest.fixture(scope='module')
def vae():
  """The converted VAE, running one latent frame per chunk as Diffusers does."""
  return wan_vae.load_vae(DATA / 'vae', chunk_latent_frames=1)


def test_config_and_parameter_count_match_diffusers(vae):
  assert vae.config == autoencoder.autoencoder_config('tiny', base_channels=4)
  tensors = CheckpointFiles(DATA / 'vae')
  diffusers_count = sum(np.prod(tensors.shape(name)) for name in tensors.keys())
  assert sum(x.size for x in jax.tree.leaves(vae.params)) == diffusers_count == 42_191


class ShapesOnly:
  """Tensors of given names and shapes, all zeros, none allocated (CheckpointFiles' reading
  interface)."""

  def __init__(self, shapes: dict):
    self.shapes = {name: tuple(shape) for name, shape in shapes.items()}

  def keys(self):
    return list(self.shapes)

  def __contains__(self, name):
    return name in self.shapes

  def shape(self, name):
    return self.shapes[name]

  def get(self, name):
    return np.broadcast_to(np.float32(0), self.shapes[name])


def test_the_wan_preset_takes_every_tensor_of_wan_2_1():
  """The released layout (4 levels, 2 residual blocks, a level halving space only), which the
  tiny model does not cover: names and shapes from vae_wan_shapes.json."""
  shapes = json.loads((DATA / 'vae_wan_shapes.json').read_text())
  config = wan_vae.vae_config_from_diffusers({})  # Diffusers' defaults are Wan 2.1's VAE
  assert config == autoencoder.autoencoder_config('wan')
  params = wan_vae.vae_params_from_diffusers(ShapesOnly(shapes), config)
  count = sum(np.prod(shape) for shape in shapes.values())
  assert sum(x.size for x in jax.tree.leaves(params)) == count == 126_892_531


def test_whole_clip_encode_and_decode_match_diffusers(vae, golden):
  mean, logvar = autoencoder_chunks.apply_whole(vae.model, 'encode', vae.params, golden['video'])
  np.testing.assert_allclose(mean, golden['mean'], **TOLERANCE)
  # Diffusers clamps the log-variance to [-30, 20] (none of these values reaches it).
  np.testing.assert_allclose(np.clip(logvar, -30, 20), golden['logvar'], **TOLERANCE)
  decoded = autoencoder_chunks.apply_whole(vae.model, 'decode', vae.params, golden['latents'])
  # Diffusers clamps to [-1, 1]; the golden's pixels lie inside, so the clamp hides no error.
  assert np.abs(golden['decoded']).max() < 1
  np.testing.assert_allclose(np.clip(decoded, -1, 1), golden['decoded'], **TOLERANCE)


def test_chunked_encode_and_decode_match_diffusers_with_its_latent_stats(vae, golden,
                                                                        config_json):
  """Chunked as Diffusers chunks (frame 0, then 4 frames; one latent frame at a time), and
  normalised with its latents_mean and latents_std as its pipelines do."""
  mean_c, std_c = (np.asarray(config_json[f'latents_{key}']) for key in ('mean', 'std'))
  np.testing.assert_allclose(vae.encode(golden['video']), (golden['mean'] - mean_c) / std_c,
                             **TOLERANCE)
  np.testing.assert_allclose(vae.decode((golden['latents'] - mean_c) / std_c), golden['decoded'],
                             **TOLERANCE)


def test_rms_norm_is_wans_at_small_rms():
  """Wan's norm is x / |x| · sqrt(C) · gamma with no epsilon under the root."""
  x_nc = 1e-4 * np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
  norm = autoencoder_blocks.RMSNorm()
  params = {'params': {'scale': np.linspace(0.5, 1.5, 8, dtype=np.float32)}}
  wan_nc = x_nc / np.linalg.norm(x_nc, axis=-1, keepdims=True) * np.sqrt(8) * np.linspace(
      0.5, 1.5, 8)
  np.testing.assert_allclose(norm.apply(params, x_nc), wan_nc, rtol=1e-6)
  assert not np.any(np.isnan(norm.apply(params, np.zeros((1, 8), np.float32))))


@pytest.fixture
def write_tensors(tmp_path):
  """Saves the golden tensors, edited by a function, as a checkpoint; returns its reader."""
  tensors = safetensors_numpy.load_file(DATA / 'vae' / 'diffusion_pytorch_model.safetensors')

  def write(edit):
    edit(tensors)
    safetensors_numpy.save_file(tensors, tmp_path / 'vae.safetensors')
    return CheckpointFiles(tmp_path / 'vae.safetensors')
  return write


@pytest.mark.parametrize('edit, message', [
    (lambda t: t.update({'decoder.conv_in.weight': t['decoder.conv_in.weight'][:, :3]}),
     r'decoder.conv_in.weight has shape \(8, 3, 3, 3, 3\), not \(8, 4, 3, 3, 3\)'),
    (lambda t: t.pop('decoder.up_blocks.1.upsamplers.0.time_conv.bias'),
     'decoder.up_blocks.1.upsamplers.0.time_conv.bias is missing'),
    (lambda t: t.update({'encoder.down_blocks.5.conv1.weight': np.zeros(1, np.float32)}),
     r"\['encoder.down_blocks.5.conv1.weight'\] \(1 in all\) have no place"),
])
def test_bad_tensors_are_named(write_tensors, config_json, edit, message):
  config = wan_vae.vae_config_from_diffusers(config_json)
  with pytest.raises(ValueError, match=message):
    wan_vae.vae_params_from_diffusers(write_tensors(edit), config)


@pytest.mark.parametrize('overrides, message', [
    (dict(is_residual=True), 'is_residual=True is not supported'),
    (dict(attn_scales=[0.5]), r'attn_scales=\[0.5\] is not supported'),
    (dict(decoder_base_dim=8), 'decoder_base_dim=8 differs from base_dim=4'),
    (dict(temperal_downsample=[True, False]), r'temperal_downsample=\[True, False\] must'),
    (dict(latents_std=[1.0, 1.0]), 'latents_std holds 2 values, not z_dim=4'),
])
def test_configs_we_cannot_express_are_refused(config_json, overrides, message):
  with pytest.raises(ValueError, match=message):
    config = {**config_json, **overrides}
    wan_vae.vae_config_from_diffusers(config)
    wan_vae.latent_stats_from_diffusers(config)
