"""The studio (videogen/studio/) through its API, as gradio_client calls it: a server started in
this process on a free loopback port serves an export of the tiny runlocal model (random
weights, so prompts and seeds give different videos). Every tab returns an mp4 that reads back
at the shape its task makes, with a JSON sidecar and world scores; bad input is one sentence;
the sampler compiles once per shape; progress is reported per sampler call. The runner and a
real browser: tests/test_studio_browser.py."""
import dataclasses
import json
import os
import socket

import numpy as np
import pytest

gradio_client = pytest.importorskip('gradio_client', reason='the studio extra is not installed: '
                                    'pip install -e ".[studio]"')

from videogen.core import media  # noqa: E402
from videogen.studio import forms  # noqa: E402
from videogen.studio import judge  # noqa: E402
from videogen.studio import layout  # noqa: E402
from videogen.studio import session  # noqa: E402

import random_generator  # noqa: E402

PROMPT = 'A red circle drifts slowly to the right.'


def shared(prompt=PROMPT, size='16x16', length=2, seed=0):
  """The fields every tab shares (forms.Shared's order): 2 Euler steps."""
  return [prompt, '', seed, 2, 'euler', 2.0, 1.5, size, length]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def tiny_export(folder) -> str:
  """An export of the runlocal model (16x16, 2 frames, patch 1x8x8) with random weights."""
  return str(random_generator.runlocal_generator(step=3).export(folder))


@pytest.fixture(scope='module')
def studio(tmp_path_factory):
  return session.Studio.from_workdir(tiny_export(tmp_path_factory.mktemp('export')),
                                     tmp_path_factory.mktemp('studio'))


@pytest.fixture(scope='module')
def client(studio):
  page = layout.build(studio)
  url = layout.launch(page, studio, port=free_port(), block=False)
  yield gradio_client.Client(url, verbose=False)
  page.close()


def clip(tmp_path, name, frames, seed=0):
  """A smooth clip (H.264 keeps it close) written as `name`; returns its path."""
  rng = np.random.default_rng(seed)
  ramp = np.linspace(0, 1, 16)[None, :, None, None] * rng.integers(60, 255, (frames, 1, 1, 3))
  video = np.broadcast_to(ramp, (frames, 16, 16, 3)).astype(np.uint8)
  if frames == 1:
    return str(media.write_image(tmp_path / name, video[0]))
  return str(media.write_video(tmp_path / name, video, fps=8))


def call(client, task, *own, **changes):
  """(frames read back from the mp4, sidecar record, scores markdown, gallery) of one job."""
  handle = gradio_client.handle_file
  own = [[handle(p) for p in x] if isinstance(x, list) else
         handle(x) if isinstance(x, str) and os.path.isfile(x) else x for x in own]
  video, sidecar, scores, gallery = client.predict(*shared(**changes), *own,
                                                   api_name=f'/{task}')
  with open(sidecar, encoding='utf-8') as f:
    record = json.load(f)
  return media.read_video(video), record, scores, gallery


def test_choices_offer_the_model_sizes_and_lengths(studio):
  c = studio.choices
  assert c.sizes[0] == (16, 16) and set(c.sizes) == {(16, 16), (16, 32), (24, 16), (16, 24)}
  assert c.lengths == (2,)  # the world's 2 frames; 1 (an image) is left out
  assert c.world and c.tasks == ('text', 'image', 'extend', 'loop', 'connect', 'keyframes',
                                 'edit')


def test_text_to_video_plays_with_its_sidecar_scores_and_gallery(client, studio):
  frames, record, scores, gallery = call(client, 'text', seed=1)
  assert frames.shape == (2, 16, 16, 3)
  assert record['prompt'] == PROMPT and record['task'] == 'text' and record['seed'] == 1
  assert record['steps'] == 2 and record['method'] == 'euler' and record['checkpoint_step'] == 3
  assert set(record['world_scores']['scores']) >= {'adherence', 'motion', 'physics'}
  assert '| adherence |' in scores and '| motion |' in scores
  assert gallery[0]['caption'] == f'text: {PROMPT}'
  wide, record, _, later = call(client, 'text', size='32x16')
  assert wide.shape == (2, 16, 32, 3) and record['width'] == 32
  assert len(later) == len(gallery) + 1


def test_the_sampler_compiles_once_per_shape(client, studio):
  call(client, 'text', seed=2)
  compiled = len(studio.gen._samplers)  # pylint: disable=protected-access
  first = call(client, 'text', seed=3)[0]
  assert len(studio.gen._samplers) == compiled  # pylint: disable=protected-access
  assert not np.array_equal(first, call(client, 'text', seed=4)[0])  # seeds matter


def test_image_to_video_starts_on_the_image(client, tmp_path):
  still = clip(tmp_path, 'still.png', 1)
  frames, record, _, _ = call(client, 'image', still)
  assert frames.shape == (2, 16, 16, 3) and record['uploads'] == {'image': 'still.png'}
  assert np.abs(frames[0].astype(int) - media.read_video(still)[0]).mean() < 4


@pytest.mark.parametrize('direction', ['forward', 'backward'])
def test_extend_adds_the_frames_asked(client, tmp_path, direction):
  frames, record, _, _ = call(client, 'extend', clip(tmp_path, 'in.mp4', 3), 3, direction, 1)
  assert frames.shape == (6, 16, 16, 3)  # 3 given + 3 windows of 1 new frame each
  assert record['direction'] == direction and record['new_frames'] == 3


