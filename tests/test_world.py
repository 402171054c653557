"""The procedural world: determinism, sizes, captions vs truth, occlusion, held-out, physics."""
import collections
import dataclasses
import json
import pickle
import re

import grain
import ml_collections
import numpy as np
import pytest

from videogen.data import captions
from videogen.data import world
from videogen.data import world_render
from videogen.data.world_source import WorldSource
from videogen.evals import tracking


def _world_direction(truth_object: dict, camera: list, min_px: float) -> str:
  """Measured direction of an object in the world: view centres plus the camera's offset."""
  return tracking.motion_direction(np.add(truth_object['centre'], camera), min_px)


def test_same_seed_and_index_give_the_same_clip_and_other_indices_differ():
  options = world.WorldOptions(height=24, width=24, num_frames=4)
  first = world_render.render(world.sample_scene(options, 7, 3), 24, 24, 4, 8.0)
  again = world_render.render(world.sample_scene(options, 7, 3), 24, 24, 4, 8.0)
  np.testing.assert_array_equal(first[0], again[0])
  assert first[1] == again[1]
  for other in (world.sample_scene(options, 7, 4), world.sample_scene(options, 8, 3)):
    assert not np.array_equal(world_render.render(other, 24, 24, 4, 8.0)[0], first[0])


@pytest.mark.parametrize('height, width, num_frames', [(16, 16, 1), (24, 40, 5), (48, 20, 3)])
def test_renders_at_several_sizes_with_truth_per_frame(height, width, num_frames):
  options = world.WorldOptions(height=height, width=width, num_frames=num_frames, p_pan=0.5)
  for index in range(5):
    scene = world.sample_scene(options, 0, index)
    frames, truth = world_render.render(scene, height, width, num_frames, 6.0)
    assert frames.shape == (num_frames, height, width, 3) and frames.dtype == np.uint8
    assert len(truth['objects']) == len(scene.objects) and len(truth['camera']) == num_frames
    for obj in truth['objects']:
      assert len(obj['centre']) == len(obj['bbox']) == len(obj['state']) == num_frames
      assert set(obj['state']) <= set(world.STATES)
      assert all(0 <= v <= 1 for v in obj['visible_fraction'])
    json.dumps(truth)
  double, _ = world_render.render(scene, 2 * height, 2 * width, num_frames, 6.0)
  assert double.shape == (num_frames, 2 * height, 2 * width, 3)
  with pytest.raises(ValueError, match='aspect'):
    world_render.render(scene, height, 3 * width, num_frames, 6.0)


def test_physics_is_the_same_at_any_resolution_and_frame_rate():
  options = world.WorldOptions(height=32, width=48, num_frames=9, fps=8.0, p_pan=0.5)
  for index in range(6):
    scene = world.sample_scene(options, 1, index)
    _, coarse = world_render.render(scene, 32, 48, 9, 8.0)
    _, fine = world_render.render(scene, 64, 96, 17, 16.0)
    for slow, fast in zip(coarse['objects'], fine['objects']):
      np.testing.assert_allclose(np.array(fast['centre'])[::2], 2 * np.array(slow['centre']),
                                 atol=0.02)
    np.testing.assert_allclose(np.array(fine['camera'])[::2], 2 * np.array(coarse['camera']),
                               atol=0.01)


def _truth_description(scene: world.Scene, truth: dict, min_px: float) -> list[tuple]:
  described = []
  for spec, obj in zip(scene.objects, truth['objects']):
    measured = _world_direction(obj, truth['camera'], min_px)
    expected = {'still': 'still', 'fall': 'down', 'move': spec.direction}[spec.motion]
    assert measured == expected, (spec, measured)
    direction = measured if spec.motion == 'move' else None
    described.append((obj['colour'], obj['kind'], obj['digit'], spec.motion, direction))
  return sorted(described, key=str)


def test_caption_agrees_with_measured_truth_and_parses_back():
  options = world.WorldOptions(height=32, width=32, num_frames=10, p_pan=0.3, p_occluder=0.3)
  for index, traits_index in [(i, i) for i in range(60)] + [(i, i - i % 3) for i in range(30)]:
    scene = world.sample_scene(options, 2, index, traits_index=traits_index)
    _, truth = world_render.render(scene, 32, 32, 10, 8.0)
    text = world.caption(scene, index)
    parsed = world.parse_prompt(text)
    assert len(parsed) == len(scene.objects), text
    got = sorted(((p['colour'], p['kind'], p['digit'], p['motion'], p['direction'])
                  for p in parsed), key=str)
    assert got == _truth_description(scene, truth, min_px=2.0), text
    assert ('The camera pans' in text) == (scene.pan is not None)
    assert ('gray bar' in text) == (scene.occluder is not None)


