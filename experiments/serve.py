"""Serves a web studio for a trained run, an export or the reference checkpoint.

  python experiments/serve.py --workdir reference/world_t2          # http://127.0.0.1:7860
  python experiments/serve.py --workdir outputs/demo/run --port 7861 --out outputs/studio
  python experiments/serve.py --workdir RUN --host 0.0.0.0          # reachable on your network
  python experiments/serve.py --workdir RUN --share                 # a public Gradio link

The page (videogen/studio/) has a tab per prompting task: text to video, image to video, extend
(forward or backward), loop, connect two videos, keyframes and SDEdit, with uploads; the
prompt, negative prompt, seed, steps, sampler, guidance, size and length are shared by all, and
sizes and lengths are offered within what the model samples. Each result plays as an mp4 beside
its JSON sidecar (downloadable) and, for a model of the procedural world, its world scores with
the reasons; a gallery keeps every result since the start. The model loads once, one job runs
at a time, and each sampler shape compiles once. Results go to OUT/<start time>/. Every tab is
also an API endpoint (`/text`, `/image`, ...; see the page's "Use via API" link).
"""
from absl import app
from absl import flags
from absl import logging

from videogen.runtime import huge_pages
from videogen.studio import layout
from videogen.studio import session

_WORKDIR = flags.DEFINE_string('workdir', None, 'Run folder written by experiments/train.py, a '
                               'folder written by experiments/export.py, or reference/world_t2.',
                               required=True)
_HOST = flags.DEFINE_string('host', '127.0.0.1', 'Address to listen on (default: this machine '
                            'only; 0.0.0.0 listens on every interface).')
_PORT = flags.DEFINE_integer('port', 7860, 'Port to listen on.')
_SHARE = flags.DEFINE_bool('share', False, 'Also open a public Gradio share link.')
_OUT = flags.DEFINE_string('out', 'outputs/studio', 'Folder for the results (one subfolder per '
                           'start).')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: newest).')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO.
  studio = session.Studio.from_workdir(_WORKDIR.value, _OUT.value, step=_STEP.value)
  layout.launch(layout.build(studio), studio, host=_HOST.value, port=_PORT.value,
                share=_SHARE.value)


if __name__ == '__main__':
  huge_pages.reexec_with_huge_pages()
  app.run(main)
