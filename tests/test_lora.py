"""LoRA (runtime/lora.py): adapters on a frozen base, merged exactly, trained alone, small on
disk, resumed exactly, sharded like their kernels, sampled merged, and bad inputs refused in one
sentence. On tiny runlocal DiTs whose base weights are drawn, not trained (test_init_from.py's
runs)."""
import json
import pathlib
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

from test_init_from import assert_trees_equal, host, save_run, tiny_config
from videogen.core import media
from videogen.inference import generate
from videogen.runtime import checkpoint
from videogen.runtime import dit_run
from videogen.runtime import lora
from videogen.train import loop

import runner_env

REPO = pathlib.Path(__file__).resolve().parents[1]
VARIANT = 'w64-d2-h2-m128/8'  # 2 blocks of width 64: kernels 64x64, 64x128 and 128x64
ALPHA, RANK = 16.0, 4  # the update scaled by 4, a power of two: merged sums round as numpy's


def base_config(**model):
  return tiny_config(variant=VARIANT, **model)


def lora_config(base, rank=RANK, steps=4, **model):
  config = tiny_config(init_from=base, **{'variant': VARIANT, **model})
  config.lora.update(rank=rank, alpha=ALPHA)
  config.train.steps = steps
  return config


@pytest.fixture(scope='module')
def base(tmp_path_factory):
  """A base run folder and its state (its EMA params are what a LoRA run adapts)."""
  folder = tmp_path_factory.mktemp('base')
  return folder, save_run(folder, base_config())


@pytest.fixture(scope='module')
def trained(base, tmp_path_factory):
  """A LoRA run trained 4 steps straight: (workdir, TrainResult, its fresh state)."""
  workdir = tmp_path_factory.mktemp('lora') / 'straight'
  run = dit_run.build(lora_config(base[0]))
  fresh = host(run.init_state())
  return workdir, loop.train(run, workdir, progress=False), fresh


def nbytes(tree) -> int:
  return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree))


