"""Text-to-video on your own folder of videos and images: configs/world.py's model, diffusion and
optimizer, trained on clips of the files that the folder's caption file lists.

Usage:
  python experiments/train.py --config configs/folder.py --config.data.root=DIR \
      --workdir outputs/myrun
  python experiments/sample.py --workdir outputs/myrun --prompt='a dog runs along a beach'
Arguments as configs/world.py's: `--config configs/folder.py:variant=S/2` (runlocal=True: the
tests' tiny sizes). data.root is required; without it the run stops before building anything.

DIR holds the media (.mp4 .webm .mov .mkv .gif .png .jpg .jpeg, in subfolders if you like) and
captions.jsonl with a line per file, {"path": "clips/a.mp4", "caption": "a dog runs along a
beach"}, or a CSV with columns path, caption (--config.data.captions=list.csv). Paths are
relative to DIR and must stay inside it; files the caption file does not list are not read.

What a clip is (videogen/data/folder_source.py): world.num_frames frames of world.height x
world.width at world.fps (here 8 frames of 32x32 at 8 fps, one second). Each time a file comes
round a new start is drawn; the file is resampled to fps, scaled so its short side covers the
frame and centre-cropped (never stretched); a file shorter than the clip repeats its last frame,
and an image is a still clip. A file that cannot be decoded is skipped and logged by name with a
count, and the next file takes its place; a folder where nothing decodes stops with one error
naming it. The world section's other fields (objects, colours, ...) are unused here.
"""
import ml_collections

from videogen.core import config_args



def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_args.parse_arg(arg, variant='T/2', runlocal=False)
  config = config_args.sibling_config(__file__, 'world.py',
                                       f'variant={arg.variant},runlocal={arg.runlocal}')
  config.data.update(
      # The folder; required: --config.data.root=DIR.
      source='folder', root=ml_collections.FieldReference(None, field_type=str),
      # Every row names a file and its caption; a row without a caption is an error naming its
      # line (write "" to train that file without text, as the 10% caption dropout does).
      captions='captions.jsonl',
      # Clips per pass of the (shuffled) records; file j % files for record j. A few thousand
      # steps of 32 clips never reach the end; resumes continue where the run stopped.
      num_records=1_000_000,
      # 'fixed' (every clip at world's size) is the default, as in configs/world.py; 'buckets'
      # crops files to the data.sizes aspects and durations, one size per batch; 'packed' keeps
      # each file's aspect ratio in as many tokens as a fixed clip, and there PNG/JPEG images
      # are 1-frame clips when model.patch_size's pt is 1 (else still clips of num_frames).
      layout='fixed',
  )
  config.train.sample_every = 0 if arg.runlocal else 1000  # grids of the folder's own captions
  # A packed row's captions whole, however long real captions are (world's are short).
  config.data.text_row_length = config.data.max_segments * config.text.max_length
  return config
