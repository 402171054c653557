"""Logical-axis rules and the shardings they give the train state and the batch.

Parameters name their axes with `nn.with_logical_partitioning`; activations go through
`constrain`. Rules map those logical names onto the mesh axes of `mesh.MESH_AXES`. A run's
rules live in its config (configs/world.py for the DiT and its text encoder, configs/vae_world.py
for the VAE), so a run can change the layout without touching a model.
"""
from collections.abc import Callable, Iterator, Sequence
import contextlib
import math
from typing import Any

import flax.linen as nn
import jax
from jax.sharding import NamedSharding, PartitionSpec

LogicalRules = Sequence[tuple[str, str | tuple[str, ...] | None]]


def rules_from_config(config) -> tuple[tuple[str, Any], ...]:
  """config.logical_axis_rules as (logical name, mesh axes) pairs, hashable (a config read back
  from JSON holds lists)."""
  return tuple((name, tuple(axes) if isinstance(axes, list) else axes)
               for name, axes in config.logical_axis_rules)


@contextlib.contextmanager
def sharding_context(mesh: jax.sharding.Mesh, rules: LogicalRules) -> Iterator[None]:
  """Mesh and rules in scope, as `constrain` and traced inits and steps need."""
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    yield


def constrain(x: jax.Array, logical_names: Sequence[str | None]) -> jax.Array:
  """Constrains an activation's sharding by logical names; a no-op outside a mesh."""
  return nn.with_logical_constraint(x, tuple(logical_names))


def _check_rules_cover(specs: Any, rules: LogicalRules) -> None:
  """Fails on a logical name with no rule, which would silently replicate that dimension."""
  specs = jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, PartitionSpec))
  used = {name for spec in specs for name in spec if isinstance(name, str)}
  missing = sorted(used - {name for name, _ in rules})
  if missing:
    raise ValueError(f'logical axis names {missing} have no sharding rule: add them to the '
                     'rules (None to replicate).')


def abstract_state_and_shardings(init_fn: Callable[[], Any], mesh: jax.sharding.Mesh,
                                 rules: LogicalRules) -> tuple[Any, Any]:
  """Shapes and shardings of `init_fn()`'s output, without allocating it.

  init_fn returns a pytree (e.g. a TrainState) whose leaves may be Linen boxes
  (`nn.LogicallyPartitioned`); the returned abstract state is unboxed: `jax.ShapeDtypeStruct`
  leaves carrying their sharding (Orbax restores onto them), plus the matching NamedSharding tree.
  """
  with sharding_context(mesh, rules):
    boxed = jax.eval_shape(init_fn)
  specs = nn.get_partition_spec(boxed)
  _check_rules_cover(specs, rules)
  shardings = nn.logical_to_mesh_sharding(specs, mesh, rules)
  abstract_state = jax.tree.map(
      lambda x, sharding: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
      nn.unbox(boxed), shardings)
  return abstract_state, shardings


def create_sharded_state(init_fn: Callable[[], Any], state_shardings: Any,
                         mesh: jax.sharding.Mesh, rules: LogicalRules) -> Any:
  """Runs `init_fn` under jit so each device only ever holds its own shard; leaves unboxed."""
  with sharding_context(mesh, rules):
    return jax.jit(lambda: nn.unbox(init_fn()), out_shardings=state_shardings)()


def layout_table(boxed: Any, shardings: Any) -> dict[str, dict[str, list]]:
  """Each leaf's shape, logical axis names and mesh axes, by '/'-joined path.

  boxed: an abstract tree whose leaves are Linen boxes (jax.eval_shape of an init, under
  `sharding_context`); shardings: its NamedSharding tree (abstract_state_and_shardings'). Specs
  are padded with None to the leaf's rank; a leaf without names reads None per dimension. The
  golden sharding tests compare these tables; printed, one shows a run's layout.
  """
  is_box = lambda x: isinstance(x, nn.Partitioned)
  leaves = jax.tree_util.tree_flatten_with_path(boxed, is_leaf=is_box)[0]
  named = jax.tree.leaves(shardings, is_leaf=lambda x: isinstance(x, NamedSharding))
  if len(leaves) != len(named):
    raise ValueError(f'{len(leaves)} leaves but {len(named)} shardings: pass the shardings of '
                     'the same tree.')
  entry = lambda e: list(e) if isinstance(e, tuple) else e
  table = {}
  for (path, leaf), named_sharding in zip(leaves, named):
    value = leaf.value if is_box(leaf) else leaf
    spec = tuple(named_sharding.spec) + (None,) * (value.ndim - len(named_sharding.spec))
    key = '/'.join(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k))))
                   for k in path)
    table[key] = {'shape': list(value.shape),
                  'logical': list(leaf.names) if is_box(leaf) else [None] * value.ndim,
                  'mesh': [entry(e) for e in spec]}
  return table


