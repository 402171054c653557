"""Objects followed through RGB frames: per palette colour, tracks of blobs, and their kinds.

Per frame, blobs.find gives each colour's blobs (at least MIN_AREA); only whole ones (cut by
nothing) give positions for velocities, and masks for kind votes. Per colour, each frame's blobs
are matched to the tracks' constant-velocity predictions (Hungarian, gated), so two same-coloured
objects that cross keep their identities. A track seen just before whose prediction or last
position lies inside a matched blob MERGED_AREA times larger than that blob's own track shares
it (merged, not whole). Tracks that follow each other in time are then stitched together (an
object lost behind the bar and found again beyond the gate).
Legend: T frames, H/W frame height/width, K tracks, B blobs.
"""
import collections
import dataclasses
import functools

import numpy as np
from scipy import optimize

from videogen.data import world
from videogen.evals import blobs
from videogen.evals import kinds
from videogen.evals import tracking

MIN_AREA = 0.0032  # of the frame's shorter side squared: 8% of a small object's box
GATE = 0.4  # of the shorter side: farthest a blob may lie from a track's prediction
MERGED_AREA = 1.25  # a blob shared by two tracks is this much larger than either alone
STITCH = 0.75  # of the shorter side: farthest a track may start from where an ended one leads


@dataclasses.dataclass(eq=False)  # compared by identity: blobs hold arrays
class Track:
  """One object followed through the frames: its blob per frame (None where unseen)."""
  colour: str
  blobs_t: list[blobs.Blob | None]
  merged_t: list[bool]  # shares its blob with another track of its colour

  def seen(self) -> np.ndarray:
    """bool [T]."""
    return np.array([b is not None for b in self.blobs_t])

  def whole(self) -> np.ndarray:
    """bool [T]: seen whole and alone."""
    return np.array([b is not None and b.whole and not merged
                     for b, merged in zip(self.blobs_t, self.merged_t)])

  def unmerged(self) -> np.ndarray:
    """bool [T]: seen, alone or cut."""
    return self.seen() & ~np.array(self.merged_t)

  def centres(self, where_t: np.ndarray | None = None) -> np.ndarray:
    """[T, 2] centroids where where_t (bool [T]) holds, by default in whole frames; else NaN."""
    where_t = self.whole() if where_t is None else where_t & self.seen()
    return np.array([b.centre if k else (np.nan, np.nan) for b, k in zip(self.blobs_t, where_t)])

  def cut_sides(self, frame: int, bar_hw: np.ndarray) -> np.ndarray:
    """bool [2, 2]: per axis (x, y), whether the box seen at `frame` ends at the frame's edge or
    the bar [H, W] on its low and on its high side."""
    x0, y0, x1, y1 = self.blobs_t[frame].box.astype(int)
    height, width = bar_hw.shape
    return np.array([[x0 == 0 or bar_hw[y0:y1, x0 - 1].any(),
                      x1 == width or bar_hw[y0:y1, min(x1, width - 1)].any()],
                     [y0 == 0 or bar_hw[y0 - 1, x0:x1].any(),
                      y1 == height or bar_hw[min(y1, height - 1), x0:x1].any()]])

  def anchored_centres(self, bar_thw: np.ndarray) -> np.ndarray:
    """[T, 2] box centres of unmerged sightings (NaN elsewhere); a box cut on one side by the
    frame's edge or the bar [T, H, W] is extended from its other side to the object's extent,
    so a half-hidden object's centre still moves with the object."""
    boxes_t4 = self.boxes()
    extent = self.extent()
    centres_t2 = np.full((len(boxes_t4), 2), np.nan)
    for frame in np.nonzero(self.unmerged())[0]:
      cut = self.cut_sides(frame, bar_thw[frame])
      for axis in (0, 1):
        low, high = boxes_t4[frame, axis], boxes_t4[frame, axis + 2]
        centres_t2[frame, axis] = (high - extent[axis] / 2 if cut[axis, 0] and not cut[axis, 1]
                                   else low + extent[axis] / 2 if cut[axis, 1] and not cut[axis, 0]
                                   else (low + high) / 2)
    return centres_t2

  def whole_area(self, frame: int) -> float:
    """Median area of its whole sightings before `frame` (0 if none)."""
    areas = [b.area for b, w in zip(self.blobs_t[:frame], self.whole()[:frame]) if w]
    return float(np.median(areas)) if areas else 0.0

  def extent(self) -> np.ndarray:
    """(width, height) of its box when whole (median), else the largest seen."""
    extents_t2 = self.boxes()[:, 2:] - self.boxes()[:, :2]
    whole_t = self.whole()
    return np.nanmedian(extents_t2[whole_t], 0) if whole_t.any() else np.nanmax(extents_t2, 0)

  def boxes(self) -> np.ndarray:
    """[T, 4] boxes, NaN where unseen."""
    return np.array([b.box if b is not None else (np.nan,) * 4 for b in self.blobs_t])

  @functools.cached_property
  def identity(self) -> tuple[str, int | None] | None:
    """(kind, digit) over the whole track; see identity_in."""
    return self.identity_in(0, len(self.blobs_t))

  def identity_in(self, first: int, stop: int) -> tuple[str, int | None] | None:
    """(kind, digit): the majority over the whole frames in [first, stop); None if none (a cut
    shape or digit cannot be read)."""
    chosen = [b for b, w in zip(self.blobs_t[first:stop], self.whole()[first:stop]) if w]
    if not chosen:
      return None
    votes = kinds.classify([b.mask_hw for b in chosen])
    return collections.Counter(votes).most_common(1)[0][0]

  def last_centre(self, frame: int) -> np.ndarray:
    """(x, y) where it was last seen before `frame`."""
    return next(b.centre for b in reversed(self.blobs_t[:frame]) if b is not None)

  def predict(self, frame: int) -> np.ndarray:
    """(x, y) expected at `frame` at constant velocity: from the last two whole positions, else
    (a cut object's centroid lags) from the first and last unmerged sightings before it."""
    whole = np.nonzero(self.whole()[:frame])[0]
    unmerged = np.nonzero(self.unmerged()[:frame])[0]
    if whole.size >= 2:
      first, last = whole[-2:]
    elif unmerged.size >= 2:
      first, last = unmerged[[0, -1]]
    else:
      return self.last_centre(frame)
    anchor = self.blobs_t[last].centre
    return anchor + (anchor - self.blobs_t[first].centre) * (frame - last) / (last - first)

  def span(self) -> tuple[int, int]:
    """First and last frames seen."""
    seen = np.nonzero(self.seen())[0]
    return int(seen[0]), int(seen[-1])


