"""A tiny Wan 2.1 checkpoint converted by the converter samples what diffusers' WanPipeline does.

tests/data/wan/ is a whole (tiny, random) Diffusers release: transformer/, vae/, text_encoder/
(umT5), tokenizer/; pipeline_golden.npz holds WanPipeline's frames for one prompt from fixed
starting latents with Wan's default sampler (UniPC, flow shift 3) and guidance 5 (written by
experiments/wan_parity.py in a torch venv).
"""
import json
import pathlib
import shutil
import subprocess
import sys

import einops
import jax
import numpy as np
import pytest

from configs import wan as wan_config
from configs import world as world_config
from tests import runner_env
from videogen.convert import wan_export
from videogen.inference import generate
from videogen.runtime import weights

DATA = pathlib.Path(__file__).parent / 'data' / 'wan'
GOLDEN = np.load(DATA / 'pipeline_golden.npz')
SETTINGS = json.loads(str(GOLDEN['settings']))
ROOT = pathlib.Path(__file__).parent.parent


def _convert(src, out, **kwargs):
  kwargs = dict(num_frames=SETTINGS['num_frames'], height=SETTINGS['height'],
                width=SETTINGS['width'], dtype='float32',
                text_length=SETTINGS['max_sequence_length'], **kwargs)
  return wan_export.convert(world_config.get_config('latent=True'), src, out, **kwargs)


@pytest.fixture(scope='module')
def export(tmp_path_factory):
  return _convert(DATA, tmp_path_factory.mktemp('wan') / 'export')[0]


def _settings(**overrides):
  return generate.SampleSettings(**{
      'method': 'unipc', 'steps': SETTINGS['num_inference_steps'],
      'cfg_scale': SETTINGS['guidance_scale'], 'shift': SETTINGS['flow_shift'],
      'negative_prompt': SETTINGS['negative_prompt'], **overrides})


def test_converted_pipeline_samples_what_diffusers_samples(export):
  gen = generate.Generator.from_workdir(export)
  noise = einops.rearrange(GOLDEN['latents'], 'b c t h w -> b t h w c')
  frames = gen.generate_float([SETTINGS['prompt']], settings=_settings(), noise=noise)
  expected = GOLDEN['frames'] * 2 - 1  # diffusers' [0, 1] frames in the model's [-1, 1]
  np.testing.assert_allclose(frames, expected, atol=1e-3)
  # Not by accident: another prompt, or no guidance, gives other frames.
  other = gen.generate_float(['w5 w6'], settings=_settings(), noise=noise)
  assert np.abs(other - expected).max() > 1e-2
  unguided = gen.generate_float([SETTINGS['prompt']], settings=_settings(cfg_scale=1.0),
                                noise=noise)
  assert np.abs(unguided - expected).max() > 1e-2


def test_original_release_converts_with_the_diffusers_parts(export, tmp_path):
  """The original release's DiT (its key names and config.json) with --vae, --text_encoder and
  --tokenizer taken from the Diffusers release: the same params as the Diffusers release's."""
  out, _ = _convert(DATA / 'original' / 'diffusion_pytorch_model.safetensors',
                    tmp_path / 'original', vae=DATA / 'vae', text_encoder=DATA / 'text_encoder',
                    tokenizer=DATA / 'tokenizer')
  ours = generate.Generator.from_workdir(out).params
  reference = generate.Generator.from_workdir(export).params
  assert jax.tree.all(jax.tree.map(np.array_equal, ours, reference))


def test_export_holds_wan_settings_and_a_movable_vae(export, tmp_path):
  config = json.loads((export / 'config.json').read_text())
  assert config['autoencoder'] == wan_export.VAE_FOLDER  # inside the export, not a machine path
  assert config['text']['mask_padding'] is False
  assert config['sample']['method'] == 'unipc' and not config['conditioning']['enabled']
  info = json.loads((export / 'export.json').read_text())
  assert info['params_bytes'] >= info['per_device_bytes'] > 0
  moved = shutil.copytree(export, tmp_path / 'moved')
  gen = generate.Generator.from_workdir(moved)
  assert gen.run.config.autoencoder == str(moved / wan_export.VAE_FOLDER)
  assert gen.vae.latent_channels == 4


