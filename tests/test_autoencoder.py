"""Causal video VAE: config checks, frame rule, causality, chunks and tiles, a few training steps.

Legend: b batch, t frames, h/w height/width, c channels.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from videogen.models import autoencoder
from videogen.models import autoencoder_chunks
from videogen.models import causal_conv
from videogen.models import dit

WAN_VAE_PARAMS = 126_892_531  # Wan 2.1 VAE state dict: 194 tensors (encoder 53.6M, decoder 73.3M)


def _key(seed):
  # rbg keys: initialising ~120 arrays of distinct shapes compiles in ~3 s (threefry: ~10 s).
  return jax.random.key(seed, impl='rbg')


def _smooth_video(t, h, w, seed=0):
  """[1, t, h, w, 3] in [-1, 1]: low-frequency waves that move over time."""
  phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, 3)
  ti, yi, xi = np.meshgrid(np.arange(t), np.arange(h) / h, np.arange(w) / w, indexing='ij')
  channels = [np.sin(2 * np.pi * (yi + 0.7 * xi) + 0.3 * ti + p) for p in phase]
  return jnp.asarray(np.stack(channels, -1)[None] * 0.8, jnp.float32)


@pytest.fixture(scope='module')
def tiny():
  """(model, params, jitted encode, jitted decode) of the 'tiny' preset (4x4x4, 4 channels)."""
  model = autoencoder.AutoencoderKL(autoencoder.autoencoder_config('tiny'))
  variables = jax.jit(model.init)(_key(0), jnp.zeros((1, 1, 16, 16, 3)), _key(1))
  encode = jax.jit(lambda p, x: model.apply({'params': p}, x, method='encode'))
  decode = jax.jit(lambda p, z: model.apply({'params': p}, z, method='decode'))
  return model, nn.unbox(variables['params']), encode, decode


@pytest.mark.parametrize('overrides, message', [
    (dict(spatial_downsample=16), 'spatial_downsample 16 does not match 3 channel_multipliers'),
    (dict(temporal_downsample=3), 'temporal_downsample 3 must be 1, 2 or 4'),
    (dict(base_channels=7), 'base_channels 7 must be even'),
    (dict(channel_multipliers=()), r'channel_multipliers \(\) must be positive'),
    (dict(dtype='float64'), "dtype 'float64' is unknown"),
])
def test_bad_config_raises(overrides, message):
  with pytest.raises(ValueError, match=message):
    autoencoder.autoencoder_config('tiny', **overrides)
  with pytest.raises(ValueError, match="preset 'huge' is unknown"):
    autoencoder.autoencoder_config('huge')


def test_preset_param_counts():
  counts = {}
  for name in autoencoder.PRESETS:
    model = autoencoder.AutoencoderKL(autoencoder.autoencoder_config(name))
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 1, 8, 8, 3)),
                            jax.random.key(1))['params']
    counts[name] = (dit.count_params(shapes), len(jax.tree.leaves(shapes)))
    print(f'{name}: {counts[name][0]:,} parameters in {counts[name][1]} arrays')
  print(f'Wan 2.1 VAE: {WAN_VAE_PARAMS:,} parameters in 194 tensors')
  assert counts['wan'] == (WAN_VAE_PARAMS, 194)
  assert counts['tiny'][0] < counts['world'][0] < 10_000_000


@pytest.mark.parametrize('frames, height, width', [(1, 16, 16), (5, 16, 32), (9, 32, 16)])
def test_round_trip_shapes(tiny, frames, height, width):
  model, params, _, _ = tiny
  x = jax.ShapeDtypeStruct((2, frames, height, width, 3), jnp.float32)
  mean, logvar = jax.eval_shape(lambda p, x: model.apply({'params': p}, x, method='encode'),
                                params, x)
  latent_shape = (2, 1 + (frames - 1) // 4, height // 4, width // 4, 4)
  assert mean.shape == logvar.shape == latent_shape
  recon = jax.eval_shape(lambda p, z: model.apply({'params': p}, z, method='decode'), params,
                         mean)
  assert recon.shape == x.shape


def test_bad_frame_counts_raise_and_pad(tiny):
  model, params, _, _ = tiny
  encode = lambda x, pad=False: jax.eval_shape(
      lambda p: model.apply({'params': p}, x, pad, method='encode'), params)
  for frames, nearest in [(4, '1 or 5 frames'), (6, '5 or 9 frames'), (0, '1 frame')]:
    with pytest.raises(ValueError, match=f'{frames} frames do not fit .* use {nearest}'):
      encode(jnp.zeros((1, frames, 16, 16, 3)))
  assert encode(jnp.zeros((1, 6, 16, 16, 3)), pad=True)[0].shape[1] == 3
  with pytest.raises(ValueError, match='frame size 16x18 is not a multiple of .* 4'):
    encode(jnp.zeros((1, 5, 16, 18, 3)))
  padded = autoencoder.pad_frames(jnp.arange(6.0).reshape(1, 6, 1, 1, 1), 4)
  np.testing.assert_array_equal(padded[0, :, 0, 0, 0], [0, 1, 2, 3, 4, 5, 5, 5, 5])


def test_encoder_and_decoder_are_causal(tiny):
  model, params, encode, decode = tiny
  x = _smooth_video(9, 16, 16)
  mean, _ = encode(params, x)
  # Frame 5 is the first frame of latent frame 2 (frames 1-4 -> latent 1, frames 5-8 -> latent 2).
  changed, _ = encode(params, x.at[:, 5].set(-x[:, 5]))
  np.testing.assert_allclose(changed[:, :2], mean[:, :2], atol=1e-6)
  assert float(jnp.abs(changed[:, 2] - mean[:, 2]).max()) > 1e-3
  image_mean, _ = encode(params, x[:, :1])
  np.testing.assert_allclose(image_mean[:, 0], mean[:, 0], atol=1e-5)

  recon = decode(params, mean)
  changed_recon = decode(params, mean.at[:, 2].add(1.0))
  np.testing.assert_allclose(changed_recon[:, :5], recon[:, :5], atol=1e-6)
  assert float(jnp.abs(changed_recon[:, 5] - recon[:, 5]).max()) > 1e-3


def test_chunked_equals_one_shot(tiny):
  model, params, encode, decode = tiny
  x = _smooth_video(9, 16, 16)
  mean, logvar = encode(params, x)
  chunked_mean, chunked_logvar = autoencoder_chunks.encode_chunked(model, params, x, 4)
  np.testing.assert_allclose(chunked_mean, mean, atol=1e-5)
  np.testing.assert_allclose(chunked_logvar, logvar, atol=1e-5)
  recon = decode(params, mean)
  np.testing.assert_allclose(autoencoder_chunks.decode_chunked(model, params, mean, 1), recon,
                             atol=1e-5)
  with pytest.raises(ValueError, match='chunk_frames 3 must be a positive multiple of .* 4'):
    autoencoder_chunks.encode_chunked(model, params, x, 3)


def _correlation(a, b):
  return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_tiles_blend_close_to_untiled(tiny):
  model, params, encode, decode = tiny
  x = _smooth_video(5, 32, 32)
  mean, _ = encode(params, x)
  one_tile_mean, _ = autoencoder_chunks.encode_tiled(model, params, x, tile=32, overlap=0)
  np.testing.assert_array_equal(one_tile_mean, mean)
  # A random-init encoder sees ~all of a 32-pixel frame, so tiles only roughly agree with it.
  tiled_mean, _ = autoencoder_chunks.encode_tiled(model, params, x, tile=24, overlap=16)
  assert _correlation(tiled_mean, mean) > 0.9

  recon = decode(params, mean)
  np.testing.assert_array_equal(autoencoder_chunks.decode_tiled(model, params, mean, 8, 0), recon)
  tiled_recon = autoencoder_chunks.decode_tiled(model, params, mean, tile=6, overlap=4)
  assert _correlation(tiled_recon, recon) > 0.75
  with pytest.raises(ValueError, match='tile 16 and overlap 6 .* multiples of 4'):
    autoencoder_chunks.encode_tiled(model, params, x, tile=16, overlap=6)


def test_tile_weights_sum_to_one_everywhere():
  """With a per-pixel fn the blend is exact, so every output pixel gets its tiles' weights right."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 2, 20, 28, 3)), jnp.float32)
  doubled, = autoencoder_chunks._blend_tiles(lambda tile: (2 * tile,), x, 8, 3, 1)
  np.testing.assert_allclose(doubled, 2 * x, rtol=1e-6)
  shrunk, = autoencoder_chunks._blend_tiles(lambda tile: (tile[:, :, ::4, ::4],), x[:, :, :16],
                                            8, 4, 1 / 4)
  np.testing.assert_allclose(shrunk, x[:, :, :16:4, ::4], rtol=1e-6)


