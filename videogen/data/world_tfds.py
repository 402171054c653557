"""The procedural world as a TFDS dataset in ArrayRecord files, built and read without TensorFlow.

    builder = WorldTfds(data_dir=d, config=WorldTfdsConfig(name='small', height=32, width=32))
    builder.download_and_prepare()
    source = tfds.data_source('world_tfds/small', data_dir=d, split='train')  # or TfdsSource

Features avoid the TFDS types that encode with TensorFlow (Video, Image): the clip is a zlib
Tensor of uint8, the caption and scene Text. Examples equal WorldSource's records, index for index.
"""
import dataclasses

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from videogen.data import world
from videogen.data import world_source


@dataclasses.dataclass(eq=False)
class WorldTfdsConfig(tfds.core.BuilderConfig):
  """Clip size, frame rate, seed, examples per split, and the phrases held out of 'train'.

  The 'held_out' split (each clip shows a held-out phrase) is built when `held_out` is not empty.
  """
  height: int = 16
  width: int = 16
  num_frames: int = 4
  fps: float = 8.0
  seed: int = 0
  examples_per_split: int = 8
  held_out: tuple[str, ...] = ('green triangle',)


class WorldTfds(tfds.core.GeneratorBasedBuilder):
  """World clips {'video' uint8 [T, H, W, 3], 'caption', 'scene' (JSON), 'index', 'fps'}.

  Writes ArrayRecord by default: TFDS's default TFRecord format needs TensorFlow.
  """

  # TFDS 4.9.10 looks for a builder's source file through the `importlib_resources` backport,
  # absent on Python >= 3.9; naming the file skips that look-up.
  code_path = epath.Path(__file__)
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'World clips with captions and scene JSON.'}
  BUILDER_CONFIGS = [WorldTfdsConfig(name='tiny', description='16x16, 4 frames, 8 per split.')]

  def __init__(self, *, file_format='array_record', **kwargs):
    super().__init__(file_format=file_format, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self,
        description='Procedural world clips: shapes and digits moving with known physics.',
        disable_shuffling=True,  # Example i stays WorldSource's record i.
        features=tfds.features.FeaturesDict({
            'video': tfds.features.Tensor(shape=(c.num_frames, c.height, c.width, 3),
                                          dtype=np.uint8, encoding='zlib'),
            'caption': tfds.features.Text(),
            'scene': tfds.features.Text(),
            'index': tfds.features.Scalar(dtype=np.int64),
            'fps': tfds.features.Scalar(dtype=np.float32),
        }))

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is rendered; nothing is downloaded.
    splits = world.SPLITS if self.builder_config.held_out else ('train',)
    return {split: self._generate_examples(split) for split in splits}

  def _generate_examples(self, split):
    c = self.builder_config
    source = world_source.WorldSource(world_options(c), seed=c.seed, split=split,
                                      num_records=c.examples_per_split)
    for index in range(len(source)):
      yield index, {**source[index], 'fps': c.fps}


def world_options(config: WorldTfdsConfig) -> world.WorldOptions:
  """The WorldOptions a build renders with: the world's defaults but for the config's fields."""
  return world.WorldOptions(height=config.height, width=config.width, num_frames=config.num_frames,
                            fps=config.fps, held_out=config.held_out)
