"""Exports a run's sampling weights (EMA params + config, no optimizer state) to a small folder.

  python experiments/export.py --workdir outputs/reference/run --out reference/world_t2

`experiments/sample.py --workdir OUT` and `Generator.from_workdir(OUT)` read the export.
"""
from absl import app
from absl import flags
from absl import logging

from videogen.inference import generate
from videogen.core import tables

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training run to export.', required=True)
_OUT = flags.DEFINE_string('out', None, 'Folder to write.', required=True)
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: newest).')
_NOTE = flags.DEFINE_string('note', '', 'Free text stored in export.json (e.g. the command).')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  gen = generate.Generator.from_workdir(_WORKDIR.value, step=_STEP.value)
  print('exported to', gen.export(_OUT.value, git_revision=tables.revision(), note=_NOTE.value))


if __name__ == '__main__':
  app.run(main)
