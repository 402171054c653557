"""Memory and time plan of a DiT train step on a device mesh, on paper: no devices, no allocation.

What a plan holds, per device: the train state's bytes (params, EMA, AdamW moments; each leaf's
shard shape from its logical axes), the step's inputs, an analytic estimate of activation and
other temporary bytes, FLOPs per step and the step time at a given MFU, and whether it fits in
the chip's HBM. `compiled_memory` reads the same quantities from an AOT compile of the real
sharded train step (bench/plan_check.py).

Decisions, recorded here:
- Shardings come from the logical rules on a `jax.sharding.AbstractMesh` of the plan's mesh
  sizes: `NamedSharding(abstract_mesh, spec).shard_shape` applies JAX's own shard arithmetic and
  divisibility checks for any device count (a 256-device concrete mesh cannot be built from 8
  fake CPU devices). The state's shapes come from `jax.eval_shape` of a fresh TrainState, as
  `train/dit_run.build` makes it (a tiny input: parameter shapes do not depend on it).
- Pod-scale plans run on a Wan-style VAE's latent (4x8x8, 16 channels) with (1, 2, 2) patches
  and umT5 text (512 x 4096); the frozen encoders' own memory is not in the plan.
- Activations follow a per-block tensor list (`_block_tensors`) under the remat policy:
  'none' keeps every tensor the backward reads for every block, 'dots' keeps the matmul outputs
  without batch dimensions (jax's dots_with_no_batch_dims_saveable: projections and MLP, not the
  attention einsums) plus each block's input, 'full' keeps each block's input only and recomputes
  one block at a time. Blocks are scanned, so one block's transients are live at a time.
- Attention 'xla' materialises float32 logits and probabilities [B, H, L, L] per block (plus
  their gradient in the backward): at 32,760 tokens and 12 heads that is 51 GB per sample for
  the logits alone, so a Wan-size row needs 'flash' (a fused kernel: cuDNN on GPU, splash
  attention on TPU, which keep only the output and a [B, H, L] log-sum-exp) or context
  parallelism (queries split over 'context', keys gathered: logits shrink by the context size).
  This codebase has 'cudnn' for GPUs; on TPU its attention backends are XLA's, so TPU plans with
  'flash' assume a splash-attention backend that is still to be added.
- Temporaries beyond activations: the gradients (float32, sharded as the params; the
  optimizer's elementwise update fuses into them and writes into the donated state), and one
  block's weights gathered by FSDP (forward copy and its gradient before the reduce-scatter), as
  XLA does when it gathers per scanned layer.
- FLOPs per step: 3 x forward FLOPs x global batch; time at an MFU of the dense bf16 peak.

Legend in the activation model: b examples per device, n tokens per device (the row split over
'context'), k keys a query sees (the whole row), s text tokens, e width, et / m / hd the
attention width, MLP width and heads per device (split over 'tensor').
"""
import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import AbstractMesh, AxisType, NamedSharding, PartitionSpec
import ml_collections
import numpy as np
import optax

from videogen.models import dit
from videogen.core import patches
from videogen.parallel import mesh as mesh_lib
from videogen.parallel import sharding
from videogen.runtime import state as state_lib

GB = 1e9

# The Wan 2.1 VAE's latent and the umT5 text encoder's output.
VAE_STRIDE = (4, 8, 8)  # frames, height, width
LATENT_CHANNELS = 16
TEXT_LENGTH, TEXT_DIM = 512, 4096
RESOLUTIONS = {'480p': (480, 832), '720p': (720, 1280)}
ATTENTION = ('xla', 'flash')


@dataclasses.dataclass(frozen=True)
class Slice:
  """A pod slice: JAX devices, each device's dense bfloat16 peak and memory."""
  name: str
  devices: int
  peak_flops: float  # dense bfloat16 FLOP/s per device
  hbm_bytes: float
  note: str


# v5p-N names TensorCores; a v5p chip (2 TensorCores, megacore) is one JAX device.
SLICES = {s.name: s for s in (
    Slice('v5p-64', 32, 459e12, 95e9, '32 TPU v5p chips'),
    Slice('v5p-256', 128, 459e12, 95e9, '128 TPU v5p chips'),
    Slice('8xH100', 8, 989e12, 80e9, 'one 8-GPU H100 SXM host'),
    Slice('64xH100', 64, 989e12, 80e9, '8 H100 SXM hosts'),
)}

