"""Context (sequence) parallel self-attention: ring attention over one mesh axis.

Which mesh axes split what comes from the logical rules in scope (parallel/sharding.py): the token
row over the axis of 'length' (configs/world.py: 'context'), the batch over those of 'batch' (data,
fsdp), heads over those of 'heads' (tensor). Each device holds 1/C of the token row (C = that
axis's size) for its batch and head shard. It attends its queries to its own key/value block, then
passes the block (with the block's segment ids) to the next device with `ppermute`; after C - 1
passes every query has seen every key. Softmax is accumulated online (running max and sum,
float32), so a device holds two K/V blocks at a time (the one it computes on and the one arriving;
sending a block and computing on it are independent, so the transfer can hide behind the compute)
and never an [L, L] logit matrix: the backward pass recomputes each block's logits, as flash
attention does, and keeps only the K/V blocks it saw (its shard of K and V for the whole row). The
numbers are `attention.dot_product_attention`'s ('xla' backend): packed rows attend within equal
segment ids (padding, id 0, attends to padding), and a query with no key to attend gets zeros.

Legend: b batch, l query tokens, s key tokens, h heads, d head dim.
"""
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec
import numpy as np

from videogen.parallel import sharding

# The logical names (parallel/sharding.py rules) whose mesh axes the ring uses.
TOKENS, BATCH, HEADS = 'length', 'batch', 'heads'
_MIN = float(np.finfo(np.float32).min)


def _axes(mesh, name: str, rules=None) -> tuple[str, ...]:
  """The mesh axes of logical `name` under the rules (default: in scope) that `mesh` has."""
  if mesh.empty:
    return ()
  return tuple(a for a in sharding.logical_mesh_axes(name, rules) if a in mesh.axis_names)


def _context_axis(mesh, rules=None) -> str | None:
  """The one mesh axis the token row is split over (logical 'length'), or None."""
  axes = _axes(mesh, TOKENS, rules)
  if len(axes) > 1:
    raise ValueError(f"the rules split tokens ('{TOKENS}') over {axes}: ring attention "
                     'passes blocks along one mesh axis; map it to one (e.g. context).')
  return axes[0] if axes else None


def context_size(mesh=None, rules=None) -> int:
  """How many ways the token row is split on the mesh (default: in scope, `jax.set_mesh`) under
  the rules (default: in scope); 1 outside a mesh."""
  mesh = jax.sharding.get_abstract_mesh() if mesh is None else mesh
  return sharding.axes_size(mesh, _axes(mesh, TOKENS, rules))


def check_heads(heads: int, mesh=None, rules=None) -> None:
  """Fails when the mesh axes of the logical 'heads' do not divide the attention heads."""
  mesh = jax.sharding.get_abstract_mesh() if mesh is None else mesh
  axes = _axes(mesh, HEADS, rules)
  ways = sharding.axes_size(mesh, axes)
  if heads % ways:
    name = '×'.join(axes)
    raise ValueError(f'{heads} attention heads are not divisible by {name}={ways}: use a '
                     f'{name} size that divides {heads} (or a model with a multiple of {ways} '
                     'heads).')


def check_length(length: int, context: int) -> None:
  """Fails when the 'context' size does not divide a token row."""
  if length % context:
    raise ValueError(f'token row of {length} tokens is not divisible by context={context}: use '
                     f'a row length (clip size / patch size, or data.row_length) that is a '
                     f'multiple of {context}, or a context size that divides {length}.')


