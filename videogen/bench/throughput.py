"""Throughput: the input pipeline (clips/s), the train step (tokens/s, FLOP/s), the sampler."""
import copy
import dataclasses
import json
import pathlib
import subprocess
import tempfile
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from videogen.bench import step_profile
from videogen.core import patches
from videogen.core import tables
from videogen.core import timing
from videogen.data import pipeline
from videogen.data import world
from videogen.diffusion import samplers
from videogen.inference import vae as vae_lib
from videogen.models import autoencoder
from videogen.models import dit
from videogen.parallel import sharding
from videogen.runtime import dit_run
from videogen.train import loop
from videogen.train import prefetch


def pipeline_rate(options: world.WorldOptions, *, batch_size: int, num_workers: int,
                  num_batches: int, seed: int = 0) -> dict:
  """Times `num_batches` batches after the first (which pays worker start-up)."""
  iterator = iter(pipeline.world_dataset(options, seed=seed, batch_size=batch_size,
                                         num_workers=num_workers))
  start = time.perf_counter()
  next(iterator)
  startup = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(num_batches):
    next(iterator)
  seconds = time.perf_counter() - start
  clips = num_batches * batch_size
  return {
      'shape': f'{options.height}x{options.width}x{options.num_frames}',
      'workers': num_workers,
      'clips_per_s': clips / seconds,
      'frames_per_s': clips * options.num_frames / seconds,
      'first_batch_s': startup,
  }


def matmul_rate(size: int = 2048, dtype=jnp.float32, repeats: int = 5) -> float:
  """This machine's dense matmul rate in FLOP/s: the ceiling that MFU is measured against
  (2048 saturates a CPU; a GPU needs about 8192)."""
  a = jax.random.normal(jax.random.key(0), (size, size), dtype)
  matmul = jax.jit(lambda x: x @ x)
  return 2 * size ** 3 / timing.median_seconds(lambda: matmul(a).block_until_ready(), repeats)


@dataclasses.dataclass(frozen=True)
class SyntheticText:
  """Stands in for the text encoder where only the DiT's speed is measured: every caption gets
  the same fixed random states [max_length, dim], so a DiT is timed at any text shape (Wan's
  umT5: 512 x 4096) without the encoder's weights. Nothing it feeds is meant to learn."""
  max_length: int
  dim: int
  name: str = 'synthetic'

  def encode(self, texts) -> tuple[np.ndarray, np.ndarray]:
    states_ld = np.random.default_rng(0).standard_normal((self.max_length, self.dim))
    return (np.broadcast_to(states_ld.astype(np.float32), (len(texts), *states_ld.shape)),
            np.ones((len(texts), self.max_length), bool))

  def unconditional(self) -> tuple[np.ndarray, np.ndarray]:
    states_bld, mask_bl = self.encode([''])
    return states_bld[0], mask_bl[0]


def _build(config, text_shape, devices=None):
  """dit_run.build, with SyntheticText(*text_shape) for the encoder unless text_shape is None."""
  return dit_run.build(config, devices=devices,
                       encoder=text_shape and SyntheticText(*text_shape))


def _model_config(config, variant: str, shape_thw, patch, batch_size: int,
                  scan_layers: bool | None = None, remat: str | None = None):
  """`config` at this variant, clip, patch and batch; blocks scanned or unrolled and
  rematerialised as the config says unless scan_layers and remat do."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.model.update(variant=variant, patch_size=tuple(patch))
  if scan_layers is not None:
    config.model.scan_layers = scan_layers
  if remat is not None:
    config.model.remat = remat
  config.world.update(num_frames=shape_thw[0], height=shape_thw[1], width=shape_thw[2])
  config.data.batch_size = batch_size
  return config


def _fresh_state(parts: dit_run.DitRun):
  return sharding.create_sharded_state(parts.init_fn, parts.state_shardings, parts.mesh,
                                       parts.rules)


def _step_runner(parts: dit_run.DitRun, state=None):
  """run(batch): one step of the sharded train step from `state` (default: a fresh one), carried
  between calls (the state given is donated); returns when the step is done. run.compiled_text
  (batch) is the step's compiled HLO."""
  holder = {'state': _fresh_state(parts) if state is None else state}
  step = loop.make_sharded_train_step(parts)

  def run(batch):
    holder['state'], out = step(holder['state'], batch)
    jax.block_until_ready(out)

  run.compiled_text = lambda batch: step.lower(holder['state'], batch).compile().as_text()
  return run


