"""Training curves as png: loss (and its running mean) against step."""
import pathlib

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=g-import-not-at-top
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
  fig.tight_layout()
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path)
  plt.close(fig)
  return path