def ring_attention(q_blhd, k_blhd, v_blhd, segment_ids_bl=None):
  """softmax(q k^T / sqrt(d)) v -> [B, L, H, D], the token axis sharded over 'context'.

  Call under `jax.set_mesh` (inside jit) with a mesh that has a 'context' axis. segment_ids [B, L]
  int (or None: every token attends to every token) restrict attention to equal ids. The batch
  is split over ('data', 'fsdp') when they divide it (else those devices repeat the work), heads
  over 'tensor'. Raises ValueError, at trace time, when 'context' does not divide L or 'tensor'
  does not divide H.
  """
  mesh = jax.sharding.get_abstract_mesh()
  batch, length, heads, _ = q_blhd.shape
  axis = _context_axis(mesh)
  context = mesh.shape[axis] if axis else 1
  check_length(length, context)
  check_heads(heads, mesh)
  batch_axes = _axes(mesh, BATCH)
  if not batch_axes or batch % sharding.axes_size(mesh, batch_axes):
    batch_axes = None
  heads_axes = _axes(mesh, HEADS) or None
  qkv_spec = PartitionSpec(batch_axes, axis, heads_axes, None)
  segment_spec = PartitionSpec(batch_axes, axis)
  if segment_ids_bl is None:
    fn = lambda q, k, v: _ring(q, k, v, None, axis, context)
    args, specs = (q_blhd, k_blhd, v_blhd), (qkv_spec,) * 3
  else:
    fn = lambda q, k, v, ids: _ring(q, k, v, ids, axis, context)
    args, specs = (q_blhd, k_blhd, v_blhd, segment_ids_bl), (qkv_spec,) * 3 + (segment_spec,)
  return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=qkv_spec)(*args)


def _ring(q_blhd, k_bshd, v_bshd, segment_ids_bl, axis: str | None, context: int):
  """The per-device body: this device's queries against all C key/value blocks in turn."""
  scale = 1.0 / np.sqrt(q_blhd.shape[-1])
  perm = [(i, (i + 1) % context) for i in range(context)]

  @jax.checkpoint  # the backward pass recomputes a block's logits instead of storing them
  def attend_block(stats, kv):
    """Folds one K/V block into the running (max, sum, accumulator) of the softmax."""
    k_bshd, v_bshd, key_ids_bs = kv
    logits_bhls = jnp.einsum('blhd,bshd->bhls', q_blhd, k_bshd,
                             preferred_element_type=jnp.float32) * scale
    mask_b1ls = None
    if key_ids_bs is not None:
      mask_b1ls = (segment_ids_bl[:, None, :, None] == key_ids_bs[:, None, None, :])
      logits_bhls = jnp.where(mask_b1ls, logits_bhls, _MIN)
    # The result does not depend on the max subtracted: no gradient flows through it.
    block_max_bhl = jax.lax.stop_gradient(jnp.max(logits_bhls, axis=-1))
    if stats is None:
      max_bhl = block_max_bhl
    else:
      prev_max_bhl, prev_sum_bhl, prev_acc_bhld = stats
      max_bhl = jnp.maximum(prev_max_bhl, block_max_bhl)
    probs_bhls = jnp.exp(logits_bhls - max_bhl[..., None])
    if mask_b1ls is not None:
      probs_bhls = jnp.where(mask_b1ls, probs_bhls, 0.0)
    sum_bhl = jnp.sum(probs_bhls, axis=-1)
    acc_bhld = jnp.einsum('bhls,bshd->bhld', probs_bhls.astype(v_bshd.dtype), v_bshd,
                          preferred_element_type=jnp.float32)
    if stats is not None:
      correction_bhl = jnp.exp(prev_max_bhl - max_bhl)
      sum_bhl = sum_bhl + correction_bhl * prev_sum_bhl
      acc_bhld = acc_bhld + correction_bhl[..., None] * prev_acc_bhld
    return max_bhl, sum_bhl, acc_bhld

  def rotate(kv):
    return jax.tree.map(lambda a: jax.lax.ppermute(a, axis, perm), kv)

  # Own block first (it also gives the running stats their types); each later step computes on
  # the block it holds while sending that block on, so transfer and compute are independent.
  kv = (k_bshd, v_bshd, segment_ids_bl)
  stats = attend_block(None, kv)
  if context > 1:
    def body(_, carry):
      stats, kv = carry
      return attend_block(stats, kv), rotate(kv)

    kv = rotate(kv)
    stats, kv = jax.lax.fori_loop(0, context - 2, body, (stats, kv))
    stats = attend_block(stats, kv)
  _, sum_bhl, acc_bhld = stats
  out_bhld = acc_bhld / jnp.where(sum_bhl > 0, sum_bhl, 1.0)[..., None]
  return jnp.swapaxes(out_bhld, 1, 2).astype(v_bshd.dtype)
