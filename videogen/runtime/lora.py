"""LoRA: low-rank adapters on the DiT's attention and MLP kernels, over a frozen base.

A LoRA run (config.lora.rank r > 0) keeps its base model, config.init_from's weights, frozen
and trains, for each target kernel W [..., in, out] (a scanned block stack's kernels carry a
leading layers axis), two factors A [..., in, r] and B [..., r, out]; the model computes with
W + (alpha / r)·A @ B (`merge`). A starts normal with std 1/sqrt(in), so x·A keeps the size
of x and B's first gradients do not grow with the width; B starts at zero, so the merged model
is the base at step 0. The train state holds the adapters alone (params, EMA, optimizer
moments), so its checkpoints are small; the base is read once into the run and is a constant
of every step (runtime/dit_run.py, train/objective.py). Adapters carry the logical axis names
of their kernels, A those of the input axis, B of the output axis, the rank axis none, so the
config's rules shard them as they shard their kernels.

Adapter trees mirror the params: each adapted module's path holds {'lora_a', 'lora_b'} where
the params hold its 'kernel'. Legend: i a kernel's input features, o its output features,
r the rank; a leading '...' is a scanned stack's layers axis.
"""
from typing import Any

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from videogen.runtime import weights

# A target name -> the DiT block's modules whose kernels it adapts (models/dit.py, Block).
TARGETS = {'self_attn': ('self_attn',),  # q, k, v, o
           'cross_attn': ('cross_attn',),  # q, k, v, o
           'ffn': ('ffn_in', 'ffn_out')}
# The config's lora section (configs/world.py); runs and exports from before LoRA get it too.
# Attention alone by default, as diffusers' and PEFT's video LoRA trainers do: rank-8 adapters
# of every attention kernel are 4.4% of the 128-wide T/2 model's parameters (with 'ffn' too,
# 7.2%) and, at learning rate 5e-3, come within 9 points of a full fine-tune's adherence on a
# new kind of object, ahead of self-attention + feed-forward (reference/finetune/finetune.md).
DEFAULTS = {'rank': 0, 'alpha': 8.0, 'targets': ('self_attn', 'cross_attn')}