def _random_batch(parts: dit_run.DitRun, batch_size: int):
  """A train batch on the run's mesh: uniform random clips, one caption's states."""
  rng = np.random.default_rng(0)
  text, mask = parts.encoder.encode(['a red circle moves left'] * batch_size)
  return sharding.shard_batch(
      {'video': rng.uniform(-1, 1, (batch_size, *parts.shape)).astype(np.float32),
       'text': text, 'text_mask': mask}, sharding.batch_sharding(parts.mesh, parts.rules))


def _peer_case(parts: dit_run.DitRun, shape_thw, patch, batch_size: int) -> dict:
  """The same DiT for experiments/peer_benchmark.py (its --cases field) and its text input
  (--text, tokens:width)."""
  c = parts.model.config
  return {'peer_case': ':'.join(map(str, (c.dim, c.depth, c.heads, c.mlp_dim, c.in_channels,
                                          c.out_channels, 'x'.join(map(str, shape_thw)),
                                          'x'.join(map(str, patch)), batch_size))),
          'peer_text': f'{parts.encoder.max_length}:{parts.encoder.dim}'}


def train_step_rate(config, *, variant: str, shape_thw, patch, batch_size: int,
                    scan_layers: bool | None = None, remat: str | None = None,
                    repeats: int = 5, text_shape: tuple[int, int] | None = None) -> dict:
  """Steps/s, tokens/s and achieved FLOP/s of the real train step on random data; text_shape
  (tokens, width) times it on SyntheticText captions of that shape, else on the config's
  encoder's."""
  parts = _build(_model_config(config, variant, shape_thw, patch, batch_size, scan_layers, remat),
                 text_shape)
  batch = _random_batch(parts, batch_size)
  state = _fresh_state(parts)
  forward, t = jax.jit(parts.apply), jnp.full((batch_size,), 0.5)
  forward_s = timing.median_seconds(lambda: jax.block_until_ready(forward(
      state.params, batch['video'], t, batch['text'], batch['text_mask'])), repeats)
  run = _step_runner(parts, state)  # the forward is timed first: the steps donate the state
  seconds = timing.median_seconds(lambda: run(batch), repeats)
  tokens = patches.num_tokens(shape_thw, patch)
  c = parts.model.config
  flops = 3 * batch_size * dit.flops_per_sample(c, tokens, parts.encoder.max_length)
  return {'variant': variant, 'clip': 'x'.join(map(str, shape_thw)),
          'patch': 'x'.join(map(str, patch)), 'tokens': tokens, 'batch': batch_size,
          'blocks': 'scanned' if c.scan_layers else 'unrolled', 'remat': c.remat,
          'params_M': dit.count_params(parts.abstract_state.params) / 1e6, 'step_s': seconds,
          'forward_s': forward_s, 'tokens_per_s': batch_size * tokens / seconds,
          'gflops_per_s': flops / seconds / 1e9,
          **_peer_case(parts, shape_thw, patch, batch_size)}


def train_step_profile(config, case: str, *, steps: int = 5, top: int = 15,
                       text_shape: tuple[int, int] | None = None) -> dict:
  """step_profile.profile of the real train step of one case (parse_case's string) on random
  data; text_shape as in train_step_rate."""
  kwargs = parse_case(case)  # _model_config's own argument names
  parts = _build(_model_config(config, **kwargs), text_shape)
  batch = _random_batch(parts, kwargs['batch_size'])
  run = _step_runner(parts)
  return step_profile.profile(lambda: run(batch), run.compiled_text(batch), steps=steps,
                              top=top)


