"""Wan 2.1 transformer weights converted into the DiT equal diffusers' WanTransformer3DModel.

The golden files (tests/data/wan/, written by experiments/wan_parity.py in a torch venv) hold a
tiny random WanTransformer3DModel in the Diffusers layout and the original release's, with fixed
inputs and diffusers' output.
"""
import json
import pathlib

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

from videogen.convert import checkpoint_files
from videogen.convert import wan_dit
from videogen.models import dit
from videogen.parallel import mesh as mesh_lib

DATA = pathlib.Path(__file__).parent / 'data' / 'wan'
GOLDEN = np.load(DATA / 'dit_golden.npz')
FIELDS = wan_dit.config_fields(json.loads((DATA / 'transformer' / 'config.json').read_text()))
DIFFUSERS_FILE = DATA / 'transformer' / 'diffusion_pytorch_model.safetensors'


def _model_and_abstract(scan_layers: bool):
  model = dit.DiT(dit.DiTConfig(**FIELDS, pos_embed='none', pooled_text=False,
                                scan_layers=scan_layers))
  x = jnp.zeros((1, 3, 4, 6, FIELDS['in_channels']))
  boxed = jax.eval_shape(model.init, jax.random.key(0), x, jnp.zeros((1,)),
                         jnp.zeros((1, 7, FIELDS['text_dim'])), jnp.ones((1, 7), bool))['params']
  return model, boxed


def _convert(path, scan_layers=True, mesh=None, allow_unused=False):
  model, boxed = _model_and_abstract(scan_layers)
  abstract = nn.unbox(boxed)
  if mesh is None:
    shardings = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(jax.devices()[0]),
                             abstract)
  else:
    rules = (('embed', 'fsdp'), ('mlp', 'tensor'), ('heads', 'tensor'))
    shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh, rules)
  source = wan_dit.Source(checkpoint_files.CheckpointFiles(path))
  wan_dit.check(source, abstract, scan_layers, allow_unused=allow_unused)
  return model, wan_dit.convert(source, abstract, shardings, scan_layers)


def _forward(model, params):
  x = einops.rearrange(GOLDEN['latents'], 'b c t h w -> b t h w c')
  text = GOLDEN['text']
  out = model.apply({'params': params}, x, jnp.asarray(GOLDEN['timesteps']) / 1000.0, text,
                    jnp.ones(text.shape[:2], bool))
  return einops.rearrange(np.asarray(out), 'b t h w c -> b c t h w')


def _assert_matches(out):
  # Relative to the output's scale: the model's time argument is diffusers' timestep / 1000 in
  # float32, and RoPE angles are float32 here (float64 in diffusers), so single elements near 0
  # differ by float32 rounding of the large ones.
  ref = GOLDEN['output']
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize('layout', ['diffusers', 'original'])
@pytest.mark.parametrize('scan_layers', [True, False])
def test_converted_dit_equals_diffusers(layout, scan_layers):
  path = DATA / 'transformer' if layout == 'diffusers' else (
      DATA / 'original' / 'diffusion_pytorch_model.safetensors')
  _assert_matches(_forward(*_convert(path, scan_layers)))


def test_a_wrong_mapping_would_fail():
  """The test can fail: swapping two blocks' tensors changes the output far beyond tolerance."""
  model, params = _convert(DATA / 'transformer')
  params['blocks']['self_attn']['q']['kernel'] = params['blocks']['self_attn']['q']['kernel'][::-1]
  with pytest.raises(AssertionError):
    _assert_matches(_forward(model, params))


