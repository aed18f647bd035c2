"""PacGAN on the 2-D Gaussian mixtures (Lin et al. 2018, "PacGAN: The power of two samples in generative
adversarial networks", section 5.1 and Table 1): `ring8` (the default) or `grid25` (--config.dataset=grid25).

The paper's networks and optimizer: a generator with 4 hidden layers of 400 units, BatchNorm and ReLU, from
a 2-D Gaussian z; a discriminator with 3 maxout layers of 200 units and 5 pieces (no normalization); the
non-saturating loss; Adam 1e-4 with beta1 0.8. --config.pack=m packs m samples per discriminator input
(1: the plain GAN). The paper's batch is 100 *packs*, so give --config.batch_size=100*m to match it; its
fixed training set of 100,000 points is drawn here too (toy_train_points; genjax's other 2-D experiments
draw 50,000); its budget of 400 epochs is 400,000 steps, hours a run on a CPU (the README's PacGAN table gives
the measured rates): the default is 20,000 steps, and `python -m experiments.pacgan_table` measures the table at the budget it is given.
Metrics on 2,500 samples (genjax.metrics.modes): modes captured, % high-quality samples, reverse KL.
"""

import sys

from genjax import cli
from genjax.config import base_config
from genjax.experiment import Contender
from genjax.models import gan

PAPER_BATCH_PACKS = 100  # the discriminator's batch in the paper: 100 packs of m samples


def get_config():
    config = base_config()
    config.update(gan.defaults())
    config.dataset = "ring8"
    config.toy_train_points = 100_000  # the paper's fixed training set
    config.latent_dim = 2
    config.g_hidden_sizes = (400, 400, 400, 400)
    config.g_norm = "batch"
    config.d_hidden_sizes = (200, 200, 200)
    config.d_activation = "maxout"
    config.maxout_pieces = 5
    config.learning_rate = 1e-4
    config.adam_b1 = 0.8
    config.pack = 1
    config.batch_size = PAPER_BATCH_PACKS
    config.num_steps = 20000
    config.eval_every = 5000
    config.checkpoint_every = 5000
    config.num_samples = 2500
    return config


CONTENDERS = (Contender("pacgan", "PacGAN networks (Lin et al. 2018), pack from --config.pack"),)


def main(argv=None) -> int:
    return cli.main("pacgan_toy2d", get_config, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
