"""Grain input pipeline: world, folder or TFDS clips -> float batches in [-1, 1], one disjoint
shard per process.

Records flow: WorldSource[i] (render, uint8), FolderSource (decode a file, uint8) or TfdsSource
(read an ArrayRecord example, uint8) -> keep
video + caption -> normalise -> batch, or pack into token rows -> (optionally) worker processes
-> prefetch. The data layout picks how clips of many sizes share a batch (LAYOUTS). The
iterator's `get_state()`/`set_state()` resume at exactly the next batch, so Orbax saves it
beside the model state.
Worker code is numpy only.
"""
import copy
import dataclasses

import grain
import numpy as np

from videogen.core import media
from videogen.core import patches
from videogen.data import folder_source
from videogen.data import packing
from videogen.data import sizes as sizes_lib
from videogen.data import tfds_source
from videogen.data import world
from videogen.data import world_source

# 'packed': clips of the sizes table, several to a token row (NaViT); 'buckets': one size of the
# table per batch; 'fixed': every clip at the world's size (num_frames x height x width).
LAYOUTS = ('packed', 'buckets', 'fixed')
# 'world': clips rendered as they are read; 'latent_cache': VAE latents and caption states
# encoded once (data/latent_cache.py); 'folder': clips of your own videos and images, listed
# with their captions in a caption file in data.root (data/folder_source.py); 'tfds': a TFDS
# dataset prepared as ArrayRecord, named by data.tfds_name (data/tfds_source.py).
SOURCES = ('world', 'latent_cache', 'folder', 'tfds')

@dataclasses.dataclass(frozen=True)
class ToTrainRecord(grain.transforms.Map):
  """Keeps what training reads and maps uint8 pixels to float32 in [-1, 1]."""

  def map(self, record):
    video = media.from_uint8(record['video'])
    return {'video': video, 'caption': record['caption']}


@dataclasses.dataclass(frozen=True)
class ReadRecord(grain.transforms.MapWithIndex):
  """Reads record `index` (after the shuffle) of a FolderSource or TfdsSource, modulo its length
  (a TFDS run's data.num_records may exceed the split), for global position `position`, at that
  position's size when `sizes` is given: the size follows the position, not the record, so the
  consecutive positions of one global batch share it (buckets) however records shuffle."""
  source: folder_source.FolderSource | tfds_source.TfdsSource
  sizes: sizes_lib.ClipSizes | None = None

  def map_with_index(self, position: int, index: int) -> dict:
    bucket = self.sizes(position) if self.sizes is not None else None
    return ToTrainRecord().map(self.source.record(int(index) % len(self.source), bucket))


def _check_shards(*, shard_index: int, shard_count: int, num_records: int,
                  batch_size: int) -> None:
  """Raises for a batch or shard that cannot be made, before any record is read."""
  if batch_size < 1:
    raise ValueError(f'batch_size {batch_size} must be at least 1.')
  if not 0 <= shard_index < shard_count:
    raise ValueError(f'shard_index {shard_index} is outside [0, shard_count={shard_count}).')
  if num_records // shard_count < batch_size:
    raise ValueError(f'num_records {num_records} gives each of {shard_count} shards fewer than '
                     f'one batch of {batch_size}: raise num_records.')


def _records(options: world.WorldOptions, sizes: sizes_lib.ClipSizes | None, *, seed: int,
             split: str, shard_index: int, shard_count: int, num_records: int,
             batch_size: int, clips_per_caption: int = 1) -> grain.MapDataset:
  """This process's normalised records {'video', 'caption'}; checks the sharding arguments."""
  _check_shards(shard_index=shard_index, shard_count=shard_count, num_records=num_records,
                batch_size=batch_size)
  source = world_source.WorldSource(options, seed=seed, split=split, num_records=num_records,
                                    sizes=sizes, clips_per_caption=clips_per_caption)
  return grain.MapDataset.source(source)[shard_index::shard_count].map(ToTrainRecord())


