"""Plans a DiT train step's memory per device and its step time on a pod slice, on paper.

  python experiments/plan.py --variant 1.3B --resolution 480p --frames 81 --slice v5p-64 \
      --mesh fsdp=32 --batch 32 --remat full --mfu 0.4
  python experiments/plan.py --all --out outputs/plan/pod.json      # docs/scale_out.md's table
  python experiments/plan.py --validate --config configs/world.py   # planner vs the compiler

Planning builds nothing: shapes come from jax.eval_shape and shardings from the logical rules on
an abstract mesh (videogen/bench/planner.py), so it needs no accelerator and takes seconds.
--validate AOT-compiles the config's real sharded train step on this machine's devices and
compares per-device bytes; on a CPU, give it 8 fake devices:
  XLA_FLAGS=--xla_force_host_platform_device_count=8 python experiments/plan.py --validate
"""
from absl import app
from absl import flags
from absl import logging

from videogen.bench import plan_check
from videogen.bench import planner
from videogen.core import config_args
from videogen.core import tables
from videogen.parallel import sharding

_CONFIG = config_args.define_config_file('config', 'configs/world.py',
                                         'Config whose logical axis rules the plan uses and whose '
                                         'train step --validate compiles.',
                                         lock_config=True)
_VARIANT = flags.DEFINE_string('variant', '1.3B', 'DiT size name (1.3B, 14B, B/2, ...).')
_RESOLUTION = flags.DEFINE_string('resolution', '480p', '480p, 720p or HxW pixels.')
_FRAMES = flags.DEFINE_integer('frames', 81, 'Frames per clip (1 + 4k for the VAE).')
_SLICE = flags.DEFINE_enum('slice', 'v5p-64', list(planner.SLICES), 'Pod slice.')
_MESH = flags.DEFINE_string('mesh', 'fsdp=-1', 'Mesh sizes, e.g. data=8,fsdp=8 (one may be -1).')
_BATCH = flags.DEFINE_integer('batch', 32, 'Global batch (clips per step).')
_REMAT = flags.DEFINE_enum('remat', 'full', ['none', 'dots', 'full'], 'Remat policy.')
_ATTENTION = flags.DEFINE_enum('attention', 'flash', list(planner.ATTENTION),
                               "'xla' (float32 logits materialised) or 'flash' (fused kernel).")
_FRAME_CONDITIONING = flags.DEFINE_bool('frame_conditioning', False,
                                        'DiT input 2x16+1 channels (given frames and mask).')
_MFU = flags.DEFINE_float('mfu', 0.4, 'Model FLOPs utilisation for the predicted step time.')
_ALL = flags.DEFINE_bool('all', False, 'Print the whole pod-scale table (docs/scale_out.md).')
_VALIDATE = flags.DEFINE_bool('validate', False, 'Compare with compiled memory_analysis().')
_VALIDATE_MESHES = flags.DEFINE_list('validate_meshes', ['fsdp=8', 'data=2,fsdp=2,tensor=2'],
                                     'Meshes (over the local devices) that --validate compiles.')
_VALIDATE_BATCH = flags.DEFINE_integer('validate_batch', 8, 'Global batch for --validate.')
_OUT = flags.DEFINE_string('out', None, 'Where to write the rows as JSON.')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  rules = sharding.rules_from_config(_CONFIG.value)
  if _VALIDATE.value:
    rows = plan_check.validate(_CONFIG.value, _VALIDATE_MESHES.value, _VALIDATE_BATCH.value)
    print(tables.markdown_table(rows))
  elif _ALL.value:
    rows = planner.pod_table(rules, frames=_FRAMES.value, mfu=_MFU.value, remat=_REMAT.value,
                             attention=_ATTENTION.value)
    print(tables.markdown_table([planner.summary(row) for row in rows]))
  else:
    work = planner.pod_workload(_VARIANT.value, _RESOLUTION.value, _FRAMES.value, _BATCH.value,
                                remat=_REMAT.value, attention=_ATTENTION.value,
                                frame_conditioning=_FRAME_CONDITIONING.value)
    row = planner.plan(work, planner.parse_mesh(_MESH.value), planner.SLICES[_SLICE.value],
                       rules=rules, mfu=_MFU.value)
    rows = [{'variant': _VARIANT.value, 'video': f'{_RESOLUTION.value}x{_FRAMES.value}',
             'slice': _SLICE.value, **row}]
    print(tables.markdown_table([planner.summary(r) for r in rows]))
    for key, value in rows[0].items():
      print(f'  {key}: {value / 1e9:.3f} GB' if key.endswith('_bytes') else f'  {key}: {value}')
  if _OUT.value:
    print('wrote', tables.write_results(_OUT.value, 'plan', rows))


if __name__ == '__main__':
  app.run(main)
