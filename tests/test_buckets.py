"""Shape buckets: weighted draws per batch, the nearest bucket of a clip, fitting a clip to it."""
import numpy as np
import pytest

from videogen.data import buckets

TABLE = (buckets.Bucket(17, 32, 56, weight=4.0),  # 16:9 video
         buckets.Bucket(9, 56, 32, weight=2.0),  # 9:16 video
         buckets.Bucket(1, 40, 40, weight=3.0),  # square image
         buckets.Bucket(17, 40, 40, weight=1.0))  # square video


def test_bucket_draws_follow_the_weights_and_repeat_for_a_seed():
  sampler = buckets.BucketSampler(TABLE, seed=3)
  draws = [sampler(i) for i in range(2000)]
  counts = np.array([sum(d is b for d in draws) for b in TABLE])
  expected = 2000 * sampler.probabilities
  chi_square = float(np.sum((counts - expected) ** 2 / expected))
  assert chi_square < 16.27, (counts, expected)  # the 99.9% point for 3 degrees of freedom
  assert [buckets.BucketSampler(TABLE, seed=3)(i) for i in range(50)] == draws[:50]
  assert [buckets.BucketSampler(TABLE, seed=4)(i) for i in range(50)] != draws[:50]


def test_nearest_bucket_matches_aspect_then_frames():
  assert buckets.nearest_bucket(TABLE, 1920 / 1080, 100) is TABLE[0]
  assert buckets.nearest_bucket(TABLE, 0.6, 9) is TABLE[1]
  assert buckets.nearest_bucket(TABLE, 1.1, 1) is TABLE[2]  # an image
  assert buckets.nearest_bucket(TABLE, 0.9, 20) is TABLE[3]  # longest that needs no repeats
  assert buckets.nearest_bucket(TABLE, 0.9, 5) is TABLE[2]
  with pytest.raises(ValueError, match='aspect 0 must be a positive'):
    buckets.nearest_bucket(TABLE, 0, 5)


def test_to_bucket_samples_frames_and_resizes_to_the_bucket():
  frames = np.random.default_rng(0).integers(0, 256, (30, 72, 128, 3), dtype=np.uint8)
  clip = buckets.to_bucket(frames, TABLE[0], seed=1, index=2)
  assert clip.shape == (17, 32, 56, 3) and clip.dtype == np.uint8
  image = buckets.to_bucket(frames[0], TABLE[2])
  assert image.shape == (1, 40, 40, 3)


def test_bad_tables_raise_one_clear_error():
  with pytest.raises(ValueError, match='table is empty'):
    buckets.BucketSampler([])
  with pytest.raises(ValueError, match=r'weights \[1.0, -1.0\] must be finite and >= 0'):
    buckets.BucketSampler([buckets.Bucket(1, 8, 8), buckets.Bucket(1, 8, 8, weight=-1.0)])
  with pytest.raises(ValueError, match=r'sum to 0.0.*positive weight'):
    buckets.BucketSampler([buckets.Bucket(1, 8, 8, weight=0.0)])
  with pytest.raises(ValueError, match='height=0'):
    buckets.BucketSampler([buckets.Bucket(1, 0, 8)])
