"""A 2-D convolution whose kernel gradient is a matrix product of input patches: fast inside loops on CPU.

Why: the engine runs train steps inside `lax.scan`. XLA's CPU backend rewrites the kernel-gradient
convolution of `lax.conv_general_dilated` (dimension labels f01b_i01o->01bf) into the layout its Eigen
convolution kernels take only outside while loops; inside a loop body it emits a generic loop nest that
is about 10x slower (jax 0.10.2 on 2 CPU cores: the forward and backward pass of a 3x3 convolution from
64 to 128 channels on a 64x7x7 batch takes 58 ms in a jitted function and 654 ms in a one-step lax.scan;
with this module, 72 and 108 ms). The kernel gradient of y = conv(x, W) with stride s is

    dL/dW[i, j, c, o] = sum_{b, h, w} x_pad[b, s*h + i, s*w + j, c] * dL/dy[b, h, w, o]

so this module computes it as one matrix product of the kh*kw strided slices of the padded input (the
"patches", pure data movement that XLA fuses) with the output gradient. The forward pass and the input
gradient stay XLA's own convolutions, which are fast in loops. Results equal nn.Conv's to float rounding.
"""

import functools
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _conv(x, kernel, strides, padding):
    return jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=DIMENSIONS)


def kernel_gradient(x: jax.Array, dy: jax.Array, kernel_shape: Sequence[int], strides, padding) -> jax.Array:
    """dL/dW [kh, kw, C, O] of y = conv(x, W) from x [B, H, W, C] and dL/dy [B, H', W', O]."""
    kh, kw = kernel_shape[:2]
    _, out_h, out_w, _ = dy.shape
    (top, bottom), (left, right) = padding
    x = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    sh, sw = strides
    patches = jnp.stack(
        [x[:, i : i + sh * (out_h - 1) + 1 : sh, j : j + sw * (out_w - 1) + 1 : sw, :] for i in range(kh) for j in range(kw)],
        axis=3,
    )  # [B, H', W', kh*kw, C]
    return jnp.einsum("bhwkc,bhwo->kco", patches, dy).reshape(kernel_shape)


def matrix_lecun_normal(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """LeCun-normal weights (flax's default, fan-in = kh * kw * in) for a kernel [kh, kw, in, out], drawn as the
    [kh * kw * in, out] matrix and reshaped: the same distribution as nn.Conv's initializer, but XLA on CPU
    compiles a random draw of a 4-D shape about 10x slower than a 2-D one (9 s against 0.9 s, jax 0.10.2)."""
    return nn.initializers.lecun_normal()(key, (math.prod(shape[:-1]), shape[-1]), dtype).reshape(shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(x: jax.Array, kernel: jax.Array, strides: tuple, padding: tuple) -> jax.Array:
    """conv(x [B, H, W, C], kernel [kh, kw, C, O]) with explicit padding ((top, bottom), (left, right))."""
    return _conv(x, kernel, strides, padding)


def _conv2d_forward(x, kernel, strides, padding):
    return _conv(x, kernel, strides, padding), (x, kernel)


def _conv2d_backward(strides, padding, residuals, dy):
    x, kernel = residuals
    _, input_vjp = jax.vjp(lambda x: _conv(x, kernel, strides, padding), x)
    return input_vjp(dy)[0], kernel_gradient(x, dy, kernel.shape, strides, padding)


conv2d.defvjp(_conv2d_forward, _conv2d_backward)


class PatchGradConv(nn.Module):
    """nn.Conv (NHWC, 'SAME' padding, parameters 'kernel' and 'bias' initialized alike) with `conv2d`'s
    fast kernel gradient."""

    features: int
    kernel_size: Sequence[int] = (3, 3)
    strides: Sequence[int] = (1, 1)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel_shape = (*self.kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", matrix_lecun_normal, kernel_shape)
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        padding = tuple(jax.lax.padtype_to_pads(x.shape[1:3], self.kernel_size, self.strides, "SAME"))
        return conv2d(x, kernel, tuple(self.strides), padding) + bias
