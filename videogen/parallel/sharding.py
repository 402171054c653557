"""Logical-axis rules and the shardings they give the train state and the batch.

Parameters name their axes with `nn.with_logical_partitioning`; activations go through
`constrain`. The rules below map those logical names onto the mesh axes of `mesh.MESH_AXES`; a
config copies them, so a run can change the layout without touching a model.
"""
from collections.abc import Callable, Iterator, Sequence
import contextlib
from typing import Any

import flax.linen as nn
import jax
from jax.sharding import NamedSharding, PartitionSpec

LogicalRules = Sequence[tuple[str, str | tuple[str, ...] | None]]

# Earlier rules win; a mesh axis already used by one dimension of an array is skipped for the rest
# (so activations ('batch', 'length', 'embed') keep 'fsdp' on the batch and replicate 'embed').
DEFAULT_RULES: LogicalRules = (
    # Activations.
    ('batch', ('data', 'fsdp')),  # examples: data parallel, and FSDP shards the batch as well
    ('length', 'context'),  # video tokens of one row: context (sequence) parallelism
    ('text_length', None),  # text tokens: short, kept whole on every device
    # Parameters (and activations' feature dimensions).
    ('embed', 'fsdp'),  # model width: FSDP shards weights (and their optimizer state) along it
    ('mlp', 'tensor'),  # hidden width of the feed-forward: tensor (Megatron) parallel
    ('heads', 'tensor'),  # attention heads: tensor parallel
    ('kv', 'tensor'),  # per-head key/value features: tensor parallel when 'heads' did not take it
    ('vocab', 'tensor'),  # token embedding table rows
    ('layers', None),  # stacked (scanned) blocks: every device holds its slice of each block
    ('modulation', None),  # adaLN shift/scale/gate outputs: small, replicated
    ('patch', None),  # flattened spacetime patch (pt·ph·pw·channels) in and out of the DiT
    ('text_embed', None),  # width of the frozen text encoder's output
    ('conv_in', None),  # the autoencoder's conv input channels: small, replicated
    ('conv_out', 'fsdp'),  # its output channels: FSDP shards the big decoder convs
)


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


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Leading (example) dimension over ('data', 'fsdp'); the rest replicated."""
  return NamedSharding(mesh, PartitionSpec(('data', 'fsdp')))


def check_batch_divisible(batch_size: int, mesh: jax.sharding.Mesh) -> None:
  """Fails early when the global batch does not split evenly over data × fsdp."""
  ways = mesh.shape['data'] * mesh.shape['fsdp']
  if batch_size % ways:
    raise ValueError(f'global batch {batch_size} is not divisible by data×fsdp = {ways} '
                     f'devices: use a multiple of {ways}.')


def shard_batch(batch: Any, sharding: NamedSharding) -> Any:
  """This process's numpy batch (a pytree) → global jax arrays; each process passes its part."""
  def to_global(x):
    check_batch_divisible(x.shape[0] * jax.process_count(), sharding.mesh)
    return jax.make_array_from_process_local_data(sharding, x)
  return jax.tree.map(to_global, batch)
