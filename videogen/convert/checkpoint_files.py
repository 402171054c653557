"""Published checkpoints read lazily from safetensors: one file, a sharded index, or a folder.

A tensor is read only when asked for, one at a time, as float32 numpy, so a converter can go
tensor by tensor (and put each on its devices) without ever holding the whole checkpoint.
Pickled PyTorch files (.pth, .pt, .bin, .ckpt) are refused: unpickling runs arbitrary code.
"""
import json
import pathlib

import jax.numpy as jnp
import numpy as np
import safetensors

PICKLED = ('.pth', '.pt', '.bin', '.ckpt')


class CheckpointFiles:
  """The tensors of a .safetensors file, of the shards a .safetensors.index.json names, or of
  every .safetensors file in a folder (an index in the folder wins)."""

  def __init__(self, path):
    self.path = pathlib.Path(path)
    self._files = self._shards(self.path)
    self._where = {}
    for file in self._files:
      try:
        with safetensors.safe_open(str(file), framework='numpy') as opened:
          for key in opened.keys():
            if key in self._where:
              raise ValueError(f'Tensor {key} is in both {self._where[key].name} and {file.name}:'
                               ' keep one copy of each shard in the folder.')
            self._where[key] = file
      except (safetensors.SafetensorError, OSError) as e:
        raise ValueError(f'{file} is corrupt or not a safetensors file ({e}): download it '
                         'again.') from e

  @staticmethod
  def _shards(path: pathlib.Path) -> list[pathlib.Path]:
    if path.suffix in PICKLED:
      raise ValueError(f'{path} is a pickled PyTorch file, which is never unpickled here (it '
                       'can run code): use the Diffusers release of the weights, whose '
                       'tensors are .safetensors files.')
    if not path.exists():
      raise FileNotFoundError(f'Checkpoint {path} does not exist: pass the folder or file you '
                              'downloaded.')
    if path.is_dir():
      indexes = sorted(path.glob('*.safetensors.index.json'))
      if len(indexes) > 1:
        raise ValueError(f'{path} holds {len(indexes)} safetensors indexes: pass one of them.')
      if indexes:
        path = indexes[0]
      else:
        files = sorted(path.glob('*.safetensors'))
        if not files:
          pickled = sorted(p.name for p in path.iterdir() if p.suffix in PICKLED)
          hint = (f' (it has {", ".join(pickled)}: pickled files are never read; use the '
                  'Diffusers release)' if pickled else '')
          raise FileNotFoundError(f'{path} has no .safetensors file{hint}: pass the folder '
                                  'that holds the weights.')
        return files
    if path.name.endswith('.json'):
      try:
        shards = sorted(set(json.loads(path.read_text())['weight_map'].values()))
      except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f'{path} has no readable weight_map ({e}): pass the '
                         '.safetensors.index.json that came with the shards.') from e
      files = [path.parent / name for name in shards]
      missing = [f.name for f in files if not f.is_file()]
      if missing:
        raise FileNotFoundError(f'Shard(s) {", ".join(missing)} named by {path.name} are missing '
                                f'from {path.parent}: download them too.')
      return files
    return [path]

  def keys(self) -> list[str]:
    return sorted(self._where)

  def __contains__(self, name: str) -> bool:
    return name in self._where

  def shape(self, name: str) -> tuple[int, ...]:
    with safetensors.safe_open(str(self._file(name)), framework='numpy') as opened:
      return tuple(opened.get_slice(name).get_shape())

  def get(self, name: str) -> np.ndarray:
    """The tensor as float32 numpy (bfloat16 goes through jax: numpy has no bfloat16)."""
    file = self._file(name)
    with safetensors.safe_open(str(file), framework='numpy') as opened:
      if opened.get_slice(name).get_dtype() != 'BF16':
        return opened.get_tensor(name).astype(np.float32)
    with safetensors.safe_open(str(file), framework='flax') as opened:
      return np.asarray(opened.get_tensor(name).astype(jnp.float32))

  def _file(self, name: str) -> pathlib.Path:
    if name not in self._where:
      raise KeyError(f'Tensor {name} is not in {self.path}: is it the checkpoint of the model you '
                     'named, and are all its shards there?')
    return self._where[name]
