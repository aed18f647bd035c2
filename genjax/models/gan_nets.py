"""Generators and discriminators of the GAN family: MLPs (Goodfellow et al. 2014) and DCGAN-style
convolutional networks (Radford et al. 2016).

Generators map latent codes z [B, latent_dim] to data in model space: images in [-1, 1] (tanh output) or
2-D points (linear output). Discriminators map data to one score per example [B]. Built with
num_classes > 0, both take `labels` [B] (int): the generator as a one-hot vector appended to z (the
conditional GAN of Mirza & Osindero 2014), the discriminator through a projection (Miyato & Koyama 2018),

    D(x, y) = w . phi(x) + b + embed(y) . phi(x),

where phi(x) are its last hidden features. Appending the one-hot label to the discriminator's 784 input
pixels instead was tried first: the discriminator then gave the label little weight, and after cgan_mnist's
10,000 steps three of the ten rows of its sample grid mixed classes; with the projection none do.

`train` selects batch statistics (BatchNorm) and power-iteration updates (spectral normalization); those
live in non-"params" variable collections that the caller threads through its state. `dtype` is the compute
dtype of every layer (genjax.nn.precision); outputs are float32.
"""

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genjax.nn import MLP
from genjax.nn.conditioning import with_labels
from genjax.nn.conv import Conv, depth_to_space, matrix_lecun_normal
from genjax.nn.precision import to_float32

NORMS = ("none", "batch", "spectral")
GENERATOR_NORMS = ("none", "batch")
ACTIVATIONS = ("leaky_relu", "maxout")
SPECTRAL_COLLECTION = "spectral"  # the power-iteration vectors u and the estimates sigma of each layer
BATCH_NORM_MOMENTUM = 0.9  # PyTorch's default (0.1 in its convention): running averages follow G and D as they train
LEAKY_SLOPE = 0.2  # the discriminator's LeakyReLU slope in Radford et al. (2016)

leaky_relu = functools.partial(nn.leaky_relu, negative_slope=LEAKY_SLOPE)


def upsample2x(x: jax.Array, features: int, kind: str, dtype: Any) -> jax.Array:
    """Double H and W and map to `features` channels: 'subpixel' (3x3 convolution to 4x the channels, then
    depth-to-space; Shi et al. 2016) or 'transpose' (4x4 stride-2 transposed convolution, as in DCGAN)."""
    if kind == "subpixel":
        return depth_to_space(Conv(4 * features, (3, 3), dtype=dtype)(x))
    return nn.ConvTranspose(features, (4, 4), strides=(2, 2), kernel_init=matrix_lecun_normal, dtype=dtype)(x)


def score(features: jax.Array, labels: jax.Array | None, num_classes: int, norm: str, train: bool, dtype: Any) -> jax.Array:
    """One float32 score per example from the last hidden features [B, F]: a linear layer, plus the
    projection embed(y) . features when conditional (Miyato & Koyama 2018)."""
    out = normalized_layer(nn.Dense(1, dtype=dtype), features, norm, train)[:, 0]
    if num_classes:
        embedding = normalized_layer(nn.Embed(num_classes, features.shape[-1], dtype=dtype), labels, norm, train)
        out = out + jnp.sum(embedding * features, axis=-1)
    return to_float32(out)


def batch_norm(train: bool, dtype: Any) -> nn.BatchNorm:
    """BatchNorm that normalizes by the batch (and updates its running averages) in training only; its
    statistics are float32 whatever the compute dtype (Flax reduces in float32)."""
    return nn.BatchNorm(use_running_average=not train, momentum=BATCH_NORM_MOMENTUM, dtype=dtype)


def normalized_layer(layer: nn.Module, x: jax.Array, norm: str, train: bool) -> jax.Array:
    """Apply `layer`, with its weights spectrally normalized (Miyato et al. 2018) when norm == 'spectral'.

    flax's nn.SpectralNorm divides each weight matrix (conv kernels reshaped to [k*k*in, out]) by its
    largest singular value, estimated by one power iteration per call from a vector u kept in the
    SPECTRAL_COLLECTION; u is updated only when train is True. The iteration runs on the float32
    parameters (u is float32 too); the layer casts the normalized weights to its compute dtype.
    """
    if norm == "spectral":
        return nn.SpectralNorm(layer, collection_name=SPECTRAL_COLLECTION)(x, update_stats=train)
    return layer(x)


