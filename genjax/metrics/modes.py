"""Mode coverage on 2-D Gaussian mixtures, the protocol of VEEGAN (Srivastava et al. 2017) and PacGAN
(Lin et al. 2018).

Draw 2,500 samples. A sample is high quality when it lies within 3 standard deviations of its nearest
mode. A mode is captured when it is the nearest mode of at least one high-quality sample. Reported:
modes captured, the percentage of high-quality samples, and the reverse KL divergence
KL(p_gen || p_true) between the histogram of nearest modes of the high-quality samples and the true
(uniform) mode weights; it is small when every mode gets its share and grows as mass concentrates.
"""

import numpy as np

NUM_SAMPLES = 2500


def mode_coverage(samples: np.ndarray, modes: np.ndarray, std: float) -> dict:
    """{'modes_captured', 'num_modes', 'high_quality_percent', 'reverse_kl'} of samples [N, 2]."""
    samples, modes = np.asarray(samples, np.float64), np.asarray(modes, np.float64)
    distances = np.linalg.norm(samples[:, None, :] - modes[None, :, :], axis=-1)
    nearest = distances.argmin(axis=1)
    high_quality = distances[np.arange(len(samples)), nearest] <= 3 * std
    counts = np.bincount(nearest[high_quality], minlength=len(modes)).astype(np.float64)
    result = {
        "modes_captured": int(np.count_nonzero(counts)),
        "num_modes": len(modes),
        "high_quality_percent": float(100 * high_quality.mean()),
    }
    if counts.sum() == 0:
        return {**result, "reverse_kl": float("inf")}
    generated = counts / counts.sum()
    present = generated > 0
    result["reverse_kl"] = float(np.sum(generated[present] * np.log(generated[present] * len(modes))))
    return result
