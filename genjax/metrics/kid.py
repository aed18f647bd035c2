"""Kernel Inception Distance: an unbiased estimate of the squared MMD between two feature sets.

Binkowski et al. (2018, "Demystifying MMD GANs") compare real features X = {x_1..x_m} and generated
features Y = {y_1..y_n} in R^d with the squared maximum mean discrepancy under the cubic polynomial kernel

    k(x, y) = (x.y / d + 1)^3

estimated without bias (Gretton et al. 2012, "A Kernel Two-Sample Test", eq. 3) by

    MMD^2_u = 1/(m(m-1)) sum_{i!=j} k(x_i, x_j) + 1/(n(n-1)) sum_{i!=j} k(y_i, y_j) - 2/(mn) sum_{i,j} k(x_i, y_j)

Unlike the Frechet distance it assumes no parametric form of the features and its estimate is unbiased,
so it can be compared across sample sizes; its expectation is 0 for identical distributions, and single
estimates are then negative about half the time. As in the reference implementation, it is the mean of
the estimate over `num_subsets` (100) random subsets of `subset_size` = min(1000, m, n) examples, each
drawn without replacement from each set; `kid_std` is the standard deviation (ddof 0, like the
reference) of the subset estimates, a measure of the subsampling noise of one subset, not of the mean.

When both sets have subset_size examples (at most 1000 each, as in the study), every subset is a whole set
and the estimate is computed once. Otherwise the draws come from np.random.default_rng(seed), for each subset first the real then the generated
indices (rng.choice(len, subset_size, replace=False)). Like genjax's Frechet distance, it is computed
on the features of genjax's own classifier, not Inception's: the numbers rank models on the same data
and features but are not comparable with published KIDs. The kernel is not scale-invariant: genjax's
classifier features (norms about 40 in 128 dimensions) give values in the units to hundreds where
Inception's give hundredths, hence a format of significant digits rather than fixed decimals.
"""

import numpy as np

NUM_SUBSETS = 100
SUBSET_SIZE = 1000


def polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """k(a_i, b_j) = (a_i . b_j / d + 1)^3, the [len(a), len(b)] Gram matrix, in float64."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """MMD^2_u above between x [m, d] and y [n, d] (m, n >= 2) under the cubic polynomial kernel."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    m, n = len(x), len(y)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * k_xy.mean())


def subset_estimates(
    real: np.ndarray, fake: np.ndarray, num_subsets: int = NUM_SUBSETS, subset_size: int | None = None, seed: int = 0
) -> np.ndarray:
    """MMD^2_u of `num_subsets` pairs of random subsets, [num_subsets] in float64. subset_size defaults to
    min(SUBSET_SIZE, len(real), len(fake))."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be [N, D] with one D, got {real.shape} and {fake.shape}")
    if subset_size is None:
        subset_size = min(SUBSET_SIZE, len(real), len(fake))
    if not 2 <= subset_size <= min(len(real), len(fake)) or num_subsets < 1:
        raise ValueError(f"need 2 <= subset_size <= {min(len(real), len(fake))} and num_subsets >= 1, got {subset_size}, {num_subsets}")
    if subset_size == len(real) == len(fake):
        # every "subset" is then a reordering of both whole sets, and MMD^2_u does not depend on the order:
        # the num_subsets estimates would all be this one (and kid_std 0, there being no subsampling noise)
        return np.full(num_subsets, unbiased_mmd2(real, fake))
    rng = np.random.default_rng(seed)
    estimates = np.empty(num_subsets)
    for s in range(num_subsets):
        x = real[rng.choice(len(real), subset_size, replace=False)]
        y = fake[rng.choice(len(fake), subset_size, replace=False)]
        estimates[s] = unbiased_mmd2(x, y)
    return estimates


def kernel_inception_distance(
    real: np.ndarray, fake: np.ndarray, num_subsets: int = NUM_SUBSETS, subset_size: int | None = None, seed: int = 0
) -> dict:
    """{"kid": mean, "kid_std": standard deviation} of the subset estimates of real [N1, D] against fake [N2, D]."""
    estimates = subset_estimates(real, fake, num_subsets, subset_size, seed)
    return {"kid": float(estimates.mean()), "kid_std": float(estimates.std())}
