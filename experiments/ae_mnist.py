"""Autoencoder on MNIST, sampled by ex-post density estimation (Ghosh et al. 2020): a Gaussian fitted to
the training codes is decoded. Trained on the embedded 4,500-image subset offline or on full MNIST when
tfds has it.

Variants: --config.architecture=conv, --config.reconstruction_loss=mse, --config.noise=gaussian --config.noise_std=0.5
(denoising), --config.noise=mask --config.mask_fraction=0.25 (masking noise).
"""

import sys

from genjax import cli
from genjax.config import base_config
from genjax.experiment import Contender


def get_config():
    config = base_config()
    config.model = "ae"
    config.num_steps = 3000
    config.architecture = "mlp"
    config.hidden_sizes = (400,)
    config.conv_channels = (32, 64)
    config.latent_dim = 16
    config.reconstruction_loss = "bce"
    config.noise = "none"
    config.noise_std = 0.5
    config.mask_fraction = 0.25
    config.code_stats_decay = 0.99
    config.sampler = "gaussian"  # or gmm: a mixture fitted to the training codes (Ghosh et al. 2020)
    config.gmm_components = 10
    return config


# The study's settings train in vectorized groups on CPU too (cpu_vectorize 'vmap'): spread over one XLA device
# per core, they trained more steps in a study's seconds than the engine's own runs (the README's vectorized-trials section).
CONTENDERS = (Contender("ae", "autoencoder, samples from a Gaussian fit of its codes (Ghosh et al. 2020)", cpu_vectorize="vmap"),)


def main(argv=None) -> int:
    return cli.main("ae_mnist", get_config, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
