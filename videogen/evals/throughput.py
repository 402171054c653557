"""Throughput of the input pipeline: clips/s and frames/s after warm-up."""
import time

from videogen.data import pipeline
from videogen.data import world


def pipeline_rate(options: world.WorldOptions, *, batch_size: int, num_workers: int,
                  num_batches: int, seed: int = 0) -> dict:
  """Times `num_batches` batches after the first (which pays worker start-up)."""
  iterator = iter(pipeline.world_dataset(options, seed=seed, batch_size=batch_size,
                                         num_workers=num_workers))
  start = time.perf_counter()
  next(iterator)
  startup = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(num_batches):
    next(iterator)
  seconds = time.perf_counter() - start
  clips = num_batches * batch_size
  return {
      'shape': f'{options.height}x{options.width}x{options.num_frames}',
      'workers': num_workers,
      'clips_per_s': clips / seconds,
      'frames_per_s': clips * options.num_frames / seconds,
      'first_batch_s': startup,
  }
