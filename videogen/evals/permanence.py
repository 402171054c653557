"""Object permanence as pass/fail checks on one followed object.

An object may leave sight only where something can hide it: where its motion leads, most of its
shape (its last whole mask) would be past the frame's edge, behind the occluder bar or behind
other objects' pixels, or inside a same-coloured object. It may come into sight only out of such
a place, or cut by one (still half hidden). After an interruption (hidden frames, or frames
merged with a same-coloured object) it must show the same kind and digit as before, and reappear
where its motion before the interruption leads.
Legend: T frames, H/W frame height/width, h/w mask height/width.
"""
import functools

import numpy as np

from videogen.evals import blobs
from videogen.evals import objects

HEADING_SIGHTINGS = 4  # sightings a heading's line is fitted to
HIDDEN_SHARE = 0.4  # of an object's pixels that must be out of view or covered where it hides
REAPPEAR_TOL = 0.1  # of the frame's shorter side, plus half the distance travelled while hidden


def checks(track: objects.Track, analysis: objects.Analysis, walled: tuple[bool, bool],
           gravity: float = 0.0) -> list[tuple[bool, str]]:
  """(passed, what was checked) for each time the object left or came into sight, or merged.

  walled: per axis (x, y), whether the view's edges are walls the object bounces off (the world's
  are, except along a pan). gravity: pixels per frame squared the object falls with (0 if it
  does not fall).
  """
  seen_t = track.seen()
  whole_t = track.whole()
  merged_t = np.array(track.merged_t)
  first, last = track.span()
  heading = functools.partial(_heading, track, analysis, walled=walled, gravity=gravity)
  results = []
  if first > 0:
    results.append((_emerges(track, analysis, first, heading(first - 1, back=True)),
                    f'appears at frame {first}'))
  for start, stop in _runs(~seen_t[first:last + 1], first):
    results.append((_leaves(track, analysis, start, heading(start)), f'vanishes at frame {start}'))
    results.append((_emerges(track, analysis, stop, heading(stop - 1, back=True)),
                    f'reappears at frame {stop}'))
    after = np.nonzero(whole_t[stop:])[0]
    # Only behind something in view: the walls past a pan's view edge are not seen.
    if after.size and whole_t[:start].any() and _in_view(analysis, heading(start)):
      frame = stop + int(after[0])
      anchored_t2 = track.anchored_centres(analysis.bar_thw)
      miss = np.linalg.norm(anchored_t2[frame] - heading(frame))
      travelled = np.linalg.norm(heading(frame) - heading(start))
      tol = REAPPEAR_TOL * min(analysis.bar_thw.shape[1:]) + 0.5 * travelled
      results.append((miss <= tol, f'reappears {miss:.0f} px from where it was heading'))
  for start, stop in _runs(~seen_t[first:last + 1] | merged_t[first:last + 1], first):
    before, after = track.identity_in(0, start), track.identity_in(stop, len(seen_t))
    if before and after:
      results.append((before == after, f'is {_name(before)} before frame {start} and '
                                       f'{_name(after)} after'))
  if last < len(seen_t) - 1:
    results.append((_leaves(track, analysis, last + 1, heading(last + 1)),
                    f'vanishes at frame {last + 1}'))
  return results


def _heading(track: objects.Track, analysis: objects.Analysis, frame: int,
             walled: tuple[bool, bool], gravity: float, back: bool = False) -> np.ndarray:
  """(x, y) box centre where the object's motion leads at `frame`, from its last sightings
  before it (or, `back`, its first sightings after it): a line (in y, a parabola of the given
  gravity) through HEADING_SIGHTINGS anchored centres, bounced off walled view edges."""
  anchored_t2 = track.anchored_centres(analysis.bar_thw)
  seen = np.nonzero(~np.isnan(anchored_t2[:, 0]))[0]
  sightings = seen[seen > frame][:HEADING_SIGHTINGS] if back else (
      seen[seen < frame][-HEADING_SIGHTINGS:])
  if len(sightings) < 2:
    return anchored_t2[sightings[0]] if len(sightings) else track.last_centre(frame)
  line = np.polyfit(sightings, anchored_t2[sightings] - _drop(sightings, gravity), 1)
  ahead = line[0] * frame + line[1] + _drop(np.float64(frame), gravity)  # line: [slope/offset, xy]
  half = track.extent() / 2
  room = np.array(analysis.bar_thw.shape[:0:-1]) - 2 * half  # where the centre can be, x and y
  folded = np.mod(ahead - half, 2 * room)
  bounced = half + np.where(folded <= room, folded, 2 * room - folded)
  return np.where(walled, bounced, ahead)


