"""The text-controls-motion probe: the world's own renders score near 1, a model whose motion the
noise alone decides scores chance, and the report shows both."""
import numpy as np
import pytest

from configs import world as world_config
from videogen.data import world
from videogen.evals import direction_probe

SCENES = 12


@pytest.fixture(scope='module')
def config():
  return world_config.get_config()


@pytest.fixture(scope='module')
def groups(config):
  return direction_probe.probe_prompts(config, SCENES)


def test_prompts_differ_only_in_direction(groups):
  for group in groups:
    assert [p.scene.objects[0].direction for p in group] == list(world.DIRECTIONS)
    assert len({p.seed for p in group}) == 1  # one noise for the 8 directions
    kept = {(o.colour, o.kind, o.digit, o.size, o.speed) for o in
            (p.scene.objects[0] for p in group)}
    assert len(kept) == 1
    parsed = [world.parse_prompt(p.text)[0]['direction'] for p in group]
    assert parsed == list(world.DIRECTIONS)


def test_renders_score_near_one(config, groups):
  result = direction_probe.score(groups, direction_probe.render_groups(config, groups))
  assert result['text_controls_motion'] >= 0.97
  assert result['distinct'] >= 7.5


def test_motion_decided_by_noise_scores_chance(config, groups):
  """Each scene's 8 videos are one render, whatever the words say: right once in 8."""
  renders = direction_probe.render_groups(config, groups)
  one_per_scene = [renders[start + (start // 8) % 8] for start in range(0, len(renders), 8)]
  ignored = [video for video in one_per_scene for _ in range(8)]
  result = direction_probe.score(groups, ignored)
  assert result['text_controls_motion'] == pytest.approx(1 / 8)
  assert result['distinct'] == 1


def test_reversed_motion_scores_zero(config, groups):
  reversed_videos = [video[::-1] for video in direction_probe.render_groups(config, groups)]
  assert direction_probe.score(groups, reversed_videos)['text_controls_motion'] == 0


def test_a_world_of_fewer_directions_is_probed_in_those(config):
  config = world_config.get_config()
  config.world.directions = ('left', 'right')
  groups = direction_probe.probe_prompts(config, 3)
  assert [[p.scene.objects[0].direction for p in g] for g in groups] == [['left', 'right']] * 3
  result = direction_probe.score(groups, direction_probe.render_groups(config, groups))
  assert result['chance'] == 0.5 and result['text_controls_motion'] == 1


def test_report_and_bad_input(config, groups):
  result = direction_probe.score(groups[:1], direction_probe.render_groups(config, groups[:1]))
  text = '\n'.join(direction_probe.report_lines(result))
  assert 'Text controls motion: 100%' in text and '**up-left**' in text
  with pytest.raises(ValueError, match='one video per prompt'):
    direction_probe.score(groups[:1], [np.zeros((8, 32, 32, 3), np.uint8)])
  with pytest.raises(ValueError, match='at least one scene'):
    direction_probe.probe_prompts(config, 0)
