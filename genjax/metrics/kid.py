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
classifier features (the test digits' norms about 75 in 128 dimensions, so x.y / d near 44, where the cubic
term dominates) give the study's models KIDs from hundreds to hundreds of thousands, and the real-data floor's noise
tens, where Inception's give hundredths, hence a format of significant digits rather than fixed decimals.

`kid_se` is the estimate's own sampling noise from the generated samples: the standard deviation MMD^2_u
would show over fresh samples of the model, the real images held fixed, estimated from the one draw at hand
(where the study compares settings on one seed, kid_std is 0: see above). Holding them fixed is what a
comparison on one test set needs: every model is measured against the same real images, so their noise is
common to all and cancels in a difference, while the samples' is each model's own; two models' KIDs then differ
by noise of standard deviation sqrt(se_1^2 + se_2^2), exactly (their samples are independent). Given the real
set X (m images), with g(y) = 1/m sum_x k(x, y) the estimate is a constant plus the one-sample U-statistic

    U = 1/(n(n-1)) sum_{i!=j} h(y_i, y_j),   h(y, y') = k(y, y') - g(y) - g(y')

of order 2 in the n samples (the cross term's 2/(mn) sum k(x_i, y_j) is 2/n sum_i g(y_i)), whose variance is
(Hoeffding 1948; Serfling 1980, 5.2.1; the same form Sutherland et al. 2017, "Generative Models and Model
Criticism via Optimized MMD", Appendix A, estimate for MMD^2 over both sets)

    Var U = 4 (n-2) / (n (n-1)) zeta_1 + 2 / (n (n-1)) zeta_2,
    zeta_1 = Cov(h(y_1, y_2), h(y_1, y_3)),   zeta_2 = Var h(y_1, y_2).

Each moment is estimated without bias by an average over distinct indices: with H_ij = h(y_i, y_j) (i != j),
row sums r_i = sum_{j!=i} H_ij, S = sum_i r_i, R = sum_i r_i^2 and Q = sum_{i!=j} H_ij^2,

    E h_12 h_13 ~ (R - Q) / (n (n-1) (n-2)),   E h_12^2 ~ Q / (n (n-1)),
    (E h_12)^2 ~ (S^2 - 4 R + 2 Q) / (n (n-1) (n-2) (n-3)),

so the variance estimate is unbiased (on Gaussians, for one real set and 2,000 fresh sample sets, its mean
is within a few percent of the variance of the 2,000 KIDs: tests/test_metrics.py). Being unbiased it can fall
below 0 where the true variance is near 0; kid_se clips it there. With subsets it is the root of the mean
variance of one subset's estimate: the mean over subsets is no noisier than one subset, so then an upper bound.
"""

from collections.abc import Iterable

import numpy as np

NUM_SUBSETS = 100
SUBSET_SIZE = 1000


def polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """k(a_i, b_j) = (a_i . b_j / d + 1)^3, the [len(a), len(b)] Gram matrix, in float64."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def _grams(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)


def _mmd2_of_grams(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    m, n = k_xy.shape
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * k_xy.mean())


def unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """MMD^2_u above between x [m, d] and y [n, d] (m, n >= 2) under the cubic polynomial kernel."""
    return _mmd2_of_grams(*_grams(x, y))


def mmd2_and_variance(real: np.ndarray, fake: np.ndarray) -> tuple[float, float]:
    """(MMD^2_u of real [m, d] against fake [n, d], its variance over fresh fakes with the reals held fixed),
    m >= 2, n >= 4, under the cubic kernel: the module's formulas, from one computation of the three Gram
    matrices (the variance estimate may be below 0)."""
    m, n = len(real), len(fake)
    if m < 2 or n < 4:
        raise ValueError(f"the variance estimate needs >= 2 real and >= 4 generated examples, got {m} and {n}")
    k_xx, k_yy, k_xy = _grams(real, fake)
    estimate = _mmd2_of_grams(k_xx, k_yy, k_xy)
    to_real = k_xy.mean(axis=0)  # g(y_j): each sample's mean kernel against the real set
    h = k_yy - to_real[:, None] - to_real[None, :]
    np.fill_diagonal(h, 0.0)
    rows = h.sum(axis=1)
    total, squares, row_squares = rows.sum(), np.square(h).sum(), rows @ rows
    pairs, triples, quadruples = n * (n - 1), n * (n - 1) * (n - 2), n * (n - 1) * (n - 2) * (n - 3)
    mean_squared = (total**2 - 4.0 * row_squares + 2.0 * squares) / quadruples
    zeta_1 = (row_squares - squares) / triples - mean_squared
    zeta_2 = squares / pairs - mean_squared
    return estimate, float(4.0 * (n - 2) / pairs * zeta_1 + 2.0 / pairs * zeta_2)


def _subset_pairs(real: np.ndarray, fake: np.ndarray, num_subsets: int, subset_size: int | None, seed: int) -> Iterable:
    """The (real, fake) subset pairs the estimate averages over, validated, in float64 (a lazy iterator after the
    checks: 100 pairs of 1000 x 128 would hold 200 MB): the whole sets once when both have subset_size
    examples, else num_subsets random draws."""
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
        return [(real, fake)]
    rng = np.random.default_rng(seed)
    draw = lambda: (real[rng.choice(len(real), subset_size, replace=False)], fake[rng.choice(len(fake), subset_size, replace=False)])  # noqa: E731
    return (draw() for _ in range(num_subsets))


def _estimates_and_variances(real, fake, num_subsets, subset_size, seed) -> tuple[np.ndarray, np.ndarray]:
    """[num_subsets] estimates and [num_subsets] variance estimates (NaN under 4 examples a subset)."""
    pairs = _subset_pairs(real, fake, num_subsets, subset_size, seed)
    both = [mmd2_and_variance(x, y) if len(y) >= 4 else (unbiased_mmd2(x, y), np.nan) for x, y in pairs]
    estimates, variances = np.array(both).T
    return np.resize(estimates, num_subsets), np.resize(variances, num_subsets)


def subset_estimates(
    real: np.ndarray, fake: np.ndarray, num_subsets: int = NUM_SUBSETS, subset_size: int | None = None, seed: int = 0
) -> np.ndarray:
    """MMD^2_u of `num_subsets` pairs of random subsets, [num_subsets] in float64. subset_size defaults to
    min(SUBSET_SIZE, len(real), len(fake))."""
    return _estimates_and_variances(real, fake, num_subsets, subset_size, seed)[0]


def kernel_inception_distance(
    real: np.ndarray, fake: np.ndarray, num_subsets: int = NUM_SUBSETS, subset_size: int | None = None, seed: int = 0
) -> dict:
    """{"kid": mean, "kid_std": standard deviation, of the subset estimates; "kid_se": the estimate's sampling
    standard deviation from the generated samples (module docstring)} of real [N1, D] against fake [N2, D]."""
    estimates, variances = _estimates_and_variances(real, fake, num_subsets, subset_size, seed)
    return {"kid": float(estimates.mean()), "kid_std": float(estimates.std()), "kid_se": float(np.sqrt(max(variances.mean(), 0.0)))}
