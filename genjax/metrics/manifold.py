"""Sample quality and diversity from k-nearest-neighbour balls in a feature space.

Improved precision and recall (Kynkaanniemi et al. 2019, "Improved Precision and Recall Metric for
Assessing Generative Models"), k = 3: each set is approximated by the union of balls around its points,
each ball's radius the distance to that point's k-th nearest neighbour within its own set.
    precision = fraction of generated samples inside the real manifold   (quality)
    recall    = fraction of real samples inside the generated manifold   (diversity)

Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative
Models"), k = 5, built from the real balls only, which makes them robust to outliers among the fakes:
    density  = 1 / (k M) * sum_j #{i : fake_j in ball(real_i)}   (can exceed 1)
    coverage = fraction of real balls that contain at least one fake
"""

import jax
import jax.numpy as jnp
import numpy as np

CHUNK = 1024


@jax.jit
def _squared_distances(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.maximum(jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None, :] - 2 * a @ b.T, 0.0)


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances [len(a), len(b)], computed in row chunks to bound memory."""
    a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    rows = [np.sqrt(np.asarray(_squared_distances(a[i : i + CHUNK], b))) for i in range(0, len(a), CHUNK)]
    return np.concatenate(rows)


def knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Distance from each point to its k-th nearest neighbour in the same set (itself excluded)."""
    distances = pairwise_distances(features, features)
    return np.partition(distances, k, axis=1)[:, k]  # index 0 is the point itself (distance 0)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> dict:
    """Improved precision and recall of `fake` against `real` features."""
    real_radii, fake_radii = knn_radii(real, k), knn_radii(fake, k)
    distances = pairwise_distances(real, fake)  # [real, fake]
    precision = np.mean(np.any(distances <= real_radii[:, None], axis=0))
    recall = np.mean(np.any(distances <= fake_radii[None, :], axis=1))
    return {"precision": float(precision), "recall": float(recall)}


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict:
    """Density and coverage of `fake` against `real` features."""
    real_radii = knn_radii(real, k)
    inside = pairwise_distances(real, fake) <= real_radii[:, None]  # [real, fake]
    return {"density": float(inside.sum() / (k * fake.shape[0])), "coverage": float(np.mean(inside.any(axis=1)))}
