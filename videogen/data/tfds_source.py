"""A Grain random-access source over any TFDS dataset stored as ArrayRecord, without TensorFlow.

Records come out like FolderSource's: {'video' uint8 [T, H, W, 3], 'caption' str, 'index'}, cut
to the target clip with clips.sample_clip, plus the dataset's other fields (bytes become str).
"""
import numpy as np
import tensorflow_datasets as tfds

from videogen.data import clips


class TfdsSource:
  """Clips of TFDS split `split`, resampled and cropped only where the stored clip differs.

  `name_or_builder` is a registered name such as 'world_tfds/tiny' or a prepared builder; the
  dataset must already be prepared in ArrayRecord format (TFRecord needs TensorFlow). The stored
  frame rate is the record's 'fps' field, else `source_fps`; a 3-D `video_key` field is an
  image, a 1-frame video. `caption_key=None` gives empty captions.

  Every clip is height x width, or, with `max_tokens` and `patch_size` instead (native sizes,
  for packed rows), each stored clip's own aspect ratio at the largest size in whole patches
  whose clip makes at most max_tokens tokens (clips.native_size); `single_frame_images` then
  keeps an image as 1 frame, not a still clip of num_frames.
  """

  def __init__(self, name_or_builder, split: str, *, num_frames: int, height: int | None = None,
               width: int | None = None, data_dir=None, fps: float | None = None,
               source_fps: float | None = None, seed: int = 0, video_key: str = 'video',
               caption_key: str | None = 'caption', max_tokens: int | None = None,
               patch_size=None, single_frame_images: bool = False):
    clips.check_size_or_budget(num_frames, height, width, max_tokens, patch_size, fps)
    if isinstance(name_or_builder, str):
      self.data = tfds.data_source(name_or_builder, split=split, data_dir=data_dir,
                                   download=False)
    else:
      self.data = name_or_builder.as_data_source(split=split)
    features = self.data.dataset_info.features
    if video_key not in features or (caption_key and caption_key not in features):
      raise ValueError(f'video_key={video_key!r} or caption_key={caption_key!r} is not a field '
                       f'of this dataset ({", ".join(features)}); pass the right keys.')
    self.num_frames, self.height, self.width, self.fps = num_frames, height, width, fps
    self.source_fps, self.seed = source_fps, seed
    self.video_key, self.caption_key = video_key, caption_key
    self.max_tokens, self.patch_size = max_tokens, patch_size
    self.single_frame_images = single_frame_images

  def __len__(self) -> int:
    return len(self.data)

  def __getitem__(self, index: int) -> dict:
    return self.record(index)

  def record(self, index: int, bucket=None) -> dict:
    """Record `index`; with a bucket (buckets.Bucket), at its frames, height and width."""
    index = int(index)
    if not 0 <= index < len(self.data):
      raise IndexError(f'index={index} is outside this split of {len(self.data)} records.')
    stored = {k: v.decode() if isinstance(v, bytes) else v for k, v in self.data[index].items()}
    source_fps = float(stored['fps']) if 'fps' in stored else self.source_fps
    if self.fps is not None and source_fps is None:
      raise ValueError(f'fps={self.fps} needs the stored frame rate: this dataset has no fps '
                       'field, so pass source_fps=<its frame rate> or fps=None.')
    frames = np.asarray(stored.pop(self.video_key))
    num_frames, size = self.num_frames, (self.height, self.width)
    if bucket:
      num_frames, size = bucket.num_frames, (bucket.height, bucket.width)
    elif self.max_tokens is not None:
      if frames.ndim == 3 and self.single_frame_images:
        num_frames = 1
      # the video clips' size, so an image as 1 frame is not shown larger
      size = clips.native_size(frames.shape[-3:-1], num_frames=self.num_frames,
                               patch_size=self.patch_size, max_tokens=self.max_tokens)
    video = clips.sample_clip(frames, num_frames=num_frames, height=size[0], width=size[1],
                              source_fps=source_fps, fps=self.fps, seed=self.seed, index=index)
    caption = stored.pop(self.caption_key) if self.caption_key else ''
    return {**stored, 'video': video, 'caption': caption, 'index': index}

  def __repr__(self) -> str:
    return (f'TfdsSource({self.data.dataset_info.full_name}, {len(self)} records, '
            f'num_frames={self.num_frames}, height={self.height}, width={self.width}, '
            f'max_tokens={self.max_tokens}, '
            f'fps={self.fps}, seed={self.seed})')


def first_captions(name: str, split: str, *, count: int, data_dir=None,
                   caption_key: str = 'caption') -> list[str]:
  """The captions of a split's first `count` examples (fewer when it holds fewer)."""
  data = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  texts = [data[i][caption_key] for i in range(min(count, len(data)))]
  return [t.decode() if isinstance(t, bytes) else str(t) for t in texts]