# The pod-scale plan (docs/scale_out.md): meshes per slice, with their global batch.
EXAMPLE_MESHES = {
    'v5p-64': (('fsdp=32', 32), ('fsdp=16,context=2', 16)),
    'v5p-256': (('data=4,fsdp=32', 128), ('fsdp=32,context=4', 32)),
    '8xH100': (('fsdp=8', 8), ('fsdp=4,context=2', 4)),
    '64xH100': (('data=8,fsdp=8', 64), ('fsdp=8,context=8', 8)),
}


def parse_mesh(text: str) -> dict[str, int]:
  """'data=8,fsdp=8' -> {'data': 8, 'fsdp': 8}."""
  sizes = {}
  for part in filter(None, (p.strip() for p in text.split(','))):
    axis, sep, size = part.partition('=')
    if not sep or not size.strip().lstrip('-').isdigit():
      raise ValueError(f'mesh entry {part!r} is not axis=size: write e.g. "data=8,fsdp=8".')
    sizes[axis.strip()] = int(size)
  return sizes


def latent_shape(resolution: str, frames: int) -> tuple[int, int, int, int]:
  """(T, H, W, C) of the VAE latent of a clip: '480p', '720p' or 'HxW' pixels, F frames."""
  height, width = RESOLUTIONS.get(resolution) or _pixels(resolution)
  st, sh, sw = VAE_STRIDE
  if frames < 1 or (frames - 1) % st:
    raise ValueError(f'{frames} frames do not fit the VAE\'s {st}x time compression: use '
                     f'1 + {st}k frames, e.g. {(frames - 1) // st * st + 1} or '
                     f'{((frames - 1) // st + 1) * st + 1}.')
  unit_h, unit_w = sh * 2, sw * 2  # the VAE stride times the DiT's (1, 2, 2) patch
  if height % unit_h or width % unit_w:
    raise ValueError(f'{height}x{width} pixels is not a multiple of {unit_h}x{unit_w} (VAE '
                     f'stride x patch): use e.g. {height // unit_h * unit_h}x'
                     f'{width // unit_w * unit_w}.')
  return (1 + (frames - 1) // st, height // sh, width // sw, LATENT_CHANNELS)


def _pixels(resolution: str) -> tuple[int, int]:
  height, sep, width = resolution.partition('x')
  if not sep or not height.isdigit() or not width.isdigit():
    raise ValueError(f'resolution {resolution!r} is unknown: use {", ".join(RESOLUTIONS)} or '
                     'HxW pixels, e.g. 480x832.')
  return int(height), int(width)


def _default_optimizer() -> optax.GradientTransformation:
  """The trainer's optimizer; its state's shapes do not depend on the hyperparameters."""
  return state_lib.make_optimizer(ml_collections.ConfigDict(dict(
      learning_rate=1e-4, warmup_steps=1, total_steps=2, end_lr_factor=0.1, weight_decay=0.0,
      b1=0.9, b2=0.99, grad_clip=1.0)))


@functools.lru_cache(maxsize=32)
def boxed_state(model_config: dit.DiTConfig, optimizer=None) -> state_lib.TrainState:
  """jax.eval_shape of a fresh TrainState (Linen boxes kept, so leaves carry logical axes)."""
  optimizer = optimizer or _default_optimizer()
  model = dit.DiT(model_config)
  x = jnp.zeros((1, *model_config.patch_size, model_config.in_channels), jnp.float32)
  text = jnp.zeros((1, 1, model_config.text_dim), jnp.float32)
  model_init = lambda rng: model.init(rng, x, jnp.zeros((1,)), text, jnp.ones((1, 1), bool))[
      'params']
  return jax.eval_shape(
      lambda: state_lib.init_train_state(model_init, optimizer, jax.random.key(0)))


def abstract_mesh(mesh_sizes: Mapping[str, int], num_devices: int) -> AbstractMesh:
  """An AbstractMesh over MESH_AXES; mesh_shape's checks and its one -1 axis apply."""
  shape = mesh_lib.mesh_shape(mesh_sizes, num_devices)
  return AbstractMesh(shape, mesh_lib.MESH_AXES, axis_types=(AxisType.Auto,) * len(shape))


def state_bytes(boxed: state_lib.TrainState, mesh: AbstractMesh,
                rules: sharding.LogicalRules) -> dict[str, float]:
  """Bytes per device of each part of the state ('params', 'ema', 'optimizer', 'other'), plus
  'replicated' (the whole state on one device) and 'params_count'."""
  def leaf_bytes(leaf, spec):
    mesh_spec = PartitionSpec(*nn.logical_to_mesh_axes(spec, rules)) if spec else PartitionSpec()
    try:
      shard = NamedSharding(mesh, mesh_spec).shard_shape(leaf.shape)
    except ValueError as e:
      raise ValueError(f'a state array of shape {leaf.shape} split as {mesh_spec} does not '
                       f'divide over mesh {dict(mesh.shape)}: pick mesh sizes that divide the '
                       f'model\'s widths ({e}).') from None
    return float(np.prod(shard, dtype=np.float64) * leaf.dtype.itemsize)

  specs = nn.get_partition_spec(boxed)
  leaves = jax.tree.map(leaf_bytes, nn.unbox(boxed), specs,
                        is_leaf=lambda x: isinstance(x, PartitionSpec))
  total = lambda tree: float(sum(jax.tree.leaves(tree)))
  whole = lambda tree: float(sum(np.prod(x.shape, dtype=np.float64) * x.dtype.itemsize
                                 for x in jax.tree.leaves(tree)))
  parts = {'params': total(leaves.params), 'ema': total(leaves.ema_params),
           'optimizer': total(leaves.opt_state),
           'other': total((leaves.step, leaves.rng))}
  return parts | {'replicated': whole(nn.unbox(boxed)),
                  'params_count': float(dit.count_params(nn.unbox(boxed.params)))}


@dataclasses.dataclass(frozen=True)
class Workload:
  """One train step: the DiT, the clean batch's clip shape (T, H, W, C; what the model sees
  after patchify has in_channels), its text, the global batch, and the attention kernel."""
  model: dit.DiTConfig
  clip_thwc: tuple[int, int, int, int]
  text_length: int
  batch: int
  attention: str = 'flash'  # 'xla': logits materialised; 'flash': a fused kernel

  @property
  def tokens(self) -> int:
    return patches.num_tokens(self.clip_thwc[:3], self.model.patch_size)


def check_workload(work: Workload, mesh_sizes: Mapping[str, int], slice_: Slice) -> dict:
  """The mesh's axis sizes, after one clear error for a mesh, batch, heads or token row that
  does not divide (before any trace or compile)."""
  try:
    shape = dict(zip(mesh_lib.MESH_AXES, mesh_lib.mesh_shape(mesh_sizes, slice_.devices)))
  except ValueError as e:
    raise ValueError(f'{slice_.name} has {slice_.devices} devices: {e}') from None
  ways = shape['data'] * shape['fsdp']
  if work.batch % ways:
    raise ValueError(f'global batch {work.batch} is not divisible by data×fsdp = {ways}: use a '
                     f'multiple of {ways}, e.g. {max(work.batch // ways, 1) * ways}.')
  cfg = work.model
  if cfg.heads % shape['tensor'] or cfg.mlp_dim % shape['tensor']:
    raise ValueError(f'tensor={shape["tensor"]} does not divide the {cfg.heads} heads (and '
                     f'MLP width {cfg.mlp_dim}) of this DiT: use a tensor size that divides both '
                     f'(a divisor of {math.gcd(cfg.heads, cfg.mlp_dim)}).')
  if work.tokens % shape['context']:
    raise ValueError(f'context={shape["context"]} does not divide the row of {work.tokens} '
                     'tokens: use a context size that divides the token count, or change the '
                     'resolution or frames.')
  if work.attention not in ATTENTION:
    raise ValueError(f'attention {work.attention!r} is unknown: use one of {ATTENTION}.')
  return shape


def _block_tensors(work: Workload, shape: Mapping[str, int]) -> list[tuple[str, float, str]]:
  """(name, bytes per device, kept by) of one block's forward tensors that its backward reads.

  'kept by': 'dots' for matmul outputs without batch dimensions (kept by remat 'dots' and
  'none'), 'none' for the rest (kept only without remat), 'attn' for the attention matrices
  (kept only without remat, and only by the 'xla' backend).
  """
  cfg = work.model
  b = work.batch // (shape['data'] * shape['fsdp'])
  n, k, s = work.tokens // shape['context'], work.tokens, work.text_length
  e, t = cfg.dim, shape['tensor']
  et, m, hd = e // t, cfg.mlp_dim // t, cfg.heads // t
  c, f = jnp.dtype(cfg.dtype).itemsize, 4
  tensors = [
      ('norm1 modulated', b * n * e * c, 'none'),
      ('q k v', 3 * b * n * et * c, 'dots'),
      ('q k normed + rope', 2 * b * n * et * c, 'none'),
      ('attention out', b * n * et * c, 'none'),
      ('o', b * n * e * c, 'dots'),
      ('x after self-attention', b * n * e * f, 'none'),
      ('norm3', b * n * e * c, 'none'),
      ('cross q', b * n * et * c, 'dots'),
      ('cross k v', 2 * b * s * et * c, 'dots'),
      ('cross probabilities', b * hd * n * s * (f + c), 'none'),
      ('cross out', b * n * et * c, 'none'),
      ('cross o', b * n * e * c, 'dots'),
      ('x after cross-attention', b * n * e * f, 'none'),
      ('norm2 modulated', b * n * e * c, 'none'),
      ('ffn_in', b * n * m * c, 'dots'),
      ('gelu', b * n * m * c, 'none'),
      ('ffn_out', b * n * e * c, 'dots'),
  ]
  if work.attention == 'xla':
    tensors.append(('self-attention probabilities', b * hd * n * k * (f + c), 'attn'))
  else:
    tensors.append(('log-sum-exp', b * hd * n * f, 'none'))
  return tensors


def activation_bytes(work: Workload, shape: Mapping[str, int]) -> dict[str, float]:
  """Per device: 'saved' (what all blocks keep for the backward), 'block' (one block's live
  tensors while it is recomputed and differentiated), 'outer' (embeddings, head, text context)
  and 'attention_logits' (the 'xla' backend's float32 [B, H, L, L] of one block; 0 for flash)."""
  cfg = work.model
  b = work.batch // (shape['data'] * shape['fsdp'])
  n, s, e = work.tokens // shape['context'], work.text_length, cfg.dim
  tensors = _block_tensors(work, shape)
  every = sum(size for _, size, _ in tensors)
  kept = {'none': every,
          'dots': sum(size for _, size, kind in tensors if kind == 'dots'),
          'full': 0.0}[cfg.remat]
  residual = b * n * e * 4  # the block's input, a float32 [b, n, e]
  saved = cfg.depth * (residual + kept)
  logits = 0.0
  if work.attention == 'xla':
    logits = b * (cfg.heads // shape['tensor']) * n * work.tokens * 4
  # In the backward of one block: its tensors (recomputed unless remat 'none' kept them), the
  # logits' gradient (xla), and gradients flowing along the residual stream.
  block = (every if cfg.remat != 'none' else 0.0) + logits + 3 * residual
  patch_in = cfg.patch_dim * cfg.in_channels
  outer = (b * n * (patch_in + cfg.patch_dim * cfg.out_channels) * 4 * 3  # model in/out, target
           + 2 * residual  # patch embedding and head norm
           + b * s * (cfg.text_dim + 2 * e) * 4  # text in, text MLP
           + b * n * cfg.patch_dim * cfg.in_channels * 4)  # noisy input and noise
  return {'saved': saved, 'block': block, 'outer': outer, 'attention_logits': logits}


def input_bytes(work: Workload, shape: Mapping[str, int]) -> float:
  """Per device: the batch the step takes, {'video' float32 [B, T, H, W, C], 'text' float32
  [B, S, D], 'text_mask' bool [B, S]} split over data x fsdp."""
  b = work.batch // (shape['data'] * shape['fsdp'])
  return b * (4 * math.prod(work.clip_thwc) + work.text_length * (4 * work.model.text_dim + 1))


def _block_param_bytes(state: Mapping[str, float], cfg: dit.DiTConfig) -> float:
  """Bytes of one block's weights, whole (as an FSDP all-gather makes them), ~ params / depth."""
  return state['params_count'] / cfg.depth * jnp.dtype(cfg.param_dtype).itemsize


def plan(work: Workload, mesh_sizes: Mapping[str, int], slice_: Slice, *,
         rules: sharding.LogicalRules, mfu: float = 0.4, optimizer=None) -> dict[str, Any]:
  """The plan of one train step of `work` on `slice_` with mesh `mesh_sizes` and logical axis
  `rules` (sharding.rules_from_config); bytes are per device (see the module docstring for
  what each term holds)."""
  if not 0 < mfu <= 1:
    raise ValueError(f'mfu {mfu} must be in (0, 1]: e.g. 0.4 for 40% of the peak.')
  shape = check_workload(work, mesh_sizes, slice_)
  state = state_bytes(boxed_state(work.model, optimizer), abstract_mesh(shape, slice_.devices),
                      rules)
  acts = activation_bytes(work, shape)
  state_total = state['params'] + state['ema'] + state['optimizer'] + state['other']
  grads = state['params'] * 4 / jnp.dtype(work.model.param_dtype).itemsize  # float32, sharded
  gathered = 2 * _block_param_bytes(state, work.model) / shape['tensor'] if shape['fsdp'] > 1 else 0
  inputs = input_bytes(work, shape)
  temp = grads + gathered + acts['saved'] + acts['block'] + acts['outer']
  total = state_total + inputs + temp
  flops = 3 * dit.flops_per_sample(work.model, work.tokens, work.text_length) * work.batch
  step_s = flops / (slice_.devices * slice_.peak_flops * mfu)
  return {
      'mesh': ','.join(f'{axis}={size}' for axis, size in shape.items() if size > 1) or 'single',
      'devices': slice_.devices,
      'batch': work.batch,
      'tokens': work.tokens,
      'params_count': state['params_count'],
      'params_bytes': state['params'],
      'ema_bytes': state['ema'],
      'optimizer_bytes': state['optimizer'],
      'state_bytes': state_total,
      'replicated_state_bytes': state['replicated'],
      'state_fraction': state_total / state['replicated'],
      'input_bytes': inputs,
      'argument_bytes': state_total + inputs,
      'grad_bytes': grads,
      'gathered_bytes': gathered,
      'activation_bytes': acts['saved'] + acts['block'] + acts['outer'],
      'attention_logits_bytes': acts['attention_logits'],
      'xla_logits_bytes': activation_bytes(dataclasses.replace(work, attention='xla'),
                                           shape)['attention_logits'],
      'temp_bytes': temp,
      'total_bytes': total,
      'hbm_bytes': slice_.hbm_bytes,
      'fits': total <= slice_.hbm_bytes,
      'flops_per_step': flops,
      'mfu': mfu,
      'step_s': step_s,
  }


def pod_workload(variant: str, resolution: str, frames: int, batch: int, *, remat: str = 'full',
                 attention: str = 'flash', frame_conditioning: bool = False,
                 dtype: str = 'bfloat16', param_dtype: str = 'float32') -> Workload:
  """A Wan-style latent workload: `variant` ('1.3B', '14B', ...) at `resolution` x `frames`."""
  clip = latent_shape(resolution, frames)
  in_channels = 2 * LATENT_CHANNELS + 1 if frame_conditioning else LATENT_CHANNELS
  model = dit.dit_config(variant, in_channels=in_channels, out_channels=LATENT_CHANNELS,
                         text_dim=TEXT_DIM, remat=remat, scan_layers=True, dtype=dtype,
                         param_dtype=param_dtype)
  patches.check_divisible(clip[:3], model.patch_size)
  return Workload(model=model, clip_thwc=clip, text_length=TEXT_LENGTH, batch=batch,
                  attention=attention)


def pod_table(rules: sharding.LogicalRules, variants: Sequence[str] = ('1.3B', '14B'),
              resolutions: Sequence[str] = ('480p', '720p'), frames: int = 81, *,
              mfu: float = 0.4, remat: str = 'full', attention: str = 'flash') -> list[dict]:
  """The plan for pod scale with logical axis `rules`: every variant x resolution on every
  slice's EXAMPLE_MESHES."""
  rows = []
  for variant in variants:
    for resolution in resolutions:
      for slice_name, meshes in EXAMPLE_MESHES.items():
        for mesh_text, batch in meshes:
          work = pod_workload(variant, resolution, frames, batch, remat=remat,
                              attention=attention)
          row = plan(work, parse_mesh(mesh_text), SLICES[slice_name], rules=rules, mfu=mfu)
          rows.append({'variant': variant, 'video': f'{resolution}x{frames}',
                       'slice': slice_name, **row})
  return rows


def summary(row: Mapping[str, Any]) -> dict[str, Any]:
  """The columns of a plan for a table: sizes in GB per device."""
  keys = ('variant', 'video', 'slice')
  return {**{k: row[k] for k in keys if k in row},
          'mesh': row['mesh'], 'batch': row['batch'], 'tokens': row['tokens'],
          'params_B': row['params_count'] / 1e9,
          'params_GB': row['params_bytes'] / GB,
          'ema+adam_GB': (row['ema_bytes'] + row['optimizer_bytes']) / GB,
          'state/replicated': row['state_fraction'],
          'grads+temp_GB': (row['grad_bytes'] + row['gathered_bytes']) / GB,
          'activations_GB': row['activation_bytes'] / GB,
          'xla_logits_GB': row['xla_logits_bytes'] / GB,
          'total_GB': row['total_bytes'] / GB,
          'HBM_GB': row['hbm_bytes'] / GB,
          'fits': 'yes' if row['fits'] else 'NO',
          'PFLOP/step': row['flops_per_step'] / 1e15,
          'step_s': row['step_s']}
