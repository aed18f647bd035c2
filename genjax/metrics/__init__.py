"""Metrics for comparing generative models, each documented with its definition and reference.

frechet       Frechet distance between Gaussian fits of features (FID-style) and its FD-infinity
kid           kernel (KID-style) unbiased squared MMD between features, over random subsets, and its standard error
manifold      improved precision/recall (k-NN balls) and density/coverage
classes       class coverage of generated images (label-histogram KL, classes covered)
modes         mode coverage on 2-D mixtures (VEEGAN / PacGAN protocol)
likelihood    importance-weighted (IWAE) bound on log-likelihood
classifier    the small classifier genjax trains to provide features and labels
"""

import numpy as np

from genjax.metrics.classes import class_coverage
from genjax.metrics.frechet import frechet_distance_between, frechet_distance_infinity
from genjax.metrics.kid import kernel_inception_distance
from genjax.metrics.manifold import density_coverage, precision_recall


def sample_quality(classifier, real_images: np.ndarray, fake_images: np.ndarray, num_classes: int) -> dict:
    """Frechet distance (and its FD-infinity), KID (its spread over subsets and its standard error), precision, recall, density, coverage and class coverage
    of fakes against reals, in the feature space of `classifier` (a genjax.metrics.classifier.TrainedClassifier)."""
    real_features, _ = classifier.embed(real_images)
    fake_features, fake_logits = classifier.embed(fake_images)
    return {
        "frechet_distance": frechet_distance_between(real_features, fake_features),
        "frechet_distance_infinity": frechet_distance_infinity(real_features, fake_features),
        **kernel_inception_distance(real_features, fake_features),
        **precision_recall(real_features, fake_features),
        **density_coverage(real_features, fake_features),
        **class_coverage(np.argmax(fake_logits, axis=1), num_classes),
    }
