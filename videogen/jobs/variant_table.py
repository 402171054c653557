"""The rows of equal-budget variants, one per folder (out/<variant>/row.json, so variants can run
in separate processes side by side), gathered into one table: <name>.json (+ command, revision,
machine) and <name>.md. The ablation (jobs/ablation.py) and fine-tune (jobs/finetune.py)
runners write theirs this way."""
import json
import pathlib
from collections.abc import Sequence

from videogen.core import media
from videogen.core import tables
from videogen.evals import world_eval

ROW_FILE = 'row.json'


def gather(out, *, name: str, title: str, order: Sequence[str], percent: Sequence[str],
           command: str) -> str:
  """Gathers out/*/row.json, in `order` of their 'variant' (others last), into out/<name>.json
  and returns (and writes to out/<name>.md, under `title`) the markdown table, the keys in
  `percent` as whole percents; each row's 'overrides' are listed below the table."""
  out = pathlib.Path(out)
  rows = [json.loads(p.read_text()) for p in sorted(out.glob(f'*/{ROW_FILE}'))]
  if not rows:
    raise FileNotFoundError(f'no variant rows in {str(out)!r}: run a variant first.')
  order = list(order)
  rows.sort(key=lambda r: order.index(r['variant']) if r['variant'] in order else len(order))
  tables.write_results(out / f'{name}.json', name, rows, command=command)
  shown = [{k: v for k, v in r.items() if k != 'overrides'} for r in rows]
  text = tables.markdown_table(shown, {k: world_eval.percent for k in percent})
  media.write_text(
      out / f'{name}.md',
      f'# {title}\n\n`{command}` at `{tables.revision()}` on '
      f'{tables.machine()["processor"]}\n\n{text}\n\nOverrides:\n\n'
      + '\n'.join(f'- {r["variant"]}: `{r["overrides"]}`' for r in rows) + '\n')
  return text
