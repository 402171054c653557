"""The device mesh: axes ('data', 'fsdp', 'context', 'tensor') sized from a config, one may be -1.

A single device is a 1×1×1×1 mesh, so one code path serves a laptop and a pod.

Multi-slice (ICI and DCN, as MaxText's ici_*/dcn_* parallelism): the config's sizes are per slice
(the fast interconnect, ICI); `mesh_cfg['dcn']` sizes the same axes across slices (the data-centre
network, DCN). Each mesh axis is then dcn × ici devices long, slice-major: along an axis, index
i·ici + j is device j of the axis in slice i, so only the DCN part of an axis crosses slices. Put
the DCN on 'data' (or 'fsdp'), whose collectives are one gradient reduction per step. With every
dcn size 1 the mesh is built exactly as for one slice. Devices that carry a `slice_index` (TPU
slices) are grouped by it; devices without one (CPU, fake test devices) are split into as many
equal consecutive blocks as the fixed dcn sizes ask for, each block standing in for a slice.
"""
from collections.abc import Mapping, Sequence
import math

import jax
from jax.experimental import mesh_utils
import numpy as np

MESH_AXES = ('data', 'fsdp', 'context', 'tensor')
DCN = 'dcn'  # the key of mesh_cfg that holds the across-slice sizes


def _axis_sizes(sizes_cfg: Mapping[str, int], total: int, *, what: str, unit: str,
                there: str) -> tuple[int, ...]:
  """Sizes for MESH_AXES from `sizes_cfg` whose product is `total` (one -1 takes the rest).

  what names the config section in messages ('mesh', 'mesh.dcn'); unit what is counted
  ('devices', 'slices'); there says how many there are ('8', '8 per slice (16 devices ...)').
  """
  unknown = sorted(set(sizes_cfg) - set(MESH_AXES))
  if unknown:
    raise ValueError(f'{what} axes {unknown} are unknown: use only {MESH_AXES}.')
  sizes = {axis: int(sizes_cfg.get(axis, 1)) for axis in MESH_AXES}
  for axis, size in sizes.items():
    if size == 0 or size < -1:
      raise ValueError(
          f"{what} axis '{axis}' has size {size}: use a positive size, or -1 for the rest of the "
          f'{unit}.')
  rest = [axis for axis, size in sizes.items() if size == -1]
  if len(rest) > 1:
    raise ValueError(
        f'{what} axes {rest} are all -1: at most one axis may take the rest of the {unit}.')
  fixed = math.prod(size for size in sizes.values() if size != -1)
  described = ', '.join(f'{axis}={size}' for axis, size in sizes.items())
  if rest:
    if total % fixed:
      raise ValueError(
          f'{what} {described} needs a multiple of {fixed} {unit} but there are {there}: '
          f'use fixed sizes whose product divides {total}.')
    sizes[rest[0]] = total // fixed
  elif fixed != total:
    raise ValueError(
        f'{what} {described} uses {fixed} {unit} but there are {there}: make the product '
        f'{total}, or set one axis to -1.')
  return tuple(sizes.values())


def _split_cfg(mesh_cfg: Mapping[str, int]) -> tuple[dict, dict]:
  """(ICI sizes, DCN sizes) of a mesh config; a missing 'dcn' means one slice."""
  ici = {axis: size for axis, size in mesh_cfg.items() if axis != DCN}
  dcn = mesh_cfg.get(DCN) or {}
  if not hasattr(dcn, 'items'):  # a dict or an ml_collections.ConfigDict
    raise ValueError(f'mesh.dcn is {dcn!r}: give it per-axis sizes across slices, e.g. '
                     "{'data': 2}.")
  return ici, dict(dcn.items())


def _fixed_dcn(dcn_cfg: Mapping[str, int]) -> int:
  """How many slices the dcn sizes ask for when nothing says how many there are (-1 counts 1)."""
  return math.prod(max(int(size), 1) for size in dcn_cfg.values())


