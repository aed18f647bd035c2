"""Convolutional encoder and decoder for small images (28x28 or 32x32).

Resolution changes come in interchangeable formulations of equal receptive field; which is fastest depends on
the backend and the shapes, and `python benchmarks/conv_formulations.py` measures them:

- up 'subpixel' (default): a 3x3 stride-1 convolution to 4x the channels, then depth-to-space (Shi et al.
  2016). It covers the receptive field of a 4x4 stride-2 transposed convolution.
- up 'transpose': the classic 4x4 stride-2 transposed convolution (DCGAN, Radford et al. 2016).
- up 'resize': nearest-neighbour 2x resize, then a 3x3 convolution (Odena et al. 2016, no checkerboard).
- down 'strided' (default): a 4x4 stride-2 convolution.
- down 'space_to_depth': space-to-depth, then a 2x2 stride-1 convolution: the same parameter count and
  receptive field as the 4x4 stride-2 convolution, with every tap a stride-1 product.
"""

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.nn.precision import to_float32

UPSAMPLES = ("subpixel", "transpose", "resize")
DOWNSAMPLES = ("strided", "space_to_depth")


def matrix_lecun_normal(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """LeCun-normal weights (flax's default, fan-in = kh * kw * in) for a kernel [kh, kw, in, out], drawn as the
    [kh * kw * in, out] matrix and reshaped: the distribution of nn.Conv's default initializer, but XLA on CPU
    compiles a random draw of a 4-D shape 2-5x slower than a 2-D one (jax 0.10.2: 2.3 s against 0.5 s for a
    4x4x1x16 kernel), and that compilation is most of a conv net's time to its first step."""
    return nn.initializers.lecun_normal()(key, (math.prod(shape[:-1]), shape[-1]), dtype).reshape(shape)


# nn.Conv ('SAME' padding; parameters 'kernel' [kh, kw, in, out] and 'bias'; named Conv_i in a compact module)
# with its kernel drawn by matrix_lecun_normal; callers give it their compute dtype (genjax.nn.precision). XLA:CPU runs its gradients as fast as any hand-written
# formulation tried (a patch-matrix kernel gradient and an NHWC-only backward pass: 10-60% slower in the
# DCGAN and VQ-VAE train steps), since the engine runs conv steps as separate jitted calls on CPU.
Conv = functools.partial(nn.Conv, kernel_init=matrix_lecun_normal)


def depth_to_space(x: jax.Array, block: int = 2) -> jax.Array:
    """[B, H, W, C*block^2] -> [B, H*block, W*block, C], the inverse of `space_to_depth`."""
    b, h, w, c = x.shape
    x = x.reshape(b, h, w, block, block, c // block**2)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h * block, w * block, c // block**2)


def space_to_depth(x: jax.Array, block: int = 2) -> jax.Array:
    """[B, H, W, C] -> [B, H/block, W/block, C*block^2]: each block x block patch becomes one pixel."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // block, block, w // block, block, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h // block, w // block, c * block**2)


class Upsample2x(nn.Module):
    """Double the spatial size and map to `features` channels (`kind`: see the module docstring), computing
    in `dtype`."""

    features: int
    kind: str = "subpixel"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.kind == "subpixel":
            return depth_to_space(Conv(4 * self.features, (3, 3), dtype=self.dtype)(x))
        if self.kind == "transpose":
            return nn.ConvTranspose(self.features, (4, 4), strides=(2, 2), kernel_init=matrix_lecun_normal, dtype=self.dtype)(x)
        if self.kind == "resize":
            return Conv(self.features, (3, 3), dtype=self.dtype)(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2))
        raise ValueError(f"unknown upsample '{self.kind}'; choose one of {', '.join(UPSAMPLES)}")


def downsample2x(x: jax.Array, features: int, kind: str = "strided", dtype: Any = jnp.float32) -> jax.Array:
    """Halve the spatial size and map to `features` channels (`kind`: see the module docstring), in `dtype`.

    Call it inside a compact module: its convolution becomes that module's next Conv_i, so the parameter
    names are those of the classic strided encoder.
    """
    if kind == "strided":
        return Conv(features, (4, 4), strides=(2, 2), dtype=dtype)(x)
    if kind == "space_to_depth":
        return Conv(features, (2, 2), dtype=dtype)(space_to_depth(x))
    raise ValueError(f"unknown downsample '{kind}'; choose one of {', '.join(DOWNSAMPLES)}")


class ConvEncoder(nn.Module):
    """`downsample2x` layers of widths `channels` (each halves H and W, ReLU after each), then Dense(out);
    computes in `dtype`, returns float32."""

    channels: Sequence[int] = (32, 64)
    out: int = 40
    downsample: str = "strided"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.channels:
            x = nn.relu(downsample2x(x, width, self.downsample, self.dtype))
        return to_float32(nn.Dense(self.out, dtype=self.dtype)(x.reshape(x.shape[0], -1)))


class ConvDecoder(nn.Module):
    """Dense to a (H / 2^L, W / 2^L, channels[0]) map, then L upsampling layers to `image_shape`.

    The last layer outputs `image_shape[-1] * out_multiplier` channels of pre-activations (logits or means),
    float32; the layers compute in `dtype`.
    """

    image_shape: Sequence[int] = (28, 28, 1)
    channels: Sequence[int] = (64, 32)
    upsample: str = "subpixel"
    out_multiplier: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        height, width, colors = self.image_shape
        scale = 2 ** len(self.channels)
        if height % scale or width % scale:
            raise ValueError(f"image {height}x{width} is not divisible by 2^{len(self.channels)} upsampling layers")
        x = nn.relu(nn.Dense(height // scale * width // scale * self.channels[0], dtype=self.dtype)(z))
        x = x.reshape(z.shape[0], height // scale, width // scale, self.channels[0])
        for features in self.channels[1:]:
            x = nn.relu(Upsample2x(features, self.upsample, self.dtype)(x))
        return to_float32(Upsample2x(colors * self.out_multiplier, self.upsample, self.dtype)(x))
