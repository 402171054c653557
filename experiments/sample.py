"""Samples videos from a trained run: one mp4 (png for 1 frame) + JSON sidecar per prompt.

  python experiments/sample.py --workdir outputs/demo/run \
      --prompt "A red circle drifts slowly to the right." --prompt "A blue square moves up."
  python experiments/sample.py --workdir outputs/run --prompt "..." --seed 3 --steps 50 --cfg 5

Uses the EMA weights of the newest checkpoint (or --step) on one device. Sizes default to the
training clip's; any size the patch size divides works.
"""
from absl import app
from absl import flags
from absl import logging

from videogen import generate
from videogen import media

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run folder written by experiments/train.py.',
                               required=True)
_PROMPTS = flags.DEFINE_multi_string('prompt', None, 'Text prompt (repeat for several).',
                                     required=True)
_OUT = flags.DEFINE_string('out', None, 'Output folder (default WORKDIR/samples/<step>).')
_SEED = flags.DEFINE_integer('seed', 0, 'Noise seed of the first prompt; the i-th uses seed+i.')
_STEPS = flags.DEFINE_integer('steps', 25, 'Sampler steps.')
_METHOD = flags.DEFINE_enum('method', 'heun', ['euler', 'heun', 'ab2'],
                            'euler: 1 call/step; heun: 2 calls/step, more accurate; ab2: '
                            '2nd-order multistep at 1 call/step.')
_CFG = flags.DEFINE_float('cfg', 4.0, 'Classifier-free guidance scale (1 = no guidance).')
_FRAMES = flags.DEFINE_integer('num_frames', None, 'Frames (default: the training clip\'s).')
_HEIGHT = flags.DEFINE_integer('height', None, 'Height in pixels (default: training size).')
_WIDTH = flags.DEFINE_integer('width', None, 'Width in pixels (default: training size).')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: newest).')
_RAW = flags.DEFINE_bool('raw_weights', False, 'Use the raw weights instead of the EMA ones.')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  gen = generate.Generator.from_workdir(_WORKDIR.value, step=_STEP.value,
                                        use_ema=not _RAW.value)
  settings = generate.SampleSettings(steps=_STEPS.value, method=_METHOD.value,
                                     cfg_scale=_CFG.value, num_frames=_FRAMES.value,
                                     height=_HEIGHT.value, width=_WIDTH.value)
  prompts = _PROMPTS.value
  seeds = [_SEED.value + i for i in range(len(prompts))]
  videos = gen.generate(prompts, seeds=seeds, settings=settings)
  out = _OUT.value or f'{_WORKDIR.value}/samples/{gen.step}'
  paths = gen.write(videos, prompts, out, seeds=seeds, settings=settings)
  if len(prompts) > 1:
    paths += media.write_grid(f'{out}/grid', list(videos), prompts,
                              fps=gen.parts.config.world.fps)
  print('\n'.join(str(p) for p in paths))


if __name__ == '__main__':
  app.run(main)