def layout_rows(table: dict[str, dict[str, list]], mesh: jax.sharding.Mesh,
                paths: Sequence[str] | None = None) -> list[dict[str, Any]]:
  """`layout_table` rows for printing, with each leaf's shape on one device of `mesh`.

  paths: the leaves to show, in order (default: all). A dimension split over mesh axes
  ('fsdp', ('data', 'fsdp')) is divided by their sizes; a replicated one stays whole.
  """
  rows = []
  for path in table if paths is None else paths:
    entry = table[path]
    ways = [math.prod(mesh.shape[a] for a in ((axes,) if isinstance(axes, str) else axes or ()))
            for axes in entry['mesh']]
    rows.append({'parameter': path, 'shape': tuple(entry['shape']),
                 'logical axes': tuple(entry['logical']), 'mesh axes': tuple(entry['mesh']),
                 'per device': tuple(n // w for n, w in zip(entry['shape'], ways))})
  return rows


def logical_mesh_axes(name: str, rules: LogicalRules | None = None) -> tuple[str, ...]:
  """The mesh axes the rules give a logical name, () when replicated or without a rule. rules:
  default, the ones in scope (`sharding_context`)."""
  rules = nn.get_logical_axis_rules() if rules is None else rules
  for logical, axes in rules:
    if logical == name:
      return () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
  return ()


def batch_sharding(mesh: jax.sharding.Mesh, rules: LogicalRules) -> NamedSharding:
  """The leading (example) dimension over the mesh axes of the logical name 'batch'; the rest
  replicated."""
  return NamedSharding(mesh, PartitionSpec(logical_mesh_axes('batch', rules) or None))


def batch_ways(mesh: jax.sharding.Mesh | jax.sharding.AbstractMesh,
               rules: LogicalRules | None = None) -> int:
  """How many ways the batch is split: the product of the sizes of the mesh axes of 'batch'."""
  return axes_size(mesh, logical_mesh_axes('batch', rules))


def axes_size(mesh, axes) -> int:
  """How many devices `axes` of the mesh span together (1 for no axis)."""
  return math.prod(mesh.shape.get(axis, 1) for axis in axes)


def _axes_name(mesh, axes) -> str:
  return '×'.join(a for a in axes if a in mesh.shape) or 'no axis'


def batch_axes_name(mesh, rules: LogicalRules | None = None) -> str:
  """The batch's mesh axes as one name for messages, e.g. 'data×fsdp'."""
  return _axes_name(mesh, logical_mesh_axes('batch', rules))


def check_micro_batches(batch_size: int, ways: int, grad_accum_steps: int = 1,
                        axes: str = 'the batch axes') -> None:
  """Fails when the global batch does not split into grad_accum_steps micro-batches that each
  split evenly over `ways` devices (the batch's mesh axes, named `axes`); names the numbers and
  a batch that works."""
  if grad_accum_steps < 1:
    raise ValueError(f'optim.grad_accum_steps is {grad_accum_steps}: use 1 (no accumulation) '
                     'or more micro-batches per update.')
  if grad_accum_steps == 1:
    if batch_size % ways:
      raise ValueError(f'global batch {batch_size} is not divisible by {axes} = {ways} '
                       f'devices: use a multiple of {ways}.')
    return
  if batch_size % grad_accum_steps:
    raise ValueError(f'global batch {batch_size} does not split into optim.grad_accum_steps = '
                     f'{grad_accum_steps} micro-batches: use a multiple of {grad_accum_steps} '
                     f'(a multiple of {grad_accum_steps * ways} also fits {axes} = {ways}).')
  micro = batch_size // grad_accum_steps
  if micro % ways:
    raise ValueError(f'micro-batch {micro} (global batch {batch_size} / {grad_accum_steps} '
                     f'grad_accum_steps) is not divisible by {axes} = {ways} devices: use a '
                     f'global batch that is a multiple of {grad_accum_steps * ways} '
                     f'(= {grad_accum_steps} × {ways}), or fewer grad_accum_steps.')


def check_batch_divisible(batch_size: int, mesh: jax.sharding.Mesh, rules: LogicalRules,
                          grad_accum_steps: int = 1) -> None:
  """Fails early (before compiling) when the global batch, or each of its grad_accum_steps
  micro-batches, does not split evenly over the batch's mesh axes."""
  axes = logical_mesh_axes('batch', rules)
  check_micro_batches(batch_size, axes_size(mesh, axes), grad_accum_steps,
                      _axes_name(mesh, axes))


def shard_batch(batch: Any, sharding: NamedSharding) -> Any:
  """This process's numpy batch (a pytree) → global jax arrays; each process passes its part."""
  axes = sharding.spec[0] if sharding.spec else None
  axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)

  def to_global(x):
    check_micro_batches(x.shape[0] * jax.process_count(), axes_size(sharding.mesh, axes), 1,
                        _axes_name(sharding.mesh, axes))
    return jax.make_array_from_process_local_data(sharding, x)
  return jax.tree.map(to_global, batch)
