"""A Grain random-access source of procedural world clips: record i is scene i of a split."""
import dataclasses
import json

from videogen.data import sizes as sizes_lib
from videogen.data import world
from videogen.data import world_render


class WorldSource:
  """Clips {'video' uint8 [T, H, W, 3], 'caption', 'scene' (JSON), 'index'} rendered on demand.

  Every clip has the options' size, or with `sizes` record i's own size sizes(i): its scene is
  sampled for that size (the view's aspect and the duration follow it), so it renders exactly.
  With clips_per_caption k, records i of one block of k (i // k) share their objects' traits,
  the background and the caption's phrasing, placed apart (world.sample_scene's traits_index):
  k clips to each caption, as a dataset cuts several clips from one captioned video, so the text
  encoder runs on 1/k of the captions of a batch whose blocks it holds whole.
  Satisfies grain's RandomAccessDataSource protocol and pickles into worker processes; the same
  (options, seed, split, sizes, clips_per_caption, index) always gives the same record. Ground
  truth comes from world_render.render(world.Scene.from_dict(json.loads(record['scene'])), ...).
  """

  def __init__(self, options: world.WorldOptions, *, seed: int, split: str = 'train',
               num_records: int = 1_000_000, sizes: sizes_lib.ClipSizes | None = None,
               clips_per_caption: int = 1):
    if split not in world.SPLITS:
      raise ValueError(f'split={split!r} is unknown; use one of {world.SPLITS}.')
    if seed < 0 or num_records < 1:
      raise ValueError(f'seed={seed}, num_records={num_records}: need seed >= 0, num_records >= 1.')
    if clips_per_caption < 1:
      raise ValueError(f'data.clips_per_caption {clips_per_caption} must be at least 1: use 1 '
                       'for a caption of its own per clip.')
    self.options = options
    self.clips_per_caption = clips_per_caption
    self.seed = seed
    self.split = split
    self.num_records = num_records
    self.sizes = sizes
    for size in sizes.table if sizes else ():
      self._options_for(size)  # a size the world cannot render fails here, not in a worker

  def __len__(self) -> int:
    return self.num_records

  def _options_for(self, size) -> world.WorldOptions:
    return dataclasses.replace(self.options, num_frames=size.num_frames, height=size.height,
                               width=size.width)

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    if not 0 <= index < self.num_records:
      raise IndexError(f'index={index} is outside this source of {self.num_records} records.')
    o = self.options if self.sizes is None else self._options_for(self.sizes(index))
    traits_index = index // self.clips_per_caption * self.clips_per_caption
    scene = world.sample_scene(o, self.seed, index, self.split, traits_index=traits_index)
    video = world_render.render_frames(scene, o.height, o.width, o.num_frames, o.fps)
    return {'video': video, 'caption': world.clip_caption(scene, self.seed, traits_index),
            'scene': json.dumps(scene.to_dict()), 'index': index}

  def __repr__(self) -> str:
    return (f'WorldSource(seed={self.seed}, split={self.split!r}, '
            f'num_records={self.num_records}, options={self.options}, sizes={self.sizes}, '
            f'clips_per_caption={self.clips_per_caption})')
