"""genjax.nn.group_norm.GroupNorm: Flax's nn.GroupNorm (values, gradients and parameter tree) reorganised for
speed, and the closed form of Wu & He (2018) in numpy."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.nn.group_norm import GroupNorm


def _random_params(module, x, key):
    params = module.init(key, x)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(7), len(leaves))
    return jax.tree.unflatten(tree, [leaf + jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys, strict=True)])


@pytest.mark.parametrize("shape, groups", [((5, 6, 6, 16), 8), ((3, 7, 7, 32), 8), ((4, 12), 4), ((2, 5, 6), 3)])
def test_it_is_flaxs_group_norm_in_values_gradients_and_parameters(shape, groups):
    x = 3.0 + 2.0 * jax.random.normal(jax.random.PRNGKey(0), shape)  # a mean and spread the normalization removes
    ours, flax_norm = GroupNorm(num_groups=groups), nn.GroupNorm(num_groups=groups)
    params = _random_params(flax_norm, x, jax.random.PRNGKey(1))
    # the same names and shapes: checkpoints written with nn.GroupNorm restore into it
    chex.assert_trees_all_equal_shapes_and_dtypes(ours.init(jax.random.PRNGKey(1), x), params)
    np.testing.assert_allclose(ours.apply(params, x), flax_norm.apply(params, x), rtol=1e-5, atol=1e-5)
    g = jax.random.normal(jax.random.PRNGKey(2), shape)
    grad = lambda m: jax.grad(lambda p, x: jnp.vdot(m.apply(p, x), g), argnums=(0, 1))(params, x)  # noqa: E731
    chex.assert_trees_all_close(grad(ours), grad(flax_norm), rtol=1e-4, atol=1e-4)


def test_it_matches_the_closed_form_in_float64_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, (4, 5, 5, 12)).astype(np.float32)
    scale, bias = rng.normal(size=12).astype(np.float32), rng.normal(size=12).astype(np.float32)
    y = GroupNorm(num_groups=3).apply({"params": {"scale": scale, "bias": bias}}, x)
    groups = x.astype(np.float64).reshape(4, 5, 5, 3, 4)
    mean, var = groups.mean(axis=(1, 2, 4), keepdims=True), groups.var(axis=(1, 2, 4), keepdims=True)
    expected = ((groups - mean) / np.sqrt(var + 1e-6)).reshape(x.shape) * scale + bias
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_bfloat16_compute_returns_bfloat16_from_float32_statistics():
    x = 100.0 + jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 8))  # a large mean: bfloat16 statistics would lose it
    y = GroupNorm(num_groups=4, dtype=jnp.bfloat16).apply({"params": {"scale": jnp.ones(8), "bias": jnp.zeros(8)}}, x)
    assert y.dtype == jnp.bfloat16
    reference = nn.GroupNorm(num_groups=4).apply({"params": {"scale": jnp.ones(8), "bias": jnp.zeros(8)}}, x)
    np.testing.assert_allclose(np.float32(y), reference, atol=0.02)


def test_channels_that_do_not_split_into_the_groups_are_refused():
    with pytest.raises(ValueError, match="12 channels do not split into 5 groups"):
        GroupNorm(num_groups=5).init(jax.random.PRNGKey(0), jnp.ones((2, 3, 3, 12)))
