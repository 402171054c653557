"""Text-to-video on a TFDS dataset: configs/world.py's model, diffusion and optimizer, trained on
the clips of a dataset prepared in ArrayRecord format (read without TensorFlow).

Usage:
  python experiments/train.py --config configs/tfds.py --config.data.tfds_name=NAME/CONFIG \
      --config.data.tfds_data_dir=DIR --workdir outputs/myrun
Arguments as configs/world.py's (`:variant=S/2`, `runlocal=True` for the tests' tiny sizes).
data.tfds_name is required. The project's own world is one such dataset
(videogen/data/world_tfds.py: `world_tfds/tiny` once prepared in DIR).

Each example needs a video field (uint8 [T, H, W, 3], or an image [H, W, 3] as a still clip) and
a caption field; data.video_key and data.caption_key name them (caption_key '' trains without
text). Clips are world.num_frames frames of world.height x world.width at world.fps, resampled
from the example's 'fps' field or data.tfds_fps, scaled to cover and centre-cropped
(videogen/data/tfds_source.py). --config.data.layout=buckets trains each batch at one size of
the data.sizes table instead (aspect ratios and durations); --config.data.layout=packed packs
each clip at its own aspect ratio, in the tokens of the world's clip, into token rows.
"""
import ml_collections

from videogen.core import config_args



def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_args.parse_arg(arg, variant='T/2', runlocal=False)
  config = config_args.sibling_config(__file__, 'world.py',
                                       f'variant={arg.variant},runlocal={arg.runlocal}')
  config.data.update(
      source='tfds', layout='fixed',
      # The dataset; required: --config.data.tfds_name=NAME/CONFIG.
      tfds_name=ml_collections.FieldReference(None, field_type=str),
      tfds_data_dir=ml_collections.FieldReference(None, field_type=str),  # None: TFDS's default
      # The stored frame rate, for a dataset without an 'fps' field.
      tfds_fps=ml_collections.FieldReference(None, field_type=float),
      video_key='video', caption_key='caption',
      # Clips per pass of the (shuffled) records; example j % examples for record j.
      num_records=1_000_000,
  )
  config.train.sample_every = 0 if arg.runlocal else 1000  # grids of the dataset's own captions
  return config
