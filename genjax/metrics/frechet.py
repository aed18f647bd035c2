"""Frechet distance between Gaussian fits of two feature sets (FID when the features are Inception's).

For N(mu1, S1) and N(mu2, S2) the squared 2-Wasserstein (Frechet) distance has the closed form
(Dowson & Landau 1982)

    d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1^{1/2} S2 S1^{1/2})^{1/2})

Heusel et al. (2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium")
use it on Inception-v3 pool features as FID. genjax has no network, so it uses the features of a small
classifier it trains itself (genjax.metrics.classifier): the numbers rank models on the same data and
features, but are not comparable with published FIDs.
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


def frechet_distance_between(features1: np.ndarray, features2: np.ndarray) -> float:
    """Frechet distance between the Gaussian fits of two feature sets [N1, D] and [N2, D]."""
    return frechet_distance(*gaussian_fit(features1), *gaussian_fit(features2))
