"""A latent cache: clips encoded once by a frozen VAE and text encoder, in ArrayRecord shards.

  encode_source(config, vae, encoder, 'cache/world', vae_workdir=..., num_records=4096)
  write_cache(batches, vae, encoder, 'cache/world', ...)   # any clips; encode_source calls it
  source = LatentCacheSource('cache/world')       # a Grain random-access source
  ds = latent_dataset('cache/world', seed=0, batch_size=32)   # training batches, resumable
  ds = dataset_from_config(config)   # the same from a DiT config's data.cache_dir

A DiT trained on the cache skips both frozen encoders every step. The folder holds
latents-<k>-of-<n>.array_record shards (one msgpack record per clip: latents, the caption's real
tokens' states, caption, source index, clip shape) and cache.json (written last, so a folder
without it is incomplete): shards, record count, latent shape, the VAE's compression, latent
stats and source, the text encoder, and the source dataset.

Both arrays are stored as float16, which halves the disk and read cost at no loss that matters:
latents are normalised to unit variance and text states are O(1), so float16's 11-bit mantissa
(relative error under 5e-4) sits far below the noise flow matching adds. Text dominates a
record (n tokens x d against T'H'W'C latent values), hence only the real tokens are kept; the
reader pads them back to max_length with a mask, as `TextEncoder.encode` returns them.

Reading needs neither encoder and returns numpy arrays; the source pickles into Grain workers.

Legend: b batch, t/h/w latent frames/height/width, c latent channels, l text tokens (max_length),
d text width, n a caption's real tokens.
"""
import copy
import json
import os
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import grain
import numpy as np
import tqdm
from array_record.python.array_record_module import ArrayRecordWriter
from flax import serialization

from videogen.core import media
from videogen.data import pipeline
from videogen.data import world

METADATA_FILE = 'cache.json'
FORMAT_VERSION = 1
_DTYPE = np.float16
_BUILD = 'build it with experiments/encode_dataset.py --vae_workdir <vae run> --out {}'


class VideoEncoder(Protocol):
  """What the cache needs of a VAE (videogen.inference.vae.Autoencoder is one)."""
  compression: tuple[int, int, int]
  latent_channels: int
  step: int
  stats: Mapping[str, Any]

  def encode(self, video_bthwc) -> Any: ...
  def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, ...]: ...


class CaptionEncoder(Protocol):
  """What the cache needs of a text encoder (videogen.models.text.TextEncoder is one)."""
  name: str
  dim: int
  max_length: int

  def encode(self, captions) -> tuple[Any, Any]: ...


def _shard_name(shard: int, num_shards: int) -> str:
  return f'latents-{shard:05d}-of-{num_shards:05d}.array_record'


