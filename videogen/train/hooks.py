"""The usual training hooks (train/loop.py's Hook): what a runner hands the loop.

  loop.train(run, workdir, hooks=hooks.defaults(run, workdir))

DiT runs: a captioned sample grid of the config's prompt set (world captions, or a folder
run's own captions) every config.train.sample_every steps. VAE runs: held-out clips beside
their reconstructions every sample_every steps and at the end, then the latent statistics of
the final EMA weights (workdir/latent_stats.json).
Every process calls a hook (they gather the weights); process 0 writes.
"""
import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from videogen.core import grids
from videogen.core import image_metrics
from videogen.core import media
from videogen.data import folder_source
from videogen.data import latent_cache
from videogen.data import pipeline
from videogen.data import prompts as prompts_lib
from videogen.data import tfds_source
from videogen.inference import generate
from videogen.parallel import distributed
from videogen.runtime import dit_run
from videogen.runtime import state as state_lib
from videogen.runtime import vae_run
from videogen.train import loop


def defaults(run, workdir) -> list[loop.Hook]:
  """The hooks a runner gives `loop.train` for this kind of run."""
  workdir, every = pathlib.Path(workdir), run.config.train.sample_every
  if isinstance(run, vae_run.VaeRun):
    return [loop.Hook(functools.partial(write_reconstruction_grid, workdir), every=every,
                      at_end=True),
            loop.Hook(functools.partial(write_latent_stats, workdir), at_end=True)]
  return [loop.Hook(functools.partial(write_sample_grid, workdir), every=every)]


def write_sample_grid(workdir: pathlib.Path, step: int, state: state_lib.TrainState,
                      run: dit_run.DitRun) -> None:
  """The config's prompt set from the EMA weights (a LoRA run's merged onto its base), as a
  captioned grid in workdir/samples/<step>/grid.{mp4,png}. In a multi-process run every
  process gathers the weights, then process 0 samples on one of its devices."""
  s = run.config.sample
  params = distributed.gather(run.model_params(state.ema_params if s.use_ema else state.params))
  if jax.process_index() != 0:
    return
  if jax.process_count() > 1:
    run = generate.sampling_run(run.config)
    params = jax.device_put(params, run.mesh.devices.flat[0])
  texts, seeds = sample_prompts(run.config, s.num_samples)
  gen = generate.Generator(run, params, step)
  settings = generate.settings_for(run.config)
  videos = gen.generate(texts, seeds=seeds, settings=settings)
  grids.write_grid(workdir / 'samples' / str(step) / 'grid', list(videos), texts,
                   fps=run.config.world.fps)


def sample_prompts(config, num: int) -> tuple[list[str], list[int]]:
  """(captions, seeds) of the sample grid: fixed world prompts, or for a folder (TFDS) run, or a
  latent run on a cache of one, the first `num` distinct non-empty captions of its caption file
  (of its first examples, records), repeated when it has fewer, since world prompts describe
  scenes such a run never saw."""
  source = pipeline.source(config)
  d = config.data
  cached = source == 'latent_cache' and latent_cache.read_metadata(d.cache_dir)['source']
  if cached and cached['kind'] != 'world':
    cache = latent_cache.LatentCacheSource(d.cache_dir)
    captions = [cache[i]['caption'] for i in range(min(len(cache), 16 * num))]
  elif source == 'folder':
    _, captions = folder_source.read_captions(pathlib.Path(d.root) / d.captions)
  elif source == 'tfds':
    captions = tfds_source.first_captions(
        d.tfds_name, d.split, count=16 * num, data_dir=d.get('tfds_data_dir'),
        caption_key=d.caption_key) if d.caption_key else []
  else:
    prompts = prompts_lib.world_prompts(config, num_train=num, num_held_out=0)
    return [p.text for p in prompts], [p.seed for p in prompts]
  distinct = list(dict.fromkeys(c for c in captions if c.strip())) or ['']
  return [distinct[i % len(distinct)] for i in range(num)], list(range(num))


@functools.partial(jax.jit, static_argnums=0)
def _reconstruct(model, params, video_bthwc):
  recon = model.apply({'params': params}, vae_run.encode_mean(model, params, video_bthwc),
                      method='decode')
  return jnp.clip(recon, -1.0, 1.0)


def write_reconstruction_grid(workdir: pathlib.Path, step: int, state: state_lib.TrainState,
                              run: vae_run.VaeRun) -> None:
  """Clips of config.data.source (the world's held-out split; a folder's or TFDS dataset's
  first shuffled records) beside their reconstructions (posterior means, decoded) by the EMA
  weights, captioned with PSNR, in workdir/samples/<step>/reconstruction.{mp4,png}."""
  params = distributed.gather(run.autoencoder_params(state.ema_params))
  if jax.process_index() != 0:
    return
  cfg = run.config
  clips = pipeline.source_clips(cfg, num_clips=cfg.sample.num_clips, seed=cfg.seed,
                                split='held_out')
  recon = _reconstruct(run.model, params, clips)
  psnr_b = np.asarray(image_metrics.psnr(recon, clips).mean(axis=1))
  pairs = [media.to_uint8(np.concatenate([c, r], axis=2)) for c, r in zip(clips, np.asarray(recon))]
  captions = [f'input | reconstruction, {p:.1f} dB' for p in psnr_b]
  grids.write_grid(workdir / 'samples' / str(step) / 'reconstruction', pairs, captions,
                   fps=cfg.world.fps)


def write_latent_stats(workdir: pathlib.Path, step: int, state: state_lib.TrainState,
                       run: vae_run.VaeRun) -> None:
  """workdir/latent_stats.json: vae_run.measure_latent_stats of the EMA weights at `step`."""
  params = distributed.gather(run.autoencoder_params(state.ema_params))
  stats = {'step': step, 'use_ema': True,
           **vae_run.measure_latent_stats(run.config, run.model, params)}
  if jax.process_index() == 0:
    media.write_json(workdir / vae_run.LATENT_STATS_FILE, stats)