def pack_examples(x: jax.Array, pack: int) -> jax.Array:
    """PacGAN's packing (Lin et al. 2018, section 3): m = `pack` consecutive examples become one input of
    the discriminator, [B, ..., C] -> [B / m, ..., m * C]: examples mB..mB+m-1 concatenated along the last
    (channel) axis, so an image pack is an m-channel image for a convolutional D and a 2-D pack is one
    2m-vector for an MLP D. Batches are shuffled, so consecutive examples are independent draws."""
    if pack == 1:
        return x
    grouped = x.reshape(x.shape[0] // pack, pack, *x.shape[1:])
    return jnp.moveaxis(grouped, 1, -2).reshape(x.shape[0] // pack, *x.shape[1:-1], pack * x.shape[-1])


class Maxout(nn.Module):
    """max over `pieces` linear maps to `width` units (Goodfellow et al. 2013, "Maxout Networks")."""

    width: int
    pieces: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(self.width * self.pieces, dtype=self.dtype)(x).reshape(x.shape[0], self.width, self.pieces).max(axis=-1)


class MLPGenerator(nn.Module):
    """z (+ one-hot label) -> ReLU MLP -> data of `data_shape`; tanh for images, linear for 2-D points.
    norm 'batch' puts BatchNorm before every hidden ReLU (the PacGAN generator of Lin et al. 2018)."""

    data_shape: Sequence[int]
    hidden_sizes: Sequence[int] = (256, 512)
    image_output: bool = True
    num_classes: int = 0
    norm: str = "none"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array | None = None, train: bool = False) -> jax.Array:
        h = with_labels(z, labels, self.num_classes)
        if self.norm == "batch":
            for width in self.hidden_sizes:
                h = nn.relu(batch_norm(train, self.dtype)(nn.Dense(width, dtype=self.dtype)(h)))
            out = to_float32(nn.Dense(math.prod(self.data_shape), dtype=self.dtype)(h))
        else:
            out = MLP(tuple(self.hidden_sizes), math.prod(self.data_shape), dtype=self.dtype)(h)
        out = out.reshape(z.shape[0], *self.data_shape)
        return jnp.tanh(out) if self.image_output else out


class MLPDiscriminator(nn.Module):
    """data -> Dense layers with LeakyReLU -> one score per example (`score`).

    norm 'batch' normalizes every hidden layer but the first (as DCGAN does for its input layer);
    'spectral' normalizes every layer's weights, the output layer included. activation 'maxout' makes each
    hidden layer a `Maxout` of `pieces` (PacGAN's 2-D discriminator; no normalization).
    """

    hidden_sizes: Sequence[int] = (512, 256)
    norm: str = "none"
    num_classes: int = 0
    activation: str = "leaky_relu"
    pieces: int = 5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array | None = None, train: bool = False) -> jax.Array:
        h = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.hidden_sizes):
            if self.activation == "maxout":
                h = Maxout(width, self.pieces, self.dtype)(h)
                continue
            h = normalized_layer(nn.Dense(width, dtype=self.dtype), h, self.norm, train)
            if self.norm == "batch" and i > 0:
                h = batch_norm(train, self.dtype)(h)
            h = leaky_relu(h)
        return score(h, labels, self.num_classes, self.norm, train, self.dtype)


class ConvGenerator(nn.Module):
    """The DCGAN generator for small images: Dense to a (H/2^L, W/2^L, channels[0]) map, then L upsampling
    layers (channels[1:], then the image's colors), BatchNorm and ReLU after all but the last, tanh output.

    `upsample` is 'subpixel' (3x3 convolution to 4x the channels and depth-to-space, Shi et al. 2016) or
    'transpose' (the paper's 4x4 stride-2 transposed convolution); see genjax.nn.conv.Upsample2x.
    """

    image_shape: Sequence[int] = (28, 28, 1)
    channels: Sequence[int] = (64, 32)
    upsample: str = "subpixel"
    num_classes: int = 0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array | None = None, train: bool = False) -> jax.Array:
        height, width, colors = self.image_shape
        scale = 2 ** len(self.channels)
        if height % scale or width % scale:
            raise ValueError(f"image {height}x{width} is not divisible by 2^{len(self.channels)} upsampling layers")
        h = nn.Dense(height // scale * width // scale * self.channels[0], dtype=self.dtype)(with_labels(z, labels, self.num_classes))
        h = nn.relu(batch_norm(train, self.dtype)(h))
        h = h.reshape(z.shape[0], height // scale, width // scale, self.channels[0])
        for features in self.channels[1:]:
            h = nn.relu(batch_norm(train, self.dtype)(upsample2x(h, features, self.upsample, self.dtype)))
        return jnp.tanh(to_float32(upsample2x(h, colors, self.upsample, self.dtype)))


def conv_features(x: jax.Array, channels: Sequence[int], norm: str, train: bool, dtype=jnp.float32) -> jax.Array:
    """The DCGAN discriminator's body, flattened [B, F]: 4x4 stride-2 convolutions of widths `channels` with
    LeakyReLU, BatchNorm on all but the first when norm is 'batch', computing in `dtype`. Called inside a compact module, its
    layers are that module's own (Conv_0, BatchNorm_0, ...), so InfoGAN's Q head can share them."""
    h = x
    for i, width in enumerate(channels):
        h = normalized_layer(Conv(width, (4, 4), strides=(2, 2), dtype=dtype), h, norm, train)
        if norm == "batch" and i > 0:
            h = batch_norm(train, dtype)(h)
        h = leaky_relu(h)
    return h.reshape(h.shape[0], -1)


class ConvDiscriminator(nn.Module):
    """The DCGAN discriminator: 4x4 stride-2 convolutions of widths `channels` with LeakyReLU, then `score`.

    norm 'batch' normalizes every convolution but the first (Radford et al. 2016); 'spectral' normalizes
    the weights of every layer, the output layer included (Miyato et al. 2018); 'none' is the critic of
    WGAN-GP (Gulrajani et al. 2017), whose gradient penalty needs examples scored independently.
    """

    channels: Sequence[int] = (32, 64)
    norm: str = "batch"
    num_classes: int = 0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array | None = None, train: bool = False) -> jax.Array:
        return score(conv_features(x, self.channels, self.norm, train, self.dtype), labels, self.num_classes, self.norm, train, self.dtype)
