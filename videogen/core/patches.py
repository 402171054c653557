"""Spacetime patches: a latent grid [B, T, H, W, C] <-> a token row [B, N, pt*ph*pw*C].

A token is one (pt, ph, pw) box of the grid, flattened in (pt, ph, pw, c) order; tokens run in
(t, h, w) raster order, the order `positions` reports them in.

Legend: b batch, t/h/w frames/height/width, c channels, n tokens, p patch-vector length.
"""
from collections.abc import Sequence

import einops
import numpy as np

_AXES = ('frames', 'height', 'width')


def check_divisible(grid_thw: Sequence[int], patch: Sequence[int]) -> None:
  """Raises ValueError unless each grid axis is a positive multiple of its patch size."""
  if len(grid_thw) != 3 or len(patch) != 3:
    raise ValueError(f'grid {tuple(grid_thw)} and patch {tuple(patch)} must both be (T, H, W) '
                     'triples: pass three sizes each.')
  for axis, size, step in zip(_AXES, grid_thw, patch):
    if step < 1:
      raise ValueError(f'patch {axis} {step} must be at least 1: use a patch like (1, 2, 2).')
    if size < 1 or size % step:
      nearest = sorted({max(size // step, 1) * step, (max(size, 0) // step + 1) * step})
      raise ValueError(
          f'{axis} {size} is not divisible by patch {axis} {step}: use a {axis} that is a '
          f'multiple of {step}, e.g. {" or ".join(map(str, nearest))}.')


def patchify(x_bthwc, patch: Sequence[int]):
  """Cuts [B, T, H, W, C] into tokens [B, N, pt*ph*pw*C]."""
  check_divisible(x_bthwc.shape[1:4], patch)
  pt, ph, pw = patch
  return einops.rearrange(
      x_bthwc, 'b (t pt) (h ph) (w pw) c -> b (t h w) (pt ph pw c)', pt=pt, ph=ph, pw=pw)


def unpatchify(x_bnp, grid_thw: Sequence[int], patch: Sequence[int]):
  """Inverse of `patchify`: tokens [B, N, pt*ph*pw*C] back to the grid [B, T, H, W, C]."""
  check_divisible(grid_thw, patch)
  (t, h, w), (pt, ph, pw) = grid_thw, patch
  return einops.rearrange(
      x_bnp, 'b (t h w) (pt ph pw c) -> b (t pt) (h ph) (w pw) c',
      t=t // pt, h=h // ph, w=w // pw, pt=pt, ph=ph, pw=pw)


def num_tokens(grid_thw: Sequence[int], patch: Sequence[int]) -> int:
  """How many tokens `patchify` makes of one grid."""
  check_divisible(grid_thw, patch)
  return int(np.prod([size // step for size, step in zip(grid_thw, patch)]))


def positions(t: int, h: int, w: int, patch: Sequence[int]) -> np.ndarray:
  """int32 [N, 3]: the (t, h, w) index of each token, in patch units and token order."""
  check_divisible((t, h, w), patch)
  grid = np.indices([size // step for size, step in zip((t, h, w), patch)], dtype=np.int32)
  return einops.rearrange(grid, 'k t h w -> (t h w) k')
