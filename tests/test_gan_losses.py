"""GAN losses against closed forms: non-saturating, hinge, least squares, Wasserstein and the gradient penalty."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from genjax import losses

LOGITS = np.array([-1e4, -30.0, -2.0, -0.5, 0.0, 0.5, 2.0, 30.0, 1e4])


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -np.float64(x))


def test_non_saturating_losses_equal_the_cross_entropy_of_a_sigmoid_discriminator():
    real = jnp.asarray(LOGITS, jnp.float32)
    fake = jnp.asarray(LOGITS[::-1].copy(), jnp.float32)
    real_term, fake_term = jax.jit(losses.non_saturating_discriminator_loss)(real, fake)
    generator = jax.jit(losses.non_saturating_generator_loss)(fake)
    chex.assert_shape([real_term, fake_term, generator], (len(LOGITS),))
    np.testing.assert_allclose(real_term, -_log_sigmoid(LOGITS), rtol=1e-6)  # -log D(x)
    np.testing.assert_allclose(fake_term, -_log_sigmoid(-LOGITS[::-1]), rtol=1e-6)  # -log(1 - D(G(z)))
    np.testing.assert_allclose(generator, -_log_sigmoid(LOGITS[::-1]), rtol=1e-6)  # -log D(G(z))
    np.testing.assert_allclose(losses.non_saturating_discriminator_loss(jnp.zeros(1), jnp.zeros(1)), [[np.log(2)]] * 2, rtol=1e-6)


def test_non_saturating_generator_gradient_does_not_vanish_when_the_discriminator_wins():
    """Where D(G(z)) -> 0, log(1 - D) saturates (gradient -> 0) but -log D keeps a gradient of -1."""
    grad = jax.grad(lambda logit: losses.non_saturating_generator_loss(logit).sum())(jnp.array([-30.0]))
    np.testing.assert_allclose(grad, [-1.0], rtol=1e-6)


def test_hinge_and_wasserstein_losses_match_their_closed_forms():
    real = jnp.array([-2.0, 0.0, 0.5, 1.0, 3.0])
    fake = jnp.array([-3.0, -1.0, -0.5, 0.0, 2.0])
    real_term, fake_term = losses.hinge_discriminator_loss(real, fake)
    np.testing.assert_allclose(real_term, [3.0, 1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(fake_term, [0.0, 0.0, 0.5, 1.0, 3.0])
    np.testing.assert_allclose(losses.hinge_generator_loss(fake), -fake)
    critic_real, critic_fake = losses.wasserstein_critic_loss(real, fake)
    np.testing.assert_allclose(critic_real + critic_fake, fake - real)
    np.testing.assert_allclose(losses.wasserstein_generator_loss(fake), -fake)


def test_least_squares_losses_match_their_closed_forms():
    real, fake = jnp.array([0.2, 1.5, -1.0]), jnp.array([-0.3, 0.8, 2.0])
    real_term, fake_term = losses.least_squares_discriminator_loss(real, fake)
    np.testing.assert_allclose(real_term, [0.32, 0.125, 2.0], rtol=1e-6)  # (D(x) - 1)^2 / 2
    np.testing.assert_allclose(fake_term, [0.045, 0.32, 2.0], rtol=1e-6)  # D(G(z))^2 / 2
    np.testing.assert_allclose(losses.least_squares_generator_loss(fake), [0.845, 0.02, 0.5], rtol=1e-5)  # (D(G(z)) - 1)^2 / 2


def test_the_least_squares_discriminator_is_optimal_at_the_density_ratio():
    """Pointwise, p_data (D - 1)^2 / 2 + p_g D^2 / 2 is minimal at D* = p_data / (p_data + p_g) (Mao et al. 2017,
    eq. 4 with a = 0, b = 1): its gradient vanishes there and nowhere else."""
    p_data, p_g = jnp.array([0.7, 0.1, 0.5]), jnp.array([0.3, 0.9, 0.5])

    def objective(d):
        real_term, fake_term = losses.least_squares_discriminator_loss(d, d)
        return jnp.sum(p_data * real_term + p_g * fake_term)

    optimum = p_data / (p_data + p_g)
    np.testing.assert_allclose(jax.grad(objective)(optimum), 0.0, atol=1e-7)
    assert np.all(np.abs(jax.grad(objective)(optimum + 0.1)) > 0.09)


def test_gradient_penalty_of_a_linear_critic_is_lambda_times_norm_minus_one_squared():
    """f(x) = w . x has gradient w at every interpolate, so the penalty is lambda (||w|| - 1)^2 exactly."""
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    real = jax.random.uniform(keys[0], (6, 4, 4, 1))
    fake = jax.random.uniform(keys[1], (6, 4, 4, 1))
    for scale in (0.3, 1.0, 2.5):
        w = scale * jax.random.normal(keys[2], (4, 4, 1))

        def critic(x):
            return jnp.sum(x * w, axis=(1, 2, 3))

        penalty = jax.jit(lambda r, f, k: losses.gradient_penalty(critic, r, f, k, weight=10.0))(real, fake, keys[3])
        chex.assert_shape(penalty, (6,))
        np.testing.assert_allclose(penalty, 10.0 * (np.linalg.norm(np.asarray(w)) - 1.0) ** 2, rtol=1e-4, atol=1e-6)


def test_gradient_penalty_is_taken_at_interpolates_between_real_and_fake():
    """f(x) = ||x||^2 / 2 has gradient x: with real = fake the interpolate is that point whatever eps is."""
    points = jnp.array([[3.0, 4.0], [0.6, 0.8], [0.0, 0.5]])
    penalty = losses.gradient_penalty(lambda x: 0.5 * jnp.sum(x**2, axis=1), points, points, jax.random.PRNGKey(1), weight=2.0)
    np.testing.assert_allclose(penalty, 2.0 * (np.array([5.0, 1.0, 0.5]) - 1.0) ** 2, rtol=1e-5)


def test_gradient_penalty_has_the_first_derivatives_of_the_direct_double_backward_form():
    """The penalty is computed as a jvp of the critic (reverse-over-forward); its gradients with respect to
    the critic's parameters and to the real and fake inputs must equal those of the textbook form, which
    differentiates through grad_x D with a second backward pass."""
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    critic_net = nn.Sequential(
        [
            nn.Conv(4, (3, 3), strides=2),
            nn.leaky_relu,
            nn.Conv(8, (3, 3), strides=2),
            nn.leaky_relu,
            lambda h: h.reshape(h.shape[0], -1),
            nn.Dense(1),
            lambda s: s[:, 0],
        ]
    )
    real = jax.random.uniform(keys[0], (5, 8, 8, 1))
    fake = jax.random.uniform(keys[1], (5, 8, 8, 1))
    params = critic_net.init(keys[2], real)

    def direct(params, real, fake):
        eps = jax.random.uniform(keys[3], (5, 1, 1, 1))
        x_hat = eps * real + (1.0 - eps) * fake
        grads = jax.grad(lambda x: jnp.sum(critic_net.apply(params, x)))(x_hat).reshape(5, -1)
        return jnp.sum(10.0 * jnp.square(jnp.sqrt(jnp.sum(grads**2, axis=-1) + 1e-12) - 1.0) * jnp.arange(1.0, 6.0))

    def via_jvp(params, real, fake):
        penalty = losses.gradient_penalty(lambda x: critic_net.apply(params, x), real, fake, keys[3], 10.0)
        return jnp.sum(penalty * jnp.arange(1.0, 6.0))  # unequal weights: per-example gradients, not only their sum

    np.testing.assert_allclose(jax.jit(via_jvp)(params, real, fake), jax.jit(direct)(params, real, fake), rtol=1e-5)
    expected = jax.jit(jax.grad(direct, argnums=(0, 1, 2)))(params, real, fake)
    actual = jax.jit(jax.grad(via_jvp, argnums=(0, 1, 2)))(params, real, fake)
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(expected)) > 1e-3  # the comparison is not of zeros
    chex.assert_trees_all_close(actual, expected, rtol=1e-4, atol=1e-6)