def _layout_run(config, layout: str, num_batches: int):
  """(step one batch, the batches, real tokens per step, fill) of the config's train step on
  `num_batches` of the world's batches in `layout`; each batch stepped once (compiled)."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.data.layout = layout
  parts = dit_run.build(config)
  run = _step_runner(parts)
  data, batches, tokens, fills = iter(parts.dataset(0, 1)), [], [], []
  for step in range(num_batches):
    model_batch, counts, levels = parts.model_batch(next(data), step)
    tokens.append(counts['tokens'])
    fills.append(levels.get('fill', 1.0))
    batches.append(sharding.shard_batch(model_batch,
                                        sharding.batch_sharding(parts.mesh, parts.rules)))
  for batch in batches:
    run(batch)
  return run, batches, float(np.mean(tokens)), float(np.mean(fills))


def layout_step_rates(config, layouts=('fixed', 'packed'), *, num_batches: int = 4,
                      repeats: int = 30) -> list[dict]:
  """Real tokens/s of the config's train step on the world's own batches in each data layout
  ('fixed', 'packed', 'buckets'; configs/world.py data.layout): padding is not counted and
  loading is not timed. The layouts' steps are timed in turn, one step each per round for
  `repeats` rounds, so a machine whose speed drifts slows them alike; medians are reported,
  with each layout's rate against the first's."""
  runs = {layout: _layout_run(config, layout, num_batches) for layout in layouts}
  times = {layout: [] for layout in layouts}
  for i in range(repeats):
    for layout, (run, batches, _, _) in runs.items():
      start = time.perf_counter()
      run(batches[i % num_batches])
      times[layout].append(time.perf_counter() - start)
  rows = []
  for layout, (_, _, tokens, fill) in runs.items():
    seconds = float(np.median(times[layout]))
    rows.append({'layout': layout, 'variant': config.model.variant,
                 'batch': config.data.batch_size, 'real_tokens_per_step': tokens, 'fill': fill,
                 'step_s': seconds, 'real_tokens_per_s': tokens / seconds})
  for row in rows:
    row['vs_first'] = row['real_tokens_per_s'] / rows[0]['real_tokens_per_s']
  return rows


def loop_rates(config, *, steps: int = 20, rounds: int = 3) -> list[dict]:
  """Steps/s of the training loop's own work on the config's data (next host batch -> model
  batch, i.e. caption encoding -> sharded train step), with each model batch made in turn or on
  a thread while the step runs (train/prefetch.py, data.ahead), each trained once or twice
  (data.echo), and in turn and twice with one caption to each clip or to two (world data,
  data.clips_per_caption); 'configs_own' marks the config's way. The ways alternate, `steps`
  each for `rounds` rounds, so a machine whose speed drifts slows all alike; medians of the
  rounds' rates, each against 'in turn'."""
  parts = dit_run.build(config)
  holder = {'state': _fresh_state(parts)}
  step = loop.make_sharded_train_step(parts)
  batch_sharding = sharding.batch_sharding(parts.mesh, parts.rules)

  def data(clips_per_caption: int):
    varied = copy.deepcopy(config)
    varied.data.clips_per_caption = clips_per_caption
    return iter(dataclasses.replace(parts, config=varied).dataset(0, 1))

  def run(batches) -> float:
    start = time.perf_counter()
    for _ in range(steps):
      model_batch, _, _ = next(batches)
      holder['state'], out = step(holder['state'], sharding.shard_batch(model_batch,
                                                                        batch_sharding))
    jax.block_until_ready(out)
    return steps / (time.perf_counter() - start)

  # name: (ahead, echo, clips per caption)
  ways = {'in turn': (0, 1, 1), 'ahead': (1, 1, 1), 'in turn, echo 2': (0, 2, 1),
          'ahead, echo 2': (1, 2, 1)}
  if pipeline.source(config) == 'world':
    ways['in turn, echo 2, 2 clips a caption'] = (0, 2, 2)
  datas = {k: data(k) for k in {k for _, _, k in ways.values()}}
  for batches in datas.values():  # compiles the step, and the text encoder for each batch shape
    with prefetch.ModelBatches(parts, batches, first_step=0, ahead=0) as warm:
      run(warm)
  rates = {name: [] for name in ways}
  for _ in range(rounds):
    for name, (ahead, echo, k) in ways.items():
      with prefetch.ModelBatches(parts, datas[k], first_step=0, ahead=ahead,
                                 echo=echo) as batches:
        rates[name].append(run(batches))
  own = (config.data.get('ahead', 1), config.data.get('echo', 1),
         config.data.get('clips_per_caption', 1))
  rows = [{'loop': name, 'variant': config.model.variant, 'batch': config.data.batch_size,
           'layout': config.data.layout, 'devices': len(parts.mesh.devices.flat),
           'configs_own': ways[name] == own, 'steps_per_s': float(np.median(values))}
          for name, values in rates.items()]
  for row in rows:
    row['vs_in_turn'] = row['steps_per_s'] / rows[0]['steps_per_s']
  return rows


