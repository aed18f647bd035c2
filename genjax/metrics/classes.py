"""Class coverage of generated images, read off a classifier's predictions.

class_kl          KL(p_pred || uniform) = sum_c p_c log(C p_c), p_c the share of samples predicted as c:
                  0 when every class appears equally often, log C when one class takes everything
                  (the label-histogram test used for mode collapse on MNIST, e.g. Metz et al. 2017)
classes_covered   classes predicted for at least a quarter of their uniform share (2.5% of samples for 10
                  classes), so that a few stray predictions do not count as a class being generated
"""

import numpy as np

SHARE_OF_UNIFORM = 0.25


def class_coverage(predicted_labels: np.ndarray, num_classes: int) -> dict:
    shares = np.bincount(predicted_labels, minlength=num_classes) / len(predicted_labels)
    present = shares > 0
    return {
        "class_kl": float(np.sum(shares[present] * np.log(shares[present] * num_classes))),
        "classes_covered": int(np.sum(shares >= SHARE_OF_UNIFORM / num_classes)),
    }
