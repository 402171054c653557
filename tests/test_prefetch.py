"""Model batches made ahead on a thread or in turn (train/prefetch.py): the same batches in the
same order, the data position of the batches taken (not of the one made ahead), errors passed
on."""
import grain
import pytest

from videogen.train import prefetch


class Doubling:
  """A run whose model batch is twice the host batch, tagged with the step it was made for."""

  def model_batch(self, batch, step):
    return {'x': 2 * batch}, {'step': step}, {}


def data():
  return iter(grain.MapDataset.range(100).to_iter_dataset())


@pytest.mark.parametrize('ahead', [0, 3])  # 0: made in turn, no thread
def test_batches_come_in_order_for_their_steps(ahead):
  with prefetch.ModelBatches(Doubling(), data(), first_step=7, ahead=ahead) as batches:
    got = [next(batches) for _ in range(5)]
  assert [b['x'] for b, _, _ in got] == [0, 2, 4, 6, 8]
  assert [c['step'] for _, c, _ in got] == [7, 8, 9, 10, 11]


@pytest.mark.parametrize('ahead', [0, 2])
def test_the_saved_position_is_after_the_batches_taken(tmp_path, ahead):
  handler = grain.checkpoint.CheckpointHandler()
  with prefetch.ModelBatches(Doubling(), data(), first_step=0, ahead=ahead) as batches:
    for _ in range(4):
      next(batches)
    handler.save(tmp_path, args=grain.checkpoint.CheckpointSave(batches))
  # A fresh iterator restored through Grain's checkpoint handler goes on from the 5th element,
  # although the thread had made the 5th and 6th batches ahead.
  resumed = data()
  handler.restore(tmp_path, args=grain.checkpoint.CheckpointRestore(resumed))
  assert next(resumed) == 4


@pytest.mark.parametrize('ahead', [0, 1])
def test_an_echoed_batch_trains_its_updates_and_a_resume_mid_echo_gives_the_uses_left(tmp_path,
                                                                                       ahead):
  handler = grain.checkpoint.CheckpointHandler()
  with prefetch.ModelBatches(Doubling(), data(), first_step=0, echo=3, ahead=ahead) as batches:
    got = [next(batches) for _ in range(7)]
    handler.save(tmp_path, args=grain.checkpoint.CheckpointSave(batches))
  assert [b['x'] for b, _, _ in got] == [0, 0, 0, 2, 2, 2, 4]
  assert [c['step'] for _, c, _ in got] == [0, 0, 0, 3, 3, 3, 6]
  # 7 updates taken: batch 2 has trained one of its three, so the position stays before it.
  resumed = data()
  handler.restore(tmp_path, args=grain.checkpoint.CheckpointRestore(resumed))
  with prefetch.ModelBatches(Doubling(), resumed, first_step=7, echo=3, ahead=ahead) as batches:
    assert [next(batches)[0]['x'] for _ in range(4)] == [4, 4, 6, 6]
  with pytest.raises(ValueError, match='data.echo 0 must be at least 1'):
    prefetch.ModelBatches(Doubling(), data(), first_step=0, echo=0)
  with pytest.raises(ValueError, match='data.ahead -1 is negative'):
    prefetch.ModelBatches(Doubling(), data(), first_step=0, ahead=-1)


@pytest.mark.parametrize('ahead', [0, 1])
def test_an_error_making_a_batch_is_raised_where_it_is_taken(ahead):
  class Failing(Doubling):
    def model_batch(self, batch, step):
      if batch == 2:
        raise ValueError('caption 2 is bad')
      return super().model_batch(batch, step)

  with prefetch.ModelBatches(Failing(), data(), first_step=0, ahead=ahead) as batches:
    next(batches), next(batches)
    with pytest.raises(ValueError, match='caption 2 is bad'):
      next(batches)


@pytest.mark.parametrize('ahead', [0, 1])
def test_the_end_of_the_data_ends_the_batches(ahead):
  it = iter(grain.MapDataset.range(2).to_iter_dataset())
  with prefetch.ModelBatches(Doubling(), it, first_step=0, ahead=ahead) as batches:
    assert [b['x'] for b, _, _ in batches] == [0, 2]
