"""DCGAN on MNIST (Radford et al. 2016): convolutional generator and discriminator with BatchNorm.

Generator: Dense to 7x7x64, BatchNorm, ReLU, upsampling to 14x14x32, BatchNorm, ReLU, upsampling to
28x28x1, tanh. Discriminator: 4x4 stride-2 convolutions to 14x14x32 and 7x7x64 (BatchNorm on the second),
LeakyReLU 0.2, Dense(1). Non-saturating loss, Adam 2e-4 with beta1 0.5 for both, batch 64, as in the
paper; narrower than the paper's networks so that a run takes minutes on a CPU.

--config.upsample=transpose uses the paper's 4x4 stride-2 transposed convolutions instead of the default
sub-pixel convolutions, which XLA differentiates several times faster on CPU (see the README).
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
    config.upsample = "subpixel"
    config.discriminator_norm = "batch"
    config.batch_size = 64
    config.num_steps = 2000
    config.eval_every = 500
    config.checkpoint_every = 500
    config.steps_per_call = 50
    return config


# grouped on CPU too, one trial a core (measured: genjax.train.policy.cpu_trials_per_device)
CONTENDERS = (Contender("dcgan", "DCGAN (Radford et al. 2016)", cpu_vectorize="vmap"),)


def main(argv=None) -> int:
    return cli.main("dcgan_mnist", get_config, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