def test_adam_steps_lower_l1_reconstruction(tiny):
  model, params, _, _ = tiny
  x = _smooth_video(5, 16, 16, seed=1)
  optimizer = optax.adam(3e-3)

  @jax.jit
  def step(params, opt_state, rng):
    def loss_fn(params):
      recon, _, _ = model.apply({'params': params}, x, rng)
      return jnp.abs(recon - x).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, loss

  opt_state = optimizer.init(params)
  losses = []
  for i in range(6):
    params, opt_state, loss = step(params, opt_state, jax.random.key(i))
    losses.append(float(loss))
  assert losses[-1] < 0.8 * losses[0], losses


def test_latent_stats_normalize_round_trip():
  rng = np.random.default_rng(0)
  means = [rng.normal([1.0, -2.0], [0.5, 3.0], size=(2, 3, 4, 4, 2)) for _ in range(50)]
  stats = autoencoder.latent_stats(means)
  np.testing.assert_allclose(stats['mean'], [1.0, -2.0], atol=0.05)
  np.testing.assert_allclose(stats['std'], [0.5, 3.0], rtol=0.05)
  normalized = autoencoder.normalize(np.concatenate(means), stats)
  np.testing.assert_allclose(normalized.reshape(-1, 2).mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(normalized.reshape(-1, 2).std(0), 1.0, atol=1e-5)
  np.testing.assert_allclose(autoencoder.denormalize(normalized, stats), np.concatenate(means),
                             atol=1e-5)
  with pytest.raises(ValueError, match='got no latents'):
    autoencoder.latent_stats([])


@pytest.mark.parametrize('kernel, stride_t', [((3, 3, 3), 1), ((3, 1, 1), 2), ((1, 1, 1), 1)])
def test_conv_by_frames_equals_the_3d_conv(kernel, stride_t):
  """The CPU's per-tap 2D convs give XLA's 3D conv, forward and backward."""
  stream = jax.random.normal(jax.random.key(0), (2, 7, 6, 5, 4))
  weights = jax.random.normal(jax.random.key(1), (*kernel, 4, 3))
  for fn in (lambda f: f(stream, weights, stride_t),
             lambda f: jax.grad(lambda s, w: (f(s, w, stride_t) ** 2).sum(), (0, 1))(stream,
                                                                                  weights)):
    for a, b in zip(jax.tree.leaves(fn(causal_conv.conv_by_frames)),
                    jax.tree.leaves(fn(causal_conv.conv_3d))):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_posterior_starts_narrow(tiny):
  """At init the posterior's std is e^(INITIAL_LOGVAR / 2) ≈ 0.05, so the decoder can read the
  encoder's means through the sampling noise from the first step."""
  model, params, encode, _ = tiny
  _, logvar = encode(params, _smooth_video(5, 16, 16))
  np.testing.assert_allclose(np.exp(0.5 * np.asarray(logvar)).mean(),
                             np.exp(0.5 * autoencoder.INITIAL_LOGVAR), rtol=0.5)
