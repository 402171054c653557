"""Does each training clip's caption describe the motion its pixels show, after the pipeline?

Reads the batches the trainer reads (any layout: fixed, buckets, packed rows cut back into
clips), parses each caption (world.parse_prompt) and, per moving object it names, measures the
direction its colour travels (tracking.motion_direction, before the first bounce) and its net
displacement. A caption that names a direction the pixels do not show is a disagreement.

Legend: B batch, M segments of a packed row, T frames, H height, W width.
"""
import numpy as np

from videogen.core import media
from videogen.data import packing
from videogen.data import world
from videogen.evals import motion_classes
from videogen.evals import tracking


def batch_clips(batch: dict, patch_size) -> list[tuple[np.ndarray, str]]:
  """(uint8 clip [T, H, W, 3], caption) pairs of one pipeline batch: clips {'video' [B, ...],
  'caption' [B]} or packed rows {'patches', 'segment_ids', 'shapes', 'captions' [B, M]}."""
  if 'patches' in batch:
    clips = packing.unpack(batch['patches'], batch['segment_ids'], batch['shapes'], patch_size)
    shapes_n3 = np.asarray(batch['shapes']).reshape(-1, 3)
    captions = [str(c) for c, s in zip(np.asarray(batch['captions']).reshape(-1), shapes_n3)
                if s[0]]
  else:
    clips, captions = list(np.asarray(batch['video'])), [str(c) for c in batch['caption']]
  return [(media.to_uint8(clip), caption) for clip, caption in zip(clips, captions)]


def check(pairs: list[tuple[np.ndarray, str]]) -> dict:
  """{'moving': objects named as moving, 'agree': share whose pixels move the named way,
  'median_displacement_px': net first-to-last displacement, 'mismatches': [(caption,
  measured)]} over (clip, caption) pairs."""
  agree, displacements, mismatches = [], [], []
  for clip, caption in pairs:
    side = min(clip.shape[1:3])
    for obj in world.parse_prompt(caption):
      if obj.get('motion') != 'move' or not obj.get('direction') or len(clip) < 2:
        continue
      track = tracking.track(clip, obj['colour'])
      measured = tracking.motion_direction(track, motion_classes.DIRECTION_MIN_TRAVEL * side)
      seen = track[~np.isnan(track[:, 0])]
      displacements.append(float(np.linalg.norm(seen[-1] - seen[0])) if len(seen) > 1 else 0.0)
      agree.append(measured == obj['direction'])
      if not agree[-1]:
        mismatches.append((caption, measured))
  return {'moving': len(agree), 'agree': float(np.mean(agree)) if agree else float('nan'),
          'median_displacement_px': float(np.median(displacements)) if displacements else 0.0,
          'mismatches': mismatches}
