"""Grain input pipeline: world clips -> float batches in [-1, 1], one disjoint shard per process.

Records flow: WorldSource[i] (render, uint8) -> keep video + caption -> normalise -> batch ->
(optionally) worker processes -> prefetch. The iterator's `get_state()`/`set_state()` resume at
exactly the next batch, so Orbax saves it beside the model state.
Worker code is numpy only.
"""
import dataclasses

import grain
import numpy as np

from videogen.data import world
from videogen.data import world_source

@dataclasses.dataclass(frozen=True)
class ToTrainRecord(grain.transforms.Map):
  """Keeps what training reads and maps uint8 pixels to float32 in [-1, 1]."""

  def map(self, record):
    video = record['video'].astype(np.float32) * (2.0 / 255.0) - 1.0
    return {'video': video, 'caption': record['caption']}


def world_dataset(options: world.WorldOptions, *, seed: int, batch_size: int,
                  split: str = 'train', shard_index: int = 0, shard_count: int = 1,
                  num_workers: int = 0, num_threads: int = 2, prefetch: int = 4,
                  num_records: int = 1_000_000) -> grain.IterDataset:
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
  """
  if batch_size < 1:
    raise ValueError(f'batch_size {batch_size} must be at least 1.')
  if not 0 <= shard_index < shard_count:
    raise ValueError(f'shard_index {shard_index} is outside [0, shard_count={shard_count}).')
  if num_records // shard_count < batch_size:
    raise ValueError(f'num_records {num_records} gives each of {shard_count} shards fewer than '
                     f'one batch of {batch_size}: raise num_records.')
  source = world_source.WorldSource(options, seed=seed, split=split, num_records=num_records)
  ds = grain.MapDataset.source(source)[shard_index::shard_count]
  ds = ds.map(ToTrainRecord()).batch(batch_size, drop_remainder=True)
  ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads,
                                            prefetch_buffer_size=prefetch * batch_size))
  if num_workers > 0:
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers,
                                                     per_worker_buffer_size=prefetch))
  return ds


def world_dataset_from_config(config, *, shard_index: int = 0,
                              shard_count: int = 1) -> grain.IterDataset:
  """`world_dataset` from a config with `seed`, `world` (WorldOptions fields) and `data`."""
  if config.data.batch_size % shard_count:
    raise ValueError(f'global batch {config.data.batch_size} does not split over {shard_count} '
                     f'processes: use a multiple of {shard_count}.')
  return world_dataset(
      world.WorldOptions.from_config(config.world), seed=config.seed,
      batch_size=config.data.batch_size // shard_count, split=config.data.split,
      shard_index=shard_index, shard_count=shard_count,
      num_workers=config.data.num_workers, num_threads=config.data.num_threads,
      prefetch=config.data.prefetch)
