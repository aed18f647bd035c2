"""WGAN-GP on MNIST (Gulrajani et al. 2017): Wasserstein loss, gradient penalty 10 on random
interpolates of real and generated images, 5 critic steps per generator step, Adam 1e-4 with betas
(0, 0.9), as in the paper.

The networks are dcgan_mnist's (no BatchNorm in the critic, which the penalty forbids; the generator keeps
its BatchNorm). num_steps counts critic steps: the default 4,000 make 800 generator steps.
"""

import sys

from genjax import cli
from genjax.config import base_config
from genjax.experiment import Contender
from genjax.models import gan


def get_config():
    config = base_config()
    config.update(gan.defaults())
    config.architecture = "conv"
    config.conv_channels = (32, 64)
    config.adversarial_loss = "wasserstein_gp"
    config.discriminator_norm = "none"
    config.n_critic = 5
    config.gp_weight = 10.0
    config.learning_rate = 1e-4
    config.adam_b1 = 0.0
    config.adam_b2 = 0.9
    config.batch_size = 64
    config.num_steps = 4000
    config.eval_every = 1000
    config.checkpoint_every = 1000
    config.steps_per_call = 50
    return config


CONTENDERS = (Contender("wgan_gp", "WGAN-GP, n_critic 5 (Gulrajani et al. 2017)"),)


def main(argv=None) -> int:
    return cli.main("wgan_gp_mnist", get_config, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
