"""Building blocks of the causal video VAE, laid out like Wan 2.1's so that weights convert.

Every block is per-frame or causal in time: norms act over channels only (Wan's RMS_norm, per
pixel and frame) and attention stays within a frame, so chunked runs equal one-shot runs.

Wan -> here: residual.{0,2,3,6} -> norm1, conv1, norm2, conv2; resample.1 -> resample;
RMS_norm gamma -> scale; conv weight [out, in, t, h, w] -> kernel [t, h, w, in, out].

Legend: b batch, t frames, h/w height/width, c channels, n frames of all clips (b·t), l pixels of a
frame.
"""
from typing import Any

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

from videogen.models import attention
from videogen.models import causal_conv
from videogen.models.causal_conv import CausalConv3d


class RMSNorm(nn.Module):
  """Wan's RMS_norm over channels, in float32: x / max(|x|, 1e-12) · sqrt(C) · scale, that is
  x / rms(x) with no epsilon under the root (Flax's nn.RMSNorm adds 1e-6 to the mean square,
  which moved our encoder's outputs 1e-5 off Wan's). The floor sits on the mean square, so an
  all-zero pixel gives zeros and a finite gradient, not NaN."""
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    scale = self.param('scale', nn.with_logical_partitioning(nn.initializers.ones,
                                                             causal_conv.CHANNEL_AXES),
                       (channels,), self.param_dtype)
    x = x.astype(jnp.float32)
    mean_square = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(mean_square, 1e-24 / channels)) * scale.astype(
        jnp.float32)


def _conv2d(features: int, name: str, dtype: Any, param_dtype: Any, **kwargs) -> nn.Conv:
  """Per-frame 3x3 conv with logical axis names (the spatial resamplers)."""
  return nn.Conv(features, (3, 3), name=name, dtype=dtype, param_dtype=param_dtype,
                 kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(),
                                                          causal_conv.KERNEL_AXES[1:]),
                 bias_init=nn.with_logical_partitioning(nn.initializers.zeros,
                                                        causal_conv.CHANNEL_AXES), **kwargs)


class ResidualBlock(nn.Module):
  """x + conv(silu(norm(conv(silu(norm(x)))))), 1x1x1 shortcut when the width changes."""
  features: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_bthwc):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h_bthwc = CausalConv3d(self.features, name='conv1', **kw)(
        nn.silu(RMSNorm(self.param_dtype, name='norm1')(x_bthwc)))
    h_bthwc = CausalConv3d(self.features, name='conv2', **kw)(
        nn.silu(RMSNorm(self.param_dtype, name='norm2')(h_bthwc)))
    if x_bthwc.shape[-1] != self.features:
      x_bthwc = CausalConv3d(self.features, (1, 1, 1), name='shortcut', **kw)(x_bthwc)
    return x_bthwc + h_bthwc


class AttentionBlock(nn.Module):
  """Single-head self-attention within each frame (never across time, so chunks stay exact);
  the output projection starts at zero, so the block starts as the identity."""
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_bthwc):
    b, _, h, _, c = x_bthwc.shape
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    axes = causal_conv.KERNEL_AXES[3:]
    x_nlc = einops.rearrange(x_bthwc, 'b t h w c -> (b t) (h w) c')
    qkv_nlc = attention.dense(3 * c, axes, name='to_qkv', **kw)(
        RMSNorm(self.param_dtype, name='norm')(x_nlc).astype(self.dtype))
    q_nl1c, k_nl1c, v_nl1c = jnp.split(qkv_nlc[:, :, None], 3, axis=-1)
    out_nlc = attention.dot_product_attention(q_nl1c, k_nl1c, v_nl1c)[:, :, 0]
    out_nlc = attention.dense(c, axes, name='proj', kernel_init=nn.initializers.zeros,
                              **kw)(out_nlc)
    return x_bthwc + einops.rearrange(out_nlc, '(b t) (h w) c -> b t h w c', b=b, h=h)


class Downsample(nn.Module):
  """Halves h and w (stride-2 conv, zero padding right and bottom), then time if `time`."""
  time: bool
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_bthwc):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    c = x_bthwc.shape[-1]
    x_bthwc = _conv2d(c, 'resample', strides=2, padding=((0, 1), (0, 1)), **kw)(x_bthwc)
    if not self.time:
      return x_bthwc
    conv = CausalConv3d(c, (3, 1, 1), stride_t=2, name='time_conv', **kw)
    return causal_conv.downsample_time(conv, x_bthwc)


class Upsample(nn.Module):
  """Doubles time if `time`, then h and w (nearest 2x, 3x3 conv to half the channels)."""
  time: bool
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_bthwc):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    c = x_bthwc.shape[-1]
    if self.time:
      conv = CausalConv3d(2 * c, (3, 1, 1), name='time_conv', **kw)
      x_bthwc = causal_conv.upsample_time(conv, x_bthwc)
    x_bthwc = einops.repeat(x_bthwc, 'b t h w c -> b t (h 2) (w 2) c')
    return _conv2d(c // 2, 'resample', padding=1, **kw)(x_bthwc)
