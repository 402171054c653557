"""The device mesh: axes ('data', 'fsdp', 'context', 'tensor') sized from a config, one may be -1.

A single device is a 1×1×1×1 mesh, so one code path serves a laptop and a pod.
"""
from collections.abc import Mapping, Sequence
import math

import jax

MESH_AXES = ('data', 'fsdp', 'context', 'tensor')


def mesh_shape(mesh_cfg: Mapping[str, int], num_devices: int) -> tuple[int, ...]:
  """Sizes for MESH_AXES: missing axes are 1, the one -1 axis takes the rest of the devices."""
  unknown = sorted(set(mesh_cfg) - set(MESH_AXES))
  if unknown:
    raise ValueError(f'mesh axes {unknown} are unknown: use only {MESH_AXES}.')
  sizes = {axis: int(mesh_cfg.get(axis, 1)) for axis in MESH_AXES}
  for axis, size in sizes.items():
    if size == 0 or size < -1:
      raise ValueError(
          f"mesh axis '{axis}' has size {size}: use a positive size, or -1 for the rest of the "
          'devices.')
  rest = [axis for axis, size in sizes.items() if size == -1]
  if len(rest) > 1:
    raise ValueError(
        f'mesh axes {rest} are all -1: at most one axis may take the rest of the devices.')
  fixed = math.prod(size for size in sizes.values() if size != -1)
  described = ', '.join(f'{axis}={size}' for axis, size in sizes.items())
  if rest:
    if num_devices % fixed:
      raise ValueError(
          f'mesh {described} needs a multiple of {fixed} devices but there are {num_devices}: '
          f'use fixed sizes whose product divides {num_devices}.')
    sizes[rest[0]] = num_devices // fixed
  elif fixed != num_devices:
    raise ValueError(
        f'mesh {described} uses {fixed} devices but there are {num_devices}: make the product '
        f'{num_devices}, or set one axis to -1.')
  return tuple(sizes.values())


def make_mesh(mesh_cfg: Mapping[str, int],
              devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A Mesh over `devices` (default: all) with Auto axis types, so jit in/out shardings rule."""
  devices = jax.devices() if devices is None else list(devices)
  shape = mesh_shape(mesh_cfg, len(devices))
  return jax.make_mesh(shape, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES),
                       devices=devices)
