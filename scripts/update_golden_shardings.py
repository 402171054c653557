"""Rewrites tests/data/golden_shardings_*.json: every DiT parameter's shape, logical axes and mesh
axes for the T/2 and 1.3B configs on a data=2 x fsdp=2 x tensor=2 mesh of 8 fake CPU devices.

Run after a change that is meant to move parameters or their sharding, then review the diff:

  PYTHONPATH=. .venv/bin/python scripts/update_golden_shardings.py

tests/test_golden_shardings.py compares against these files. Nothing is allocated: the state
comes from jax.eval_shape, so the 1.3B table takes a second or two.
"""
import json
import os
import pathlib
import sys

GOLDEN_DIR = pathlib.Path(__file__).resolve().parent.parent / 'tests' / 'data'
GOLDEN_MESH = dict(data=2, fsdp=2, context=1, tensor=2)
GOLDEN_CONFIGS = {'t2': 'variant=T/2', '1p3b': 'variant=1.3B'}  # file suffix: configs/world.py arg
UPDATE_COMMAND = 'PYTHONPATH=. .venv/bin/python scripts/update_golden_shardings.py'


def golden_path(name: str) -> pathlib.Path:
  return GOLDEN_DIR / f'golden_shardings_{name}.json'


def golden_table(name: str) -> dict:
  """{'config', 'mesh', 'params': {path: {'shape', 'logical', 'mesh'}}} for GOLDEN_CONFIGS[name];
  needs 8 devices (fake CPU ones: XLA_FLAGS=--xla_force_host_platform_device_count=8)."""
  import jax  # pylint: disable=g-import-not-at-top
  from configs import world  # pylint: disable=g-import-not-at-top
  from videogen.runtime import dit_run  # pylint: disable=g-import-not-at-top
  config = world.get_config(GOLDEN_CONFIGS[name])
  config.mesh.update(GOLDEN_MESH)
  parts = dit_run.build(config, devices=jax.devices()[:8])
  return {'config': f'configs/world.py:{GOLDEN_CONFIGS[name]}', 'mesh': GOLDEN_MESH,
          'params': dit_run.parameter_layout(parts)}


def dumps(table: dict) -> str:
  """JSON with one line per parameter, so a diff shows each parameter that moved."""
  params = ',\n'.join(f'  {json.dumps(path)}: {json.dumps(entry)}'
                       for path, entry in sorted(table['params'].items()))
  return (f'{{\n "config": {json.dumps(table["config"])},\n "mesh": {json.dumps(table["mesh"])},'
          f'\n "params": {{\n{params}\n }}\n}}\n')


def main():
  for name in GOLDEN_CONFIGS:
    path = golden_path(name)
    path.write_text(dumps(golden_table(name)))
    print(f'wrote {path}')


if __name__ == '__main__':
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                             + ' --xla_force_host_platform_device_count=8').strip()
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
  sys.path.insert(0, str(GOLDEN_DIR.parent.parent))
  main()
