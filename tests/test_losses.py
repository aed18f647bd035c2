"""Losses against closed forms, Monte Carlo estimates and numpy references."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np

from genjax import losses


def test_analytic_kl_matches_a_monte_carlo_estimate():
    key_mean, key_var, key_z = jax.random.split(jax.random.PRNGKey(0), 3)
    mean = jax.random.normal(key_mean, (3, 5))
    log_var = 0.5 * jax.random.normal(key_var, (3, 5))
    n = 200_000
    z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key_z, (n, 3, 5))
    log_q = losses.diagonal_gaussian_log_prob(z, mean, log_var)
    log_p = losses.diagonal_gaussian_log_prob(z, jnp.zeros_like(mean), jnp.zeros_like(log_var))
    monte_carlo = jnp.mean(log_q - log_p, axis=0)
    standard_error = jnp.std(log_q - log_p, axis=0) / math.sqrt(n)
    analytic = losses.gaussian_kl(mean, log_var)
    chex.assert_shape(analytic, (3,))
    assert jnp.all(jnp.abs(analytic - monte_carlo) < 5 * standard_error), (analytic, monte_carlo)


def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
    np.testing.assert_allclose(losses.gaussian_kl(jnp.zeros((2, 4)), jnp.zeros((2, 4))), 0.0, atol=1e-7)
    assert jnp.all(losses.gaussian_kl(jnp.ones((2, 4)), jnp.zeros((2, 4))) > 0)


def _bce_numpy(logits, x):
    """Float64 reference: -x log sigmoid(l) - (1 - x) log sigmoid(-l), stable via logaddexp."""
    logits, x = np.float64(logits), np.float64(x)
    return x * np.logaddexp(0, -logits) + (1 - x) * np.logaddexp(0, logits)


def test_bernoulli_nll_is_finite_and_exact_at_extreme_logits():
    logit_values = np.array([-1e4, -80.0, -20.0, 0.0, 20.0, 80.0, 1e4])
    target_values = np.array([0.0, 0.3, 1.0])
    logits = jnp.asarray(np.repeat(logit_values, 3), jnp.float32).reshape(-1, 1, 1, 1)
    x = jnp.asarray(np.tile(target_values, 7), jnp.float32).reshape(-1, 1, 1, 1)
    value = jax.jit(losses.bernoulli_nll)(logits, x)
    assert jnp.isfinite(value).all()
    np.testing.assert_allclose(value, _bce_numpy(np.repeat(logit_values, 3), np.tile(target_values, 7)), rtol=1e-5)
    grad = jax.jit(jax.grad(lambda logit: losses.bernoulli_nll(logit, x).sum()))(logits)
    assert jnp.isfinite(grad).all()


def test_gaussian_nll_matches_the_normal_log_density():
    rng = np.random.default_rng(0)
    x, mean = rng.normal(size=(2, 6)).astype(np.float32), rng.normal(size=(2, 6)).astype(np.float32)
    log_std = -0.7
    sigma = math.exp(log_std)
    expected = np.sum((x - mean) ** 2 / (2 * sigma**2) + math.log(sigma) + 0.5 * math.log(2 * math.pi), axis=1)
    np.testing.assert_allclose(losses.gaussian_nll(jnp.asarray(mean), jnp.asarray(x), log_std), expected, rtol=1e-5)


def test_reparameterize_has_the_requested_moments_and_gradients():
    mean, log_var = jnp.array([[1.0, -2.0]]), jnp.array([[0.0, math.log(4.0)]])
    z = jax.vmap(lambda k: losses.reparameterize(k, mean, log_var))(jax.random.split(jax.random.PRNGKey(1), 50_000))
    np.testing.assert_allclose(z.mean(axis=0)[0], [1.0, -2.0], atol=0.03)
    np.testing.assert_allclose(z.std(axis=0)[0], [1.0, 2.0], rtol=0.02)
    grad_mean = jax.grad(lambda m: losses.reparameterize(jax.random.PRNGKey(2), m, log_var).sum())(mean)
    np.testing.assert_allclose(grad_mean, jnp.ones_like(mean))
