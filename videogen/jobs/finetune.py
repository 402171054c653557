"""LoRA against a full fine-tune: one base, one new world (e.g. a kind the base never saw), the
same steps each, scored the same way, a row each.

Each variant starts from the base (a run or export of the DiT), trains on the new world into
out/<variant>/run (resuming if run again) and is scored on that world's training prompts
(evals/world_eval.py: adherence is the asked colour and kind). Its row goes to
out/<variant>/row.json; `table` gathers the rows in `out` into finetune.{json,md}. Sizes: the
parameters a variant trains against the model's (a LoRA run's adapters against its base), and
its last checkpoint on disk (the trained parameters, their EMA and their two Adam moments).
"""
import copy
import pathlib
import time

import ml_collections
import numpy as np

from videogen.core import media
from videogen.evals import world_eval
from videogen.evals import world_scores
from videogen.inference import generate
from videogen.jobs import variant_table
from videogen.models import dit
from videogen.runtime import dit_run
from videogen.runtime import lora
from videogen.runtime import weights
from videogen.train import loop

# Each variant's fields. A full fine-tune moves every weight at a tenth of the base's learning
# rate; adapters, starting at zero, learn at the base's own rate (LoRA's usual 5-10x).
VARIANTS = {
    'full': {'lora.rank': 0, 'optim.learning_rate': 2e-4},
    'lora': {'lora.rank': 8, 'optim.learning_rate': 2e-3},  # the default targets: attention
    # Rank 8 with more reach: a higher rate, or the feed-forward kernels in place of the
    # cross-attention's (4.95% of the 128-wide T/2 model).
    'lora_lr5e-3': {'lora.rank': 8, 'optim.learning_rate': 5e-3},
    'lora_self_ffn': {'lora.rank': 8, 'lora.targets': ('self_attn', 'ffn'),
                      'optim.learning_rate': 4e-3},
}
ROW_FILE = variant_table.ROW_FILE


def variant_config(base: str, world: dict, variant: str, steps: int,
                   batch_size: int = 32) -> ml_collections.ConfigDict:
  """The base's own config (its model, text and diffusion) on `world` (fields of the world
  section), starting from the base, trained `steps` steps of `batch_size` clips on a schedule of
  that length. The batch is set here: an export's config holds the batch it samples (1)."""
  if variant not in VARIANTS:
    raise ValueError(f'variant {variant!r} is unknown: use one of {sorted(VARIANTS)}.')
  config = copy.deepcopy(weights.load_config(base))
  if 'lora' not in config:  # a base from before LoRA
    config.lora = ml_collections.ConfigDict(lora.DEFAULTS)
  config.world.update(world)
  config.update_from_flattened_dict({
      **VARIANTS[variant], 'init_from': str(base), 'train.steps': steps,
      'optim.total_steps': steps, 'optim.warmup_steps': min(20, steps - 1),
      'data.batch_size': batch_size, 'train.checkpoint_every': steps, 'train.sample_every': 0})
  return config


def run_variant(base: str, world: dict, variant: str, out, *, steps: int,
                batch_size: int = 32, num_prompts: int = 16, progress: bool = True) -> dict:
  """Fine-tunes one variant (or resumes it), scores it, writes and returns its row."""
  folder = pathlib.Path(out) / variant
  config = variant_config(base, world, variant, steps, batch_size)
  run = dit_run.build(config)
  trained = dit.count_params(run.abstract_state.params)
  model = trained if run.abstract_base is None else dit.count_params(run.abstract_base)
  start = time.perf_counter()
  result = loop.train(run, folder / 'run', progress=progress)
  minutes = (time.perf_counter() - start) / 60
  gen = generate.Generator.from_workdir(folder / 'run')
  prompts = world_eval.prompt_set(config, num_train=num_prompts, num_held_out=0)
  scored, _ = world_eval.sample_and_score(gen, prompts, generate.settings_for(config),
                                          folder / 'eval')
  means = world_scores.summarize([v.scores for v in scored])
  metrics = loop.read_metrics(folder / 'run')
  checkpoint = folder / 'run' / 'checkpoints' / str(result.last_step)
  row = {'variant': variant, 'overrides': VARIANTS[variant], 'steps': result.last_step,
         'batch_size': config.data.batch_size,
         'train_minutes': round(minutes, 1) if result.first_step == 0 else None,
         'loss': float(np.mean([m['loss'] for m in metrics[-4:]])),
         'trained_params': trained, 'trained_share_of_model': trained / model,
         'checkpoint_mb': folder_bytes(checkpoint) / 2**20,
         **{name: None if np.isnan(means[name]) else means[name]
            for name in world_scores.CATEGORIES}}
  media.write_json(folder / ROW_FILE, row)
  return row


def folder_bytes(folder) -> int:
  """Bytes of every file under `folder`."""
  return sum(p.stat().st_size for p in pathlib.Path(folder).rglob('*') if p.is_file())


def table(out, command: str) -> str:
  """Gathers out/*/row.json into out/finetune.{json,md} (variant_table.gather); returns the
  markdown table."""
  return variant_table.gather(out, name='finetune', title='LoRA against a full fine-tune',
                              order=list(VARIANTS),
                              percent=('trained_share_of_model', *world_scores.CATEGORIES),
                              command=command)
