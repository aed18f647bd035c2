"""Group normalization (Wu & He 2018, "Group Normalization") in a form XLA:CPU runs fast.

For an example x [H, W, C] with its C channels in G groups of C/G, and n = H W C/G values per group,

    mu_g = (1/n) sum x,    var_g = (1/n) sum x^2 - mu_g^2    (over the group's positions and channels)
    y = (x - mu_g) / sqrt(var_g + eps) * scale_c + bias_c  =  x * a_c + b_c,
    a_c = scale_c / sqrt(var_g + eps),    b_c = bias_c - mu_g a_c,

which is Flax's `nn.GroupNorm` (the same parameters, `scale` and `bias` [C], initialised to ones and zeros;
the same epsilon; the same one-pass variance, clamped at 0), reorganised: the two sums run over the positions
of [B, H W, C] with the channels kept apart and are then added within each group, and the normalization is one
multiply-add per value with a and b per example and channel. Flax reduces a [B, H, W, G, C/G] view over three
of its axes and normalizes in that 5-D shape; on 2 CPU cores that took 1.5-5x as long forward and 2-4.8x as
long with its gradient at the flow's U-Net shapes (`python benchmarks/group_norm.py`), where the GroupNorms were
about half of a forward pass. The statistics and the normalization are float32 whatever the compute dtype (as in
Flax); the output is in `dtype`.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class GroupNorm(nn.Module):
    """GroupNorm over the last axis of [B, ..., C] (C a multiple of num_groups); named like Flax's, so that
    checkpoints written with `nn.GroupNorm` restore into it."""

    num_groups: int
    epsilon: float = 1e-6
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        if channels % self.num_groups:
            raise ValueError(f"GroupNorm: {channels} channels do not split into {self.num_groups} groups")
        scale = self.param("scale", nn.initializers.ones, (channels,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
        a, b = group_affine(x, self.num_groups, scale, bias, self.epsilon)
        shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (channels,)
        return (x.astype(jnp.float32) * a.reshape(shape) + b.reshape(shape)).astype(self.dtype)


def group_affine(x, num_groups: int, scale, bias, epsilon: float):
    """(a, b), each [B, C]: GroupNorm(x) = x * a + b per example and channel (the module docstring)."""
    batch, channels = x.shape[0], x.shape[-1]
    flat = x.reshape(batch, -1, channels).astype(jnp.float32)
    count = flat.shape[1] * (channels // num_groups)
    per_group = lambda sums: sums.reshape(batch, num_groups, -1).sum(-1) / count  # noqa: E731  [B, C] -> [B, G]
    mean, mean_square = per_group(flat.sum(1)), per_group(jnp.square(flat).sum(1))
    variance = jnp.maximum(mean_square - jnp.square(mean), 0.0)
    per_channel = lambda v: jnp.repeat(v, channels // num_groups, axis=1)  # noqa: E731  [B, G] -> [B, C]
    a = per_channel(jax.lax.rsqrt(variance + epsilon)) * scale
    return a, bias - per_channel(mean) * a
