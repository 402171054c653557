"""Prompting-task scores on the world's own renders standing in for a model's outputs: only
made frames count, the object must keep its kind, and an extension must not jump at the join."""
import dataclasses

import numpy as np
import pytest

from videogen.data import world
from videogen.data import world_render
from videogen.evals import prompting_tasks

SIDE, FRAMES, FPS = 48, 8, 8.0  # 48 pixels: a large object is 17 across, its kind readable
HALF = FRAMES // 2
RED_CIRCLE = world.ObjectSpec(colour='red', kind='circle', digit=None, variant=0, size='large',
                              motion='move', direction='right', speed='slow', x=0.22, y=0.5)
SCENE = world.Scene(view=(1.0, 1.0), duration=(FRAMES - 1) / FPS, objects=(RED_CIRCLE,),
                    background='black', background_style='plain', background_seed=0,
                    occluder=None, pan=None)


def _render(*objects: world.ObjectSpec) -> np.ndarray:
  return world_render.render(dataclasses.replace(SCENE, objects=objects), SIDE, SIDE, FRAMES, FPS)[0]


def _circle(**changes) -> world.ObjectSpec:
  return dataclasses.replace(RED_CIRCLE, **changes)


def _outputs(truth: np.ndarray, made: np.ndarray) -> dict[str, np.ndarray]:
  """Per task, an output with the truth on its given frames and `made` on the frames it makes."""
  keyframes = made.copy()
  keyframes[[0, HALF, -1]] = truth[[0, HALF, -1]]
  return {'image_to_video': np.concatenate([truth[:1], made[1:]]),
          'connect': np.concatenate([truth[:1], made[1:-1], truth[-1:]]),
          'keyframes': keyframes,
          'loop': np.concatenate([truth, made[-2:0:-1]])}


def _score(task: str, video: np.ndarray, truth: np.ndarray) -> prompting_tasks.TaskScore:
  return prompting_tasks.score_task(task, [video], [truth], [SCENE], FPS)


TRUTH = _render(RED_CIRCLE)
PRESENCE_TASKS = ('image_to_video', 'connect', 'keyframes', 'loop')


@pytest.mark.parametrize('task', PRESENCE_TASKS)
def test_the_truth_shows_the_object_on_every_made_frame(task):
  score = _score(task, _outputs(TRUTH, TRUTH)[task], TRUTH)
  assert (score.value, score.given_error, score.passed) == (100.0, 0, True)


@pytest.mark.parametrize('task', PRESENCE_TASKS)
def test_given_frames_alone_score_nothing(task):
  score = _score(task, _outputs(TRUTH, _render())[task], TRUTH)
  assert (score.value, score.given_error, score.passed) == (0.0, 0, False)


@pytest.mark.parametrize('task', PRESENCE_TASKS)
def test_the_right_colour_in_the_wrong_shape_is_not_the_object(task):
  score = _score(task, _outputs(TRUTH, _render(_circle(kind='square')))[task], TRUTH)
  assert (score.value, score.passed) == (0.0, False)


@pytest.mark.parametrize('direction', ['forward', 'backward'])
def test_an_extension_that_jumps_at_the_join_fails_and_a_continuous_one_passes(direction):
  task = f'extend_{direction}'
  jumped = _render(_circle(x=RED_CIRCLE.x + 0.3))  # moving as the truth does, 14 pixels on
  video = (np.concatenate([TRUTH[:HALF], jumped[HALF:]]) if direction == 'forward' else
           np.concatenate([jumped[:HALF], TRUTH[HALF:]]))
  continuous = _score(task, TRUTH, TRUTH)
  assert (continuous.value, continuous.passed, continuous.detail) == (100.0, True, 'right→right')
  jump = _score(task, video, TRUTH)
  assert (jump.value, jump.given_error, jump.passed) == (0.0, 0, False)
  assert jump.detail.startswith('right→right jumps ')  # the truth's way, but not from there


def test_an_unknown_task_is_a_clear_error():
  with pytest.raises(ValueError, match="task 'edit' has no frame score"):
    _score('edit', TRUTH, TRUTH)
