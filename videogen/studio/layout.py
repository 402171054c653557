"""The studio's page (Gradio Blocks) and how it is served.

Left: the prompt and negative prompt, one tab per task the model does (each with its own inputs
and a Generate button), and the sampler settings every task shares (sizes and lengths are the
model's, choices.py). Right: the result (mp4), its JSON sidecar and, for world models, its world
scores with the analyser's reasons. Below: a gallery of every result since the start.

Each tab's button is also an API endpoint named after its task (`/text`, `/image`, `/extend`,
`/loop`, `/connect`, `/keyframes`, `/edit`; gradio_client calls them) taking the shared fields,
then the tab's own (forms.TASK_FIELDS), and returning (video, sidecar, scores, gallery). All
jobs share one queue slot: one samples at a time, the rest wait their turn. A bad input is a
gr.Error of one sentence, never a stack trace.
"""
import dataclasses
import inspect

import gradio as gr

from videogen.studio import forms
from videogen.studio import session

TITLES = {'text': 'Text → video', 'image': 'Image → video', 'extend': 'Extend', 'loop': 'Loop',
          'connect': 'Connect', 'keyframes': 'Keyframes', 'edit': 'Edit (SDEdit)'}
UPLOADS = list(forms.READABLE)
SHARED_FIELDS = tuple(f.name for f in dataclasses.fields(forms.Shared))
_SAMPLER_SLOT = 'sampler'  # the concurrency id every job shares


def _prompt_fields(studio: session.Studio) -> list:
  """The prompt (with, for world models, a button that draws one from the world) and the
  negative prompt."""
  with gr.Row(equal_height=True):
    prompt = gr.Textbox(label='Prompt', lines=2, elem_id='prompt', scale=4,
                        placeholder='A red circle drifts slowly to the right.')
    if studio.choices.world:
      draw = gr.Button('Draw a prompt from the world', size='sm', scale=1)
      draw.click(studio.draw_prompt, None, prompt, api_name='world_prompt', queue=False)
  negative = gr.Textbox(label='Negative prompt (text guidance steers away from it)')
  return [prompt, negative]


def _sampler_fields(studio: session.Studio) -> list:
  """Seed, steps, sampler, guidance, size and length: the model's own sizes and lengths, and
  its config's sampling defaults."""
  c, sample = studio.choices, studio.gen.run.config.get('sample', {})
  with gr.Accordion('Sampler', open=True), gr.Row():
    with gr.Column():
      seed = gr.Number(0, label='Seed', precision=0)
      steps = gr.Slider(1, 100, value=sample.get('steps', 25), step=1, label='Steps')
      method = gr.Dropdown(list(c.methods), value=sample.get('method', 'heun'),
                           label='Sampler')
      cfg = gr.Slider(1, 12, value=sample.get('cfg_scale', 4.0), step=0.5,
                      label='Text guidance')
    with gr.Column():
      frame_cfg = gr.Slider(1, 12, value=1.0, step=0.5,
                            label='Frame guidance (tasks with given frames)')
      size = gr.Dropdown(c.size_labels, value=c.size_labels[0], allow_custom_value=True,
                         label='Size (width x height)')
      length = gr.Dropdown(list(c.lengths), value=c.lengths[0], allow_custom_value=True,
                           label='Frames per window')
  return [seed, steps, method, cfg, frame_cfg, size, length]


def _upload(label: str) -> gr.File:
  return gr.File(label=label, file_types=UPLOADS, type='filepath')