def test_pixel_track_agrees_with_caption_for_single_unoccluded_objects():
  options = world.WorldOptions(height=32, width=40, num_frames=10, max_objects=1,
                               p_pan=0.0, p_occluder=0.0)
  for index in range(40):
    scene = world.sample_scene(options, 3, index)
    frames, truth = world_render.render(scene, 32, 40, 10, 8.0)
    (said,) = world.parse_prompt(world.caption(scene, index))
    track = tracking.track(frames, said['colour'])
    np.testing.assert_allclose(track, truth['objects'][0]['centre'], atol=1.0)
    expected = {'still': 'still', 'fall': 'down', 'move': said['direction']}[said['motion']]
    assert tracking.motion_direction(track, 2.0) == expected


def test_captions_vary_with_the_seed():
  scene = world.sample_scene(world.WorldOptions(min_objects=2), 0, 0)
  assert len({world.caption(scene, seed) for seed in range(20)}) >= 10


def test_parse_prompt_reads_a_written_prompt():
  text = ('A red circle drifts slowly to the right on a dark background while a blue 7 '
          'falls and bounces. The camera pans left.')
  assert world.parse_prompt(text) == [
      {'colour': 'red', 'kind': 'circle', 'digit': None, 'motion': 'move',
       'direction': 'right', 'speed': 'slow'},
      {'colour': 'blue', 'kind': 'digit', 'digit': 7, 'motion': 'fall',
       'direction': None, 'speed': None}]
  assert set(captions.DIRECTION_PHRASES) == set(world.DIRECTIONS)


def test_occluder_hides_a_crossing_object_and_reveals_it():
  options = world.WorldOptions(height=32, width=32, num_frames=8, max_objects=1,
                               p_occluder=1.0, p_pan=0.0)
  for index in range(10):
    scene = world.sample_scene(options, 4, index)
    assert scene.occluder is not None
    frames, truth = world_render.render(scene, 32, 32, 8, 8.0)
    obj = truth['objects'][0]
    state, fraction = obj['state'], np.array(obj['visible_fraction'])
    hidden = np.nonzero(fraction == 0)[0]
    assert hidden.size, obj
    assert state[0] == 'visible' and state[-1] == 'visible' and state[hidden[0]] == 'occluded'
    pixels = tracking.colour_mask(frames, obj['colour']).sum((1, 2))
    assert (pixels[hidden] == 0).all() and pixels[0] > 5 and pixels[-1] > 5
    axis = 0 if scene.occluder.orientation == 'vertical' else 1
    side = np.sign(np.array(obj['centre'])[:, axis] - scene.occluder.centre * 32)
    assert side[0] == -side[-1]  # it came out on the other side


def test_held_out_combinations_never_train_and_always_appear_in_held_out():
  options = world.WorldOptions(held_out=('green triangle', '7 moving up', 'blue digit'))
  held = lambda o: ((o.colour, o.kind) == ('green', 'triangle')  # noqa: E731
                    or (o.digit, o.motion, o.direction) == (7, 'move', 'up')
                    or (o.colour, o.kind) == ('blue', 'digit'))
  seen = collections.Counter()
  for index in range(500):
    for obj in world.sample_scene(options, 5, index, 'train').objects:
      assert not held(obj), obj
      seen[obj.colour, obj.kind] += 1
  assert seen['green', 'circle'] and seen['blue', 'square'] and seen['red', 'digit']
  for index in range(100):
    assert any(held(o) for o in world.sample_scene(options, 5, index, 'held_out').objects)


def test_falling_object_bounces_lower_each_time():
  options = world.WorldOptions(height=16, width=16, num_frames=2, max_objects=1,
                               motions=('fall',), p_occluder=0.0, p_pan=0.0)
  scene = world.sample_scene(options, 6, 0)
  _, truth = world_render.render(scene, 16, 16, 240, 60.0)
  y = np.array(truth['objects'][0]['centre'])[:, 1]
  apex = [i for i in range(1, len(y) - 1) if y[i] < y[i - 1] and y[i] <= y[i + 1]]
  assert len(apex) >= 3
  assert np.all(np.diff(y[apex]) > 0)  # y points down: each apex is lower than the last
  assert y[0] < y[apex[0]] and np.isclose(y.max(), y[-1], atol=0.05)


def test_background_alone_has_no_palette_colour():
  options = world.WorldOptions(height=24, width=24, num_frames=3, p_pan=0.5)
  for index in range(12):
    scene = dataclasses.replace(world.sample_scene(options, 9, index), objects=())
    frames, _ = world_render.render(scene, 24, 24, 3, 8.0)
    for colour in world.PALETTE:
      assert not tracking.colour_mask(frames, colour).any(), (scene.background, colour)


