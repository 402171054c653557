"""Caption-embedding cache: an in-memory LRU, optionally backed by a folder of .npy files.

Each entry is one caption's hidden states for its real tokens only, float32 [n, d] (padding is
added back by the encoder), so a cache is independent of the batch it was computed in.

On disk (for fixed datasets, written beside the data): `<folder>/<fingerprint>/<sha256(text)>.npy`.
The fingerprint names the encoder (its name, weights, config and max_length), so caches of
different encoders share a folder safely. Files are written atomically (temp file + rename), so
several processes may fill one cache.
"""
import collections
import hashlib
import os
import pathlib

import numpy as np


class EmbeddingCache:
  """Caption -> float32 [n, d] hidden states; LRU in memory, then the disk folder if any."""

  def __init__(self, size: int, folder: str | os.PathLike | None = None, fingerprint: str = ''):
    if size < 0:
      raise ValueError(f'cache_size={size} is negative: use 0 (off) or a positive size.')
    self.size = size
    self.folder = pathlib.Path(folder) / fingerprint if folder is not None else None
    self.hits = 0
    self.misses = 0
    self._entries: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()

  def _path(self, text: str) -> pathlib.Path:
    return self.folder / f"{hashlib.sha256(text.encode('utf-8')).hexdigest()}.npy"

  def get(self, text: str) -> np.ndarray | None:
    """The cached states of `text`, or None; counts a hit or a miss."""
    value = self._entries.get(text)
    if value is not None:
      self._entries.move_to_end(text)
    elif self.folder is not None and self._path(text).exists():
      value = np.load(self._path(text), allow_pickle=False)
      self._remember(text, value)
    if value is None:
      self.misses += 1
    else:
      self.hits += 1
    return value

  def put(self, text: str, value: np.ndarray) -> None:
    """Stores `text`'s states in memory and, if there is a folder, on disk."""
    self._remember(text, value)
    if self.folder is not None:
      self.folder.mkdir(parents=True, exist_ok=True)
      path = self._path(text)
      temp = path.with_name(f'{path.stem}.{os.getpid()}.tmp.npy')
      np.save(temp, value, allow_pickle=False)
      os.replace(temp, path)

  def _remember(self, text: str, value: np.ndarray) -> None:
    if self.size == 0:
      return
    self._entries[text] = value
    self._entries.move_to_end(text)
    while len(self._entries) > self.size:
      self._entries.popitem(last=False)

  def __len__(self) -> int:
    return len(self._entries)