def sampler_overhead(config, *, variant: str, shape_thw, patch, steps: int = 10,
                     repeats: int = 3, text_shape: tuple[int, int] | None = None,
                     guided_steps: int = 0) -> dict:
  """Seconds per video, and the compiled loop's time over `steps` separate forward passes; with
  guided_steps, also the seconds of one video sampled in that many Euler steps with text
  guidance (scale 4: the caption's and the empty prompt's branches in one batch of 2), as the
  peer benchmark samples (experiments/peer_benchmark.py --sampler_steps)."""
  # One video on one device, as Generator samples.
  parts = _build(_model_config(config, variant, shape_thw, patch, 1), text_shape,
                 devices=jax.local_devices()[:1])
  params = _fresh_state(parts).ema_params
  text, mask = (jnp.asarray(a) for a in parts.encoder.encode(['a red circle moves left']))
  noise = jax.random.normal(jax.random.key(0), (1, *parts.shape))
  forward = jax.jit(parts.apply)
  t = jnp.full((1,), 0.5)
  one = timing.median_seconds(
      lambda: forward(params, noise, t, text, mask).block_until_ready(), repeats)
  sampler = samplers.make_sampler(parts.apply, steps=steps, method='euler', shift=1.0)
  loop_s = timing.median_seconds(
      lambda: sampler(params, noise, [(text, mask)]).block_until_ready(), repeats)
  row = {'variant': variant, 'clip': 'x'.join(map(str, shape_thw)),
         'patch': 'x'.join(map(str, patch)), 'steps': steps, 'forward_s': one,
         'sample_s': loop_s, 'overhead_pct': 100 * (loop_s / (steps * one) - 1)}
  if guided_steps:
    null = tuple(jnp.asarray(a)[None] for a in parts.encoder.unconditional())
    guided = samplers.make_sampler(parts.apply, steps=guided_steps, method='euler', shift=1.0,
                                   weights=samplers.guidance_weights(4.0))
    row.update(guided_steps=guided_steps, guided_sample_s=timing.median_seconds(
        lambda: guided(params, noise, [(text, mask), null]).block_until_ready(), repeats))
  return row


def parse_case(case: str) -> dict:
  """'variant:TxHxW:ptxphxpw:batch[:scanned|unrolled][:remat=POLICY]' (e.g. 'T/2:8x32x32:2x8x8:32'
  or 'T/2:8x32x32:2x8x8:32:remat=dots') -> train_step_rate's kwargs; a field left out keeps the
  config's block layout or remat policy."""
  ints = lambda text: tuple(int(v) for v in text.split('x'))
  layouts = {'scanned': True, 'unrolled': False}
  remats = {f'remat={name}': name for name in dit.REMAT_POLICIES}
  try:
    variant, clip, patch, batch, *options = case.split(':')
    unknown = [o for o in options if o not in layouts and o not in remats]
    if unknown or len(options) > 2 or len({o in layouts for o in options}) < len(options):
      raise ValueError(options)
    return {'variant': variant, 'shape_thw': ints(clip), 'patch': ints(patch),
            'batch_size': int(batch),
            'scan_layers': next((layouts[o] for o in options if o in layouts), None),
            'remat': next((remats[o] for o in options if o in remats), None)}
  except ValueError as error:
    raise ValueError(f'case {case!r} is not variant:TxHxW:ptxphxpw:batch[:scanned|unrolled]'
                     f'[:remat={"|".join(dit.REMAT_POLICIES)}], e.g. T/2:8x32x32:2x8x8:32.'
                     ) from error


