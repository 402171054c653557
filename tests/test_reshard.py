"""Resharding restore: a run trained on 8 devices (fsdp=8) restores exactly onto 4 devices
(data=2 x tensor=2) and onto 1 device, and samples on one device."""
import jax
import ml_collections
import numpy as np
import pytest

from configs import world as world_config
from videogen.inference import generate
from videogen.runtime import checkpoint
from videogen.runtime import dit_run
from videogen.train import loop

pytestmark = pytest.mark.integration  # trains, then restores on other meshes

STEPS = 2


def with_mesh(config: ml_collections.ConfigDict, **axes) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(config.to_dict())
  config.mesh = ml_collections.ConfigDict({'data': 1, 'fsdp': 1, 'context': 1, 'tensor': 1,
                                           **axes})
  return config


def mesh_axes(tree) -> set:
  """The mesh axes (of more than one device) that split any leaf of `tree`."""
  return {axis for leaf in jax.tree.leaves(tree) for entry in leaf.sharding.spec
          for axis in (entry if isinstance(entry, tuple) else (entry,))
          if axis and leaf.sharding.mesh.shape[axis] > 1}


def assert_restored(restored, saved, parts: dit_run.DitRun, devices) -> None:
  """Values equal to the save's, laid out as `parts` asks, on exactly `devices`."""
  jax.tree.map(lambda got, want: np.testing.assert_array_equal(np.asarray(got), want),
               restored, saved)
  for leaf, sharding in zip(jax.tree.leaves(restored), jax.tree.leaves(parts.state_shardings)):
    assert leaf.sharding.is_equivalent_to(sharding, leaf.ndim)
    assert leaf.sharding.device_set == set(devices)


def test_checkpoint_from_fsdp8_restores_on_4_and_1_devices_and_samples(tmp_path):
  config = world_config.get_config('runlocal=True')
  config.train.update(steps=STEPS, checkpoint_every=STEPS)
  config = with_mesh(config, fsdp=8)
  trained = loop.train(dit_run.build(config), tmp_path, progress=False)
  assert trained.run.mesh.shape['fsdp'] == 8 and 'fsdp' in mesh_axes(trained.state.params)
  saved = jax.tree.map(np.asarray, jax.device_get(trained.state))

  ckpt = checkpoint.Checkpointer(str(tmp_path / 'checkpoints'))
  assert ckpt.latest_step() == STEPS
  four = jax.devices()[:4]
  parts4 = dit_run.build(with_mesh(config, data=2, tensor=2), devices=four)
  restored4 = ckpt.restore(parts4.abstract_state)
  assert_restored(restored4, saved, parts4, four)
  assert mesh_axes(restored4.params) == {'tensor'}  # data replicates weights; fsdp is 1
  assert dict(parts4.mesh.shape) == {'data': 2, 'fsdp': 1, 'context': 1, 'tensor': 2}

  one = jax.devices()[:1]
  parts1 = dit_run.build(with_mesh(config, data=-1), devices=one)
  restored1 = ckpt.restore(parts1.abstract_state)
  assert_restored(restored1, saved, parts1, one)
  assert not mesh_axes(restored1)
  ckpt.close()

  gen = generate.Generator.from_workdir(tmp_path)
  assert gen.step == STEPS and gen.run.mesh.size == 1
  jax.tree.map(lambda got, want: np.testing.assert_array_equal(np.asarray(got), want),
               gen.params, saved.ema_params)
  settings = generate.SampleSettings(steps=2, method='euler', cfg_scale=2.0)
  videos = gen.generate(['a red circle moves right'], seeds=[0], settings=settings)
  assert videos.shape == (1, *gen.run.shape) and videos.dtype == np.uint8
