"""Class-conditional GAN on MNIST: gan_mnist's MLPs, the one-hot class label appended to the generator's
z (Mirza & Osindero 2014) and projected onto the discriminator's last hidden features (Miyato & Koyama
2018); non-saturating loss, Adam 2e-4 with beta1 0.5, batch 64. Generated images are labelled like the
real batch of the same step.

Sample grids have one row per class (0 to 9), 10 samples each.
"""

import sys

from genjax import cli
from genjax.config import base_config
from genjax.models import gan


def get_config():
    config = base_config()
    config.update(gan.defaults())
    config.conditional = True
    config.batch_size = 64
    config.num_steps = 10000
    config.eval_every = 2000
    config.checkpoint_every = 2000
    config.num_samples = 100
    return config


def main(argv=None) -> int:
    return cli.main("cgan_mnist", get_config, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