def enabled(config: ml_collections.ConfigDict) -> bool:
  """Whether the config trains adapters (lora.rank > 0); configs from before LoRA do not."""
  return config.get('lora', {}).get('rank', 0) > 0


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises one sentence on a bad lora section: a rank that is not a whole number of at least
  0, a LoRA run without a base (init_from), an alpha that is not positive, an unknown target."""
  if 'lora' not in config:
    return
  rank, alpha, targets = config.lora.rank, config.lora.alpha, tuple(config.lora.targets)
  if not isinstance(rank, int) or rank < 0:
    raise ValueError(f'lora.rank is {rank!r}: use 0 to train every weight, or a whole number '
                     'of at least 1 to train adapters of that rank, e.g. --config.lora.rank=8.')
  if rank == 0:
    return
  if not config.get('init_from'):
    raise ValueError(f'lora.rank {rank} trains adapters on a frozen base model, which init_from '
                     'must name: pass --config.init_from=<base run or export>, or '
                     '--config.lora.rank=0 to train every weight.')
  if not alpha > 0:
    raise ValueError(f'lora.alpha is {alpha!r}: the adapters scale by alpha / rank, so use a '
                     f'positive number, e.g. --config.lora.alpha={float(rank)}.')
  unknown = [name for name in targets if name not in TARGETS]
  if unknown:
    raise ValueError(f'lora.targets {targets} has unknown names {unknown}: use some of '
                     f'{tuple(TARGETS)}.')


def check_lora_run(config: ml_collections.ConfigDict, folder) -> None:
  """Raises one sentence unless the run in `folder` (its config) trained adapters."""
  if not enabled(config):
    raise ValueError(f'{str(folder)!r} is not a LoRA run (its config.lora.rank is 0 or '
                     'missing): sample it alone with --workdir, or pass with --lora the folder '
                     'of a run trained with --config.lora.rank above 0.')


def target_kernels(params, targets) -> dict[tuple[str, ...], Any]:
  """The kernels of a DiT's params (boxed or not, abstract or not) that `targets` name, by
  their module's path (the kernel's path without 'kernel'): scanned blocks ('blocks') and
  unrolled ones ('blocks_<i>') alike. Raises when none is named."""
  modules = {module for name in targets for module in TARGETS[name]}
  kernels = {path[:-1]: leaf for path, leaf in traverse_util.flatten_dict(params).items()
             if path[-1] == 'kernel' and modules & set(path[:-1])}
  if not kernels:
    raise ValueError(f'lora.targets {tuple(targets)} name no kernel of the model: name some of '
                     f'{tuple(TARGETS)}.')
  return kernels


def check_rank(kernels: dict[tuple[str, ...], Any], rank: int) -> None:
  """Raises one sentence when `rank` exceeds the smaller side of a kernel (by module path):
  such adapters hold more numbers than the kernel they update, and express nothing more."""
  shapes = {path: np.shape(kernel) for path, kernel in kernels.items()}
  path = min(shapes, key=lambda p: min(shapes[p][-2:]))
  side = min(shapes[path][-2:])
  if rank > side:
    raise ValueError(f'lora.rank {rank} exceeds the smaller side of kernel '
                     f'{"/".join(path)}/kernel of shape {shapes[path]} ({side}): use a rank of '
                     f'at most {side}, e.g. --config.lora.rank={side}, or leave that kernel out '
                     'of lora.targets.')


def init_adapters(params, rank: int, targets, rng: jax.Array) -> dict:
  """Fresh adapters for the kernels of `params` (a DiT's boxed params, abstract or not) that
  `targets` name: for W [..., i, o] with logical axes (..., in, out), lora_a [..., i, r] drawn
  normal with std 1/sqrt(i), axes (..., in, None), and lora_b [..., r, o] zeros, axes
  (..., None, out), each boxed with its names (`check_rank` first, outside a trace)."""
  kernels = target_kernels(params, targets)
  adapters = {}
  for index, (path, box) in enumerate(sorted(kernels.items())):
    *lead, fan_in, fan_out = box.value.shape
    dtype, names = box.value.dtype, box.names
    a = jax.random.normal(jax.random.fold_in(rng, index), (*lead, fan_in, rank), dtype)
    adapters[path + ('lora_a',)] = nn.LogicallyPartitioned(a / np.sqrt(fan_in),
                                                           (*names[:-1], None))
    adapters[path + ('lora_b',)] = nn.LogicallyPartitioned(
        jnp.zeros((*lead, rank, fan_out), dtype), (*names[:-2], None, names[-1]))
  return traverse_util.unflatten_dict(adapters)


def merge(base_params, adapters, alpha: float, rank: int):
  """`base_params` with W + (alpha / rank)·A @ B at every adapted kernel, in W's dtype, and
  every other parameter as it is; pure and jit-able. Both trees in the same block layout."""
  flat = traverse_util.flatten_dict(base_params)
  factors = traverse_util.flatten_dict(adapters)
  for path in (p[:-1] for p in factors if p[-1] == 'lora_a'):
    kernel_io = flat[path + ('kernel',)]
    delta_io = jnp.einsum('...ir,...ro->...io', factors[path + ('lora_a',)],
                          factors[path + ('lora_b',)], precision=jax.lax.Precision.HIGHEST,
                          preferred_element_type=jnp.float32)
    flat[path + ('kernel',)] = (kernel_io + (alpha / rank) * delta_io).astype(kernel_io.dtype)
  return traverse_util.unflatten_dict(flat)


def frozen_base(source, abstract_base, folder) -> Any:
  """A LoRA run's base: `source` (the weights in `folder`, its init_from) in the layout of
  `abstract_base` (the model's params as ShapeDtypeStructs with shardings) and placed as its
  shardings say. Raises unless source holds exactly the model's parameters at their shapes:
  adapters learnt on one base compute something else on another."""
  loaded, new, dropped = weights.match_params(abstract_base, source, folder)
  if new or dropped:
    raise ValueError(f'the base in {str(folder)!r} is not this model (parameters missing there: '
                     f'{", ".join(new) or "none"}; only there: {", ".join(dropped) or "none"}): '
                     'adapt a base of the same model config (its model section), or pass '
                     '--config.lora.rank=0 to train every weight.')
  shardings = jax.tree.map(lambda leaf: leaf.sharding, abstract_base)
  return weights.place(abstract_base, loaded, shardings)


def merged_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config of a LoRA run's merged weights (e.g. an export of them): lora.rank 0, a model
  like any other; other configs as they are."""
  if not enabled(config):
    return config
  config = ml_collections.ConfigDict(config.to_dict())  # an unlocked copy
  config.lora.rank = 0
  return config
