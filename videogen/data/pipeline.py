"""Grain input pipeline: world clips -> float batches in [-1, 1], one disjoint shard per process.

Records flow: WorldSource[i] (render, uint8) -> keep video + caption -> normalise -> batch, or
pack into token rows -> (optionally) worker processes -> prefetch. The data layout picks how clips
of many sizes share a batch (LAYOUTS). The iterator's `get_state()`/`set_state()` resume at
exactly the next batch, so Orbax saves it beside the model state.
Worker code is numpy only.
"""
import dataclasses

import grain
import numpy as np

from videogen.core import media
from videogen.data import packing
from videogen.data import sizes as sizes_lib
from videogen.data import world
from videogen.data import world_source

# 'packed': clips of the sizes table, several to a token row (NaViT); 'buckets': one size of the
# table per batch; 'fixed': every clip at the world's size (num_frames x height x width).
LAYOUTS = ('packed', 'buckets', 'fixed')
# 'world': clips rendered as they are read; 'latent_cache': VAE latents and caption states
# encoded once (data/latent_cache.py).
SOURCES = ('world', 'latent_cache')

@dataclasses.dataclass(frozen=True)
class ToTrainRecord(grain.transforms.Map):
  """Keeps what training reads and maps uint8 pixels to float32 in [-1, 1]."""

  def map(self, record):
    video = media.from_uint8(record['video'])
    return {'video': video, 'caption': record['caption']}


def _records(options: world.WorldOptions, sizes: sizes_lib.ClipSizes | None, *, seed: int,
             split: str, shard_index: int, shard_count: int, num_records: int,
             batch_size: int) -> grain.MapDataset:
  """This process's normalised records {'video', 'caption'}; checks the sharding arguments."""
  if batch_size < 1:
    raise ValueError(f'batch_size {batch_size} must be at least 1.')
  if not 0 <= shard_index < shard_count:
    raise ValueError(f'shard_index {shard_index} is outside [0, shard_count={shard_count}).')
  if num_records // shard_count < batch_size:
    raise ValueError(f'num_records {num_records} gives each of {shard_count} shards fewer than '
                     f'one batch of {batch_size}: raise num_records.')
  source = world_source.WorldSource(options, seed=seed, split=split, num_records=num_records,
                                    sizes=sizes)
  return grain.MapDataset.source(source)[shard_index::shard_count].map(ToTrainRecord())


def world_dataset(options: world.WorldOptions, *, seed: int, batch_size: int,
                  split: str = 'train', shard_index: int = 0, shard_count: int = 1,
                  num_workers: int = 0, num_threads: int = 2, prefetch: int = 4,
                  num_records: int = 1_000_000,
                  sizes: sizes_lib.ClipSizes | None = None) -> grain.IterDataset:
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
  """
  if sizes is not None and sizes.group != batch_size * shard_count:
    raise ValueError(f'sizes draw one size per {sizes.group} records but a global batch holds '
                     f'{batch_size * shard_count}: build ClipSizes with group='
                     f'{batch_size * shard_count}.')
  ds = _records(options, sizes, seed=seed, split=split, shard_index=shard_index,
                shard_count=shard_count, num_records=num_records, batch_size=batch_size)
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
                         prefetch: int = 4, num_records: int = 1_000_000) -> grain.IterDataset:
  """The world as packed token rows (packing.PackedDataset's batches) for one process: each clip
  at its own size sizes(i), `rows_per_batch` rows of `row_length` tokens per batch. Workers
  render; this process packs. Other arguments as in `world_dataset`."""
  ds = _records(options, sizes, seed=seed, split=split, shard_index=shard_index,
                shard_count=shard_count, num_records=num_records, batch_size=1)
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
  """config.data.source, checked; runs saved before sources existed read 'world'."""
  name = config.data.get('source', 'world')
  if name not in SOURCES:
    raise ValueError(f'data.source {name!r} is unknown: use one of {SOURCES}.')
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
                prefetch=d.prefetch)
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


def world_clips(world_cfg, *, seed: int, split: str, num_clips: int) -> np.ndarray:
  """`num_clips` world clips float32 [N, T, H, W, 3] in [-1, 1] of the config's world section."""
  dataset = world_dataset(world.WorldOptions.from_config(world_cfg), seed=seed,
                          batch_size=num_clips, split=split, num_threads=1, prefetch=1,
                          num_records=num_clips)
  return next(iter(dataset))['video']
