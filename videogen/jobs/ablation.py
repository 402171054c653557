"""Equal-budget ablations: one config, several variants (config overrides), each trained for the
same number of steps and scored the same way, a row each.

Each variant trains into out/<variant>/run (resuming if run again), then is scored on the
text-controls-motion probe (evals/direction_probe.py), the world scores of the run's training
prompts (evals/world_eval.py) and the temporal influence of its first frames on its last ones at
t = 0.9 (evals/influence.py). Its row goes to out/<variant>/row.json, so variants can run in
separate processes side by side; `table` gathers every row in `out` into ablation.{json,md}.
"""
import copy
import pathlib
import time

import ml_collections
import numpy as np

from videogen.core import media
from videogen.evals import direction_probe
from videogen.evals import influence
from videogen.evals import world_eval
from videogen.evals import world_scores
from videogen.inference import generate
from videogen.jobs import variant_table
from videogen.runtime import dit_run
from videogen.train import loop

# What each variant changes (dotted config fields) in the config as given (configs/world.py:
# the motion recipe); 'before' is the recipe before it, the others leave one part out.
_NO_SHIFT = {'diffusion.base_shift': 1.0, 'diffusion.max_shift': 3.0}
_NO_TEXT_PATH = {'model.cross_attn_init': 'zero', 'model.pooled_text': False}
_NO_SINCOS = {'model.pos_embed': 'none'}
VARIANTS = {
    'recipe': {},
    'no_sincos': _NO_SINCOS,
    'no_shift': _NO_SHIFT,
    'no_text_path': _NO_TEXT_PATH,
    'sincos_only': {**_NO_SHIFT, **_NO_TEXT_PATH},
    'before': {**_NO_SINCOS, **_NO_SHIFT, **_NO_TEXT_PATH},
}
ROW_FILE = variant_table.ROW_FILE


def variant_config(config: ml_collections.ConfigDict, variant: str,
                   steps: int) -> ml_collections.ConfigDict:
  """`config` with the variant's overrides, trained for `steps` on a schedule of that length."""
  if variant not in VARIANTS:
    raise ValueError(f'variant {variant!r} is unknown: use one of {sorted(VARIANTS)}.')
  config = copy.deepcopy(config)
  config.update_from_flattened_dict(
      {**VARIANTS[variant], 'train.steps': steps, 'optim.total_steps': steps})
  return config


def run_variant(config: ml_collections.ConfigDict, variant: str, out, *, steps: int,
                num_prompts: int = 16, probe_scenes: int = 4, progress: bool = True) -> dict:
  """Trains one variant (or resumes it), scores it, writes and returns its row."""
  folder = pathlib.Path(out) / variant
  config = variant_config(config, variant, steps)
  start = time.perf_counter()
  result = loop.train(dit_run.build(config), folder / 'run', progress=progress)
  minutes = (time.perf_counter() - start) / 60
  gen = generate.Generator.from_workdir(folder / 'run')
  settings = generate.settings_for(config)
  prompts = world_eval.prompt_set(config, num_train=num_prompts, num_held_out=0)
  scored, _ = world_eval.sample_and_score(gen, prompts, settings, folder / 'eval')
  means = world_scores.summarize([v.scores for v in scored])
  probe = direction_probe.run(gen, settings, probe_scenes)
  media.write_json(folder / 'direction_probe.json', probe)
  spread = influence.on_world_prompts(gen, prompts, times=(0.9,))[0]
  metrics = loop.read_metrics(folder / 'run')
  row = {'variant': variant, 'overrides': VARIANTS[variant], 'steps': result.last_step,
         'train_minutes': round(minutes, 1) if result.first_step == 0 else None,
         'loss': float(np.mean([m['loss'] for m in metrics[-4:]])),
         'text_controls_motion': probe['text_controls_motion'],
         'directions_per_scene': probe['distinct'],
         **{name: None if np.isnan(means[name]) else means[name]
            for name in world_scores.CATEGORIES},
         'influence_far_near_t0.9': spread['ratio']}
  media.write_json(folder / ROW_FILE, row)
  return row


def table(out, command: str) -> str:
  """Gathers out/*/row.json into out/ablation.{json,md} (variant_table.gather); returns the
  markdown table."""
  return variant_table.gather(out, name='ablation', title='Ablation', order=list(VARIANTS),
                              percent=('text_controls_motion', *world_scores.CATEGORIES),
                              command=command)
