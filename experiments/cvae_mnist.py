"""Conditional VAE on MNIST (Sohn et al. 2015): vae_mnist's 784-400-20 MLP with the one-hot class label
appended to the encoder's input and to the decoder's z; Bernoulli decoder, Adam 1e-3, batch 128.

Sample grids have one row per class (0 to 9), 10 samples each. Variants as for vae_mnist:
--config.architecture=conv, --config.likelihood=gaussian, --config.beta=4.
"""

import sys

from experiments import vae_mnist
from genjax import cli


def get_config():
    config = vae_mnist.get_config()
    config.model = "cvae"
    config.num_samples = 100  # ten per class
    return config


def main(argv=None) -> int:
    return cli.main("cvae_mnist", get_config, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
