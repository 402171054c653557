"""Stop cleanly on SIGTERM: the handler only sets a flag; the loop saves, then exits.

Usage:
  with stop_on_signal() as stop:
    for step in ...:
      ...
      if stop.should_stop() or checkpointer.reached_preemption(step):
        checkpointer.save(step, state, data_iter, force=True)
        break

In multi-host runs processes must agree on the step they stop at; Orbax's `reached_preemption`
gives that agreement (through jax.distributed), the flag covers a single process.
"""
from collections.abc import Iterator, Sequence
import contextlib
import signal
import threading


class StopFlag:
  """Set from a signal handler, read by the training loop."""

  def __init__(self):
    self._event = threading.Event()

  def set(self, signum: int | None = None, frame: object = None) -> None:
    del signum, frame  # The signal-handler signature.
    self._event.set()

  def should_stop(self) -> bool:
    return self._event.is_set()


@contextlib.contextmanager
def stop_on_signal(signals: Sequence[int] = (signal.SIGTERM,)) -> Iterator[StopFlag]:
  """Installs handlers that set a StopFlag for the block's duration, then restores the old ones."""
  flag = StopFlag()
  previous = {signum: signal.signal(signum, flag.set) for signum in signals}
  try:
    yield flag
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)
