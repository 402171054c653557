"""Ablation variants are the config with their overrides at one budget, and the table gathers
every variant's row written in the folder (training and scoring: the runner, by hand)."""
import json

import pytest

from configs import world as world_config
from videogen.jobs import ablation

pytestmark = pytest.mark.integration  # trains the ablation variants


def test_variants_override_the_config_at_one_budget():
  config = world_config.get_config()
  before = ablation.variant_config(config, 'before', steps=300)
  assert (before.model.pos_embed, before.model.pooled_text, before.diffusion.base_shift) == (
      'none', False, 1.0)
  assert before.train.steps == before.optim.total_steps == 300
  recipe = ablation.variant_config(config, 'recipe', steps=300)
  assert recipe.model.to_dict() == config.model.to_dict()
  assert config.train.steps != 300  # the given config is left alone
  with pytest.raises(ValueError, match="variant 'bogus' is unknown"):
    ablation.variant_config(config, 'bogus', steps=300)


def test_table_gathers_the_rows_in_variant_order(tmp_path):
  with pytest.raises(FileNotFoundError, match='no variant rows'):
    ablation.table(tmp_path, 'cmd')
  for name, probe in (('before', 0.1), ('recipe', 0.9)):
    (tmp_path / name).mkdir()
    row = {'variant': name, 'overrides': ablation.VARIANTS[name], 'steps': 10,
           'text_controls_motion': probe, 'adherence': None}
    (tmp_path / name / ablation.ROW_FILE).write_text(json.dumps(row))
  text = ablation.table(tmp_path, 'python experiments/ablate.py')
  assert text.index('| recipe') < text.index('| before') and '90%' in text
  saved = json.loads((tmp_path / 'ablation.json').read_text())
  assert [r['variant'] for r in saved['rows']] == ['recipe', 'before']
  assert saved['command'] == 'python experiments/ablate.py' and 'revision' in saved
  assert 'before: `' in (tmp_path / 'ablation.md').read_text()
