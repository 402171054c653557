"""World scores: the digit reader, identities through a crossing, calibration on the world's own
renders (every score near 1) and on corrupted renders (the matching score falls below 0.5)."""
import dataclasses

import numpy as np
import pytest

from configs import world as world_config
from videogen.data import world
from videogen.data import world_render
from videogen.evals import blobs
from videogen.evals import digit_classifier
from videogen.evals import objects
from videogen.evals import world_eval
from videogen.evals import world_scores
from videogen.inference import generate
from videogen.jobs import scaling

SIDE, FRAMES, FPS = 48, 16, 8.0  # 48 pixels: a small object is 10 across, enough to read kinds
OPTIONS = world.WorldOptions(height=SIDE, width=SIDE, num_frames=FRAMES, fps=FPS,
                             p_occluder=0.5, p_pan=0.3)
SCENES = 30
PALETTE = list(world.PALETTE)


def _render(scene: world.Scene) -> np.ndarray:
  return world_render.render(scene, SIDE, SIDE, FRAMES, FPS)[0]


def _delete_one_midway(scene: world.Scene) -> np.ndarray | None:
  """The clip with its last object that is visible half way through gone from then on."""
  frames, truth = world_render.render(scene, SIDE, SIDE, FRAMES, FPS)
  visible = [k for k, o in enumerate(truth['objects']) if o['state'][FRAMES // 2] == 'visible']
  if not visible:
    return None
  rest = scene.objects[:visible[-1]] + scene.objects[visible[-1] + 1:]
  without = _render(dataclasses.replace(scene, objects=rest))
  return np.concatenate([frames[:FRAMES // 2], without[FRAMES // 2:]])


def _swap_colours(scene: world.Scene) -> np.ndarray:
  """The clip with every object in the next palette colour."""
  recoloured = tuple(dataclasses.replace(o, colour=PALETTE[(PALETTE.index(o.colour) + 1) % 8])
                     for o in scene.objects)
  return _render(dataclasses.replace(scene, objects=recoloured))


CORRUPTIONS = {
    'shuffled': lambda scene, i: _render(scene)[np.random.default_rng(i).permutation(FRAMES)],
    'reversed': lambda scene, i: _render(scene)[::-1],
    'deleted': lambda scene, i: _delete_one_midway(scene),
    'swapped': lambda scene, i: _swap_colours(scene),
}


@pytest.fixture(scope='module')
def calibration() -> dict[str, dict[str, float]]:
  """Mean scores of the sample's clips, as rendered and under each corruption."""
  scenes = [world.sample_scene(OPTIONS, 0, i) for i in range(SCENES)]
  assert any(s.occluder for s in scenes) and any(s.pan for s in scenes)
  assert {o.motion for s in scenes for o in s.objects} == set(world.MOTIONS)
  assert any(o.kind == 'digit' for s in scenes for o in s.objects)
  assert any(len({o.colour for o in s.objects}) < len(s.objects) for s in scenes)
  clips = {'truth': [_render(s) for s in scenes]}
  clips |= {name: [corrupt(s, i) for i, s in enumerate(scenes)]
            for name, corrupt in CORRUPTIONS.items()}
  return {name: world_scores.summarize([world_scores.score_video(clip, scene, FPS)
                                        for clip, scene in zip(videos, scenes)
                                        if clip is not None])
          for name, videos in clips.items()}


def test_the_worlds_own_clips_score_near_one(calibration):
  for name, mean in calibration['truth'].items():
    assert mean >= 0.97, (name, calibration['truth'])


@pytest.mark.parametrize('corruption, category', [
    ('shuffled', 'motion'), ('shuffled', 'physics'), ('reversed', 'motion'),
    ('deleted', 'permanence'), ('swapped', 'adherence')])
def test_corruptions_fail_their_score(calibration, corruption, category):
  assert calibration[corruption][category] < 0.5, calibration[corruption]


def test_digit_reader_reads_held_out_handwriting():
  assert digit_classifier.reader().held_out_accuracy >= 0.95


@pytest.mark.parametrize('direction, offset', [('right', 0.0), ('right', 0.08),
                                               ('down-right', 0.0)])
def test_same_coloured_objects_keep_their_identities_through_a_crossing(direction, offset):
  mirrored = {'right': 'left', 'down-right': 'down-left'}[direction]
  pair = (world.ObjectSpec('red', 'square', None, 0, 'small', 'move', direction, 'fast',
                           0.2, 0.3 if direction == 'down-right' else 0.45),
          world.ObjectSpec('red', 'square', None, 0, 'small', 'move', mirrored, 'fast',
                           0.8, 0.3 + offset if direction == 'down-right' else 0.45 + offset))
  scene = world.Scene((1.0, 1.0), 1.0, pair, 'black', 'plain', 0, None, None)
  frames, truth = world_render.render(scene, SIDE, SIDE, 12, 11.0)
  tracks = objects.analyse(frames).tracks
  assert len(tracks) == 2 and all(any(t.merged_t) for t in tracks)  # they did overlap
  for track in tracks:
    path = track.centres(track.seen())
    start = [np.linalg.norm(np.subtract(o['centre'][0], path[0])) for o in truth['objects']]
    own = truth['objects'][int(np.argmin(start))]
    np.testing.assert_allclose(path[-1], own['centre'][-1], atol=1.5)


def test_other_sizes_and_missing_frames_are_scored_not_rejected():
  scene = world.sample_scene(OPTIONS, 0, 1)  # a still orange triangle and a red square moving up
  larger, _ = world_render.render(scene, 64, 64, 20, FPS)
  scores = world_scores.score_video(larger, scene, FPS)
  assert scores.adherence == scores.motion == scores.permanence == 1.0
  short = world_scores.score_video(_render(scene)[:12], scene, FPS)
  assert short.adherence == pytest.approx(12 / FRAMES)
  assert 'frames missing' in short.reasons['adherence']
  empty = world_scores.score_video(np.zeros((0, SIDE, SIDE, 3), np.uint8), scene, FPS)
  assert empty.adherence == 0.0 and empty.reasons['motion'] == 'no frames'


def test_scores_that_do_not_apply_are_none_and_failures_say_why():
  scene = world.Scene((1.0, 1.0), 1.0, (world.ObjectSpec(
      'green', 'circle', None, 0, 'large', 'still', None, None, 0.5, 0.5),), 'navy', 'plain', 0,
                      None, None)
  blank = np.broadcast_to(np.uint8(world.BACKGROUNDS['navy']), (9, SIDE, SIDE, 3))
  scores = world_scores.score_video(blank, scene, FPS)
  assert scores.physics is None and scores.permanence is None and scores.adherence == 0.0
  assert scores.reasons['adherence'] == 'green circle not found'


def test_bad_input_raises():
  scene = world.sample_scene(OPTIONS, 0, 1)
  with pytest.raises(ValueError, match=r'\(16, 48, 48\)'):
    world_scores.score_video(np.zeros((16, SIDE, SIDE), np.uint8), scene, FPS)
  with pytest.raises(ValueError, match='float32'):
    world_scores.score_video(np.zeros((16, SIDE, SIDE, 3), np.float32), scene, FPS)
  with pytest.raises(ValueError, match='fps=0'):
    world_scores.score_video(_render(scene), scene, 0)


def test_the_worlds_own_clips_score_near_one_at_the_cpu_models_size():
  """The CPU models sample 32x32x8 clips at 8 fps: falls there span 3 frames, occluded objects
  are small (the scaling study's world)."""
  config = scaling.study_config(world_config.get_config(), 'T/2')
  w = config.world
  options = world.WorldOptions.from_config(w)
  scenes = [world.sample_scene(options, 1, i) for i in range(SCENES)]
  assert any(s.occluder for s in scenes) and any(o.motion == 'fall' for s in scenes
                                                 for o in s.objects)
  means = world_scores.summarize([world_scores.score_video(
      world_render.render(s, w.height, w.width, w.num_frames, w.fps)[0], s, w.fps) for s in scenes])
  assert min(means.values()) >= 0.97, means


def test_tracks_and_blobs_compare_by_identity():
  """Generated videos stitch tracks of one colour seen in the same frames; removing one from a
  list compares it with the others, which must not compare their arrays."""
  blob = lambda x: blobs.Blob(np.array([x, 1.0]), np.array([0, 0, 2, 2]), np.ones((2, 2), bool),
                              True)
  first, second = (objects.Track('red', [None, blob(x)], [False, False]) for x in (1.0, 5.0))
  tracks = [first, second]
  tracks.remove(second)
  assert tracks == [first] and first != second and blob(1.0) != blob(1.0)


@pytest.mark.parametrize('aspect, size', [('1:1', (32, 32)), ('16:9', (24, 40)),
                                          ('9:16', (40, 24))])
def test_the_worlds_own_clips_score_near_one_at_each_training_aspect(aspect, size):
  """eval_world --aspects samples the main config's prompts at these sizes: the scores must
  read the world's own renders there as right."""
  config, settings = world_eval.at_aspect(world_config.get_config(), generate.SampleSettings(),
                                          aspect)
  assert (settings.height, settings.width, settings.num_frames) == (*size, 8)
  w = config.world
  prompts = world_eval.prompt_set(config, num_train=12, num_held_out=0)
  scored = [world_eval.ScoredVideo(p, world_scores.score_video(
      world_render.render(p.scene, *size, w.num_frames, w.fps)[0], p.scene, w.fps)) for p in prompts]
  rows = world_eval.aspect_rows({aspect: (settings, scored), 'blank': (settings, scored[:1])},
                                reference=aspect)
  assert rows[0]['adherence'] >= 0.97 and rows[0]['motion'] >= 0.97, rows[0]
  assert rows[0][f'adherence_vs_{aspect}'] == 0.0
  assert rows[1]['size'] == f'{size[0]}x{size[1]}' and rows[1]['videos'] == 1
