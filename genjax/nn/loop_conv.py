"""A 2-D convolution whose gradients stay fast inside lax.scan on CPU: a drop-in for nn.Conv.

The engine runs train steps inside lax.scan. There XLA:CPU leaves the gradient convolutions that JAX derives
for nn.Conv in transposed dimension orders (dim_labels such as f01b_i01o->01bf and b01f_01oi->b01f); inside
a loop body it does not reorder them and runs them on a slow generic path, so a conv net's train step is
10-20x slower in the scan than in a plain jit (jax-ml/jax#12868; measured here: a 3x3 conv on 128x14x14x32,
2 s vs 60 ms for its gradients). `conv2d` defines the backward pass itself, with the operands transposed so
that every convolution is NHWC x HWIO -> NHWC, the order XLA:CPU runs fast anywhere. With 'SAME' padding
(lo, hi) on each side, stride s and a k-tap kernel, for y = conv(x, w):

    dx = conv(dilate_s(dy), flip(w) with in/out swapped, padding (k - 1 - lo, k - 1 - hi))
    dw = conv(x with batch and channels swapped, dy as a kernel dilated by s, padding (lo, hi)), reordered

(when 'SAME' needs no padding, e.g. a 1x1 kernel with stride 2, the high paddings are set so that the
sizes still come out right).

`Conv` has nn.Conv's class name, parameters (kernel [kh, kw, in, out] with LeCun-normal init, bias [out]) and
'SAME' padding, so parameter trees (Conv_0, Conv_1, ...) and initial values are those of nn.Conv, and outputs and
gradients agree up to float rounding: swapping one for the other changes the speed only.
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """XLA's 'SAME' padding (low, high) of one spatial axis: ceil(size / stride) outputs."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _paddings(x_shape, kernel_shape, strides):
    return [same_padding(x_shape[1 + axis], kernel_shape[axis], strides[axis]) for axis in range(2)]


def _forward(x, kernel, strides):
    return jax.lax.conv_general_dilated(x, kernel, strides, _paddings(x.shape, kernel.shape, strides), dimension_numbers=DIMENSIONS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int]) -> jax.Array:
    return _forward(x, kernel, strides)


def _conv_fwd(x, kernel, strides):
    return _forward(x, kernel, strides), (x, kernel)


def _conv_bwd(strides, residuals, dy):
    x, kernel = residuals
    paddings = _paddings(x.shape, kernel.shape, strides)
    # (out - 1) * s + k = size + lo + hi unless 'SAME' needed no padding at all; these hold in both cases
    extents = [(dy.shape[1 + a] - 1) * strides[a] for a in range(2)]
    back_paddings = [(k - 1 - lo, size - 1 - extent + lo) for k, size, extent, (lo, _) in zip(kernel.shape[:2], x.shape[1:3], extents, paddings)]
    weight_paddings = [(lo, k + extent - size - lo) for k, size, extent, (lo, _) in zip(kernel.shape[:2], x.shape[1:3], extents, paddings)]
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    dx = jax.lax.conv_general_dilated(dy, flipped, (1, 1), back_paddings, lhs_dilation=strides, dimension_numbers=DIMENSIONS)
    dw = jax.lax.conv_general_dilated(
        x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), (1, 1), weight_paddings, rhs_dilation=strides, dimension_numbers=DIMENSIONS
    )
    return dx, dw.transpose(1, 2, 0, 3)


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv2d(x: jax.Array, kernel: jax.Array, strides: Sequence[int] = (1, 1)) -> jax.Array:
    """'SAME' convolution of x [B, H, W, C] with kernel [kh, kw, C, O]; gradients fast inside loops."""
    return _conv(x, kernel, tuple(strides))


class Conv(nn.Module):
    """nn.Conv(features, kernel_size, strides, padding='SAME') computed by conv2d."""

    features: int
    kernel_size: Sequence[int] = (3, 3)
    strides: Sequence[int] = (1, 1)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (*self.kernel_size, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return conv2d(x, kernel, self.strides) + bias
