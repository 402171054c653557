"""A Run: what training one model needs beside its weights, built the same way wherever used.

A Run holds the config, the mesh and its logical rules, the model, the optimizer and its
learning-rate schedule, the train state's init function, abstract shape and shardings, and says
how its data is read and turned into model batches. `dit_run.build` makes the text-to-video
DiT's, `vae_run.build` the video autoencoder's; the training loop (train/loop.py) takes either,
and the sampler restores either from a checkpoint.
"""
import dataclasses
import pathlib
from collections.abc import Iterator, Mapping
from typing import Any, Callable, ClassVar

from absl import logging
import jax
import ml_collections
import optax

from videogen.core import media
from videogen.data import pipeline
from videogen.parallel import sharding
from videogen.runtime import checkpoint
from videogen.runtime import state as state_lib
from videogen.runtime import weights


@dataclasses.dataclass
class Run:
  """The shared parts of a run; subclasses add their model's own and define the data hooks."""
  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  rules: sharding.LogicalRules
  model: Any
  optimizer: optax.GradientTransformation
  lr_schedule: optax.Schedule
  init_fn: Callable[[], state_lib.TrainState]
  abstract_state: state_lib.TrainState
  state_shardings: Any

  # Config sections a checkpoint must agree with to be resumed or sampled.
  compatible_keys: ClassVar[tuple[str, ...]] = ()
  free_keys: ClassVar[tuple[str, ...]] = ()  # under compatible_keys, yet free to change
  # What a config without a field meant (runs saved before the field existed): {'a.b': value}.
  missing_fields: ClassVar[Mapping[str, Any]] = {}
  description: ClassVar[str] = 'train'   # the progress bar's label
  progress_metric: ClassVar[str] = 'loss'  # the metric the progress bar shows

  def dataset(self, shard_index: int, shard_count: int) -> Iterator[dict]:
    """This process's training batches (a resumable Grain iterator's iterable)."""
    raise NotImplementedError

  def model_batch(self, batch: dict, step: int) -> tuple[dict, dict, dict]:
    """(model batch, counts, levels) for update number step + 1 from a host batch: counts add
    up over the steps between logs and are logged per second ('<name>_per_s'); levels are
    averaged over them. Both count this process's share."""
    raise NotImplementedError

  def check_saved(self, saved: ml_collections.ConfigDict) -> None:
    """Raises when a checkpoint saved with config `saved` cannot be resumed by this run."""
    checkpoint.check_compatible(saved, self.config, self.compatible_keys,
                                missing=self.missing_fields, free=self.free_keys)
    saved_layout = saved.get('data', {}).get('layout', 'fixed')  # runs before layouts: 'fixed'
    if saved_layout != pipeline.layout(self.config):
      raise ValueError(f'the checkpoint holds a data position of data.layout {saved_layout!r}, '
                       f'not {pipeline.layout(self.config)!r}: resume with '
                       f'--config.data.layout={saved_layout} or start a new workdir.')

  def restore_or_init(self, ckpt: checkpoint.Checkpointer, *, shard_index: int = 0,
                      shard_count: int = 1):
    """(state, data iterator): the newest checkpoint's state with the data iterator moved to
    its position, else a fresh state (with config.init_from's weights, see `init_state`) and
    iterator. The iterator is made only once the checkpoint is known compatible
    (`check_saved`), so a mismatch is reported as such and not as bad data."""
    make_iter = lambda: iter(self.dataset(shard_index, shard_count))
    init_from = self.config.get('init_from') or ''
    if ckpt.latest_step() is None:
      return self.init_state(init_from), make_iter()
    if init_from and not self.init_from_is_base:
      logging.warning('resuming from the checkpoint in %s: init_from %s is ignored (it only '
                      'starts a run that has no checkpoint yet).', ckpt.directory, init_from)
    self.check_saved(ckpt.restore_config())
    data_iter = make_iter()
    return ckpt.restore(self.abstract_state, data_iter), data_iter

  @property
  def init_from_is_base(self) -> bool:
    """Whether config.init_from stays in use after the first start: the frozen base a LoRA
    run trains adapters on (dit_run.py), not only the weights a run starts from."""
    return False

  def init_state(self, init_from: str = '') -> state_lib.TrainState:
    """A fresh state; with `init_from` (a run or export folder) its params and EMA params
    start from that folder's EMA params wherever path and shape agree (weights.start_from),
    so a run can grow from another one's weights with a fresh optimizer."""
    state = sharding.create_sharded_state(self.init_fn, self.state_shardings, self.mesh,
                                          self.rules)
    if not init_from:
      return state
    weights.check_init_from(init_from)
    return weights.start_from(state, self.state_shardings, self.read_weights(init_from),
                              init_from)

  def read_weights(self, folder: str):
    """The EMA params of the run or export in `folder`, in this run's params layout and on
    this process's devices (any mesh): what `init_state` starts from."""
    raise NotImplementedError(f'{type(self).__name__} cannot start from init_from weights: '
                              'leave init_from empty.')

  def write_config(self, workdir: pathlib.Path) -> None:
    """workdir/config.json (process 0): what the sampler rebuilds the model from."""
    if jax.process_index() == 0:
      media.write_text(pathlib.Path(workdir) / 'config.json',
                       self.config.to_json_best_effort(indent=1))
