"""LSGAN on MNIST (Mao et al. 2017, "Least Squares Generative Adversarial Networks"): the least-squares
adversarial loss with the 0-1 coding (D pulls real scores to 1 and fake scores to 0, G pulls its scores to
1; genjax.losses.least_squares_discriminator_loss) on dcgan_mnist's networks: convolutional G and D with
BatchNorm, Adam 2e-4 with beta1 0.5 as in the paper, batch 64. The paper's D has a linear output, as
genjax's discriminators do, so the loss reads the raw scores.
"""

import sys

from experiments import dcgan_mnist
from genjax import cli
from genjax.experiment import Contender


def get_config():
    config = dcgan_mnist.get_config()
    config.adversarial_loss = "least_squares"
    return config


# grouped on CPU too, one trial a core (measured: genjax.train.policy.cpu_trials_per_device)
CONTENDERS = (Contender("lsgan", "least-squares GAN (Mao et al. 2017)", cpu_vectorize="vmap"),)


def main(argv=None) -> int:
    return cli.main("lsgan_mnist", get_config, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
