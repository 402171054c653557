"""3D PatchGAN discriminator: per-patch real/fake logits of a video, for the VAE's adversarial loss.

conv (stride 1x2x2) -> LeakyReLU, then num_layers - 1 times conv (stride 2x2x2, width doubling
up to 8 x base_channels) -> GroupNorm -> LeakyReLU, then a stride-1 conv to one logit per patch.
Kernels are 3 frames by 4x4 pixels with 'SAME' zero padding, so any frame count works, a 1-frame
video (an image) included: T frames give ceil(T / 2^(num_layers - 1)) patch rows in time. The
discriminator judges whole clips and is never run in chunks, so it need not be causal.

Legend: b batch, t frames, h/w height/width, c channels.
"""
import math

import flax.linen as nn
import jax.numpy as jnp

from videogen.models import causal_conv

KERNEL_SIZE = (3, 4, 4)
MAX_WIDTH_MULTIPLIER = 8


def _conv(features: int, strides: tuple[int, int, int], name: str, *,
          kernel_axes=causal_conv.KERNEL_AXES, bias_axes=causal_conv.CHANNEL_AXES) -> nn.Conv:
  return nn.Conv(features, KERNEL_SIZE, strides=strides, padding='SAME', name=name,
                 kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(),
                                                          kernel_axes),
                 bias_init=nn.with_logical_partitioning(nn.initializers.zeros, bias_axes))


class PatchDiscriminator(nn.Module):
  """[B, T, H, W, 3] in [-1, 1] -> logits [B, t', H / 2^num_layers, W / 2^num_layers, 1]."""
  base_channels: int = 32
  num_layers: int = 3  # strided convs; each halves h and w (and t, after the first)

  @nn.compact
  def __call__(self, x_bthwc):
    h_bthwc = nn.leaky_relu(_conv(self.base_channels, (1, 2, 2), 'conv_in')(x_bthwc), 0.2)
    for i in range(1, self.num_layers):
      c = self.base_channels * min(2 ** i, MAX_WIDTH_MULTIPLIER)
      h_bthwc = _conv(c, (2, 2, 2), f'down_{i}')(h_bthwc)
      norm = nn.GroupNorm(num_groups=math.gcd(32, c), name=f'norm_{i}',
                          scale_init=nn.with_logical_partitioning(nn.initializers.ones,
                                                                  causal_conv.CHANNEL_AXES),
                          bias_init=nn.with_logical_partitioning(nn.initializers.zeros,
                                                                 causal_conv.CHANNEL_AXES))
      h_bthwc = nn.leaky_relu(norm(h_bthwc), 0.2)
    # One output channel: nothing to shard, so its axis has no logical name.
    logits_bthwc = _conv(1, (1, 1, 1), 'conv_out',
                         kernel_axes=causal_conv.KERNEL_AXES[:4] + (None,),
                         bias_axes=(None,))(h_bthwc)
    return logits_bthwc.astype(jnp.float32)
