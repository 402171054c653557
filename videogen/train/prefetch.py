"""Model batches made one update ahead on a host thread, or in turn.

`Run.model_batch` does the host's share of a step (a DiT run encodes its captions with the frozen
text encoder; on the 2-core CPU main job that is 0.27 s against the train step's 0.37 s). Called
in the training loop it runs after the step was dispatched and before the next one can be, so
the two add up. `ModelBatches` makes the next model batch on a thread while the step runs, and
stands in for the data iterator in checkpoints: its state is the data position after the
batches handed out, never after the one made ahead, so a resumed run sees the same batches.
Where the step already keeps every core busy (the DiT data-parallel over 2 CPU devices on 2
cores), the thread only competes with it, and `ahead=0` makes each batch in turn.

Data echoing (Choi et al., "Faster Neural Network Training with Data Echoing", 2019): with
echo = k each model batch trains k consecutive updates (each draws its own times, noise,
caption dropout and task from its step), so the host makes a batch every k updates. Update s
takes batch s // k; until its last use the saved position stays before that batch, so a run
resumed mid-echo makes it again and gives it the uses it had left.
"""
import json
import queue
import threading
from typing import Any

import grain

from videogen.runtime import run as run_lib


class ModelBatches:
  """Iterator of run.model_batch(next(data_iter), step) for the updates step = first_step,
  first_step + 1, ..., each batch handed out for `echo` updates (step: the first of them), made
  `ahead` batches in advance on a thread, or in turn when it is taken (ahead=0: no thread, the
  host's work and the step never compete for the cores); `get_state` is Grain's checkpointable
  iterator state. Use it as a context manager (or call `close`) so the thread stops with the
  loop."""

  def __init__(self, run: run_lib.Run, data_iter: Any, first_step: int, *, ahead: int = 1,
               echo: int = 1):
    if echo < 1:
      raise ValueError(f'data.echo {echo} must be at least 1: use 1 to train each batch once.')
    if ahead < 0:
      raise ValueError(f'data.ahead {ahead} is negative: use 0 (model batches made in turn) or '
                       'more (made that many updates ahead on a thread).')
    self._run, self._data_iter, self._step, self._echo = run, data_iter, first_step, echo
    # The batch being handed out, its uses left, and the data positions before and after it.
    self._made, self._uses_left = None, 0
    self._state = self._before = self._after = self._data_state()
    self._items = self._made_batches()
    self._queue: queue.Queue = queue.Queue(maxsize=max(ahead, 1))
    self._stop = threading.Event()
    self._thread = None
    if ahead:
      self._thread = threading.Thread(target=self._work, name='model-batches', daemon=True)
      self._thread.start()

  def _data_state(self) -> bytes:
    """The data iterator's position, as Grain's checkpoint handler writes it."""
    if isinstance(self._data_iter, grain.DatasetIterator):
      return json.dumps(self._data_iter.get_state(), indent=4).encode()
    return self._data_iter.get_state()

  def _made_batches(self):
    """(model batch, its uses, the data position after it, None) for each batch in turn; ends
    with (None, 0, None, the error) where making one raised."""
    step = self._step
    uses = self._echo - self._step % self._echo  # a run resumed mid-echo: the uses left
    while True:
      try:
        item = (self._run.model_batch(next(self._data_iter), step), uses, self._data_state(),
                None)
      except BaseException as e:  # pylint: disable=broad-except  (re-raised by __next__)
        yield None, 0, None, e
        return
      yield item
      step, uses = step + uses, self._echo

  def _work(self) -> None:
    for item in self._items:
      while not self._stop.is_set():
        try:
          self._queue.put(item, timeout=0.1)
          break
        except queue.Full:
          continue
      if self._stop.is_set():
        return

  def __iter__(self):
    return self

  def __next__(self) -> tuple[dict, dict, dict]:
    """(model batch, counts, levels) of the next update; raises what making it raised."""
    if not self._uses_left:
      made, uses, after, error = self._queue.get() if self._thread else next(self._items)
      if error is not None:
        raise error
      self._made, self._uses_left = made, uses
      self._before, self._after = self._after, after
    self._uses_left -= 1
    self._state = self._before if self._uses_left else self._after
    return self._made

  def get_state(self) -> bytes:
    """The data position after the batches handed out (what a resumed run starts from)."""
    return self._state

  def close(self) -> None:
    """Stops the thread; the batch it made ahead is dropped (the saved position excludes it)."""
    self._stop.set()
    while self._thread and self._thread.is_alive():
      try:
        self._queue.get(timeout=0.1)
      except queue.Empty:
        pass
    if self._thread:
      self._thread.join()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