def write_cache(batches: Iterable[Mapping[str, Any]], vae: VideoEncoder,
                encoder: CaptionEncoder, out_dir, *, num_records: int,
                vae_workdir: str, source: dict, records_per_shard: int = 1024) -> dict:
  """Encodes the first `num_records` clips of `batches` into a latent cache in `out_dir`.

  Args:
    batches: {'video' float32 [B, T, H, W, 3] in [-1, 1], 'caption' str [B]}, every clip of one
      size (T = 1 + r_t·k frames, H and W multiples of r_s), e.g. pipeline.world_dataset.
    vae: encodes video to normalised latents; encoder: encodes captions.
    out_dir: the cache folder; it must not hold a cache already.
    num_records: clips to encode; record i is the i-th clip of `batches` (its 'index').
    vae_workdir: the VAE run or export `vae` came from, recorded in cache.json.
    source: JSON-ready description of the dataset (e.g. the world's config, seed and split).
    records_per_shard: records per ArrayRecord file.
  Returns:
    What cache.json holds.
  """
  out = pathlib.Path(out_dir)
  if (out / METADATA_FILE).exists():
    raise FileExistsError(f'{out} already holds a latent cache: pass another folder or delete '
                          'this one.')
  if num_records < 1 or records_per_shard < 1:
    raise ValueError(f'num_records {num_records} and records_per_shard {records_per_shard} must '
                     'be positive.')
  out.mkdir(parents=True, exist_ok=True)
  num_shards = -(-num_records // records_per_shard)
  shards = [_shard_name(k, num_shards) for k in range(num_shards)]
  clip_shape = latent_shape = writer = None
  count = 0
  bar = tqdm.tqdm(total=num_records, desc='encode', unit='clip')
  for batch in batches:
    video_bthwc = np.asarray(batch['video'])
    if clip_shape is None:
      clip_shape = video_bthwc.shape[1:4]
      latent_shape = vae.latent_shape(*clip_shape)
    if video_bthwc.shape[1:4] != clip_shape:
      raise ValueError(f"clip shape {video_bthwc.shape[1:4]} differs from the first clips' "
                       f'{clip_shape}: a cache holds one clip size, so write one per size.')
    take = min(len(video_bthwc), num_records - count)
    latents_bthwc = np.asarray(vae.encode(video_bthwc), np.float32)[:take]
    captions = [str(c) for c in batch['caption'][:take]]
    text_bld, mask_bl = encoder.encode(captions)
    for latents_thwc, caption, text_ld, mask_l in zip(latents_bthwc, captions, text_bld, mask_bl):
      if count % records_per_shard == 0:
        if writer is not None:
          writer.close()
        writer = ArrayRecordWriter(str(out / shards[count // records_per_shard]), 'group_size:1')
      writer.write(serialization.msgpack_serialize({
          'latents': latents_thwc.astype(_DTYPE),
          'text': text_ld[:mask_l.sum()].astype(_DTYPE),
          'caption': caption, 'index': count, 'clip_shape': list(clip_shape)}))
      count += 1
    bar.update(take)
    if count == num_records:
      break
  bar.close()
  if writer is not None:
    writer.close()
  if count < num_records:
    raise ValueError(f'batches ended after {count} clips, short of num_records={num_records}: '
                     'lower num_records or pass a longer dataset.')
  metadata = {
      'version': FORMAT_VERSION, 'shards': shards, 'num_records': count,
      'records_per_shard': records_per_shard, 'dtype': np.dtype(_DTYPE).name,
      'clip_shape': list(clip_shape), 'latent_shape': list(latent_shape),
      'vae': {'workdir': str(vae_workdir), 'step': vae.step, 'compression': list(vae.compression),
              'latent_channels': vae.latent_channels,
              'latent_stats': {k: np.asarray(v).tolist() for k, v in vae.stats.items()}},
      'text': {'encoder': encoder.name, 'dim': encoder.dim, 'max_length': encoder.max_length},
      'source': source,
  }
  media.write_json(out / METADATA_FILE, metadata)
  return metadata


def cache_frame_count(num_frames: int, temporal_downsample: int) -> int:
  """The smallest 1 + r·k >= num_frames: the frames a cached clip renders for a model trained on
  `num_frames` (8 -> 9 at r = 4). Real frames, not the repeated last frame of `encode(pad=True)`,
  so the model never learns a freeze at the end; it trims decoded frames to num_frames."""
  if num_frames < 1:
    raise ValueError(f'num_frames {num_frames} must be at least 1.')
  return 1 + -(-(num_frames - 1) // temporal_downsample) * temporal_downsample


def encode_source(config, vae: VideoEncoder, encoder: CaptionEncoder, out_dir, *,
                  vae_workdir: str, num_records: int, batch_size: int = 16,
                  records_per_shard: int = 1024, split: str | None = None) -> dict:
  """Writes the first num_records clips of a DiT config's data.source into a latent cache, at
  `cache_frame_count` frames of the world section's size: world records 0 .. num_records - 1
  (its seed, `split` or data.split), or the first records of a folder's or TFDS dataset's
  shuffle (seeded by config.seed; data/pipeline.py says how clips are cut). A latent run's
  config (data.source 'latent_cache') encodes its world section. See `write_cache`."""
  name = pipeline.source(config)
  name = 'world' if name == 'latent_cache' else name
  world_cfg = config.world.to_dict()
  world_cfg['num_frames'] = cache_frame_count(config.world.num_frames, vae.compression[0])
  vae.latent_shape(world_cfg['num_frames'], world_cfg['height'], world_cfg['width'])  # fail early
  split = split or config.data.split
  whole = -(-num_records // batch_size) * batch_size
  source = {'kind': name, 'seed': config.seed, 'model_num_frames': config.world.num_frames}
  if name == 'world':
    batches = pipeline.world_dataset(  # one shard, unshuffled: the i-th clip is world record i
        world.WorldOptions.from_config(world_cfg), seed=config.seed, batch_size=batch_size,
        split=split, num_records=whole)
    source.update(split=split, world=world_cfg)
  else:
    clips_config = copy.deepcopy(config)
    clips_config.world.num_frames = world_cfg['num_frames']
    clips_config.data.update(batch_size=batch_size, num_records=whole, split=split)
    batches = pipeline.clips_dataset_from_config(clips_config)
    names = ('root', 'captions') if name == 'folder' else ('tfds_name', 'split')
    source.update({key: clips_config.data[key] for key in names},
                  world={key: world_cfg[key] for key in ('num_frames', 'height', 'width', 'fps')})
  return write_cache(batches, vae, encoder, out_dir, num_records=num_records,
                     vae_workdir=vae_workdir, source=source, records_per_shard=records_per_shard)


def read_metadata(cache_dir) -> dict:
  """cache.json of `cache_dir`; raises FileNotFoundError when the folder holds no cache."""
  path = pathlib.Path(cache_dir) / METADATA_FILE
  if not path.is_file():
    raise FileNotFoundError(f'no latent cache in {str(cache_dir)!r} (missing {METADATA_FILE}): '
                            f'{_BUILD.format(cache_dir)}.')
  return json.loads(path.read_text())


def check_compatible(cache, *, compression, latent_channels: int, text_encoder: str,
                     text_dim: int) -> dict:
  """Raises unless the cache (a folder or its metadata) was made with this VAE compression
  (r_t, r_s, r_s), latent channel count and text encoder name and width; returns its metadata."""
  metadata = cache if isinstance(cache, Mapping) else read_metadata(cache)
  v, t = metadata['vae'], metadata['text']
  got = {'VAE compression': tuple(v['compression']), 'latent channels': v['latent_channels'],
         'text encoder': t['encoder'], 'text width': t['dim']}
  want = {'VAE compression': tuple(compression), 'latent channels': latent_channels,
          'text encoder': text_encoder, 'text width': text_dim}
  for key, value in want.items():
    if got[key] != value:
      raise ValueError(f'the latent cache was made with {key} {got[key]!r} but the model expects '
                       f'{value!r}: rebuild it with experiments/encode_dataset.py and the '
                       "model's VAE and text encoder.")
  return metadata


class LatentCacheSource:
  """Records {'latents' float32 [T', H', W', C], 'text' float32 [l, d] (zero past the caption),
  'text_mask' bool [l], 'caption' str, 'index' int} of a cache written by `write_cache`.

  Satisfies grain's RandomAccessDataSource protocol and pickles into worker processes.
  """

  def __init__(self, cache_dir):
    self.cache_dir = pathlib.Path(cache_dir)
    self.metadata = read_metadata(cache_dir)
    paths = [self.cache_dir / name for name in self.metadata['shards']]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
      raise FileNotFoundError(f'latent cache {str(cache_dir)!r} lacks shard {missing[0]}: '
                              f'{_BUILD.format(cache_dir)} again.')
    self.data = grain.sources.ArrayRecordDataSource([os.fspath(p) for p in paths])
    if len(self.data) != self.metadata['num_records']:
      raise ValueError(f'latent cache {str(cache_dir)!r} holds {len(self.data)} records but '
                       f"{METADATA_FILE} says {self.metadata['num_records']}: "
                       f'{_BUILD.format(cache_dir)} again.')
    self.max_length = self.metadata['text']['max_length']
    self.text_dim = self.metadata['text']['dim']

  def __len__(self) -> int:
    return len(self.data)

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    if not 0 <= index < len(self.data):
      raise IndexError(f'index={index} is outside this latent cache of {len(self.data)} records.')
    record = serialization.msgpack_restore(self.data[index])
    text_nd = record['text']
    text_ld = np.zeros((self.max_length, self.text_dim), np.float32)
    text_ld[:len(text_nd)] = text_nd
    return {'latents': record['latents'].astype(np.float32), 'text': text_ld,
            'text_mask': np.arange(self.max_length) < len(text_nd),
            'caption': record['caption'], 'index': record['index']}

  def __repr__(self) -> str:
    return f'LatentCacheSource({str(self.cache_dir)!r}, {len(self)} records)'


def latent_dataset(cache_dir, *, seed: int, batch_size: int, shard_index: int = 0,
                   shard_count: int = 1, num_threads: int = 2,
                   prefetch: int = 4) -> grain.IterDataset:
  """Endless shuffled batches of this process's slice of a latent cache, for training.

  Batches are LatentCacheSource records stacked: {'latents' [B, T', H', W', C], 'text'
  [B, l, d], 'text_mask' [B, l], 'caption' [B], 'index' [B]}; each epoch is reshuffled, and the
  iterator's `get_state()`/`set_state()` resume at exactly the next batch.
  """
  if batch_size < 1:
    raise ValueError(f'batch_size {batch_size} must be at least 1.')
  if not 0 <= shard_index < shard_count:
    raise ValueError(f'shard_index {shard_index} is outside [0, shard_count={shard_count}).')
  source = LatentCacheSource(cache_dir)
  if len(source) // shard_count < batch_size:
    raise ValueError(f'latent cache of {len(source)} records gives each of {shard_count} shards '
                     f'fewer than one batch of {batch_size}: encode more records.')
  ds = grain.MapDataset.source(source)[shard_index::shard_count].shuffle(seed=seed).repeat()
  ds = ds.batch(batch_size, drop_remainder=True)
  return ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads,
                                              prefetch_buffer_size=prefetch * batch_size))


def cache_dir_from_config(config) -> str:
  """config.data.cache_dir of a DiT config, or a clear error when it names none."""
  if not config.data.get('cache_dir'):
    raise ValueError("data.source 'latent_cache' needs data.cache_dir: pass "
                     '--config.data.cache_dir=<folder written by experiments/encode_dataset.py>.')
  return config.data.cache_dir


def dataset_from_config(config, *, shard_index: int = 0,
                        shard_count: int = 1) -> grain.IterDataset:
  """`latent_dataset` of config.data.cache_dir for one of `shard_count` processes, with the
  config's seed and data.batch_size (global), num_threads and prefetch."""
  d = config.data
  return latent_dataset(cache_dir_from_config(config), seed=config.seed,
                        batch_size=pipeline.local_batch_size(d.batch_size, shard_count),
                        shard_index=shard_index, shard_count=shard_count,
                        num_threads=d.num_threads, prefetch=d.prefetch)
