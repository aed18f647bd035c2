"""Convolutional encoder and decoder for small images (28x28 or 32x32).

The decoder upsamples with a sub-pixel convolution (Shi et al. 2016): a 3x3 stride-1 convolution to 4x the
channels followed by depth-to-space. It has the receptive field of a 4x4 stride-2 transposed convolution
and is about 3x faster to differentiate with XLA on CPU, where the backward pass of transposed convolutions
is slow (see benchmarks/). `upsample='transpose'` keeps the classic layer for comparison.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax

from genjax.nn.loop_conv import Conv  # nn.Conv's drop-in whose gradients are fast inside the engine's lax.scan


def depth_to_space(x: jax.Array, block: int = 2) -> jax.Array:
    """[B, H, W, C*block^2] -> [B, H*block, W*block, C], the inverse of a space-to-depth reshape."""
    b, h, w, c = x.shape
    x = x.reshape(b, h, w, block, block, c // block**2)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h * block, w * block, c // block**2)


class Upsample2x(nn.Module):
    """Double the spatial size and map to `features` channels."""

    features: int
    kind: str = "subpixel"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.kind == "subpixel":
            return depth_to_space(Conv(4 * self.features, (3, 3))(x))
        if self.kind == "transpose":
            return nn.ConvTranspose(self.features, (4, 4), strides=(2, 2))(x)
        raise ValueError(f"unknown upsample '{self.kind}'; choose 'subpixel' or 'transpose'")


class ConvEncoder(nn.Module):
    """Stride-2 4x4 convolutions of widths `channels` (each halves H and W), then Dense(out)."""

    channels: Sequence[int] = (32, 64)
    out: int = 40

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.channels:
            x = nn.relu(Conv(width, (4, 4), strides=(2, 2))(x))
        return nn.Dense(self.out)(x.reshape(x.shape[0], -1))


class ConvDecoder(nn.Module):
    """Dense to a (H / 2^L, W / 2^L, channels[0]) map, then L upsampling layers to `image_shape`.

    The last layer outputs `image_shape[-1] * out_multiplier` channels of pre-activations (logits or means).
    """

    image_shape: Sequence[int] = (28, 28, 1)
    channels: Sequence[int] = (64, 32)
    upsample: str = "subpixel"
    out_multiplier: int = 1

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        height, width, colors = self.image_shape
        scale = 2 ** len(self.channels)
        if height % scale or width % scale:
            raise ValueError(f"image {height}x{width} is not divisible by 2^{len(self.channels)} upsampling layers")
        x = nn.relu(nn.Dense(height // scale * width // scale * self.channels[0])(z))
        x = x.reshape(z.shape[0], height // scale, width // scale, self.channels[0])
        for features in self.channels[1:]:
            x = nn.relu(Upsample2x(features, self.upsample)(x))
        return Upsample2x(colors * self.out_multiplier, self.upsample)(x)

