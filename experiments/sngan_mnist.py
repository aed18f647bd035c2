"""SN-GAN on MNIST (Miyato et al. 2018): hinge loss (Lim & Ye 2017) and spectral normalization of every
discriminator layer, one power iteration per step.

The networks are dcgan_mnist's with spectral normalization in place of the discriminator's BatchNorm.
Adam with betas (0.5, 0.999), one discriminator step per generator step (as in setting C of the
hyperparameters Miyato et al. compare) and learning rate 1e-3, the rate of their settings D-F, at which
spectral normalization kept training stable. With setting C's 2e-4 the samples are still blobs after the
default 2,000 steps; with 1e-3 they are thin but recognisable digits. Batch 64.
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
    config.adversarial_loss = "hinge"
    config.discriminator_norm = "spectral"
    config.learning_rate = 1e-3
    config.batch_size = 64
    config.num_steps = 2000
    config.eval_every = 500
    config.checkpoint_every = 500
    config.steps_per_call = 50
    return config


# grouped on CPU too, one trial a core (measured: genjax.train.policy.cpu_trials_per_device)
CONTENDERS = (Contender("sngan", "hinge loss + spectral norm (Miyato et al. 2018)", cpu_vectorize="vmap"),)


def main(argv=None) -> int:
    return cli.main("sngan_mnist", get_config, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