def world_dataset(options: world.WorldOptions, *, seed: int, batch_size: int,
                  split: str = 'train', shard_index: int = 0, shard_count: int = 1,
                  num_workers: int = 0, num_threads: int = 2, prefetch: int = 4,
                  num_records: int = 1_000_000, sizes: sizes_lib.ClipSizes | None = None,
                  clips_per_caption: int = 1) -> grain.IterDataset:
  """The world as batches `{'video': f32 [B, T, H, W, 3], 'caption': str [B]}` for one process.

  Args:
    options: what scenes contain and their size.
    seed: fixes every scene; the same seed gives the same batches.
    batch_size: examples per batch on this process (the global batch divided by processes).
    split: 'train' (held-out combinations removed) or 'held_out'.
    shard_index, shard_count: this process's disjoint slice of the records (multi-host).
    num_workers: worker processes rendering in parallel (0 renders in this process).
    num_threads: threads per process reading records.
    prefetch: batches buffered ahead.
    num_records: size of the (virtual) dataset; one epoch.
    sizes: shape buckets: a size per global batch (its group must be batch_size * shard_count),
      which every clip of that batch on every process takes. None: the options' size.
    clips_per_caption: consecutive records sharing a caption (WorldSource); a process's batch
      holds a block whole when one process reads and the count divides batch_size.
  """
  if sizes is not None and sizes.group != batch_size * shard_count:
    raise ValueError(f'sizes draw one size per {sizes.group} records but a global batch holds '
                     f'{batch_size * shard_count}: build ClipSizes with group='
                     f'{batch_size * shard_count}.')
  ds = _records(options, sizes, seed=seed, split=split, shard_index=shard_index,
                shard_count=shard_count, num_records=num_records, batch_size=batch_size,
                clips_per_caption=clips_per_caption)
  return _batches(ds, batch_size, num_workers=num_workers, num_threads=num_threads,
                  prefetch=prefetch)


def _batches(ds: grain.MapDataset, batch_size: int, *, num_workers: int, num_threads: int,
             prefetch: int) -> grain.IterDataset:
  """Records batched, read by threads (and worker processes) ahead of the trainer."""
  ds = ds.batch(batch_size, drop_remainder=True)
  ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads,
                                            prefetch_buffer_size=prefetch * batch_size))
  if num_workers > 0:
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers,
                                                     per_worker_buffer_size=prefetch))
  return ds


def packed_world_dataset(options: world.WorldOptions, sizes: sizes_lib.ClipSizes, *, seed: int,
                         rows_per_batch: int, row_length: int, patch_size, max_segments: int = 16,
                         buffer_size: int = 256, split: str = 'train', shard_index: int = 0,
                         shard_count: int = 1, num_workers: int = 0, num_threads: int = 2,
                         prefetch: int = 4, num_records: int = 1_000_000,
                         clips_per_caption: int = 1) -> grain.IterDataset:
  """The world as packed token rows (packing.PackedDataset's batches) for one process: each clip
  at its own size sizes(i), `rows_per_batch` rows of `row_length` tokens per batch. Workers
  render; this process packs. Other arguments as in `world_dataset`."""
  ds = _records(options, sizes, seed=seed, split=split, shard_index=shard_index,
                shard_count=shard_count, num_records=num_records, batch_size=1,
                clips_per_caption=clips_per_caption)
  return _packed_rows(ds, seed=seed, rows_per_batch=rows_per_batch, row_length=row_length,
                      patch_size=patch_size, max_segments=max_segments, buffer_size=buffer_size,
                      num_workers=num_workers, num_threads=num_threads, prefetch=prefetch)


def _packed_rows(ds: grain.MapDataset, *, seed: int, rows_per_batch: int, row_length: int,
                 patch_size, max_segments: int, buffer_size: int, num_workers: int,
                 num_threads: int, prefetch: int) -> packing.PackedDataset:
  """Records read by threads (and worker processes), packed into token rows here."""
  ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads,
                                            prefetch_buffer_size=prefetch * rows_per_batch))
  if num_workers > 0:
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers,
                                                     per_worker_buffer_size=prefetch))
  return packing.PackedDataset(ds, row_length=row_length, patch_size=patch_size,
                               rows_per_batch=rows_per_batch, max_segments=max_segments,
                               buffer_size=buffer_size, seed=seed)


def layout(config) -> str:
  """config.data.layout, checked; runs saved before layouts existed read 'fixed'."""
  name = config.data.get('layout', 'fixed')
  if name not in LAYOUTS:
    raise ValueError(f'data.layout {name!r} is unknown: use one of {LAYOUTS}.')
  return name


def source(config) -> str:
  """config.data.source, checked (a folder run must name its folder); runs saved before sources
  existed read 'world'."""
  name = config.data.get('source', 'world')
  if name not in SOURCES:
    raise ValueError(f'data.source {name!r} is unknown: use one of {SOURCES}.')
  if name == 'folder' and not config.data.get('root'):
    raise ValueError("data.source 'folder' trains on a folder of videos that data.root must "
                     'name: pass --config.data.root=DIR (DIR holding the media and '
                     'captions.jsonl).')
  if name == 'tfds' and not config.data.get('tfds_name'):
    raise ValueError("data.source 'tfds' trains on a TFDS dataset that data.tfds_name must "
                     'name: pass --config.data.tfds_name=NAME/CONFIG (prepared as ArrayRecord '
                     'in data.tfds_data_dir).')
  return name


