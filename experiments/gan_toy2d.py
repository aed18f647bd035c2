"""MLP GAN on a 2-D Gaussian mixture: `ring8` (8 modes on the unit circle, the default) or `grid25`
(--config.dataset=grid25), the mode-collapse benchmarks of Srivastava et al. (2017) and Lin et al. (2018).

Generator 2-128-128-2 and discriminator 2-128-128-1, non-saturating loss, Adam 1e-3 with beta1 0.5,
batch 256. samples_<step>.png scatters 2,000 samples over the mixture means; the test metrics count the
modes covered and the share of samples within 3 standard deviations of a mode.
"""

import sys

from genjax import cli
from genjax.config import base_config
from genjax.experiment import Contender
from genjax.models import gan


def get_config():
    config = base_config()
    config.update(gan.defaults())
    config.dataset = "ring8"
    config.latent_dim = 2
    config.g_hidden_sizes = (128, 128)
    config.d_hidden_sizes = (128, 128)
    config.learning_rate = 1e-3
    config.batch_size = 256
    config.num_steps = 10000
    config.eval_every = 2000
    config.checkpoint_every = 2000
    config.num_samples = 2000
    return config


WGAN_GP = {"adversarial_loss": "wasserstein_gp", "n_critic": 5, "learning_rate": 1e-4, "adam_b1": 0.5, "adam_b2": 0.9}
CONTENDERS = (
    Contender("gan", "MLP GAN, non-saturating loss"),
    Contender("wgan_gp", "MLP WGAN-GP, n_critic 5", WGAN_GP),
    Contender("sngan", "MLP GAN, hinge loss + spectral norm", {"adversarial_loss": "hinge", "discriminator_norm": "spectral"}),
)


def main(argv=None) -> int:
    return cli.main("gan_toy2d", get_config, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