def hybrid_shape(mesh_cfg: Mapping[str, int], num_devices: int,
                 num_slices: int | None = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """(ICI sizes, DCN sizes) for MESH_AXES; their product per axis is the mesh's shape.

  num_slices: how many slices the devices form (from their slice_index), or None when they carry
  none: then they are split into as many equal slices as the fixed dcn sizes ask for.
  """
  ici_cfg, dcn_cfg = _split_cfg(mesh_cfg)
  if num_slices is None:
    num_slices = _fixed_dcn(dcn_cfg)
    if num_slices < 1 or num_devices % num_slices:
      described = ', '.join(f'{axis}={dcn_cfg.get(axis, 1)}' for axis in MESH_AXES)
      raise ValueError(
          f'mesh.dcn {described} asks for {num_slices} slices, but {num_devices} devices do not '
          f'split into {num_slices} equal slices: use dcn sizes whose product divides '
          f'{num_devices}.')
    dcn = _axis_sizes(dcn_cfg, num_slices, what='mesh.dcn', unit='slices', there=num_slices)
  else:
    dcn = _axis_sizes(dcn_cfg, num_slices, what='mesh.dcn', unit='slices',
                      there=f'{num_slices} (the devices\' slice_index)')
  per_slice = num_devices // num_slices
  there = (str(num_devices) if num_slices == 1 else
           f'{per_slice} per slice ({num_devices} devices in {num_slices} slices)')
  ici = _axis_sizes(ici_cfg, per_slice, what='mesh', unit='devices', there=there)
  return ici, dcn


def mesh_shape(mesh_cfg: Mapping[str, int], num_devices: int,
               num_slices: int | None = None) -> tuple[int, ...]:
  """Sizes for MESH_AXES: missing axes are 1, the one -1 axis takes the rest of the devices;
  with mesh_cfg['dcn'], each axis is its ICI size × its DCN size (see hybrid_shape)."""
  ici, dcn = hybrid_shape(mesh_cfg, num_devices, num_slices)
  return tuple(i * d for i, d in zip(ici, dcn))


def _num_slices(mesh_cfg: Mapping[str, int], devices: Sequence[jax.Device]) -> int | None:
  """How many slices the devices span, or None when they carry no slice_index (CPU).

  With every dcn size 1 the slices are not looked at: the devices are one mesh, as before
  multi-slice support (so a multi-host GPU run whose devices report slices keeps its layout).
  """
  if all(int(size) == 1 for size in _split_cfg(mesh_cfg)[1].values()):
    return 1
  if not all(hasattr(device, 'slice_index') for device in devices):
    return None
  return len({device.slice_index for device in devices})


def device_array(mesh_cfg: Mapping[str, int], devices: Sequence[jax.Device]) -> np.ndarray:
  """The devices laid out in the mesh's shape, each axis slice-major (see the module docstring).

  Devices with a slice_index go through `mesh_utils.create_hybrid_device_mesh`; devices without
  one are taken as consecutive equal blocks, one per slice, in the same layout.
  """
  devices = list(devices)
  num_slices = _num_slices(mesh_cfg, devices)
  ici, dcn = hybrid_shape(mesh_cfg, len(devices), num_slices)
  if num_slices is not None and math.prod(dcn) > 1:
    return mesh_utils.create_hybrid_device_mesh(ici, dcn, devices)
  # Emulated slices: [dcn..., ici...] → interleave (dcn_0, ici_0, dcn_1, ici_1, ...) → merge
  # each pair, as create_hybrid_device_mesh's np.block of per-slice meshes does.
  blocks = np.asarray(devices, dtype=object).reshape(*dcn, *ici)
  n = len(MESH_AXES)
  interleaved = blocks.transpose([k for axis in range(n) for k in (axis, n + axis)])
  return interleaved.reshape([d * i for d, i in zip(dcn, ici)])


def make_mesh(mesh_cfg: Mapping[str, int],
              devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A Mesh over `devices` (default: all) with Auto axis types, so jit in/out shardings rule.

  One slice (every dcn size 1): `jax.make_mesh`, which picks a fast layout for the hardware.
  Several: `device_array`'s slice-major layout.
  """
  devices = jax.devices() if devices is None else list(devices)
  axis_types = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  ici, dcn = hybrid_shape(mesh_cfg, len(devices), _num_slices(mesh_cfg, devices))
  if math.prod(dcn) == 1:
    return jax.make_mesh(ici, MESH_AXES, axis_types=axis_types, devices=devices)
  return jax.sharding.Mesh(device_array(mesh_cfg, devices), MESH_AXES, axis_types=axis_types)
