"""The causal video VAE on the procedural world: L1 + MSE + chroma + SSIM + KL (+ an optional
adversarial loss, off here), images and videos in one run.

Usage: `--config configs/vae_world.py` (the 'world' preset: 4x8x8 compression, 8 latent
channels, 9x32x32 clips), or `--config configs/vae_world.py:runlocal=True` (the 'tiny' preset on
5x16x16 clips, a few steps: the tests' smoke run). Any field can be overridden from the command
line: `--config.train.steps=5000`.
  preset:   autoencoder size, decoded in videogen/models/autoencoder.py ('world', 'tiny', 'wan').
  runlocal: shrink everything to a seconds-long smoke test.
  source:   where the clips come from: 'world' (rendered), 'folder' (your videos and images:
            `:source=folder --config.data.root=DIR`, the data fields of configs/folder.py) or
            'tfds' (`:source=tfds --config.data.tfds_name=NAME/CONFIG`, those of configs/tfds.py).
            Clips are world.num_frames x height x width at world.fps whatever the source.
"""
import ml_collections

from videogen.core import config_args



def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_args.parse_arg(arg, preset='world', runlocal=False, source='world')
  config = ml_collections.ConfigDict()
  config.seed = 0
  # Start from another VAE's weights: a run of experiments/train_vae.py or an export of it. A run
  # without checkpoints of its own starts with its EMA params wherever path and shape agree (the
  # rest, a discriminator too, at init; the optimizer fresh); once it has checkpoints, resuming
  # wins. '' starts from init.
  config.init_from = ''

  # The world section of configs/world.py (the VAE learns the scenes the DiT will see), with
  # the DiT's 8-frame clips plus one frame: the causal VAE takes 1 + 4k frames (9 -> 3 latent
  # frames); the DiT side pads 8 to 9 and trims the decoded frame.
  world = config_args.sibling_config(__file__, 'world.py')
  config.world = world.world
  config.world.num_frames = 9

  config.data = ml_collections.ConfigDict(dict(
      batch_size=4,       # global batch; must be divisible by mesh data x fsdp.
      split='train', num_workers=0, num_threads=2, prefetch=4,
      # Each clip's RGB channels in a random order, drawn inside the train step
      # (train/vae_loss.with_channel_permutations), so a shape stops implying its colours (the
      # held-out green triangle). Off by default; the measured recipe resumes with it on
      # (docs/vae.md).
      permute_channels=False,
  ))
  if arg.source not in ('world', 'folder', 'tfds'):
    raise ValueError(f"source {arg.source!r} is unknown: use 'world', 'folder' or 'tfds'.")
  if arg.source != 'world':  # the data fields a DiT config of that source adds to world.py's
    source_data = config_args.sibling_config(__file__, f'{arg.source}.py').data
    config.data.update({key: source_data[key] for key in source_data
                        if key in ('source', 'layout') or key not in world.data})

  # The preset's sizes (videogen/models/autoencoder.py PRESETS); a field set here overrides the
  # preset's, e.g. --config.model.latent_channels=16 (None: the preset's value).
  config.model = ml_collections.ConfigDict(dict(
      preset=arg.preset,
      latent_channels=ml_collections.config_dict.placeholder(int),
      base_channels=ml_collections.config_dict.placeholder(int),
      num_res_blocks=ml_collections.config_dict.placeholder(int),
  ))

  # Each term a mean (train/vae_loss.py); why each weight is what it is: docs/vae.md.
  # kl_weight 1e-5: the KL stays ~0.1-1% of the loss, enough to keep the posterior variance from
  #   collapsing without costing sharpness.
  # ssim_weight 0.2: brings 1 - SSIM to the scale of L1.
  # mse_weight 4: a squared term pulls hardest on the few pixels an object covers, which L1
  #   alone leaves at the background.
  # chroma_weight 0: hue on its own; the recipe turns it on when resuming (docs/vae.md).
  # adversarial_weight 0 (off, every CPU config): a short CPU run ends soon after the term
  #   could start; adversarial_start_step: once the reconstruction is good enough that the
  #   discriminator cannot win at once.
  config.loss = ml_collections.ConfigDict(dict(
      kl_weight=1e-5, ssim_weight=0.2, mse_weight=4.0, chroma_weight=0.0,
      adversarial_weight=0.0, adversarial_start_step=2000))
  # The discriminator (videogen/models/discriminator.py) and its Adam, at a constant learning
  # rate; b1 0.5, b2 0.9 as GANs commonly use. Built only when adversarial_weight > 0.
  config.discriminator = ml_collections.ConfigDict(dict(
      base_channels=32, num_layers=3, learning_rate=1e-4, b1=0.5, b2=0.9))

  # Plain Adam (weight_decay 0) with clipping; 3e-3 learns faster than 1e-3 here (docs/vae.md).
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
      # Steps with a nan/inf loss or gradient norm whose update may be dropped (per invocation)
      # before the run stops at the next one; 0: stop at the first (the last good save is kept).
      skip_nonfinite=0,
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
