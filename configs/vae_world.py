"""The causal video VAE on the procedural world: L1 + SSIM + KL (+ an optional adversarial loss,
off here), images and videos in one run.

Usage: `--config configs/vae_world.py` (the 'world' preset: 4x8x8 compression, 8 latent
channels, 9x32x32 clips), or `--config configs/vae_world.py:runlocal=True` (the 'tiny' preset on
5x16x16 clips, a few steps: the tests' smoke run). Any field can be overridden from the command
line: `--config.train.steps=5000`.
  preset:   autoencoder size, decoded in videogen/models/autoencoder.py ('world', 'tiny', 'wan').
  runlocal: shrink everything to a seconds-long smoke test.
"""
import importlib.util
import pathlib

import ml_collections

from videogen.core import config_args


def _dit_world() -> ml_collections.ConfigDict:
  """The world section of configs/world.py: the VAE learns the scenes the DiT will see."""
  spec = importlib.util.spec_from_file_location(
      'dit_world_config', pathlib.Path(__file__).with_name('world.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config().world


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_args.parse_arg(arg, preset='world', runlocal=False)
  config = ml_collections.ConfigDict()
  config.seed = 0

  # The DiT's 8-frame world clips plus one frame: the causal VAE takes 1 + 4k frames (9 -> 3
  # latent frames); the DiT side pads 8 to 9 and trims the decoded frame.
  config.world = _dit_world()
  config.world.num_frames = 9

  config.data = ml_collections.ConfigDict(dict(
      batch_size=4,       # global batch; must be divisible by mesh data x fsdp.
      split='train', num_workers=0, num_threads=2, prefetch=4,
      # Each clip's RGB channels in a random order, drawn inside the train step
      # (train/vae_loss.with_channel_permutations): shapes stop implying colours. Without it the
      # world VAE drew held-out green triangles lilac in the first frame (encoded alone), 17.4 dB
      # there against ~28 in later frames at step 5,831; resumed with it, 29.5 dB there at step
      # 7,971 (held out 26.6 -> 30.1 dB by step 8,751). Off by default: not measured from step 0.
      permute_channels=False,
  ))

  # The preset's sizes (videogen/models/autoencoder.py PRESETS); a field set here overrides the
  # preset's, e.g. --config.model.latent_channels=16 (None: the preset's value).
  config.model = ml_collections.ConfigDict(dict(
      preset=arg.preset,
      latent_channels=ml_collections.config_dict.placeholder(int),
      base_channels=ml_collections.config_dict.placeholder(int),
      num_res_blocks=ml_collections.config_dict.placeholder(int),
  ))

  # Means: L1 per pixel, 1 - SSIM per frame, KL per latent element (train/vae_loss.py).
  # kl_weight 1e-5: at the 30 dB target L1 is ~0.02 while a latent element's KL is ~1-10 nats,
  # so the KL term stays ~0.1-1% of the loss and costs no sharpness, yet it still stops the
  # posterior variance collapsing to 0 and the means drifting (Stable Diffusion's 1e-6 on sums
  # is ~1e-8 on these means, which leaves the variance free to collapse).
  # ssim_weight 0.2: 1 - SSIM is ~5x larger than L1 early on; 0.2 makes the terms comparable.
  # mse_weight 4: with L1 alone a world VAE sat at the background-only reconstruction (~14 dB
  # train PSNR at steps 50-340, objects never drawn): L1's gradient is the same ±1 for every
  # pixel, so the ~3% of pixels an object covers are outweighed by the background's, and the
  # per-pixel median a decoder can draw without the latent is the background. A squared term
  # grows with the error: an object missing by ~1.7 gets 1 + 4·2·1.7 ≈ 15x a fitted pixel's pull.
  # chroma_weight: the squared error of chroma (a pixel minus its grey level) on top of the MSE,
  # weighing hue on its own. Without it the world VAE drew objects in the right place and
  # brightness but in the palette's mean hue for 3,000 steps (hue error 62 of 255 levels):
  # brightness carries most of the variance, and an autoencoder learns the larger components
  # first. Resuming that run at step 3,011 with weight 16 (hue then pulled 1 + 16/4 = 5x as hard
  # as brightness) took it from 19.2 to 26.3 dB train PSNR by step 5,000 (held-out hue error
  # 62 -> 26). From step 0 it is not shown to help: a fresh run with weight 16 still drew only
  # the background at step 741, where the run without it drew objects from step ~400 (one seed
  # each). So it is 0 here, and the measured recipe resumes the default 3,000-step run with it
  # (README, Benchmarks -> Video autoencoder: five runs in one workdir, 30.1 dB held out).
  # adversarial_weight (train/vae_adversarial.py: a 3D PatchGAN discriminator, hinge loss, fixed
  # weight): 0 (off) here, as in every CPU config. Not for its cost (a discriminator forward is
  # 0.09 GFLOP on a 9x32x32 clip against the VAE's 5.9, so its three forwards and two backwards
  # add a few percent), but because a CPU run's few thousand steps end soon after the term could
  # start, and a GAN term in so short a run mostly adds instability before it adds sharpness.
  # adversarial_start_step 2000: only after the warm-up is the reconstruction good enough that
  # the discriminator cannot win at once and dominate the VAE's gradients; both players train
  # from this step on.
  config.loss = ml_collections.ConfigDict(dict(
      kl_weight=1e-5, ssim_weight=0.2, mse_weight=4.0, chroma_weight=0.0,
      adversarial_weight=0.0, adversarial_start_step=2000))
  # The discriminator (videogen/models/discriminator.py) and its Adam, at a constant learning
  # rate; b1 0.5, b2 0.9 as GANs commonly use. Built only when adversarial_weight > 0.
  config.discriminator = ml_collections.ConfigDict(dict(
      base_channels=32, num_layers=3, learning_rate=1e-4, b1=0.5, b2=0.9))

  # Plain Adam (weight_decay 0) with clipping. learning_rate 3e-3: on the tiny preset (5x16x16,
  # batch 8) 240 steps reached 17.9 dB on unseen clips against 16.5 dB at 1e-3.
  config.optim = ml_collections.ConfigDict(dict(
      learning_rate=3e-3, warmup_steps=50, total_steps=3000, end_lr_factor=0.1,
      weight_decay=0.0, b1=0.9, b2=0.99, grad_clip=1.0, ema_decay=0.999,
      grad_accum_steps=1,  # micro-batches per update (videogen/train/step.py)
  ))

  # Mesh axes within a slice, and across slices (dcn); see configs/world.py and
  # videogen/parallel/mesh.py.
  config.mesh = ml_collections.ConfigDict(dict(
      data=-1, fsdp=1, context=1, tensor=1,
      dcn=dict(data=1, fsdp=1, context=1, tensor=1),
  ))
  # Logical axis name -> mesh axes for the VAE's parameters and its batch
  # (videogen/parallel/sharding.py; the conv kernels are [kt, kh, kw, conv_in, conv_out]).
  config.logical_axis_rules = (
      ('batch', ('data', 'fsdp')),  # clips (or frames, for image steps): data parallel
      ('conv_in', None),  # input channels of a conv kernel: small, replicated
      ('conv_out', 'fsdp'),  # output channels (conv kernels, biases, norm scales): FSDP shards
  )
  config.train = ml_collections.ConfigDict(dict(
      steps=3000,            # stop at this step ...
      max_minutes=0.0,       # ... or after this much wall time (0: no limit)
      # Every image_every-th step trains on images: each frame of the batch's clips alone, as a
      # 1-frame video (the causal encoder's first-frame path, which the DiT's images and
      # image-to-video use). 0: videos only.
      image_every=8,
      log_every=10, checkpoint_every=100, keep_checkpoints=2,
      sample_every=500,      # reconstruction grid every N steps (0: only at the end)
  ))

  # Held-out clips (split 'held_out') shown as input | reconstruction in samples/<step>/.
  config.sample = ml_collections.ConfigDict(dict(num_clips=8, use_ema=True))

  # Per-channel mean/std of posterior means, measured on train-split clips of another seed at
  # the end of a run (workdir/latent_stats.json): what normalises latents for the DiT.
  config.latent_stats = ml_collections.ConfigDict(dict(num_clips=256, batch_size=16))

  if arg.runlocal:
    config.model.preset = 'tiny'
    config.world.update(height=16, width=16, num_frames=5)
    config.data.update(batch_size=8, num_threads=1, prefetch=1)
    config.optim.update(warmup_steps=1, total_steps=20)
    config.train.update(steps=4, image_every=2, log_every=1, checkpoint_every=2, sample_every=0)
    config.discriminator.base_channels = 8
    config.sample.num_clips = 2
    config.latent_stats.update(num_clips=8, batch_size=8)
  return config
