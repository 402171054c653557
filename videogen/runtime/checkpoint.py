"""Orbax checkpoints of one run: the train state, the Grain iterator's position and the config.

Each step directory holds the items 'state' (the unboxed TrainState pytree), 'data_iter' (Grain's
own JSON state, one file per process) and 'config' (JSON). State restores onto abstract targets
that carry shardings, so a checkpoint written on one mesh restores onto any other. In multi-process
runs every saved leaf must be a global jax.Array: put host-local scalars on a replicated sharding
before saving.

Faults: a save that dies midway leaves only `<step>.orbax-checkpoint-tmp`, which restores never
read and the next writing Checkpointer on the folder removes (`remove_partial_saves`). A full disk
stops the run with one sentence, once the failed save's other writes are done (as any failed save
does; the step it resumes from stays whole: Orbax deletes old steps only after a save completes). A
step folder that cannot be read names itself and how to fall back to the step before
(`restore_fallback`). A flipped byte inside an array file is not caught: Orbax keeps no checksums.
"""
from collections.abc import Callable, Mapping, Sequence
import contextlib
import errno
import functools
import json
import os
import time
from typing import Any, TypeVar

from absl import logging
from etils import epath
import grain
import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
import ml_collections
import orbax.checkpoint as ocp
# Private modules (orbax-checkpoint is pinned in setup.cfg): the Store orbax's default array
# handler keeps (it records which arrays are random keys), and the registry, whose add() can
# replace that handler without logging a warning in every process.
from orbax.checkpoint._src.metadata import array_metadata_store
from orbax.checkpoint._src.serialization import type_handler_registry

from videogen.runtime.state import TrainState

_ITEMS = ('state', 'data_iter', 'config')
# What an unreadable step folder is renamed to (`restore_fallback`): Orbax lists only integer names.
_SET_ASIDE_SUFFIX = '.unreadable'
# A failed save's step folder counts as done being written once it is unchanged this long.
_QUIET_S = 1.0
_T = TypeVar('_T')


class UnreadableCheckpointError(ValueError):
  """A step folder that exists but cannot be restored (a file in it truncated, garbled, lost)."""

  def __init__(self, message: str, step: int):
    super().__init__(message)
    self.step = step