def test_scene_round_trips_through_json_and_options_through_config():
  scene = world.sample_scene(world.WorldOptions(p_occluder=1.0), 0, 1)
  assert world.Scene.from_dict(json.loads(json.dumps(scene.to_dict()))) == scene
  cfg = ml_collections.ConfigDict({'height': 24, 'colours': ['red', 'blue'], 'held_out': ['red']})
  options = world.WorldOptions.from_config(cfg)
  assert options.colours == ('red', 'blue') and options.height == 24
  with pytest.raises(ValueError, match='colour_count'):
    world.WorldOptions.from_config({'colour_count': 3})


@pytest.mark.parametrize('kwargs, value', [
    ({'height': 8}, '8'), ({'width': 12}, '12'), ({'num_frames': 0}, '0'), ({'fps': -1.0}, '-1'),
    ({'colours': ('purple',)}, 'purple'), ({'kinds': ('hexagon',)}, 'hexagon'),
    ({'backgrounds': ('pink',)}, 'pink'), ({'motions': ('spin',)}, 'spin'),
    ({'min_objects': 3, 'max_objects': 2}, 'min_objects=3'), ({'p_occluder': 1.5}, '1.5'),
    ({'held_out': ('purple circle',)}, 'purple'), ({'held_out': ('red blue',)}, 'blue'),
    ({'colours': ('red',), 'held_out': ('red',)}, "('red',)"), ({'kinds': 'circle'}, 'circle'),
])
def test_bad_options_raise_naming_the_value(kwargs, value):
  with pytest.raises(ValueError, match=re.escape(value)):
    world.WorldOptions(**kwargs)


def test_bad_render_and_sampling_arguments_raise():
  scene = world.sample_scene(world.WorldOptions(), 0, 0)
  with pytest.raises(ValueError, match='height=10'):
    world_render.render(scene, 10, 10, 4, 8.0)
  with pytest.raises(ValueError, match="'test'"):
    world.sample_scene(world.WorldOptions(), 0, 0, split='test')
  with pytest.raises(ValueError, match='held_out=()'):
    world.sample_scene(world.WorldOptions(), 0, 0, split='held_out')


def test_world_source_is_picklable_deterministic_and_grain_ready():
  options = world.WorldOptions(height=16, width=24, num_frames=3)
  source = WorldSource(options, seed=3, num_records=10)
  copy = pickle.loads(pickle.dumps(source))
  record, again = source[4], copy[4]
  assert record['video'].shape == (3, 16, 24, 3) and record['index'] == 4
  np.testing.assert_array_equal(record['video'], again['video'])
  assert record['caption'] == again['caption'] and record['scene'] == again['scene']
  assert world.Scene.from_dict(json.loads(record['scene'])) == world.sample_scene(options, 3, 4)
  assert len(source) == 10 and grain.MapDataset.source(source)[7]['index'] == 7
  with pytest.raises(IndexError, match='10'):
    source[10]


def test_clips_sharing_a_caption_differ_only_in_what_it_leaves_unsaid():
  options = world.WorldOptions(height=16, width=16, num_frames=4, kinds=('circle', 'digit'),
                               max_objects=2, p_occluder=0.5)
  alone = WorldSource(options, seed=3, num_records=12)
  shared = WorldSource(options, seed=3, num_records=12, clips_per_caption=3)
  said = lambda scene: ([{k: v for k, v in dataclasses.asdict(o).items()  # noqa: E731
                          if k not in ('x', 'y', 'variant')} for o in scene.objects],
                        scene.background, scene.background_style, scene.pan,
                        scene.occluder and scene.occluder.orientation)
  captions_seen = set()
  for start in range(0, 12, 3):
    records = [shared[i] for i in range(start, start + 3)]
    scenes = [world.Scene.from_dict(json.loads(r['scene'])) for r in records]
    assert len({r['caption'] for r in records}) == 1
    assert all(said(scene) == said(scenes[0]) for scene in scenes)
    places = {tuple((o.x, o.y) for o in scene.objects) for scene in scenes}
    assert len(places) == 3, 'the clips of one caption sit at one place'
    assert not np.array_equal(records[0]['video'], records[1]['video'])
    # A block's first record is the record a caption of its own gives.
    np.testing.assert_array_equal(records[0]['video'], alone[start]['video'])
    assert records[0]['caption'] == alone[start]['caption']
    captions_seen.add(records[0]['caption'])
  assert len(captions_seen) == 4
  with pytest.raises(ValueError, match='clips_per_caption 0 must be at least 1'):
    WorldSource(options, seed=3, clips_per_caption=0)
