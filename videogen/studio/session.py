"""The studio's state: one Generator loaded once, the jobs it runs and the results made since the
start.

A job runs prompting.run_task on the one Generator, whose compiled samplers (one per shape and
settings) are kept and reused by every later job of that shape. Each result is written by
Generator.write (the project's mp4 writer and JSON sidecar) into a folder of this start, and its
sidecar gains the job's uploads, its warnings and (world models) its world scores. Progress is
reported per sampler call: a job makes one, a loop from a prompt two, an extension one per
window.
"""
import dataclasses
import datetime
import json
import math
import pathlib
import warnings

from videogen.core import media
from videogen.data import world
from videogen.inference import generate
from videogen.inference import prompting
from videogen.studio import choices as choices_lib
from videogen.studio import forms
from videogen.studio import judge as judge_lib


@dataclasses.dataclass(frozen=True)
class Result:
  video: pathlib.Path
  sidecar: pathlib.Path
  task: str
  prompt: str
  shape: tuple[int, ...]
  judgement: judge_lib.Judgement | None  # None: not a world model
  notes: tuple[str, ...]  # warnings while sampling, e.g. an upload cropped to the model's aspect


class _Counting:
  """The Generator, reporting (calls made, calls expected) before each sampler call; everything
  else is the Generator's own."""

  def __init__(self, gen: generate.Generator, expected: int, report):
    self._gen, self._expected, self._report, self._calls = gen, expected, report, 0

  def __getattr__(self, name):
    return getattr(self._gen, name)

  def generate(self, *args, **kwargs):
    self._report(self._calls / self._expected,
                 f'sampling {self._calls + 1} of {self._expected}')
    self._calls += 1
    return self._gen.generate(*args, **kwargs)


def sampler_calls(gen: generate.Generator, job: forms.Job) -> int:
  """How many times the job's task calls the sampler (prompting.py's loops)."""
  if job.task == 'loop' and not job.inputs.video:
    return 2
  if job.task == 'extend':
    window = gen.clip_size(job.settings)[0]
    context = window // 2 if job.inputs.context is None else job.inputs.context
    return max(1, math.ceil(job.inputs.frames / max(1, window - context)))
  return 1


def _shown(folder) -> str:
  """A folder as the page shows it: relative to the working directory when inside it."""
  path = pathlib.Path(folder).absolute()
  return str(path.relative_to(pathlib.Path.cwd()) if path.is_relative_to(pathlib.Path.cwd())
             else path.name)


class Studio:
  """A loaded model and what the studio made with it; see the module docstring."""

  def __init__(self, gen: generate.Generator, out_dir, *, source: str = ''):
    self.gen, self.source = gen, source
    self.choices = choices_lib.of(gen)
    stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
    self.out = media.check_writable_folder(pathlib.Path(out_dir) / stamp)
    self.results: list[Result] = []
    self._drawn: dict[str, world.Scene] = {}  # caption -> world scene, of the drawn prompts
    self._draws = 0

  @classmethod
  def from_workdir(cls, workdir, out_dir, *, step: int | None = None) -> 'Studio':
    """Loads the EMA weights of a run, an export or the reference checkpoint once."""
    return cls(generate.Generator.from_workdir(workdir, step=step), out_dir,
               source=_shown(workdir))

  def draw_prompt(self) -> str:
    """The caption of the next scene of the run's world; its results are scored against it."""
    caption, scene = judge_lib.draw(self.gen.run.config, self._draws)
    self._draws += 1
    self._drawn[caption] = scene
    return caption

  def run(self, job: forms.Job, report=lambda fraction, text: None) -> Result:
    """Samples the job, writes its video and sidecar, scores it; raises ValueError (a bad input
    the forms could not see, e.g. a size the patch does not divide) or MemoryError."""
    self.gen.shape(job.settings)  # the patch divides the size, before anything compiles
    counting = _Counting(self.gen, sampler_calls(self.gen, job), report)
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter('always')
      video = prompting.run_task(counting, job.task, job.prompt, job.seed, job.settings,
                                 job.inputs)
    report(1.0, 'writing and scoring')
    settings = job.settings
    if job.task == 'edit':
      settings = dataclasses.replace(settings, strength=job.inputs.strength)
    path, sidecar = self.gen.write(video[None], [job.prompt], self.out, seeds=[job.seed],
                                   settings=settings, fps=self.choices.fps, task=job.task,
                                   start=len(self.results))
    judgement = None
    if self.choices.world:
      judgement = judge_lib.judge(video, job.prompt, self.gen.run.config,
                                  self._drawn.get(job.prompt))
    notes = tuple(dict.fromkeys(str(w.message) for w in caught
                                if issubclass(w.category, UserWarning)))
    self._extend_sidecar(sidecar, job, judgement, notes)
    result = Result(path, sidecar, job.task, job.prompt, video.shape, judgement, notes)
    self.results.append(result)
    return result

  @staticmethod
  def _extend_sidecar(sidecar: pathlib.Path, job: forms.Job, judgement, notes) -> None:
    record = json.loads(sidecar.read_text(encoding='utf-8'))
    record.update(uploads=job.uploads, notes=list(notes))
    if job.task == 'extend':
      record.update(new_frames=job.inputs.frames, direction=job.inputs.direction)
    if judgement is not None:
      record['world_scores'] = judgement.to_json()
    media.write_json(sidecar, record)

  def gallery(self) -> list[tuple[str, str]]:
    """(video path, caption) of every result since the start, newest first."""
    return [(str(r.video), f'{r.task}: {r.prompt}') for r in reversed(self.results)]

  def describe(self) -> str:
    """One line about the loaded model, for the page's header."""
    c = self.choices
    sizes = ', '.join(c.size_labels)
    kind = 'a world model (results get world scores)' if c.world else 'not a world model'
    return (f'`{self.source or "model"}` at step {self.gen.step}: {kind}; sizes {sizes}; '
            f'{"/".join(map(str, c.lengths))} frames at {c.fps:g} fps.')

