"""Convolutional encoder and decoder with a spatial code map and residual blocks (the VQ-VAE networks).

van den Oord et al. (2017), section 4.1: the encoder is strided 4x4 convolutions (each halves H and W)
followed by residual blocks (ReLU, 3x3 conv, ReLU, 1x1 conv); the decoder mirrors it, residual blocks then
upsampling layers. A 28x28 image and two downsamplings give a 7x7 map of code vectors. Upsampling is a
sub-pixel convolution (3x3 convolution to 4x the channels, then depth-to-space; see genjax.nn.conv).

Convolutions are genjax.nn.conv.Conv: flax's nn.Conv with a kernel initializer that compiles fast. They
compute in the networks' `dtype` (genjax.nn.precision); the networks return float32.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.nn.conv import Conv, depth_to_space
from genjax.nn.precision import to_float32


def upsample2x(x: jax.Array, features: int, dtype: Any) -> jax.Array:
    """Double H and W, mapping to `features` channels (sub-pixel convolution)."""
    return depth_to_space(Conv(4 * features, (3, 3), dtype=dtype)(x))


class ResidualStack(nn.Module):
    """`blocks` residual blocks x + conv1x1(relu(conv3x3(relu(x)))), then a ReLU."""

    blocks: int = 2
    hidden: int = 32
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for _ in range(self.blocks):
            h = Conv(self.hidden, (3, 3), dtype=self.dtype)(nn.relu(x))
            x = x + Conv(x.shape[-1], (1, 1), dtype=self.dtype)(nn.relu(h))
        return nn.relu(x)


class MapEncoder(nn.Module):
    """Image [B, H, W, C] -> code vectors [B, H / 2^L, W / 2^L, out] (L = len(channels))."""

    channels: Sequence[int] = (32, 64)
    out: int = 16
    residual_blocks: int = 2
    residual_hidden: int = 32
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.channels:
            x = nn.relu(Conv(width, (4, 4), (2, 2), dtype=self.dtype)(x))
        x = Conv(self.channels[-1], (3, 3), dtype=self.dtype)(x)
        x = ResidualStack(self.residual_blocks, self.residual_hidden, self.dtype)(x)
        return to_float32(Conv(self.out, (1, 1), dtype=self.dtype)(x))


class MapDecoder(nn.Module):
    """Code vectors [B, h, w, D] -> pre-activations [B, h * 2^L, w * 2^L, colors] (L = len(channels))."""

    colors: int = 1
    channels: Sequence[int] = (64, 32)
    residual_blocks: int = 2
    residual_hidden: int = 32
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        x = Conv(self.channels[0], (3, 3), dtype=self.dtype)(z)
        x = ResidualStack(self.residual_blocks, self.residual_hidden, self.dtype)(x)
        for width in self.channels[1:]:
            x = nn.relu(upsample2x(x, width, self.dtype))
        return to_float32(upsample2x(x, self.colors, self.dtype))