def integers(tree, seed):
  """Small whole numbers in the shapes of `tree`: their products and sums are exact."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: rng.integers(-3, 4, a.shape).astype(a.dtype), tree)


@pytest.mark.parametrize('scan_layers', [True, False])
def test_merge_adds_the_scaled_low_rank_update_exactly(tmp_path, scan_layers):
  config = lora_config(tmp_path, scan_layers=scan_layers)
  config.lora.targets = tuple(lora.TARGETS)  # every kind of kernel, the feed-forward's too
  run = dit_run.build(config)
  rng = np.random.default_rng(0)
  base_params = jax.tree.map(lambda a: rng.standard_normal(a.shape).astype(a.dtype),
                             run.abstract_base)
  adapters = integers(run.abstract_state.params, 1)
  merged = traverse_util.flatten_dict(host(lora.merge(base_params, adapters, ALPHA, RANK)))
  flat_base, flat_adapters = (traverse_util.flatten_dict(t) for t in (base_params, adapters))
  adapted = {path[:-1] for path in flat_adapters}
  assert len(adapted) == 10 * (1 if scan_layers else 2)  # q, k, v, o twice; ffn_in, ffn_out
  for path, weight in flat_base.items():
    if path[:-1] in adapted and path[-1] == 'kernel':
      a, b = flat_adapters[path[:-1] + ('lora_a',)], flat_adapters[path[:-1] + ('lora_b',)]
      assert a.shape[:-2] == weight.shape[:-2] == ((2,) if scan_layers else ())
      np.testing.assert_array_equal(merged[path], weight + np.float32(ALPHA / RANK) * (a @ b))
    else:
      np.testing.assert_array_equal(merged[path], weight)


def test_the_merged_model_is_the_base_at_init(base, trained):
  _, saved = base
  _, result, fresh = trained
  b_leaves = [leaf for path, leaf in traverse_util.flatten_dict(fresh.params).items()
              if path[-1] == 'lora_b']
  assert b_leaves and not any(np.any(leaf) for leaf in b_leaves)
  run = result.run
  assert_trees_equal(run.model_params(fresh.params), saved.ema_params)
  assert_trees_equal(run.base_params, saved.ema_params)


def test_a_train_step_changes_the_adapters_alone(base, trained):
  _, saved = base
  _, result, fresh = trained
  state, run = result.state, result.run
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), host(state.params), fresh.params)
  assert all(jax.tree.leaves(changed))  # every factor moved: A through B's gradient, B directly
  assert_trees_equal(run.base_params, saved.ema_params)  # frozen, bit for bit
  assert set(traverse_util.flatten_dict(state.params)) == set(
      traverse_util.flatten_dict(run.abstract_state.params))


def test_the_optimizer_state_holds_no_base_sized_leaf(trained):
  _, result, _ = trained
  state, run = result.state, result.run
  adapter_shapes = {leaf.shape for leaf in jax.tree.leaves(state.params)}
  assert {leaf.shape for leaf in jax.tree.leaves(state.opt_state) if leaf.ndim} == (
      adapter_shapes)
  base_bytes = nbytes(run.abstract_base)
  assert nbytes(state.opt_state) < 2 * nbytes(state.params) + 64
  assert nbytes(state.params) < 0.05 * base_bytes


def test_a_lora_checkpoint_is_small(tmp_path):
  """At rank 2 on a width of 256 (rank / width as rank 12 on Wan 1.3B's 1536), the whole
  checkpoint (adapters, their EMA and Adam moments, the data position) is under 5% of the base."""
  variant = 'w256-d1-h8-m1024/8'
  save_run(tmp_path / 'base', tiny_config(variant=variant))
  config = lora_config(tmp_path / 'base', rank=2, variant=variant)
  run = dit_run.build(config)
  with checkpoint.Checkpointer(str(tmp_path / 'lora' / 'checkpoints')) as ckpt:
    state, data_iter = run.restore_or_init(ckpt)
    ckpt.save(1, state, data_iter, config, force=True)
  saved = sum(p.stat().st_size for p in (tmp_path / 'lora' / 'checkpoints').rglob('*')
              if p.is_file())
  assert saved < 0.05 * nbytes(run.abstract_base), (saved, nbytes(run.abstract_base))


def test_resume_is_exact(base, trained, tmp_path):
  straight_dir, straight, _ = trained
  first = loop.train(dit_run.build(lora_config(base[0], steps=2)), tmp_path, progress=False)
  assert first.last_step == 2
  second = loop.train(dit_run.build(lora_config(base[0])), tmp_path, progress=False)
  assert (second.first_step, second.last_step) == (2, 4)
  assert_trees_equal(second.state, straight.state)
  losses = lambda folder: [(r['step'], r['loss']) for r in loop.read_metrics(folder)]
  assert losses(tmp_path) == losses(straight_dir)


def test_adapters_shard_like_their_kernels_on_8_devices(base, trained, tmp_path):
  config = lora_config(base[0], steps=1)
  config.mesh.update(data=2, fsdp=2, tensor=2)
  run = dit_run.build(config)
  kernels = {path[:-1]: sharding.spec for path, sharding in
             traverse_util.flatten_dict(jax.tree.map(lambda a: a.sharding,
                                                     run.abstract_base)).items()
             if path[-1] == 'kernel'}
  adapters = traverse_util.flatten_dict(run.state_shardings.params)
  for path in {p[:-1] for p in adapters}:
    kernel = tuple(kernels[path]) + (None,) * (3 - len(kernels[path]))
    assert tuple(adapters[path + ('lora_a',)].spec) == (*kernel[:-1], None), path
    assert tuple(adapters[path + ('lora_b',)].spec) == (*kernel[:-2], None, kernel[-1]), path
  specs = [tuple(s.spec) for s in adapters.values()]
  assert (None, 'fsdp', None) in specs and (None, None, 'tensor') in specs  # really split
  result = loop.train(run, tmp_path, progress=False)
  for leaf, abstract in zip(jax.tree.leaves(run.base_params), jax.tree.leaves(run.abstract_base)):
    assert leaf.sharding == abstract.sharding
  loss = loop.read_metrics(tmp_path)[0]['loss']
  assert loss == pytest.approx(loop.read_metrics(trained[0])[0]['loss'], rel=1e-4)
  assert result.last_step == 1


def test_sampling_merges_the_adapters_onto_the_base(base, trained, tmp_path):
  folder, saved = base
  workdir, result, _ = trained
  merged = host(lora.merge(saved.ema_params, result.state.ema_params, ALPHA, RANK))
  gen = generate.Generator.from_workdir(workdir)
  assert gen.step == 4
  assert_trees_equal(gen.params, merged)
  assert_trees_equal(generate.Generator.from_workdir(folder, lora=workdir).params, merged)
  exported = gen.export(tmp_path / 'export')
  assert generate.load_config(exported).lora.rank == 0  # a model like any other
  assert_trees_equal(generate.Generator.from_workdir(exported).params, merged)


def test_runs_from_before_lora_resume_and_sample_as_full_training(tmp_path):
  config = base_config()
  run = dit_run.build(config)
  assert run.abstract_base is None and run.base_params is None
  old = json.loads(config.to_json_best_effort())
  del old['lora']
  run.check_saved(old)  # resumes
  assert dit_run.sampling_run(ml_collections.ConfigDict(old)).abstract_base is None


def test_a_lora_checkpoint_resumes_only_as_the_same_lora_run(base):
  run = dit_run.build(lora_config(base[0]))
  saved = json.loads(run.config.to_json_best_effort())
  run.check_saved(saved)
  with pytest.raises(ValueError, match=r'lora.rank \(saved 4, now 0\)'):
    dit_run.build(base_config()).check_saved(saved)
  with pytest.raises(ValueError, match=r'lora.alpha \(saved 16.0, now 8.0\)'):
    changed = lora_config(base[0])
    changed.lora.alpha = 8.0
    dit_run.build(changed).check_saved(saved)


def test_bad_lora_configs_are_one_sentence(tmp_path):
  with pytest.raises(ValueError, match=(
      r'^lora.rank 4 trains adapters on a frozen base model, which init_from must name: pass '
      r'--config.init_from=<base run or export>, or --config.lora.rank=0 to train every '
      r'weight\.$')):
    dit_run.build(lora_config(''))
  with pytest.raises(ValueError, match=(
      r"^lora.rank 65 exceeds the smaller side of kernel blocks/cross_attn/k/kernel of shape "
      r'\(2, 64, 64\) \(64\): use a rank of at most 64, e.g. --config.lora.rank=64, or leave '
      r'that kernel out of lora.targets\.$')):
    dit_run.build(lora_config(tmp_path, rank=65))
  config = lora_config(tmp_path)
  config.lora.targets = ('self_attn', 'mlp')
  with pytest.raises(ValueError, match=(
      r"^lora.targets \('self_attn', 'mlp'\) has unknown names \['mlp'\]: use some of "
      r"\('self_attn', 'cross_attn', 'ffn'\)\.$")):
    dit_run.build(config)
  config.lora.targets = ()
  with pytest.raises(ValueError, match=(
      r"^lora.targets \(\) name no kernel of the model: name some of \('self_attn', "
      r"'cross_attn', 'ffn'\)\.$")):
    dit_run.build(config)
  config.lora.targets, config.lora.rank = ('ffn',), -1
  with pytest.raises(ValueError, match=r'^lora.rank is -1: use 0 to train every weight'):
    dit_run.build(config)


def test_a_base_of_another_model_is_one_sentence(base, trained, tmp_path):
  folder, _ = base
  save_run(tmp_path / 'plain', base_config(pooled_text=False))
  with pytest.raises(ValueError, match=(
      r"^the base in '.*plain' is not this model \(parameters missing there: "
      r'text_pooled/bias, text_pooled/kernel; only there: none\): adapt a base of the same '
      r'model config')):
    dit_run.build(lora_config(tmp_path / 'plain')).init_state()
  save_run(tmp_path / 'wide', tiny_config(variant='w128-d2-h4-m256/8'))
  with pytest.raises(ValueError, match=(
      r"^the adapters of '.*straight' do not fit the base '.*wide': parameter .* has shape")):
    generate.Generator.from_workdir(tmp_path / 'wide', lora=trained[0])
  with pytest.raises(ValueError, match=(
      r"^'.*base.*' is not a LoRA run \(its config.lora.rank is 0 or missing\): sample it "
      r'alone with --workdir, or pass with --lora the folder of a run trained with '
      r'--config.lora.rank above 0\.$')):
    generate.Generator.from_workdir(folder, lora=folder)


@pytest.mark.integration  # the runner as a subprocess
def test_sample_runner_applies_the_adapters_of_a_lora_run(base, trained, tmp_path):
  result = subprocess.run(
      [sys.executable, 'experiments/sample.py', f'--workdir={base[0]}', f'--lora={trained[0]}',
       '--prompt=a red circle moves up', '--steps=2', '--method=euler', f'--out={tmp_path}'],
      cwd=REPO, env=runner_env.one_device(), capture_output=True, text=True, timeout=300,
      check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  mp4 = [line for line in result.stdout.splitlines() if line.endswith('.mp4')]
  assert media.read_video(mp4[0]).shape == (2, 16, 16, 3)
  sidecar = json.loads(pathlib.Path(mp4[0]).with_suffix('.json').read_text())
  assert sidecar['checkpoint_step'] == 4
  refused = subprocess.run(
      [sys.executable, 'experiments/sample.py', f'--workdir={base[0]}', f'--lora={base[0]}',
       '--prompt=x'], cwd=REPO, env=runner_env.one_device(), capture_output=True, text=True,
      timeout=300, check=False)
  assert refused.returncode == 1 and 'is not a LoRA run' in refused.stderr
  assert 'Traceback' not in refused.stderr
