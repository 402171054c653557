"""Wall-clock timing for benchmarks."""
import time

import numpy as np


def median_seconds(fn, repeats: int) -> float:
  """Median wall time of fn() (which must block) after one warm-up call."""
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))