def model_benchmark(config, cases, layouts, *, sampler_steps: int = 10,
                    text_shape: tuple[int, int] | None = None, matmul_size: int = 2048,
                    loop_steps: int = 0, guided_steps: int = 0) -> dict:
  """{'matmul', 'peak_gflops_per_s', 'train', 'sampler', 'layouts', 'loop'}: each case's train
  step (with its achieved FLOP/s as a share of the matmul rate measured in the same run, in the
  model's compute dtype: MFU) and sampler overhead (and guided sampling, guided_steps > 0), the
  config's train step in each data layout, and (loop_steps > 0) the config's training loop with
  model batches made in turn or ahead."""
  dtype = config.model.dtype
  peak = matmul_rate(matmul_size, jnp.dtype(dtype))
  train_rows, sampler_rows = [], []
  for case in cases:
    kwargs = parse_case(case)
    row = train_step_rate(config, **kwargs, text_shape=text_shape)
    train_rows.append({**row, 'mfu_pct': 100 * row['gflops_per_s'] * 1e9 / peak})
    if kwargs['scan_layers'] is None and kwargs['remat'] is None:  # else: train-step variants
      sampler_rows.append(sampler_overhead(config, variant=kwargs['variant'],
                                           shape_thw=kwargs['shape_thw'], patch=kwargs['patch'],
                                           steps=sampler_steps, text_shape=text_shape,
                                           guided_steps=guided_steps))
  return {'matmul': f'{dtype} {matmul_size}^2', 'peak_gflops_per_s': peak / 1e9,
          'train': train_rows, 'sampler': sampler_rows,
          'layouts': layout_step_rates(config, layouts) if layouts else [],
          'loop': loop_rates(config, steps=loop_steps) if loop_steps else []}


