"""Exports a run's sampling weights (EMA params + config, no optimizer state) to a small folder.

  python experiments/export.py --workdir outputs/reference/run --out reference/world_t2
  python experiments/export.py --workdir outputs/vae_world --out reference/vae_world  # a VAE
  python experiments/export.py --workdir RUN --out OUT --dtype bfloat16  # half the bytes

A DiT run's export is read by `experiments/sample.py --workdir OUT` and
`Generator.from_workdir(OUT)`; a VAE run's (experiments/train_vae.py; its latent statistics
included) by `Autoencoder.from_workdir(OUT)` and as a latent run's `--config.autoencoder=OUT`.
"""
from absl import app
from absl import flags
from absl import logging

from videogen.core import tables
from videogen.inference import generate
from videogen.inference import vae as vae_lib
from videogen.runtime import checkpoint
from videogen.runtime import weights

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training run to export.', required=True)
_OUT = flags.DEFINE_string('out', None, 'Folder to write.', required=True)
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: newest).')
_DTYPE = flags.DEFINE_enum('dtype', None, checkpoint.STORAGE_DTYPES,
                           'What the weights are stored as (default: as trained): bfloat16 halves '
                           'a float32 model\'s folder (readers cast back to float32; rounding '
                           'moves each weight by under 0.4%).')
_SAMPLE = flags.DEFINE_multi_string('sample', [], 'A sampling default stored in a DiT export\'s '
                                     'config.sample over the run\'s, as FIELD=VALUE (steps, '
                                     'method, cfg_scale, cfg_min_t), e.g. --sample cfg_min_t=0.7.')
_NOTE = flags.DEFINE_string('note', '', 'Free text stored in export.json (e.g. the command).')


def sample_defaults(pairs: list[str]) -> dict:
  """{'cfg_min_t': 0.7, ...} from ['cfg_min_t=0.7', ...]: numbers as numbers, words as text."""
  sample = {}
  for pair in pairs:
    field, sep, value = pair.partition('=')
    if not sep:
      raise app.UsageError(f'--sample {pair!r} must be FIELD=VALUE, e.g. --sample cfg_min_t=0.7.')
    try:
      sample[field] = int(value) if value.isdigit() else float(value)
    except ValueError:
      sample[field] = value
  return sample


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  sample = sample_defaults(_SAMPLE.value)
  config = weights.load_config(_WORKDIR.value)
  if 'diffusion' in config:  # a DiT run; a VAE run has none
    try:  # a bad --sample is a usage error, before the model loads
      generate.with_sampling_defaults(config, sample)
    except ValueError as error:
      raise app.UsageError(str(error)) from error
    model = generate.Generator.from_workdir(_WORKDIR.value, step=_STEP.value)
    extra = {'sample': sample}
  elif sample:
    raise app.UsageError('--sample sets a DiT\'s sampling defaults; this run is a VAE.')
  else:
    model, extra = vae_lib.Autoencoder.from_workdir(_WORKDIR.value, step=_STEP.value), {}
  out = model.export(_OUT.value, dtype=_DTYPE.value, git_revision=tables.revision(),
                     note=_NOTE.value, **extra)
  print('exported to', out)


if __name__ == '__main__':
  app.run(main)
