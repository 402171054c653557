"""Orbax checkpoints of one run: the train state, the Grain iterator's position and the config.

Each step directory holds the items 'state' (the unboxed TrainState pytree), 'data_iter' (Grain's
own JSON state, one file per process) and 'config' (JSON). State restores onto abstract targets
that carry shardings, so a checkpoint written on one mesh restores onto any other. In multi-process
runs every saved leaf must be a global jax.Array: put host-local scalars on a replicated sharding
before saving.
"""
from collections.abc import Mapping, Sequence
import functools
import json
from typing import Any

from etils import epath
import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
# Private modules (orbax-checkpoint is pinned in setup.cfg): the Store orbax's default array
# handler keeps (it records which arrays are random keys), and the registry, whose add() can
# replace that handler without logging a warning in every process.
from orbax.checkpoint._src.metadata import array_metadata_store
from orbax.checkpoint._src.serialization import type_handler_registry

from videogen.runtime.state import TrainState

_ITEMS = ('state', 'data_iter', 'config')


class Checkpointer:
  """Saves every `save_interval_steps` (async by default) and keeps the newest `max_to_keep`."""

  def __init__(self, directory: str, *, max_to_keep: int = 3, save_interval_steps: int = 1,
               async_save: bool = True):
    self.directory = epath.Path(directory)
    if '://' not in str(directory):  # Cloud paths (gs://...) are absolute already.
      self.directory = self.directory.absolute()
    _save_cpu_arrays_from_one_replica()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, save_interval_steps=save_interval_steps,
        enable_async_checkpointing=async_save, create=False)
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=_ITEMS)

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
    return self._manager.save(step, args=ocp.args.Composite(**items), force=force)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def reached_preemption(self, step: int) -> bool:
    """True on every process once the cluster was told it will be preempted (multi-host runs)."""
    return self._manager.reached_preemption(step)

  def restore(self, abstract_state: TrainState, data_iter: Any = None,
              step: int | None = None) -> TrainState:
    """The state at `step` (default: latest), laid out as abstract_state's shardings say.

    abstract_state's leaves are `jax.ShapeDtypeStruct(..., sharding=...)` (see
    `parallel.sharding.abstract_state_and_shardings`). data_iter, when given, is moved in place to
    where the saved run's iterator stood.
    """
    step = self._existing_step(step)
    items = {'state': ocp.args.StandardRestore(abstract_state)}
    if data_iter is not None:
      if not (self.directory / str(step) / 'data_iter').is_dir():
        raise ValueError(f'checkpoint {step} in {self.directory} has no data iterator: restore '
                         'with data_iter=None and start the data from the beginning.')
      items['data_iter'] = grain.checkpoint.CheckpointRestore(data_iter)
    return self._manager.restore(step, args=ocp.args.Composite(**items)).state

  def restore_config(self, step: int | None = None) -> dict[str, Any]:
    """The config saved with `step` (default: latest), as a plain dict."""
    step = self._existing_step(step)
    if not (self.directory / str(step) / 'config').is_dir():
      raise FileNotFoundError(f'checkpoint {step} in {self.directory} has no config: save with '
                              'config=... to keep one.')
    restored = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    return restored.config

  def wait(self) -> None:
    """Blocks until the last async save is on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()

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


def save_params(directory, params) -> None:
  """Writes a parameter pytree alone to `directory` (Orbax; returns once it is on disk): the
  weights of an export, which `ocp.StandardCheckpointer().restore` reads back."""
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
                     missing: Mapping[str, Any] | None = None) -> None:
  """Raises ValueError naming every field under `keys` (dotted paths) that differs from the save.

  Fields outside `keys` (learning rate, logging, mesh) may change between a save and a resume;
  a field on one side only that is None on the other (an option added since, left unset) is
  no difference, nor is a field a save lacks whose value is what `missing` (dotted path ->
  value) says such saves meant (an option added since, with the old behaviour as its value).
  """
  missing = missing or {}
  saved, current = _as_dict(saved_config), _as_dict(config)
  differences = []
  for key in keys:
    old, new = _flatten(_lookup(saved, key), key), _flatten(_lookup(current, key), key)
    for path in sorted(set(old) | set(new)):
      before, after = old.get(path, _MISSING), new.get(path, _MISSING)
      unset = ((before is _MISSING and (after is None or missing.get(path, _MISSING) == after))
               or (before is None and after is _MISSING))
      if before != after and not unset:
        differences.append(f'{path} (saved {before!r}, now {after!r})')
  if differences:
    raise ValueError(f'config differs from the checkpoint in {", ".join(differences)}: resume '
                     'with the saved values or start a new workdir.')
