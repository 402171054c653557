"""Model batches made one update ahead on a host thread.

`Run.model_batch` does the host's share of a step (a DiT run encodes its captions with the frozen
text encoder; on the 2-core CPU main job that is 0.27 s against the train step's 0.37 s). Called
in the training loop it runs after the step was dispatched and before the next one can be, so
the two add up. `ModelBatches` makes the next model batch on a thread while the step runs, and
stands in for the data iterator in checkpoints: its state is the data position after the
batches handed out, never after the one made ahead, so a resumed run sees the same batches.
"""
import json
import queue
import threading
from typing import Any

import grain

from videogen.runtime import run as run_lib


class ModelBatches:
  """Iterator of run.model_batch(next(data_iter), step) for step = first_step, first_step+1, ...,
  made `ahead` updates in advance; `get_state` is Grain's checkpointable iterator state. Use it
  as a context manager (or call `close`) so the thread stops with the loop."""

  def __init__(self, run: run_lib.Run, data_iter: Any, first_step: int, *, ahead: int = 1):
    self._run, self._data_iter, self._step = run, data_iter, first_step
    self._state = self._data_state()
    self._queue: queue.Queue = queue.Queue(maxsize=ahead)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._work, name='model-batches', daemon=True)
    self._thread.start()

  def _data_state(self) -> bytes:
    """The data iterator's position, as Grain's checkpoint handler writes it."""
    if isinstance(self._data_iter, grain.DatasetIterator):
      return json.dumps(self._data_iter.get_state(), indent=4).encode()
    return self._data_iter.get_state()

  def _work(self) -> None:
    step = self._step
    while not self._stop.is_set():
      try:
        made = self._run.model_batch(next(self._data_iter), step)
        item = (made, self._data_state(), None)
      except BaseException as e:  # pylint: disable=broad-except  (re-raised by __next__)
        item = (None, None, e)
      step += 1
      while not self._stop.is_set():
        try:
          self._queue.put(item, timeout=0.1)
          break
        except queue.Full:
          continue
      if item[2] is not None:
        return

  def __iter__(self):
    return self

  def __next__(self) -> tuple[dict, dict, dict]:
    """(model batch, counts, levels) of the next update; raises what making it raised."""
    made, state, error = self._queue.get()
    if error is not None:
      raise error
    self._state = state
    return made

  def get_state(self) -> bytes:
    """The data position after the batches handed out (what a resumed run starts from)."""
    return self._state

  def close(self) -> None:
    """Stops the thread; the batch it made ahead is dropped (the saved position excludes it)."""
    self._stop.set()
    while self._thread.is_alive():
      try:
        self._queue.get(timeout=0.1)
      except queue.Empty:
        pass
    self._thread.join()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