def local_batch_size(global_batch: int, shard_count: int) -> int:
  """The batch of one of `shard_count` processes; raises unless they split `global_batch`."""
  if global_batch % shard_count:
    raise ValueError(f'global batch {global_batch} does not split over {shard_count} '
                     f'processes: use a multiple of {shard_count}.')
  return global_batch // shard_count


def world_dataset_from_config(config, *, shard_index: int = 0,
                              shard_count: int = 1) -> grain.IterDataset:
  """The dataset of config.data.layout from a config with `seed`, `world` (WorldOptions
  fields), `data` and (for 'packed' and 'buckets') data.sizes and model.patch_size."""
  d = config.data
  local_batch = local_batch_size(d.batch_size, shard_count)
  options = world.WorldOptions.from_config(config.world)
  common = dict(seed=config.seed, split=d.split, shard_index=shard_index,
                shard_count=shard_count, num_workers=d.num_workers, num_threads=d.num_threads,
                prefetch=d.prefetch, clips_per_caption=d.get('clips_per_caption', 1))
  name = layout(config)
  if name == 'fixed':
    return world_dataset(options, batch_size=local_batch, **common)
  table = sizes_lib.table_from_config(config)
  if name == 'buckets':
    return world_dataset(options, batch_size=local_batch, **common,
                         sizes=sizes_lib.ClipSizes(table, config.seed, group=d.batch_size))
  return packed_world_dataset(
      options, sizes_lib.ClipSizes(table, config.seed), rows_per_batch=local_batch,
      row_length=d.row_length, patch_size=config.model.patch_size,
      max_segments=d.max_segments, buffer_size=d.buffer_size, **common)


def clips_dataset_from_config(config, *, shard_index: int = 0,
                              shard_count: int = 1) -> grain.IterDataset:
  """This process's batches of clips of config.data.source ('world', 'folder' or 'tfds'): what
  the DiT trains on in pixels, what the VAE trains on and what a latent cache encodes."""
  name = source(config)
  if name == 'folder':
    return folder_dataset_from_config(config, shard_index=shard_index, shard_count=shard_count)
  if name == 'tfds':
    return tfds_dataset_from_config(config, shard_index=shard_index, shard_count=shard_count)
  if name == 'world':
    return world_dataset_from_config(config, shard_index=shard_index, shard_count=shard_count)
  raise ValueError(f'data.source {name!r} holds latents, not clips: pass a source of clips '
                   "('world', 'folder' or 'tfds').")


def source_clips(config, *, num_clips: int, seed: int, split: str = 'train') -> np.ndarray:
  """`num_clips` clips float32 [N, T, H, W, 3] in [-1, 1] of config.data.source, for grids and
  statistics: the world's clips of `split` rendered with `seed`; a folder's or a TFDS dataset's
  (which have no held-out split) first records of the shuffle that `seed` draws."""
  if source(config) == 'world':
    return world_clips(config.world, seed=seed, split=split, num_clips=num_clips)
  config = copy.deepcopy(config)
  config.seed = seed
  config.data.update(batch_size=num_clips, num_workers=0, num_threads=1, prefetch=1)
  return next(iter(clips_dataset_from_config(config)))['video']


def world_clips(world_cfg, *, seed: int, split: str, num_clips: int) -> np.ndarray:
  """`num_clips` world clips float32 [N, T, H, W, 3] in [-1, 1] of the config's world section."""
  dataset = world_dataset(world.WorldOptions.from_config(world_cfg), seed=seed,
                          batch_size=num_clips, split=split, num_threads=1, prefetch=1,
                          num_records=num_clips)
  return next(iter(dataset))['video']


