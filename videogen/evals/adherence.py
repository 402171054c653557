"""Prompt adherence measured from pixels: is the asked colour there, does it move the asked way?

Each prompt comes from a world scene, so its structured form is exact. For every object the
scene asks for: `colour` holds when the palette colour covers enough pixels in a quarter of the
frames (tracking.colour_present); `direction` holds when the colour mask's centroid moves in the
asked compass direction ('still' for still objects), before any bounce. Scenes whose objects
share a colour score colour only (a centroid of two objects is not a track).
"""
import numpy as np

from videogen.data import world
from videogen.evals import tracking

MIN_DISPLACEMENT = 0.1  # of the frame's shorter side: less than this reads as 'still'


def expected_direction(obj: world.ObjectSpec) -> str | None:
  """The 8-way direction a tracker should see; None where it is not defined (falls)."""
  if obj.motion == 'move':
    return obj.direction
  if obj.motion == 'still':
    return 'still'
  return None


def score_video(frames_thwc: np.ndarray, scene: world.Scene) -> dict:
  """{'colour': 0/1, 'direction': 0/1 or None, 'seen': the measured direction} for a video."""
  min_px = MIN_DISPLACEMENT * min(frames_thwc.shape[1:3])
  colours = [o.colour for o in scene.objects]
  colour_ok, direction_ok, seen = [], [], []
  for obj in scene.objects:
    colour_ok.append(tracking.colour_present(frames_thwc, obj.colour))
    expected = expected_direction(obj)
    if expected is None or colours.count(obj.colour) > 1 or scene.pan:
      continue
    measured = tracking.motion_direction(tracking.track(frames_thwc, obj.colour), min_px)
    seen.append(measured)
    direction_ok.append(colour_ok[-1] and measured == expected)
  return {'colour': float(all(colour_ok)),
          'direction': float(all(direction_ok)) if direction_ok else None,
          'seen': seen}


def summarize(scores: list[dict]) -> dict:
  """Percentages over videos; direction over the videos where it is defined."""
  colour = [s['colour'] for s in scores]
  direction = [s['direction'] for s in scores if s['direction'] is not None]
  pct = lambda values: 100.0 * float(np.mean(values)) if values else float('nan')
  return {'colour_pct': pct(colour), 'direction_pct': pct(direction), 'videos': len(scores)}
