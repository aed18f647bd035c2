"""Vector quantization: nearest-code lookup, EMA codebook updates, dead-code restarts, k-means init.

A codebook is an array e [K, D]; encoder outputs z [..., D] are replaced by their nearest code
(van den Oord et al. 2017). The functions here are pure and hold no state: the family keeps the codebook
and its running statistics in its state pytree.

EMA codebook (van den Oord et al. 2017, appendix A.1; Razavi et al. 2019, equations 5-7). With n_i the
number of encoder outputs assigned to code i in the batch and s_i their sum,

    N_i <- decay * N_i + (1 - decay) * n_i          m_i <- decay * m_i + (1 - decay) * s_i
    e_i  = m_i / N~_i,   N~_i = (N_i + eps) / (sum_j N_j + K * eps) * sum_j N_j   (Laplace smoothing)

Smoothing keeps e_i finite for codes that are never chosen without changing the total count.

Dead-code restart (Dhariwal et al. 2020, "Jukebox", section 2.3): a code whose running usage N_i falls
below a threshold is replaced by a random encoder output of the current batch, so that every code keeps
being used.
"""

import jax
import jax.numpy as jnp


def nearest_codes(z: jax.Array, codebook: jax.Array) -> jax.Array:
    """Index of the nearest code (squared Euclidean distance) for each vector of z [..., D]; int32 [...]."""
    distances = jnp.sum(jnp.square(z), axis=-1, keepdims=True) - 2 * z @ codebook.T + jnp.sum(jnp.square(codebook), axis=-1)
    return jnp.argmin(distances, axis=-1).astype(jnp.int32)


def quantize(z: jax.Array, codebook: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(nearest codes e_k(z) [..., D], their indices [...])."""
    indices = nearest_codes(z, codebook)
    return codebook[indices], indices


def code_statistics(z: jax.Array, indices: jax.Array, num_codes: int) -> tuple[jax.Array, jax.Array]:
    """(n [K]: number of vectors assigned to each code, s [K, D]: their sum) over all vectors of z [..., D]."""
    one_hot = jax.nn.one_hot(indices.reshape(-1), num_codes, dtype=z.dtype)
    return one_hot.sum(axis=0), one_hot.T @ z.reshape(-1, z.shape[-1])


def ema_codebook(usage: jax.Array, code_sum: jax.Array, counts: jax.Array, sums: jax.Array, decay: float, eps: float):
    """One EMA step (see the module docstring): returns (usage N [K], code_sum m [K, D], codebook e [K, D])."""
    usage = decay * usage + (1 - decay) * counts
    code_sum = decay * code_sum + (1 - decay) * sums
    total = jnp.sum(usage)
    smoothed = (usage + eps) / (total + usage.shape[0] * eps) * total
    return usage, code_sum, code_sum / smoothed[:, None]


def restart_dead_codes(key: jax.Array, codebook: jax.Array, usage: jax.Array, z: jax.Array, threshold: float):
    """Replace every code whose usage is below `threshold` by a random vector of z [..., D] (drawn with
    `key`, without replacement when there are enough vectors). Returns (codebook, dead mask [K])."""
    vectors = jax.lax.stop_gradient(z).reshape(-1, z.shape[-1])
    num_codes = codebook.shape[0]
    picks = jax.random.choice(key, len(vectors), (num_codes,), replace=len(vectors) < num_codes)
    dead = usage < threshold
    return jnp.where(dead[:, None], vectors[picks], codebook), dead


def kmeans(key: jax.Array, points: jax.Array, num_clusters: int, iterations: int) -> jax.Array:
    """Lloyd's k-means on points [N, D] from `num_clusters` distinct random points; centers [K, D].

    A cluster that loses all its points keeps its previous center.
    """
    picks = jax.random.choice(key, len(points), (num_clusters,), replace=len(points) < num_clusters)

    def lloyd_step(_, centers):
        counts, sums = code_statistics(points, nearest_codes(points, centers), num_clusters)
        return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None], centers)

    return jax.lax.fori_loop(0, iterations, lloyd_step, points[picks])


def perplexity(probabilities: jax.Array) -> jax.Array:
    """exp(entropy) of a distribution over codes: the effective number of codes used (K when uniform)."""
    p = probabilities / jnp.sum(probabilities)
    return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)))