def test_loop_connect_keyframes_and_edit_make_their_lengths(client, tmp_path):
  a, b = clip(tmp_path, 'a.mp4', 3, 1), clip(tmp_path, 'b.gif', 2, 2)
  assert call(client, 'loop', None, 2)[0].shape == (4, 16, 16, 3)  # 2 made, 2 leading back
  assert call(client, 'loop', a, 2)[0].shape == (5, 16, 16, 3)
  assert call(client, 'connect', a, b, 2)[0].shape == (4, 16, 16, 3)  # 1 + 2 new + 1
  first, last = clip(tmp_path, 'k0.png', 1, 3), clip(tmp_path, 'k1.jpg', 1, 4)
  frames, record, _, _ = call(client, 'keyframes', [first, last], '0, -1')
  assert frames.shape == (2, 16, 16, 3) and record['uploads']['keyframes'] == ['k0.png', 'k1.jpg']
  frames, record, _, _ = call(client, 'edit', b, 0.5)
  assert frames.shape == (2, 16, 16, 3) and record['strength'] == 0.5


@pytest.mark.parametrize('task, own, changes, message', [
    ('text', (), {'prompt': '  '}, 'The prompt is empty: describe the video'),
    ('text', (), {'size': '20x20'}, 'Height 20 is not divisible by patch height 8'),
    ('text', (), {'size': 'big'}, "Size 'big' is not WIDTHxHEIGHT in pixels: pick one of 16x16"),
    ('image', ('broken.mp4',), {}, "The image to animate 'broken.mp4' cannot be read as a video"),
    ('image', (None,), {}, 'The image to animate is missing: upload a video or image'),
    ('keyframes', (['k.png'], '0, -1'), {}, "Frame indices '0, -1' must be 1 whole numbers"),
    ('edit', ('k.png', 0.5), {}, "The video to edit 'k.png' has 1 frame: upload a video"),
    ('extend', ('k.png', 0, 'forward', None), {}, 'New frames 0 is not a whole number from 1'),
])
def test_bad_input_is_one_clear_sentence(client, tmp_path, task, own, changes, message):
  (tmp_path / 'broken.mp4').write_bytes(b'not a video at all')
  clip(tmp_path, 'k.png', 1)
  own = [[str(tmp_path / p) for p in x] if isinstance(x, list) else
         str(tmp_path / x) if isinstance(x, str) and x.endswith(('.mp4', '.png')) else x
         for x in own]
  with pytest.raises(gradio_client.exceptions.AppError) as caught:
    call(client, task, *own, **changes)
  text = str(caught.value)
  assert text.startswith(message) and text.endswith(('.', '."')) and '\n' not in text
  assert 'Traceback' not in text and str(tmp_path) not in text  # no stack, no server paths


def test_progress_is_reported_per_sampler_call(studio, tmp_path):
  reports = []
  job = forms.job('extend', forms.Shared(*shared()),
                  {'video': clip(tmp_path, 'in.mp4', 2), 'frames': 3, 'context': 1},
                  studio.choices)
  studio.run(job, report=lambda fraction, text: reports.append((round(fraction, 2), text)))
  assert reports == [(0.0, 'sampling 1 of 3'), (0.33, 'sampling 2 of 3'),
                     (0.67, 'sampling 3 of 3'), (1.0, 'writing and scoring')]


def test_drawn_world_prompts_are_scored_against_their_scene(client, studio):
  prompt = client.predict(api_name='/world_prompt')
  assert prompt in studio._drawn  # pylint: disable=protected-access
  _, record, scores, _ = call(client, 'text', prompt=prompt)
  assert record['world_scores']['scores'] is not None and '| adherence |' in scores


def test_typed_prompts_become_scenes_or_say_what_they_lack(studio):
  config, video = studio.gen.run.config, np.zeros((2, 16, 32, 3), np.uint8)
  scene = judge.scene_of('A blue 7 falls. The camera pans left over a textured backdrop.',
                         config, video)
  (obj,) = scene.objects
  assert (obj.colour, obj.kind, obj.digit, obj.motion) == ('blue', 'digit', 7, 'fall')
  assert scene.pan == 'left' and scene.background_style == 'texture' and scene.view == (2, 1)
  moving = judge.scene_of(PROMPT, config, video).objects[0]  # the world moves every object
  assert (moving.motion, moving.direction, moving.speed) == ('move', 'right', 'slow')
  unsaid = judge.judge(video, 'A green square moves up.', config)
  assert unsaid.scores is None and 'how fast the green object moves (slow or fast)' in unsaid.note
  assert 'names no object' in judge.judge(video, 'Something happens.', config).note


def test_forms_turn_the_page_fields_into_a_job(studio, tmp_path):
  job = forms.job('connect', forms.Shared(*shared(size='32x16', seed=7.0)),
                  {'video': clip(tmp_path, 'a.mp4', 2), 'video_b': clip(tmp_path, 'b.mp4', 2),
                   'frames': 2.0}, studio.choices)
  assert (job.seed, job.settings.height, job.settings.width) == (7, 16, 32)
  assert job.inputs.frames == 2 and job.uploads == {'video': 'a.mp4', 'video_b': 'b.mp4'}
  with pytest.raises(ValueError, match="sampler 'ddim' is unknown"):
    forms.settings(forms.Shared(*shared()[:4], 'ddim', *shared()[5:]), studio.choices)
  latent = dataclasses.replace(studio.choices, latent=True)
  with pytest.raises(ValueError, match='a latent model extends forward only'):
    forms.task_inputs('extend', {'video': clip(tmp_path, 'a.mp4', 2), 'frames': 1,
                                 'direction': 'backward'}, latent)

