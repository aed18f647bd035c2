"""Conditional VAE on MNIST (Sohn et al. 2015): vae_mnist's 784-400-20 MLP with the one-hot class label
appended to the encoder's input and to the decoder's z; Bernoulli decoder, Adam 1e-3, batch 128.

Sample grids have one row per class (0 to 9), 10 samples each. Variants as for vae_mnist:
--config.architecture=conv, --config.likelihood=gaussian, --config.beta=4.
"""

import sys

from genjax import cli
from genjax.config import base_config


def get_config():
    config = base_config()
    config.model = "cvae"
    config.num_steps = 3000
    config.architecture = "mlp"
    config.hidden_sizes = (400,)
    config.conv_channels = (32, 64)
    config.latent_dim = 20
    config.likelihood = "bernoulli"
    config.beta = 1.0
    config.ema_decay = 0.99
    config.num_samples = 100
    return config


def main(argv=None) -> int:
    return cli.main("cvae_mnist", get_config, argv)


if __name__ == "__main__":
    sys.exit(main())