class Checkpointer:
  """Saves every `save_interval_steps` (async by default) and keeps the newest `max_to_keep`.

  Used as a context manager, it waits for the save underway on the way out, error or not, so the
  last checkpoint a failing run started is whole.

  remove_partial_saves: removes the folders that saves killed midway left. Only the folder's one
  writer (the training loop) may: a reader (a sampler opened on a running training) would remove
  the save underway.

  restore_fallback: restores of the newest step (step=None) fall back to the newest readable one
  when a newer step folder cannot be read, and once a state restores from it, rename the
  unreadable folders to `<step>.unreadable` (kept for a look, ignored by Orbax) so that saves,
  which skip steps not newer than the newest folder, go on. Nothing is renamed unless an older
  step restores, so an error that every step would meet (a state of another shape) moves
  nothing. Without it such a folder raises UnreadableCheckpointError, which says how to fall back.
  """

  def __init__(self, directory: str, *, max_to_keep: int = 3, save_interval_steps: int = 1,
               async_save: bool = True, remove_partial_saves: bool = False,
               restore_fallback: bool = False):
    self.directory = epath.Path(directory)
    if '://' not in str(directory):  # Cloud paths (gs://...) are absolute already.
      self.directory = self.directory.absolute()
    self.restore_fallback = restore_fallback
    self._unreadable = set()  # steps a restore here failed to read
    _save_cpu_arrays_from_one_replica()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, save_interval_steps=save_interval_steps,
        enable_async_checkpointing=async_save, create=False,
        cleanup_tmp_directories=remove_partial_saves)
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=_ITEMS)

  def __enter__(self) -> 'Checkpointer':
    return self

  def __exit__(self, error_type, error, traceback) -> None:
    try:
      self.close()
    except Exception:  # pylint: disable=broad-exception-caught
      if error is None:
        raise
      # The first error is the one to report (a failed save raises again on every wait).
      logging.warning('closing the checkpoints in %s after an error failed too.', self.directory)

  def save(self, step: int, state: TrainState, data_iter: Any = None,
           config: ml_collections.ConfigDict | Mapping[str, Any] | None = None,
           force: bool = False) -> bool:
    """Starts a save unless the interval skips `step` (force saves anyway); True if it started.

    The iterator's position is read now, so the caller may keep iterating while the state writes.
    """
    items = {'state': ocp.args.StandardSave(state)}
    if data_iter is not None:
      items['data_iter'] = grain.checkpoint.CheckpointSave(data_iter)
    if config is not None:
      items['config'] = ocp.args.JsonSave(_as_dict(config))
    with self._disk_full_stops():
      return self._manager.save(step, args=ocp.args.Composite(**items), force=force)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def reached_preemption(self, step: int) -> bool:
    """True on every process once the cluster was told it will be preempted (multi-host runs)."""
    return self._manager.reached_preemption(step)

  def restore(self, abstract_state: TrainState, data_iter: Any = None,
              step: int | None = None) -> TrainState:
    """The state at `step` (default: latest, or with restore_fallback the newest readable, the
    newer unreadable folders then set aside), laid out as abstract_state's shardings say.

    abstract_state's leaves are `jax.ShapeDtypeStruct(..., sharding=...)` (see
    `parallel.sharding.abstract_state_and_shardings`). data_iter, when given, is moved in place to
    where the saved run's iterator stood.
    """
    def read(step: int) -> TrainState:
      items = {'state': ocp.args.StandardRestore(abstract_state)}
      if data_iter is not None:
        if not (self.directory / str(step) / 'data_iter').is_dir():
          raise ValueError(f'checkpoint {step} in {self.directory} has no data iterator: '
                           'restore with data_iter=None and start the data from the beginning.')
        items['data_iter'] = grain.checkpoint.CheckpointRestore(data_iter)
      return self._restore_items(step, items).state

    if step is not None:
      return read(self._existing_step(step))
    read_step, state = self._newest_readable(read)
    self._set_aside([s for s in self._unreadable if s > read_step])
    return state

  def restore_config(self, step: int | None = None) -> dict[str, Any]:
    """The config saved with `step` (default: latest, or with restore_fallback the newest
    readable), as a plain dict."""
    def read(step: int) -> dict[str, Any]:
      if not (self.directory / str(step) / 'config').is_dir():
        raise FileNotFoundError(f'checkpoint {step} in {self.directory} has no config: save '
                                'with config=... to keep one.')
      return self._restore_items(step, {'config': ocp.args.JsonRestore()}).config

    return read(self._existing_step(step)) if step is not None else self._newest_readable(read)[1]

  def wait(self) -> None:
    """Blocks until the last async save is on disk."""
    with self._disk_full_stops():
      self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for the last save (see `wait`) and lets go of the folder."""
    with self._disk_full_stops():
      self._manager.close()

  def _restore_items(self, step: int, items: dict[str, Any]) -> Any:
    """Orbax's restore of `items` at `step`; any failure to read raises
    UnreadableCheckpointError, which names the folder and the step to fall back to."""
    try:
      return self._manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as error:  # pylint: disable=broad-exception-caught
      self._unreadable.add(step)
      folder = self.directory / str(step)
      cause = (str(error).strip().splitlines() or [''])[0][:160]
      earlier = [s for s in self._manager.all_steps() if s < step]
      fix = (f'resume from step {max(earlier)} with --restore_fallback (train.py, train_vae.py; '
             f'restore_fallback=True in Python), or move the folder '
             f'aside (to {folder.name}{_SET_ASIDE_SUFFIX}) yourself' if earlier else
             'there is no earlier step: move the folder aside to start over, or train with '
             'another --workdir')
      raise UnreadableCheckpointError(
          f'checkpoint {folder} cannot be read ({type(error).__name__}: {cause}): {fix}.',
          step) from error

  def _newest_readable(self, read: Callable[[int], _T]) -> tuple[int, _T]:
    """(step, read(step)) of the newest step, or with restore_fallback of the newest one that
    reads (steps found unreadable before are passed over); else the newest one's error."""
    newest = self._existing_step(None)
    if not self.restore_fallback:
      return newest, read(newest)
    steps = [s for s in sorted(self._manager.all_steps(), reverse=True)
             if s not in self._unreadable] or [newest]
    first_error = None
    for step in steps:
      try:
        return step, read(step)
      except UnreadableCheckpointError as error:
        first_error = first_error or error
        logging.warning('%s Falling back to the step before.', error)
    raise first_error

  def _set_aside(self, steps: Sequence[int]) -> None:
    """Renames the `steps` folders to `<step>.unreadable` (process 0; a new name if taken)."""
    if not steps:
      return
    if jax.process_index() == 0:
      for step in steps:
        target, n = self.directory / f'{step}{_SET_ASIDE_SUFFIX}', 1
        while target.exists():
          target, n = self.directory / f'{step}{_SET_ASIDE_SUFFIX}-{n}', n + 1
        (self.directory / str(step)).rename(target)
        logging.warning('restored an earlier step; moved the unreadable %s aside to %s.',
                        self.directory / str(step), target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices('checkpoint:set_aside')
    self._unreadable -= set(steps)
    self._manager.reload()

  @contextlib.contextmanager
  def _disk_full_stops(self):
    """Turns a full disk, met by a save here or by an async save's thread (Orbax re-raises it
    at the next save or wait), into one sentence naming the folder, the fix and the step a
    rerun resumes from; other errors pass unchanged. Either leaves once the failed save's other
    writes are done (`_await_abandoned_writes`)."""
    try:
      yield
    except Exception as error:  # pylint: disable=broad-exception-caught
      self._await_abandoned_writes()
      if not _is_disk_full(error):
        raise
      self._manager.reload()  # the failed step is a tmp folder, which Orbax does not list
      kept = self._manager.latest_step()
      resume = f'it resumes from step {kept}' if kept is not None else 'it starts over'
      raise OSError(errno.ENOSPC, f'no space left on the device of {self.directory} while '
                    'saving a checkpoint: free space there or train with another --workdir, and '
                    f'run again ({resume}).') from error

  def _await_abandoned_writes(self) -> None:
    """Waits for the item writes of a failed async save that Orbax left running.

    Orbax awaits a save's item writes one by one (in item-name order) and stops at the first that
    fails, so the others may still be writing into the step's tmp folder when the error reaches
    us. Unwaited, they race the next Checkpointer's removal of that folder in this process (a
    rerun from a notebook). Reads private attributes (orbax-checkpoint is pinned in setup.cfg);
    without them it waits for nothing.
    """
    checkpointer = getattr(self._manager, '_checkpointer', None)
    writes = getattr(getattr(checkpointer, '_async_manager', None), '_commit_futures', None)
    for write in writes or ():
      with contextlib.suppress(Exception):  # the failure that matters is already raised
        write.result()
    self._await_quiet_partial_saves()

  def _await_quiet_partial_saves(self, timeout_s: float = 60.0) -> None:
    """Waits until nothing in the step tmp folders has changed for _QUIET_S seconds (at most
    timeout_s). An item whose save fails while Orbax is still starting the others' writes (a
    synchronous error in its async_save) leaves TensorStore's writes of the others running with
    no future anyone can wait on. Local folders only: a cloud bucket is not listed this often."""
    if '://' in str(self.directory):
      return

    def listing():  # the folders too: a write may not have made its first file yet
      found = set()
      with contextlib.suppress(OSError):  # a file or folder removed while listed
        for folder in self.directory.glob('*.orbax-checkpoint-tmp'):
          for root, _, names in os.walk(str(folder)):
            found.add((root, None, 0, 0))
            for name in names:
              status = os.stat(os.path.join(root, name))
              found.add((root, name, status.st_size, status.st_mtime_ns))
      return found

    deadline, last = time.monotonic() + timeout_s, listing()
    while last and time.monotonic() < deadline:
      time.sleep(_QUIET_S)
      last, previous = listing(), last
      if last == previous:
        return

  def _existing_step(self, step: int | None) -> int:
    steps = self._manager.all_steps()
    if not steps:
      raise FileNotFoundError(f'no checkpoint in {self.directory}: train first with '
                              f'experiments/train.py --workdir {self.directory.parent}')
    if step is None:
      return self._manager.latest_step()
    if step not in steps:
      raise FileNotFoundError(f'no checkpoint at step {step} in {self.directory}: pick one of '
                              f'{sorted(steps)}.')
    return step


def _is_disk_full(error: BaseException | None) -> bool:
  """True when `error` or one it came from is ENOSPC/EDQUOT: an OSError from Python's writes, a
  ValueError quoting the OS error from TensorStore's."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    if any(text in str(error) for text in ('No space left on device', 'Disk quota exceeded')):
      return True
    error = error.__cause__ or error.__context__
  return False


STORAGE_DTYPES = ('float32', 'bfloat16', 'float16')


def save_params(directory, params, dtype: str | None = None) -> None:
  """Writes a parameter pytree alone to `directory` (Orbax; returns once it is on disk): the
  weights of an export, which `ocp.StandardCheckpointer().restore` reads back. dtype: what each
  floating-point leaf is stored as (None: its own dtype); 'bfloat16' or 'float16' halve a
  float32 model's folder, and restoring into float32 targets (the readers of a float32 model's
  export) casts them back."""
  if dtype is not None:
    if dtype not in STORAGE_DTYPES:
      raise ValueError(f'storage dtype {dtype!r} is unknown: use one of {STORAGE_DTYPES}.')
    params = jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, params)
  _save_cpu_arrays_from_one_replica()
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(epath.Path(directory).absolute(), params, force=True)
  checkpointer.wait_until_finished()


@functools.cache
def _save_cpu_arrays_from_one_replica() -> None:
  """On CPU, has orbax write each replicated array from one replica, not split across all.

  Orbax splits a replicated array's save across its replicas by default (on TPU, each host then
  writes a part). CPU devices are one host's memory, so the split writes nothing sooner, yet it
  compiles a slice per array per device: ~200 compiles, ~10 s, for the tiny VAE on 8 devices.
  Orbax itself turns the split off on GPU. The handler is otherwise orbax's default one.
  """
  if jax.default_backend() == 'cpu':
    handler = ocp.type_handlers.ArrayHandler(
        use_replica_parallel=False, array_metadata_store=array_metadata_store.Store())
    type_handler_registry.GLOBAL_TYPE_HANDLER_REGISTRY.add(
        jax.Array, handler, override=True, ignore_warnings=True)


def _as_dict(config: ml_collections.ConfigDict | Mapping[str, Any]) -> dict[str, Any]:
  """The config as JSON would give it back (tuples become lists)."""
  config = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
  return json.loads(json.dumps(config))


def _lookup(tree: Mapping[str, Any], dotted: str) -> Any:
  for key in dotted.split('.'):
    if not isinstance(tree, Mapping) or key not in tree:
      return '<missing>'
    tree = tree[key]
  return tree


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
  if not isinstance(value, Mapping):
    return {prefix: value}
  return {path: leaf for key, sub in value.items()
          for path, leaf in _flatten(sub, f'{prefix}.{key}').items()}


_MISSING = '<missing>'


def check_compatible(saved_config: Mapping[str, Any],
                     config: ml_collections.ConfigDict | Mapping[str, Any],
                     keys: Sequence[str] = ('model',),
                     missing: Mapping[str, Any] | None = None,
                     free: Sequence[str] = ()) -> None:
  """Raises ValueError naming every field under `keys` (dotted paths) that differs from the save.

  Fields outside `keys` (learning rate, logging, mesh), and those in `free` (how the same
  function is computed, e.g. model.remat), may change between a save and a resume; a field on
  one side only that is None on the other (an option added since, left unset) is no
  difference, nor is a field a save lacks whose value is what `missing` (dotted path -> value)
  says such saves meant (an option added since, with the old behaviour as its value).
  """
  missing = missing or {}
  saved, current = _as_dict(saved_config), _as_dict(config)
  differences = []
  for key in keys:
    old, new = _flatten(_lookup(saved, key), key), _flatten(_lookup(current, key), key)
    for path in sorted((set(old) | set(new)) - set(free)):
      before, after = old.get(path, _MISSING), new.get(path, _MISSING)
      unset = ((before is _MISSING and (after is None or missing.get(path, _MISSING) == after))
               or (before is None and after is _MISSING))
      if before != after and not unset:
        differences.append(f'{path} (saved {before!r}, now {after!r})')
  if differences:
    raise ValueError(f'config differs from the checkpoint in {", ".join(differences)}: resume '
                     'with the saved values or start a new workdir.')
