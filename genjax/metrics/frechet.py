"""Frechet distance between Gaussian fits of two feature sets (FID when the features are Inception's).

For N(mu1, S1) and N(mu2, S2) the squared 2-Wasserstein (Frechet) distance has the closed form
(Dowson & Landau 1982)

    d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1^{1/2} S2 S1^{1/2})^{1/2})

Heusel et al. (2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium")
use it on Inception-v3 pool features as FID. genjax has no network, so it uses the features of a small
classifier it trains itself (genjax.metrics.classifier): the numbers rank models on the same data and
features, but are not comparable with published FIDs.

The estimate from N generated samples is biased upwards, and the bias falls like 1/N (Chong & Forsyth 2020,
"Effectively Unbiased FID and Inception Score and where to find them"): FD_N = FD_inf + c / N + o(1/N), with a
c that depends on the model, so two models' FD_N at one N can rank differently from their FD_inf. Their
FD-infinity fits that line by least squares through FD_N at 15 sizes N evenly spaced up to the number of
samples (each on a random subset of the generated features, drawn without replacement, against all the real
ones) and reports the intercept, FD_inf. The paper spaces N from 5,000 to 50,000; genjax scales that range
to its sample count (a tenth of it up to all of it, and at least 2 D where the count allows, since a
covariance from fewer samples than dimensions is singular). The real side stays at its one set, so its own
finite-sample bias is a constant shared by every model.
"""

import numpy as np


def gaussian_fit(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], covariance [D, D]) of features [N, D], in float64."""
    features = np.asarray(features, np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a positive semi-definite matrix (negative round-off eigenvalues clipped)."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T


def frechet_distance(mean1, cov1, mean2, cov2) -> float:
    """The closed form above. Tr((S1^1/2 S2 S1^1/2)^1/2) is computed from the eigenvalues of that
    symmetric PSD product, which is stable where scipy.linalg.sqrtm of the non-symmetric S1 S2 is not."""
    root1 = _sqrt_psd(cov1)
    middle = root1 @ cov2 @ root1
    trace_cross = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)))
    return float(np.sum((mean1 - mean2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * trace_cross)


FD_INFINITY_SIZES = 15


def fd_infinity_sizes(num_samples: int, dim: int, num_sizes: int = FD_INFINITY_SIZES) -> np.ndarray:
    """The sample sizes of the FD-infinity fit: evenly spaced from max(N / 10, min(2 D, N / 2)) to N."""
    smallest = max(num_samples // 10, min(2 * dim, num_samples // 2), 2)
    return np.unique(np.linspace(smallest, num_samples, num_sizes).astype(int))


def frechet_distance_infinity(real_features: np.ndarray, fake_features: np.ndarray, seed: int = 0) -> float:
    """FD_inf of Chong & Forsyth (2020), above: the intercept at 1/N = 0 of the least-squares line through
    (1/N, FD_N) over `fd_infinity_sizes`; the subsets come from np.random.default_rng(seed)."""
    fake = np.asarray(fake_features, np.float64)
    sizes = fd_infinity_sizes(len(fake), fake.shape[1])
    if len(sizes) < 2:
        raise ValueError(f"FD-infinity needs at least 3 generated samples, got {len(fake)}")
    real_fit, rng = gaussian_fit(real_features), np.random.default_rng(seed)
    distances = [frechet_distance(*real_fit, *gaussian_fit(fake[rng.choice(len(fake), n, replace=False)])) for n in sizes]
    _, intercept = np.polyfit(1.0 / sizes, distances, 1)
    return float(intercept)


def frechet_distance_between(features1: np.ndarray, features2: np.ndarray) -> float:
    """Frechet distance between the Gaussian fits of two feature sets [N1, D] and [N2, D]."""
    return frechet_distance(*gaussian_fit(features1), *gaussian_fit(features2))
