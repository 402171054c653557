"""Plots as png: a training curve (loss and its running mean against step), and the scaling
study's measures against training compute."""
import pathlib

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=g-import-not-at-top
from matplotlib import ticker  # noqa: E402  pylint: disable=g-import-not-at-top
import numpy as np  # noqa: E402


def plot_loss(rows: list[dict], path, title: str = 'training loss') -> pathlib.Path | None:
  """Writes a loss-vs-step png from metrics.jsonl rows; None when there is nothing to plot."""
  rows = [r for r in rows if 'loss' in r]
  if not rows:
    return None
  steps = np.array([r['step'] for r in rows])
  loss = np.array([r['loss'] for r in rows])
  fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
  ax.plot(steps, loss, lw=0.8, alpha=0.5, label='loss')
  window = max(1, len(loss) // 20)
  smooth = np.convolve(loss, np.ones(window) / window, mode='valid')
  ax.plot(steps[window - 1:], smooth, lw=1.8, label=f'mean of {window}')
  ax.set(xlabel='step', ylabel='flow-matching loss', title=title, yscale='log')
  ax.grid(alpha=0.3)
  ax.legend()
  return _save(fig, path)


def plot_against_compute(rows: list[dict], names: list[str], path) -> pathlib.Path:
  """One panel per measure in `names` against rows' 'flops' (log), a line per row 'size'.
  Measures other than 'loss' are shares in [0, 1]; None values are left out."""
  fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), dpi=100,
                           squeeze=False)
  budgets = sorted({float(f'{r["flops"]:.2g}') for r in rows})
  for ax, name in zip(axes[0], names):
    for size in dict.fromkeys(r['size'] for r in rows):
      mine = [r for r in rows if r['size'] == size and r[name] is not None]
      ax.plot([r['flops'] for r in mine], [r[name] for r in mine], 'o-', label=size)
    ax.set(xscale='log', xlabel='training FLOPs', title=name)
    # Labels at the budgets alone (a span near one decade otherwise labels every minor tick,
    # one over another).
    ax.set_xticks(budgets, [f'{b:.2g}' for b in budgets])
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    if name == 'loss':
      ax.set_yscale('log')
    else:
      ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
  axes[0][0].legend()
  return _save(fig, path)


def _save(fig, path) -> pathlib.Path:
  """Writes the figure as png at `path` (making its folder) and closes it."""
  fig.tight_layout()
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path)
  plt.close(fig)
  return path