def test_sharded_index_converts_onto_a_mesh(tmp_path):
  """A checkpoint cut into shards with an index, converted straight into FSDP x tensor
  shardings of 8 devices: each device holds its slice and the forward pass is unchanged."""
  tensors = safetensors.numpy.load_file(DIFFUSERS_FILE)
  names = sorted(tensors)
  weight_map = {}
  for i, part in enumerate((names[::3], names[1::3], names[2::3])):
    shard = f'diffusion_pytorch_model-{i + 1:05d}-of-00003.safetensors'
    safetensors.numpy.save_file({n: tensors[n] for n in part}, tmp_path / shard)
    weight_map.update({n: shard for n in part})
  (tmp_path / 'diffusion_pytorch_model.safetensors.index.json').write_text(
      json.dumps({'weight_map': weight_map}))
  mesh = mesh_lib.make_mesh({'data': 1, 'fsdp': 4, 'context': 1, 'tensor': 2}, jax.devices())
  model, params = _convert(tmp_path, mesh=mesh)
  kernel = params['blocks']['ffn_in']['kernel']  # [depth, embed, mlp]: fsdp x tensor
  assert {s.data.shape for s in kernel.addressable_shards} == {(2, 6, 24)}
  _assert_matches(_forward(model, jax.device_get(params)))


def test_bad_checkpoints_get_one_sentence(tmp_path):
  tensors = safetensors.numpy.load_file(DIFFUSERS_FILE)
  # A missing tensor names itself.
  safetensors.numpy.save_file({k: v for k, v in tensors.items() if 'blocks.1.attn2.to_k' not in k},
                              tmp_path / 'missing.safetensors')
  with pytest.raises(KeyError, match='blocks.1.attn2.to_k.*is missing'):
    _convert(tmp_path / 'missing.safetensors')
  # A shape that is not the model's names the tensor, its shape and the expected one.
  wrong = dict(tensors, **{'proj_out.weight': tensors['proj_out.weight'][:8]})
  safetensors.numpy.save_file(wrong, tmp_path / 'shape.safetensors')
  with pytest.raises(ValueError, match=r'proj_out.weight has shape \(8, 24\).*needs \(24, 16\)'):
    _convert(tmp_path / 'shape.safetensors')
  # Unknown tensors are listed and refused unless allowed.
  extra = dict(tensors, **{'blocks.0.attn2.add_k_proj.weight': tensors['proj_out.weight']})
  safetensors.numpy.save_file(extra, tmp_path / 'extra.safetensors')
  with pytest.raises(ValueError, match='add_k_proj.*--allow_unused'):
    _convert(tmp_path / 'extra.safetensors')
  _assert_matches(_forward(*_convert(tmp_path / 'extra.safetensors', allow_unused=True)))
  # Pickles are never opened; a shard named by an index must exist.
  (tmp_path / 'model.pth').write_bytes(b'not read')
  with pytest.raises(ValueError, match='pickled PyTorch file.*Diffusers release'):
    checkpoint_files.CheckpointFiles(tmp_path / 'model.pth')
  (tmp_path / 'sharded').mkdir()
  (tmp_path / 'sharded' / 'model.safetensors.index.json').write_text(
      json.dumps({'weight_map': {'a': 'model-00001-of-00002.safetensors'}}))
  with pytest.raises(FileNotFoundError, match='model-00001-of-00002.safetensors.*missing'):
    checkpoint_files.CheckpointFiles(tmp_path / 'sharded')
  (tmp_path / 'corrupt.safetensors').write_bytes(b'\x00' * 64)
  with pytest.raises(ValueError, match='corrupt or not a safetensors file'):
    checkpoint_files.CheckpointFiles(tmp_path / 'corrupt.safetensors')


def test_config_fields_of_both_releases_and_refusals():
  original = json.loads((DATA / 'original' / 'config.json').read_text())
  assert wan_dit.config_fields(original) == FIELDS
  with pytest.raises(ValueError, match="model_type 'i2v' is not a text-to-video"):
    wan_dit.config_fields(dict(original, model_type='i2v'))
  config = json.loads((DATA / 'transformer' / 'config.json').read_text())
  with pytest.raises(ValueError, match='image-to-video'):
    wan_dit.config_fields(dict(config, image_dim=1280, added_kv_proj_dim=5120))
  assert wan_dit.variant_name(FIELDS) == 'w24-d2-h2-m48/2'
  assert wan_dit.variant_name(dict(dim=1536, depth=30, heads=12, mlp_dim=8960)) == '1.3B'
