"""A run's weights out of its folder, for sampling and for starting another run from them.

A folder is a training run (config.json + checkpoints/<step>/) or an export of one
(config.json + params/ + export.json: the EMA params alone, see Generator.export).
`restore_params` reads either; `start_from` copies such weights into a fresh train state
(config.init_from), parameter by parameter where path and shape agree.
"""
import json
import os
import pathlib
from collections.abc import Callable

from absl import logging
from flax import traverse_util
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from videogen.models import dit
from videogen.runtime import checkpoint
from videogen.runtime import state as state_lib


def load_config(workdir) -> ml_collections.ConfigDict:
  """workdir/config.json, or one clear error when the run does not exist. A relative
  config.autoencoder naming a folder inside workdir (a converted export's vae/) is made absolute,
  so the folder can move."""
  path = pathlib.Path(workdir) / 'config.json'
  if not path.exists():
    raise FileNotFoundError(f'no trained run in {str(workdir)!r} (missing {path.name}): train '
                            f'first with experiments/train.py --workdir {workdir}')
  config = ml_collections.ConfigDict(json.loads(path.read_text()))
  vae = config.get('autoencoder') or 'none'
  inside = pathlib.Path(workdir) / vae
  if vae != 'none' and not pathlib.Path(vae).is_absolute() and inside.is_dir():
    config.autoencoder = str(inside.absolute())  # a VAE kept inside the folder (an export's)
  return config


def saved_steps(workdir) -> list[int]:
  """The steps of the checkpoints in workdir/checkpoints, oldest first."""
  folder = pathlib.Path(workdir) / 'checkpoints'
  return sorted(int(p.name) for p in folder.glob('*') if p.name.isdigit() and p.is_dir())


def check_saved_step(workdir, step: int | None) -> None:
  """Raises one sentence when the run in `workdir` has no checkpoint, or none at `step` (None:
  the newest)."""
  steps = saved_steps(workdir)
  if not steps:
    raise FileNotFoundError(f'no checkpoint in {str(workdir)!r}: train first with '
                            f'experiments/train.py --workdir {workdir}')
  if step is not None and step not in steps:
    raise FileNotFoundError(f'no checkpoint at step {step} in {str(workdir)!r}: pick one of '
                            f'{steps} with --step, or omit --step for the newest ({steps[-1]}).')


def check_exported_step(workdir, step: int | None, exported_step: int) -> None:
  """Raises one sentence when `step` asks an export for a step other than the one it holds."""
  if step is not None and step != exported_step:
    raise FileNotFoundError(f'{str(workdir)!r} is an export of step {exported_step} only, not '
                            f'{step}: omit --step, or sample the training run\'s workdir for '
                            'other steps.')


def check_exported_weights(workdir, use_ema: bool) -> None:
  """Raises one sentence when the raw weights are asked of an export, which holds the EMA's."""
  if not use_ema:
    raise ValueError(f'{str(workdir)!r} is an export, which holds the moving average of the '
                     'weights alone: drop --raw_weights (use_ema=False), or pass the training '
                     'run\'s workdir for the trained weights.')


def restore_params(workdir, build: Callable, *, step: int | None = None, use_ema: bool = True,
                   devices=None):
  """(run, params, step): the weights at `step` (default: the newest) of the training run or
  export in `workdir`, EMA ones unless use_ema=False (an export holds only those: asking it for
  the others raises), on the mesh that build(config, devices) makes the folder's Run with (from
  its own config.json, so the shapes are the folder's, whatever the caller's config)."""
  config = load_config(workdir)
  exported = pathlib.Path(workdir) / 'params'
  if exported.is_dir():
    info = json.loads((pathlib.Path(workdir) / 'export.json').read_text())
    check_exported_step(workdir, step, info['step'])
    check_exported_weights(workdir, use_ema)
    run = build(config, devices)
    params = ocp.StandardCheckpointer().restore(exported.absolute(),
                                                run.abstract_state.ema_params)
    return run, params, info['step']
  check_saved_step(workdir, step)
  run = build(config, devices)
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, 'checkpoints'))
  step = step if step is not None else ckpt.latest_step()
  state = ckpt.restore(run.abstract_state, step=step)
  ckpt.close()
  return run, state.ema_params if use_ema else state.params, step


def check_init_from(folder) -> None:
  """Raises one sentence when config.init_from names no folder."""
  if not pathlib.Path(folder).is_dir():
    raise FileNotFoundError(f'init_from {str(folder)!r} is not a folder: pass a training run or '
                            'an export (experiments/export.py), or leave init_from empty.')


def _name(path: tuple) -> str:
  return '/'.join(str(key) for key in path)


def match_params(params, source, folder) -> tuple[dict, list[str], list[str]]:
  """(loaded, new, dropped): the host arrays of `source` at the paths of `params` whose shape
  they share (cast to its dtype), and the paths only `params` has (new: kept at init) or only
  `source` has (dropped). A path both have at another shape raises: copying around it would
  hide that the two models differ. A DiT's blocks match across the scanned and unrolled layouts
  (dit.block_layout)."""
  source = dit.block_layout(source, scan_layers='blocks' in params)
  flat, given = traverse_util.flatten_dict(params), traverse_util.flatten_dict(source)
  for path in sorted(flat.keys() & given.keys()):
    have, want = np.shape(given[path]), np.shape(flat[path])
    if have != want:
      raise ValueError(f'parameter {_name(path)} has shape {have} in init_from {str(folder)!r} '
                       f'but {want} in this model: train with a config of the same model '
                       'shapes, or pick another init_from.')
  loaded = {path: np.asarray(jax.device_get(given[path]), dtype=flat[path].dtype)
            for path in flat.keys() & given.keys()}
  new = sorted(_name(p) for p in flat.keys() - given.keys())
  dropped = sorted(_name(p) for p in given.keys() - flat.keys())
  return loaded, new, dropped


def start_from(state: state_lib.TrainState, state_shardings, source,
               folder) -> state_lib.TrainState:
  """`state` (fresh) with its params and EMA params set to `source`'s (the EMA params of the
  run or export in `folder`) wherever path and shape agree, laid out as `state_shardings`
  says; the rest stays at init and the optimizer starts fresh. Logs what loaded."""
  loaded, new, dropped = match_params(state.params, source, folder)
  logging.warning('init_from %s: loaded %d parameters; new (kept at init): %s; dropped (in the '
                  'source only): %s.', folder, len(loaded), ', '.join(new) or 'none',
                  ', '.join(dropped) or 'none')
  # A fresh array per tree: params and EMA must not share buffers.
  return state.replace(params=place(state.params, loaded, state_shardings.params),
                       ema_params=place(state.ema_params, loaded, state_shardings.params))


def place(tree, loaded: dict, shardings):
  """`tree` with the host arrays `loaded` (path -> array, as `match_params` gives them) put in
  at their paths as new global arrays, laid out as `shardings` (a tree like `tree`) says."""
  flat, flat_shardings = traverse_util.flatten_dict(tree), traverse_util.flatten_dict(shardings)
  for path, host in loaded.items():
    flat[path] = jax.make_array_from_callback(host.shape, flat_shardings[path],
                                              lambda index, host=host: host[index])
  return traverse_util.unflatten_dict(flat)