def _run_peer(peer_python: str, args: list[str]) -> dict:
  """experiments/peer_benchmark.py's JSON record, run with `peer_python` and `args`."""
  script = pathlib.Path(__file__).resolve().parents[2] / 'experiments' / 'peer_benchmark.py'
  with tempfile.TemporaryDirectory() as tmp:
    out = pathlib.Path(tmp) / 'peer.json'
    done = subprocess.run([peer_python, str(script), *args, '--out', str(out)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
      raise RuntimeError(f'the peer benchmark failed with {peer_python} ({done.stderr[-500:]}): '
                         'pass the python of a venv with torch and diffusers '
                         '(experiments/peer_benchmark.py names the versions).')
    return json.loads(out.read_text())


def peer_timings(config, cases, peer_python: str, *, text_shape: tuple[int, int] | None = None,
                 threads: int = 2, repeats: int = 5, device: str = 'cpu',
                 guided_steps: int = 0) -> list[dict]:
  """Runs experiments/peer_benchmark.py with `peer_python` (a venv with torch and diffusers) on
  the DiT of each case (parse_case's strings), in the config's model.dtype, on `device` ('cpu'
  or 'cuda'), one call per text shape, sampling one video in guided_steps guided Euler steps too
  (0: not); returns its rows in case order, each with the torch version and where it ran. Run
  it before ours: an accelerator's memory that jax has taken stays taken until our process
  ends."""
  wanted = []
  for case in cases:
    kwargs = parse_case(case)
    parts = _build(_model_config(config, kwargs['variant'], kwargs['shape_thw'],
                                 kwargs['patch'], kwargs['batch_size']), text_shape)
    wanted.append(_peer_case(parts, kwargs['shape_thw'], kwargs['patch'], kwargs['batch_size']))
  rows = [None] * len(wanted)
  for text in dict.fromkeys(w['peer_text'] for w in wanted):
    indices = [i for i, w in enumerate(wanted) if w['peer_text'] == text]
    record = _run_peer(peer_python, [
        '--cases', ','.join(wanted[i]['peer_case'] for i in indices), '--text', text,
        '--threads', str(threads), '--repeats', str(repeats), '--device', device,
        '--dtype', config.model.dtype, '--sampler_steps', str(guided_steps)])
    for i, row in zip(indices, record['rows']):
      rows[i] = {**row, 'peer': f"torch {record['torch']} eager, {record['where']}",
                 'matmul_gflops_per_s': record['matmul_gflops_per_s']}
  return rows


def peer_vae_timings(vae_cases, peer_python: str, *, threads: int = 2, repeats: int = 3,
                     device: str = 'cpu') -> list[dict]:
  """diffusers' AutoencoderKLWan at each VAE case's widths (parse_vae_case's strings), timed by
  experiments/peer_benchmark.py with `peer_python` in float32; its rows in case order."""
  record = _run_peer(peer_python, ['--vae_cases', ','.join(vae_cases), '--threads', str(threads),
                                   '--repeats', str(repeats), '--device', device])
  return [{**row, 'peer': f"torch {record['torch']} eager, {record['where']}"}
          for row in record['vae_rows']]


def vae_peer_rows(ours: list[dict], peer: list[dict]) -> list[dict]:
  """Our vae_speed rows beside the peer's of the same cases, with the ratios (above 1: ours
  faster)."""
  return [{'vae_case': row['vae_case'], 'clip': row['clip'], 'peer': other['peer'],
           'peer_params_M': other['params_M'], 'params_M': row['params_M'],
           'peer_encode_s': other['encode_s'], 'encode_s': row['encode_s'],
           'encode_ratio': other['encode_s'] / row['encode_s'],
           'peer_decode_s': other['decode_s'], 'decode_s': row['decode_s'],
           'decode_ratio': other['decode_s'] / row['decode_s']}
          for row, other in zip(ours, peer)]


# What the speed targets ask of our DiT: this many times the peer's speed, train step and forward.
TARGET_RATIO = 1.5


def peer_rows(train_rows: list[dict], peer: list[dict], sampler_rows: list[dict] = (), *,
              matmul_gflops_per_s: float | None = None) -> list[dict]:
  """Our train_rows beside the peer's timings of the same cases (peer_timings), with the ratios
  (above 1: ours faster); where both sampled the case's DiT with guidance (our sampler_rows of
  the same variant, clip and patch), those seconds and their ratio too.

  Where the rates are known (our row's FLOP/s, our matmul_gflops_per_s, the peer's): the FLOP/s
  our train step and forward would have to sustain to run TARGET_RATIO times the peer's speed,
  as a percentage of the faster of the two dense matmul rates measured (ours, XLA's; the peer's,
  torch's): above 100, no implementation of the same model in the same dtype gets there on this
  machine, since a whole step cannot outrun the machine's dense matmul.
  """
  rows = []
  for row, other in zip(train_rows, peer):
    rows.append({'variant': row['variant'], 'clip': row['clip'], 'patch': row['patch'],
                 'batch': row['batch'], 'blocks': row['blocks'], 'remat': row['remat'],
                 'peer': other['peer'], 'peer_params_M': other['params_M'],
                 'params_M': row['params_M'], 'peer_forward_s': other['forward_s'],
                 'forward_s': row['forward_s'],
                 'forward_ratio': other['forward_s'] / row['forward_s'],
                 'peer_step_s': other['step_s'], 'step_s': row['step_s'],
                 'step_ratio': other['step_s'] / row['step_s']})
    ceiling = max(filter(None, (matmul_gflops_per_s, other.get('matmul_gflops_per_s'))),
                  default=None)
    if ceiling and row.get('gflops_per_s'):
      step_gflop = row['gflops_per_s'] * row['step_s']  # 3 forwards' FLOPs (train_step_rate)
      for name, gflop in (('step', step_gflop), ('forward', step_gflop / 3)):
        needed = TARGET_RATIO * gflop / other[f'{name}_s']
        rows[-1][f'{name}_target_pct_of_matmul'] = 100 * needed / ceiling
      rows[-1].update(matmul_ceiling_gflops_per_s=ceiling,
                      peer_matmul_gflops_per_s=other.get('matmul_gflops_per_s'))
    ours = next((s for s in sampler_rows if 'guided_sample_s' in s and
                 (s['variant'], s['clip'], s['patch']) == (row['variant'], row['clip'],
                                                           row['patch'])), None)
    if ours and other.get('sample_s'):
      rows[-1].update(guided_steps=ours['guided_steps'], peer_sample_s=other['sample_s'],
                      sample_s=ours['guided_sample_s'],
                      sample_ratio=other['sample_s'] / ours['guided_sample_s'])
  return rows


def parse_vae_case(case: str) -> dict:
  """'base:mults:res:latent:TxHxW' (e.g. '32:1-2-4-4:2:16:17x128x128': the 'wan' VAE preset's
  layout at base width 32) -> its fields."""
  try:
    base, mults, res, latent, clip = case.split(':')
    multipliers = tuple(int(m) for m in mults.split('-'))
    fields = dict(base_channels=int(base), channel_multipliers=multipliers,
                  num_res_blocks=int(res), latent_channels=int(latent),
                  spatial_downsample=2 ** (len(multipliers) - 1))
    return {'fields': fields, 'clip': tuple(int(v) for v in clip.split('x'))}
  except ValueError as error:
    raise ValueError(f'VAE case {case!r} is not base:mults:res:latent:TxHxW, e.g. '
                     '32:1-2-4-4:2:16:17x128x128.') from error


def vae_speed(case: str, *, repeats: int = 3) -> dict:
  """Encode (posterior mean) and decode seconds of one random clip by the 'wan' VAE preset at
  the case's widths, random weights, chunked in time as `inference.vae.Autoencoder` runs it."""
  parsed = parse_vae_case(case)
  config = autoencoder.autoencoder_config('wan', **parsed['fields'])
  model = autoencoder.AutoencoderKL(config)
  frames, height, width = parsed['clip']
  x = jax.random.uniform(jax.random.key(0), (1, frames, height, width, 3), minval=-1.0)
  params = nn.unbox(jax.jit(model.init)(jax.random.key(0), x[:, :1], jax.random.key(1))['params'])
  channels = config.latent_channels
  vae = vae_lib.Autoencoder(config, params, {'mean': np.zeros(channels), 'std': np.ones(channels)})
  z = vae.encode(x)
  return {'vae_case': case, 'clip': 'x'.join(map(str, parsed['clip'])),
          'params_M': dit.count_params(params) / 1e6,
          'encode_s': timing.median_seconds(lambda: jax.block_until_ready(vae.encode(x)), repeats),
          'decode_s': timing.median_seconds(lambda: jax.block_until_ready(vae.decode(z)), repeats)}


def benchmark_report(results: dict, variant: str) -> str:
  """model_benchmark's tables as markdown."""
  parts = [f'{results["matmul"]} matmul: {results["peak_gflops_per_s"]:.1f} GFLOP/s']
  if results['train']:
    parts += ['Train step', tables.markdown_table(results['train'])]
  if results.get('peer'):
    parts += ['Against the peer (ratios above 1: ours faster)',
              tables.markdown_table(results['peer'])]
  if results['sampler']:
    parts += ['Sampler', tables.markdown_table(results['sampler'])]
  if results.get('vae'):
    parts += ['VAE (float32, chunked in time; against the peer when it ran)',
              tables.markdown_table(results['vae'])]
  if results.get('loop'):
    parts += [f'Training loop ({variant}, the config\'s data; model batch made in turn or on a '
              'thread while the step runs)', tables.markdown_table(results['loop'])]
  if results['layouts']:
    parts += [f'Data layouts ({variant}, real tokens/s; vs_first: against '
              f'{results["layouts"][0]["layout"]})', tables.markdown_table(results['layouts'])]
  return '\n\n'.join(parts)
