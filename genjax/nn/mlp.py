"""A multilayer perceptron."""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.nn.precision import to_float32


def uniform_fan_in(fan_in: int):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's nn.Linear initialisation of weights and biases.

    Its weights have a third of the variance of LeCun-normal (Flax's default). On the 4,500-image MNIST
    subset the MLP VAE generalises better with it: test -ELBO 110.9 vs 111.5 nats at 3,000 steps (3 seeds).
    """
    limit = fan_in**-0.5

    def init(key, shape, dtype=jax.numpy.float32):
        return jax.random.uniform(key, shape, dtype, -limit, limit)

    return init


def linear(width: int, fan_in: int, dtype: Any = jnp.float32) -> nn.Dense:
    """A Dense layer with `uniform_fan_in` weights and biases (float32), computing in `dtype`."""
    return nn.Dense(width, kernel_init=uniform_fan_in(fan_in), bias_init=uniform_fan_in(fan_in), dtype=dtype)


class MLP(nn.Module):
    """Dense layers of widths `hidden` with `activation` between them, then a linear layer to `out` (float32).

    dtype: the compute dtype of its layers (genjax.nn.precision)."""

    hidden: Sequence[int]
    out: int
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        for width in self.hidden:
            x = self.activation(linear(width, x.shape[-1], self.dtype)(x))
        return to_float32(linear(self.out, x.shape[-1], self.dtype)(x))