@pytest.mark.integration
def test_runner_converts_and_refuses_an_existing_out(tmp_path):
  out = tmp_path / 'out'
  cmd = [sys.executable, 'experiments/convert_wan.py', '--src', str(DATA), '--out', str(out),
         '--num_frames', '9', '--height', '16', '--width', '32']
  done = subprocess.run(cmd, cwd=ROOT, env=runner_env.one_device(), capture_output=True, text=True,
                        timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert 'host peak while converting' in done.stdout and (out / 'params').is_dir()
  again = subprocess.run(cmd, cwd=ROOT, env=runner_env.one_device(), capture_output=True, text=True,
                         timeout=300)
  assert again.returncode != 0 and 'exists: pass a new --out folder' in again.stderr


def test_bad_sources_get_one_sentence_and_leave_no_partial_export(tmp_path, monkeypatch):
  with pytest.raises(FileNotFoundError, match='vae .* does not exist.*--vae'):
    _convert(DATA / 'original', tmp_path / 'a')
  # A folder that is not a Wan checkpoint.
  (tmp_path / 'notwan').mkdir()
  with pytest.raises(FileNotFoundError, match='does not exist: pass the folder of a Wan 2.1'):
    _convert(tmp_path / 'notwan', tmp_path / 'b')
  # A release with its VAE weights missing.
  broken = shutil.copytree(DATA, tmp_path / 'broken')
  (broken / 'vae' / 'diffusion_pytorch_model.safetensors').unlink()
  with pytest.raises(FileNotFoundError, match='no .safetensors file'):
    _convert(broken, tmp_path / 'c')
  # A failure while writing (here: the disk fills up) leaves nothing at --out.
  def disk_full(*args):
    raise OSError('No space left on device')
  monkeypatch.setattr(wan_export.checkpoint, 'save_params', disk_full)
  with pytest.raises(OSError, match='No space left'):
    _convert(DATA, tmp_path / 'd')
  assert not (tmp_path / 'd').exists() and not (tmp_path / 'd.partial').exists()


@pytest.mark.filterwarnings('ignore:Prompt .* tokens dropped')  # the tiny export's 16 positions
def test_fine_tune_config_starts_from_the_export_and_trains(export, tmp_path):
  """configs/wan.py:export=OUT trains on a latent cache of the export's VAE and umT5, FSDP over
  8 devices, starting from every one of the converted weights."""
  from videogen.data import latent_cache  # pylint: disable=g-import-not-at-top
  from videogen.models import text  # pylint: disable=g-import-not-at-top
  from videogen.runtime import dit_run  # pylint: disable=g-import-not-at-top
  from videogen.runtime import weights  # pylint: disable=g-import-not-at-top
  from videogen.train import loop  # pylint: disable=g-import-not-at-top
  config = wan_config.get_config(f'export={export}')
  gen = generate.Generator.from_workdir(export)
  latent_cache.encode_source(config, gen.vae, text.encoder_from_config(config.text),
                            tmp_path / 'cache', vae_workdir=config.autoencoder, num_records=8,
                            batch_size=8)
  config.data.update(cache_dir=str(tmp_path / 'cache'), batch_size=8, num_threads=1)
  config.mesh.update(data=1, fsdp=-1)
  config.train.update(steps=2, checkpoint_every=2, log_every=1)
  run = dit_run.build(config)
  _, new, dropped = weights.match_params(run.abstract_state.params, gen.params, export)
  assert not new and not dropped
  result = loop.train(run, tmp_path / 'run', progress=False)
  assert (result.first_step, result.last_step) == (0, 2)
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(result.state.params))


def test_fine_tune_config_needs_an_export(tmp_path):
  with pytest.raises(ValueError, match='needs the export to fine-tune'):
    wan_config.get_config('')
  with pytest.raises(FileNotFoundError, match='is not an export of experiments/convert_wan.py'):
    wan_config.get_config(f'export={tmp_path}')


def test_a_missing_source_names_the_src_flag(tmp_path):
  with pytest.raises(FileNotFoundError, match='transformer .*nothere does not exist.*--src'):
    _convert(tmp_path / 'nothere', tmp_path / 'out')


def test_sample_py_defaults_to_the_exports_sampler(export):
  """experiments/sample.py without --method/--steps/--cfg samples as the run's config says: Wan's
  UniPC, 50 steps, guidance 5 for an export; SampleSettings' own defaults for a config without
  a sample section."""
  config = weights.load_config(export)
  wan = generate.settings_for(config)
  assert (wan.steps, wan.method, wan.cfg_scale) == (50, 'unipc', 5.0)
  assert generate.settings_for(config, steps=8).steps == 8  # a flag given wins
  del config.sample
  plain = generate.settings_for(config)
  assert (plain.steps, plain.method, plain.cfg_scale) == (25, 'heun', 4.0)
