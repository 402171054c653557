"""The training data says what it shows: after the whole pipeline (fixed clips, shape buckets,
packed rows cut back into clips), each caption's direction is the one its clip's pixels move."""
import itertools

import pytest

from configs import world as world_config
from videogen.data import pipeline
from videogen.evals import caption_motion

BATCHES = 4


def _pairs(layout: str) -> list:
  config = world_config.get_config()
  config.data.update(layout=layout, num_threads=1, batch_size=16)
  batches = itertools.islice(iter(pipeline.world_dataset_from_config(config)), BATCHES)
  return [pair for batch in batches
          for pair in caption_motion.batch_clips(batch, config.model.patch_size)]


@pytest.mark.parametrize('layout', pipeline.LAYOUTS)
def test_captions_describe_the_motion_the_batches_show(layout):
  """Fixed clips all agree; buckets and packed rows also hold 2- and 4-frame clips, where a slow
  object may move less than the tracker reads as motion ('still'), never the wrong way."""
  result = caption_motion.check(_pairs(layout))
  assert result['moving'] >= 40
  assert result['agree'] >= (1.0 if layout == 'fixed' else 0.9)
  assert {measured for _, measured in result['mismatches']} <= {'still'}
  assert result['median_displacement_px'] > 5


def test_swapped_captions_disagree():
  pairs = _pairs('fixed')
  captions = [caption for _, caption in pairs]
  # Each clip gets the caption of the clip one caption-sharing block later: another scene's.
  shift = world_config.get_config().data.clips_per_caption
  shuffled = [(clip, captions[(i + shift) % len(captions)]) for i, (clip, _) in enumerate(pairs)]
  assert caption_motion.check(shuffled)['agree'] < 0.4
  # Played backwards, a clip agrees only when it bounced (its last leg, reversed, runs the
  # caption's way); about 4 in 10 fixed clips bounce.
  reversed_clips = [(clip[::-1], caption) for clip, caption in pairs]
  assert caption_motion.check(reversed_clips)['agree'] < 0.6
