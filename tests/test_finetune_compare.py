"""LoRA against a full fine-tune: each variant is the base's own config on the new world, from the
base, at one budget; the table gathers the rows written."""
import json

import pytest

from configs import world as world_config
from videogen.jobs import finetune


@pytest.fixture
def base(tmp_path):
  """A base folder whose config.json predates LoRA (no lora section), as the reference's does,
  of a model other than the config file's."""
  config = world_config.get_config().to_dict()
  del config['lora']
  config['data']['batch_size'] = 1  # an export's config holds the batch it samples
  config['model']['variant'] = 'N/2'  # not the config file's: the variants keep the base's
  folder = tmp_path / 'base'
  folder.mkdir()
  (folder / 'config.json').write_text(json.dumps(config, default=list))
  return folder


def test_variants_are_the_base_on_the_new_world_at_one_budget(base):
  world = {'kinds': ('digit',), 'held_out': ()}
  lora = finetune.variant_config(str(base), world, 'lora', steps=300)
  full = finetune.variant_config(str(base), world, 'full', steps=300)
  assert (lora.lora.rank, full.lora.rank) == (8, 0)
  for config in (lora, full):
    assert tuple(config.world.kinds) == ('digit',) and tuple(config.world.held_out) == ()
    assert config.init_from == str(base)
    assert config.train.steps == config.optim.total_steps == 300
    assert config.data.batch_size == 32  # trains at the world config's batch, not the export's
    assert config.model.variant == 'N/2'
  assert lora.optim.learning_rate > full.optim.learning_rate
  with pytest.raises(ValueError, match="variant 'half' is unknown"):
    finetune.variant_config(str(base), world, 'half', steps=300)


def test_table_gathers_the_rows(tmp_path):
  with pytest.raises(FileNotFoundError, match='no variant rows'):
    finetune.table(tmp_path, 'cmd')
  for name, adherence, share in (('full', 0.8, 1.0), ('lora', 0.75, 0.04)):
    (tmp_path / name).mkdir()
    row = {'variant': name, 'overrides': finetune.VARIANTS[name], 'steps': 10,
           'trained_share_of_model': share, 'adherence': adherence}
    (tmp_path / name / finetune.ROW_FILE).write_text(json.dumps(row))
  text = finetune.table(tmp_path, 'python experiments/finetune_compare.py')
  assert '| lora | 10 | 4% | 75% |' in text and '| full | 10 | 100% | 80% |' in text
  saved = json.loads((tmp_path / 'finetune.json').read_text())
  assert [r['variant'] for r in saved['rows']] == ['full', 'lora']
  assert saved['command'] == 'python experiments/finetune_compare.py' and 'revision' in saved