def folder_dataset_from_config(config, *, shard_index: int = 0,
                               shard_count: int = 1) -> grain.IterDataset:
  """Batches of config.data.root's clips in config.data.layout for one process.

  The clip size is the world section's (num_frames x height x width at fps; buckets: the data.sizes
  table's; packed: each file's own aspect ratio in as many tokens as that clip makes). Records
  are a shuffle, seeded by config.seed, of data.num_records clips (record j: a clip of file
  j % files starting at a position drawn from (seed, j)); each process takes every shard_count-th
  of them from shard_index. FolderSource's docstring says how clips are cut and what is skipped.
  """
  d = config.data
  name = layout(config)
  local_batch = local_batch_size(d.batch_size, shard_count)
  _check_shards(shard_index=shard_index, shard_count=shard_count, num_records=d.num_records,
                batch_size=1 if name == 'packed' else local_batch)
  source_ = _folder_source(config, name)
  source_[0]  # a folder with nothing decodable fails here, naming it, not in a reader thread
  return _source_batches(config, source_, len(source_), name, local_batch,
                         shard_index=shard_index, shard_count=shard_count)


def _source_batches(config, source_, num_records: int, name: str, local_batch: int, *,
                    shard_index: int, shard_count: int) -> grain.IterDataset:
  """A file or TFDS source's `num_records` records, shuffled by config.seed, this process's
  every shard_count-th from shard_index read by ReadRecord (at the sizes table's size of each
  global batch for layout `name` 'buckets'), in batches of local_batch clips, or ('packed')
  packed into local_batch token rows a batch."""
  d = config.data
  sizes = (sizes_lib.ClipSizes(sizes_lib.table_from_config(config), config.seed,
                               group=d.batch_size) if name == 'buckets' else None)
  ds = grain.MapDataset.range(num_records).shuffle(seed=config.seed)
  ds = ds.map_with_index(ReadRecord(source_, sizes))[shard_index::shard_count]
  common = dict(num_workers=d.num_workers, num_threads=d.num_threads, prefetch=d.prefetch)
  if name != 'packed':
    return _batches(ds, local_batch, **common)
  return _packed_rows(ds, seed=config.seed, rows_per_batch=local_batch, row_length=d.row_length,
                      patch_size=config.model.patch_size, max_segments=d.max_segments,
                      buffer_size=d.buffer_size, **common)


def _folder_source(config, name: str) -> folder_source.FolderSource:
  """The FolderSource of data.root for layout `name` (`_clip_size`)."""
  d, w = config.data, config.world
  return folder_source.FolderSource(d.root, num_frames=w.num_frames, fps=w.fps,
                                    captions=d.captions, seed=config.seed,
                                    num_records=d.num_records, **_clip_size(config, name))


def _clip_size(config, name: str) -> dict:
  """A file or TFDS source's clip size for layout `name`: fixed and buckets cut clips to one
  size (buckets resize each record at read time), packed keeps each clip's aspect ratio in the
  tokens of the world's clip, and there images are 1-frame clips when the patch's pt is 1
  (else still clips)."""
  w = config.world
  if name != 'packed':
    return dict(height=w.height, width=w.width)
  patch = tuple(config.model.patch_size)
  return dict(max_tokens=patches.num_tokens((w.num_frames, w.height, w.width), patch),
              patch_size=patch, single_frame_images=patch[0] == 1)


def tfds_dataset_from_config(config, *, shard_index: int = 0,
                             shard_count: int = 1) -> grain.IterDataset:
  """Batches of the TFDS dataset config.data.tfds_name (split data.split, in data.tfds_data_dir)
  for one process: every clip num_frames x height x width at fps of the world section ('fixed'
  layout), at the data.sizes table's size of its batch ('buckets'), or at its own aspect ratio in
  packed rows ('packed'); data/tfds_source.py says how a stored clip is resampled and cut. The
  stored frame rate is each example's 'fps' field, or data.tfds_fps for a dataset without one.
  Records are a shuffle, seeded by config.seed, of data.num_records clips (record j: stored
  example j % examples); each process takes every shard_count-th of them from shard_index."""
  d, w = config.data, config.world
  name = layout(config)
  local_batch = local_batch_size(d.batch_size, shard_count)
  _check_shards(shard_index=shard_index, shard_count=shard_count, num_records=d.num_records,
                batch_size=1 if name == 'packed' else local_batch)
  source_ = tfds_source.TfdsSource(
      d.tfds_name, d.split, data_dir=d.get('tfds_data_dir'), num_frames=w.num_frames,
      fps=w.fps, source_fps=d.get('tfds_fps'), seed=config.seed, video_key=d.video_key,
      caption_key=d.caption_key or None, **_clip_size(config, name))
  if 'fps' not in source_.data.dataset_info.features and not d.get('tfds_fps'):
    raise ValueError(f'{d.tfds_name} stores no frame rate (no fps field): pass its frames per '
                     'second as --config.data.tfds_fps=N.')
  return _source_batches(config, source_, d.num_records, name, local_batch,
                         shard_index=shard_index, shard_count=shard_count)