def _task_fields(task: str, window: int) -> list:
  """The tab's own inputs, in forms.TASK_FIELDS' order."""
  new_frames = lambda: gr.Number(max(1, window - 2), label='New frames', precision=0)  # noqa: E731
  if task == 'image':
    return [_upload('Image to animate (its first frame)')]
  if task == 'extend':
    return [_upload('Video to extend'), gr.Number(window, label='New frames', precision=0),
            gr.Radio(['forward', 'backward'], value='forward', label='Direction'),
            gr.Number(None, label='Context frames per window (empty: half the window)',
                      precision=0)]
  if task == 'loop':
    return [_upload('Video to loop (empty: made from the prompt)'), new_frames()]
  if task == 'connect':
    return [_upload('First video (the transition starts at its end)'),
            _upload('Second video (the transition leads into its start)'), new_frames()]
  if task == 'keyframes':
    return [gr.File(label='Keyframe images', file_types=UPLOADS, type='filepath',
                    file_count='multiple'),
            gr.Textbox('0, -1', label='Frame of each image, in upload order (-1: the last)')]
  if task == 'edit':
    return [_upload('Video to edit'),
            gr.Slider(0, 1, value=0.6, step=0.05, label='Strength (0 keeps it, 1 ignores it)')]
  return []


def _handler(studio: session.Studio, task: str):
  """The button's function: form -> job -> result, bad input as one sentence. Its signature
  names the fields (the API's parameter names) and ends with the progress tracker that Gradio
  fills in."""
  names = forms.TASK_FIELDS[task]

  def run(*values):
    *values, progress = values
    shared, own = values[:len(SHARED_FIELDS)], values[len(SHARED_FIELDS):]
    try:
      job = forms.job(task, forms.Shared(*shared), dict(zip(names, own)), studio.choices)
      progress(0.0, desc='starting')
      result = studio.run(job, report=lambda fraction, text: progress(fraction, desc=text))
    except (ValueError, FileNotFoundError, MemoryError) as error:
      raise gr.Error(_sentence(error), print_exception=False) from None
    for note in result.notes:
      gr.Warning(note)
    scores = result.judgement.markdown() if result.judgement else ''
    return str(result.video), str(result.sidecar), scores, studio.gallery()

  field = lambda name, **default: inspect.Parameter(  # noqa: E731
      name, inspect.Parameter.POSITIONAL_OR_KEYWORD, **default)
  run.__signature__ = inspect.Signature(
      [field(name) for name in SHARED_FIELDS + names] + [field('progress', default=gr.Progress())])
  run.__name__ = task
  return run


def _sentence(error: Exception) -> str:
  """The error's message with its first letter capitalised."""
  text = str(error).strip()
  return text[:1].upper() + text[1:]


def build(studio: session.Studio) -> gr.Blocks:
  """The page of a loaded studio."""
  c = studio.choices
  with gr.Blocks(title='videogen studio', analytics_enabled=False) as page:
    gr.Markdown(f'## videogen studio\n{studio.describe()}')
    with gr.Row():
      with gr.Column(scale=3):
        prompts = _prompt_fields(studio)
        tabs = {}
        with gr.Tabs():
          for task in c.tasks:
            with gr.Tab(TITLES[task], id=task):
              tabs[task] = (_task_fields(task, c.lengths[0]),
                            gr.Button('Generate', variant='primary', elem_id=f'run-{task}'))
        shared = prompts + _sampler_fields(studio)
      with gr.Column(scale=2):
        video = gr.Video(label='Result', autoplay=True, loop=True, elem_id='result',
                         interactive=False)
        sidecar = gr.File(label='JSON sidecar (prompt, seed, settings, scores)',
                          interactive=False)
        scores = gr.Markdown(label='World scores', visible=c.world, elem_id='scores')
    gallery = gr.Gallery(label='Made since the studio started', columns=6, height=260,
                         preview=False)
    outputs = [video, sidecar, scores, gallery]
    for task, (fields, button) in tabs.items():
      button.click(_handler(studio, task), shared + fields, outputs, api_name=task,
                   concurrency_limit=1, concurrency_id=_SAMPLER_SLOT)
    page.load(studio.gallery, None, gallery, queue=False)
  return page


def launch(page: gr.Blocks, studio: session.Studio, *, host: str = '127.0.0.1',
           port: int = 7860, share: bool = False, block: bool = True) -> str:
  """Serves the page on host:port (a public Gradio link only with `share`); returns its local
  URL. With block=False it returns at once and the server runs until page.close()."""
  page.queue(default_concurrency_limit=1)
  page.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block,
              allowed_paths=[str(studio.out)], ssr_mode=False, quiet=not block,
              footer_links=['api'])
  return page.local_url