@dataclasses.dataclass(frozen=True)
class Analysis:
  """What the frames show: tracks of every palette colour, and where the occluder bar is."""
  tracks: list[Track]
  bar_thw: np.ndarray  # bool: pixels of a detected occluder bar
  labels_thw: np.ndarray  # int: tracking.reference_labels of the frames


def analyse(frames_thwc: np.ndarray) -> Analysis:
  """Finds and tracks the objects of every palette colour in uint8 frames [T, H, W, 3]."""
  labels_thw = tracking.reference_labels(frames_thwc)
  num_frames, height, width = labels_thw.shape
  min_area = max(3, round(MIN_AREA * min(height, width) ** 2))
  bar_thw = np.stack([blobs.occluder_bar(labels_hw) for labels_hw in labels_thw])
  blobs_tcb = [blobs.find(frame_hwc, labels_hw, bar_hw, min_area)
               for frame_hwc, labels_hw, bar_hw in zip(frames_thwc, labels_thw, bar_thw)]
  tracks = []
  for index, colour in enumerate(world.PALETTE):
    found = _track_colour(colour, [blobs_cb[index] for blobs_cb in blobs_tcb],
                          GATE * min(height, width))
    tracks += _stitch(found, STITCH * min(height, width))
  return Analysis(tracks, bar_thw, labels_thw)


def _track_colour(colour: str, blobs_tb: list[list[blobs.Blob]], gate: float) -> list[Track]:
  """Tracks of one colour through the frames' blobs."""
  num_frames = len(blobs_tb)
  tracks: list[Track] = []
  for frame, found in enumerate(blobs_tb):
    predicted_k2 = np.array([t.predict(frame) for t in tracks]).reshape(-1, 2)
    last_k2 = np.array([t.last_centre(frame) for t in tracks]).reshape(-1, 2)
    centres_b2 = np.array([b.centre for b in found]).reshape(-1, 2)
    # Nearer of the prediction and the last position: a bounce or a stop breaks the prediction.
    distance_kb = np.minimum(
        np.linalg.norm(predicted_k2[:, None] - centres_b2[None], axis=-1),
        np.linalg.norm(last_k2[:, None] - centres_b2[None], axis=-1) + gate / 8)
    rows, cols = optimize.linear_sum_assignment(np.where(distance_kb <= gate, distance_kb, 1e9))
    matched = {k: b for k, b in zip(rows, cols) if distance_kb[k, b] <= gate}
    for k, b in matched.items():
      tracks[k].blobs_t[frame] = found[b]
    for k, track in enumerate(tracks):  # seen just before, now inside a matched blob: merged
      if k in matched or frame == 0 or track.blobs_t[frame - 1] is None:
        continue
      for j, b in matched.items():
        x0, y0, x1, y1 = found[b].box
        inside = any(x0 <= x <= x1 and y0 <= y <= y1 for x, y in (predicted_k2[k], last_k2[k]))
        if inside and found[b].area >= MERGED_AREA * tracks[j].whole_area(frame):
          track.blobs_t[frame] = found[b]
          track.merged_t[frame] = tracks[j].merged_t[frame] = True
          break
    for b in sorted(set(range(len(found))) - set(matched.values())):
      tracks.append(Track(colour, [None] * num_frames, [False] * num_frames))
      tracks[-1].blobs_t[frame] = found[b]
  return tracks


def _stitch(tracks: list[Track], reach: float) -> list[Track]:
  """Joins tracks of one colour that follow each other in time (an object lost behind the bar
  or past the edge and found again beyond the gate), the closest continuation first."""
  tracks = list(tracks)
  while True:
    joins = []  # (gap, index before, index after)
    for i, before in enumerate(tracks):
      for j, after in enumerate(tracks):
        start = after.span()[0]
        if before.span()[1] < start:
          gap = np.linalg.norm(before.predict(start) - after.blobs_t[start].centre)
          if gap <= reach:
            joins.append((gap, i, j))
    if not joins:
      return tracks
    _, i, j = min(joins)
    before, after = tracks[i], tracks[j]
    for frame, blob in enumerate(after.blobs_t):
      if blob is not None:
        before.blobs_t[frame], before.merged_t[frame] = blob, after.merged_t[frame]
    del tracks[j]