def _drop(frames: np.ndarray, gravity: float) -> np.ndarray:
  """[..., 2] (0, y) fallen from rest at frame 0 by `frames`."""
  return np.stack([0 * frames, gravity * frames ** 2 / 2], axis=-1)


def _in_view(analysis: objects.Analysis, point: np.ndarray) -> bool:
  return bool((0 <= point).all() and (point < analysis.bar_thw.shape[:0:-1]).all())


def _leaves(track: objects.Track, analysis: objects.Analysis, frame: int,
            heading: np.ndarray) -> bool:
  """Whether the object, unseen from `frame`, went into hiding: merged into a same-coloured
  object, or mostly hidden where it was heading."""
  if track.merged_t[frame - 1]:
    return True
  shown = [b for b, w in zip(track.blobs_t[:frame], track.whole()[:frame]) if w]
  shape = (shown or [b for b in track.blobs_t[:frame] if b is not None])[-1]
  return _hidden_share(track, analysis, frame, shape, heading) >= HIDDEN_SHARE


def _emerges(track: objects.Track, analysis: objects.Analysis, frame: int,
             came_from: np.ndarray) -> bool:
  """Whether the object, first seen at `frame` after unseen frames, comes out of hiding: cut or
  merged there (still half hidden), or mostly hidden the frame before where it came from."""
  if not track.whole()[frame]:
    return True
  share = _hidden_share(track, analysis, frame - 1, track.blobs_t[frame], came_from)
  return share >= HIDDEN_SHARE


def _hidden_share(track: objects.Track, analysis: objects.Analysis, frame: int,
                  shape: blobs.Blob, centre: np.ndarray) -> float:
  """The share of the shape's pixels, its box centred at `centre`, that at `frame` lie outside
  the view, on the bar or on other objects' pixels; 0 when the centre is unknown (NaN: no
  sighting to lead from), so the emergence is not excused."""
  if not np.all(np.isfinite(centre)):
    return 0.0
  height, width = analysis.bar_thw.shape[1:]
  cover_hw = np.pad(analysis.bar_thw[frame], 1, constant_values=True)  # the pad is out of view
  for other in analysis.tracks:
    blob = other.blobs_t[frame]
    if other is not track and blob is not None and blob is not track.blobs_t[frame]:
      x0, y0, x1, y1 = blob.box.astype(int) + 1
      cover_hw[y0:y1, x0:x1] |= blob.mask_hw
  rows, cols = np.nonzero(shape.mask_hw)
  top, left = np.round(centre[::-1] - np.array(shape.mask_hw.shape) / 2).astype(int) + 1
  rows = np.clip(rows + top, 0, height + 1)
  cols = np.clip(cols + left, 0, width + 1)
  return float(cover_hw[rows, cols].mean())


def _runs(flags: np.ndarray, offset: int) -> list[tuple[int, int]]:
  """[start, stop) frame ranges where `flags` holds, numbered from `offset`."""
  edges = np.diff(np.r_[0, flags.astype(int), 0])
  return list(zip(np.nonzero(edges == 1)[0] + offset, np.nonzero(edges == -1)[0] + offset))


def _name(identity: tuple[str, int | None]) -> str:
  kind, digit = identity
  return f'digit {digit}' if kind == 'digit' else f'a {kind}'
