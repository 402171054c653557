"""Causal convolutions in time, with a frame cache so that video can be processed in chunks.

A causal layer sees only the current and earlier frames. Before the first frame of a video it
sees zeros (zero padding, as Wan 2.1's VAE does, so its weights convert and behave the same;
replicating the first frame would be the other choice). The time resamplers treat the first frame
alone: it passes through unresampled, so an image is a 1-frame video and 1 + r·k frames map to
1 + k latent frames.

Chunks: when the caller makes the 'cache' collection mutable, each layer stores under
'cache'/'past' the last input frames the next chunk will need; passing that collection back into
the next `apply` continues the video exactly where the chunk ended. Without a cache (a one-shot
call, or the first chunk) a layer starts a new video. Nothing is kept between calls otherwise.

Legend: b batch, t frames, h/w height/width, c channels.
"""
from typing import Any, Callable

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

# Logical axes of a conv kernel (taps in t, h, w, then in and out channels) and of its bias.
KERNEL_AXES = (None, None, None, 'conv_in', 'conv_out')
CHANNEL_AXES = ('conv_out',)


def starts_video(module: nn.Module) -> bool:
  """True when no cache carries frames of this video from an earlier chunk."""
  return not module.has_variable('cache', 'past')


class CausalConv3d(nn.Module):
  """Conv over (t, h, w), 'same' zero padding in space, causal in time.

  The (kernel_t - stride_t) frames before the input come from the cache or, at the start of a
  video, from `first_past_bthwc` (zeros when None). With stride_t > 1 the input holds a multiple
  of stride_t frames; an input of 0 frames gives 0 frames and still stores the cache. Parameter
  names follow `nn.Conv` (kernel [t, h, w, in, out], bias).
  """
  features: int
  kernel_size: tuple[int, int, int] = (3, 3, 3)
  stride_t: int = 1
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  bias_init: Callable = nn.initializers.zeros

  @nn.compact
  def __call__(self, x_bthwc, first_past_bthwc=None):
    kt, kh, kw = self.kernel_size
    kernel = self.param(
        'kernel', nn.with_logical_partitioning(nn.initializers.lecun_normal(), KERNEL_AXES),
        (kt, kh, kw, x_bthwc.shape[-1], self.features), self.param_dtype)
    bias = self.param('bias', nn.with_logical_partitioning(self.bias_init, CHANNEL_AXES),
                      (self.features,), self.param_dtype)
    num_past = kt - self.stride_t
    if not starts_video(self):
      past_bthwc = self.get_variable('cache', 'past')
    elif first_past_bthwc is not None:
      past_bthwc = first_past_bthwc
    else:
      past_bthwc = jnp.zeros((x_bthwc.shape[0], num_past, *x_bthwc.shape[2:]), x_bthwc.dtype)
    stream_bthwc = jnp.concatenate([past_bthwc.astype(x_bthwc.dtype), x_bthwc], axis=1)
    if num_past and self.is_mutable_collection('cache') and not self.is_initializing():
      self.put_variable('cache', 'past', stream_bthwc[:, stream_bthwc.shape[1] - num_past:])
    if x_bthwc.shape[1] == 0:
      return jnp.zeros((*x_bthwc.shape[:4], self.features), self.dtype)
    conv = conv_by_frames if jax.default_backend() == 'cpu' else conv_3d
    y_bthwc = conv(stream_bthwc.astype(self.dtype), kernel.astype(self.dtype), self.stride_t)
    return y_bthwc + bias.astype(self.dtype)


def conv_3d(stream_bthwc, kernel_thwio, stride_t: int):
  """A valid conv in time, 'same' in space, with a time stride: XLA's 3D convolution."""
  _, kh, kw = kernel_thwio.shape[:3]
  return jax.lax.conv_general_dilated(
      stream_bthwc, kernel_thwio, window_strides=(stride_t, 1, 1),
      padding=((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2)),
      dimension_numbers=('NDHWC', 'DHWIO', 'NDHWC'))


def conv_by_frames(stream_bthwc, kernel_thwio, stride_t: int):
  """conv_3d as one 2D conv per time tap over every output frame at once, summed. What the
  CPU runs: XLA's CPU 3D convolution is 3-5x slower forward + backward than its 2D one (4
  clips of 9x32x32x32 through a 3x3x3 conv: 506 ms against 152 ms)."""
  kt, kh, kw = kernel_thwio.shape[:3]
  batch, frames_out = stream_bthwc.shape[0], (stream_bthwc.shape[1] - kt) // stride_t + 1
  y_nhwc = 0
  for tap in range(kt):
    frames_bthwc = stream_bthwc[:, tap:tap + stride_t * (frames_out - 1) + 1:stride_t]
    y_nhwc = y_nhwc + jax.lax.conv_general_dilated(
        einops.rearrange(frames_bthwc, 'b t h w c -> (b t) h w c'), kernel_thwio[tap],
        window_strides=(1, 1), padding=((kh // 2, kh // 2), (kw // 2, kw // 2)),
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return einops.rearrange(y_nhwc, '(b t) h w c -> b t h w c', b=batch)


def downsample_time(conv: CausalConv3d, x_bthwc):
  """Halves the frame count with `conv` (kernel_t 3, stride_t 2, in = out channels), keeping the
  first frame alone, as Wan's downsample3d time_conv does.

  Output 0 is frame 0 unchanged; output j >= 1 mixes frames 2j-2, 2j-1 and 2j, so 1 + 2k frames
  give 1 + k. Chunks after the first hold an even number of frames.
  """
  if not starts_video(conv):
    return conv(x_bthwc)
  first_bthwc = x_bthwc[:, :1]
  return jnp.concatenate(
      [first_bthwc.astype(conv.dtype), conv(x_bthwc[:, 1:], first_past_bthwc=first_bthwc)],
      axis=1)


def upsample_time(conv: CausalConv3d, x_bthwc):
  """Doubles the frame count with `conv` (kernel_t 3, stride_t 1, out = 2 x in channels), keeping
  the first frame alone, as Wan's upsample3d time_conv does.

  Frame 0 passes unchanged; every later frame becomes two (the conv's 2c channels split into two
  frames). Like Wan, the later frames' conv starts from zeros, not from frame 0. So 1 + k frames
  give 1 + 2k.
  """
  start = starts_video(conv)
  pairs_bthwc = conv(x_bthwc[:, 1:] if start else x_bthwc)
  y_bthwc = einops.rearrange(pairs_bthwc, 'b t h w (k c) -> b (t k) h w c', k=2)
  if not start:
    return y_bthwc
  return jnp.concatenate([x_bthwc[:, :1].astype(conv.dtype), y_bthwc], axis=1)
