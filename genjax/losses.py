"""Losses and log-densities, per example (summed over data dimensions, never over the batch).

Every function returns one value per example (shape [B]) so that the caller chooses the reduction: the
training objectives take the mean over the batch; evaluation averages over the whole test set.
"""

import math

import jax
import jax.numpy as jnp
import optax


def _sum_per_example(x: jax.Array) -> jax.Array:
    return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)


def gaussian_kl(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """KL(N(mean, diag(exp(log_var))) || N(0, I)) in nats, per example.

        KL = 1/2 * sum_j (exp(log_var_j) + mean_j^2 - 1 - log_var_j)

    The closed form used by the VAE (Kingma & Welling 2014, "Auto-Encoding Variational Bayes", appendix B).
    """
    return 0.5 * _sum_per_example(jnp.exp(log_var) + jnp.square(mean) - 1.0 - log_var)


def bernoulli_nll(logits: jax.Array, x: jax.Array) -> jax.Array:
    """-log Bernoulli(x | sigmoid(logits)) summed over pixels, per example (nats).

        -log p(x) = sum_i softplus(logits_i) - x_i * logits_i

    computed stably through log-sigmoid (finite for any finite logits). For x in [0, 1] that are not
    binary this is the binary cross-entropy used by the reference PyTorch VAE; it is then a loss, not a
    normalised log-likelihood.
    """
    return _sum_per_example(optax.sigmoid_binary_cross_entropy(logits, x))


def gaussian_nll(mean: jax.Array, x: jax.Array, log_std: jax.Array | float) -> jax.Array:
    """-log N(x | mean, exp(log_std)^2) summed over dimensions, per example (nats of a density).

        -log p(x) = sum_i (x_i - mean_i)^2 / (2 sigma^2) + log sigma + log(2 pi) / 2
    """
    log_std = jnp.broadcast_to(log_std, mean.shape)
    z = (x - mean) * jnp.exp(-log_std)
    return _sum_per_example(0.5 * jnp.square(z) + log_std + 0.5 * math.log(2 * math.pi))


def reparameterize(key: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """A sample z = mean + exp(log_var / 2) * eps, eps ~ N(0, I): differentiable in mean and log_var
    (the reparameterization trick, Kingma & Welling 2014)."""
    return mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape, mean.dtype)


def diagonal_gaussian_log_prob(z: jax.Array, mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """log N(z | mean, diag(exp(log_var))), summed over the last axis."""
    return -0.5 * jnp.sum(
        jnp.square(z - mean) * jnp.exp(-log_var) + log_var + math.log(2 * math.pi), axis=-1
    )


# Autoencoders


def squared_error(prediction: jax.Array, target: jax.Array) -> jax.Array:
    """sum_i (prediction_i - target_i)^2 per example: the reconstruction loss of a plain autoencoder
    trained with MSE (a Gaussian negative log-likelihood of fixed variance, up to scale and constant)."""
    return _sum_per_example(jnp.square(prediction - target))


RECONSTRUCTION_LOSSES = ("bce", "mse")


def image_reconstruction_loss(kind: str, logits: jax.Array, x: jax.Array) -> jax.Array:
    """Per-image reconstruction loss of decoder pre-activations `logits` for images x in [0, 1]:
    'bce' = bernoulli_nll(logits, x), 'mse' = squared_error(sigmoid(logits), x)."""
    if kind == "bce":
        return bernoulli_nll(logits, x)
    if kind == "mse":
        return squared_error(jax.nn.sigmoid(logits), x)
    raise ValueError(f"unknown reconstruction loss '{kind}'; choose one of: {', '.join(RECONSTRUCTION_LOSSES)}")


# Vector quantization (van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete Representation Learning")


def straight_through(z: jax.Array, quantized: jax.Array) -> jax.Array:
    """z + sg[quantized - z]: the value of `quantized` with the gradient of `z` (identity Jacobian).

    The decoder's gradient is copied past the non-differentiable nearest-code lookup to the encoder
    output (van den Oord et al. 2017, section 3.2).
    """
    return z + jax.lax.stop_gradient(quantized - z)


def vq_codebook_loss(z: jax.Array, quantized: jax.Array) -> jax.Array:
    """||sg[z_e(x)] - e||^2 per example, summed over positions and code dimensions: moves the chosen
    codes towards the encoder outputs (van den Oord et al. 2017, equation 3, second term)."""
    return _sum_per_example(jnp.square(jax.lax.stop_gradient(z) - quantized))


def vq_commitment_loss(z: jax.Array, quantized: jax.Array) -> jax.Array:
    """||z_e(x) - sg[e]||^2 per example, summed over positions and code dimensions: keeps the encoder
    outputs close to their codes (the commitment loss, weighted by beta; equation 3, third term)."""
    return _sum_per_example(jnp.square(z - jax.lax.stop_gradient(quantized)))
