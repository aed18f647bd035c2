"""InfoGAN on MNIST (Chen et al. 2016): a 10-way categorical code and 2 continuous codes uniform on (-1, 1)
beside 62 noise dimensions as the generator's input, as in the paper; the auxiliary head Q shares the
discriminator's body and the mutual-information bound is weighted 1 for the categorical code and 0.1 for the
continuous ones (genjax.models.infogan). Networks are dcgan_mnist's: 4x4 stride-2 convolutions (32, 64
channels) with BatchNorm and LeakyReLU 0.2, a sub-pixel generator, non-saturating loss, batch 64; narrower than
the paper's so that a run takes minutes on a CPU. Adam with beta1 0.5 at the paper's learning rates: 2e-4 for
D and Q, 1e-3 for G (g_learning_rate_scale 5).

info_codes.png, written at the end: one row per categorical code; the first panel's columns are noise draws,
the second's and third's the first and second continuous code from -2 to 2. genjax.evaluate adds, beside the
sample-quality metrics, code_purity and code_nmi: how well the categorical code matches the digit classes.
"""

import sys

from genjax import cli
from genjax.config import base_config
from genjax.experiment import Contender
from genjax.models import infogan


def get_config():
    config = base_config()
    config.update(infogan.defaults())
    config.batch_size = 64
    config.num_steps = 5000
    config.eval_every = 1000
    config.checkpoint_every = 1000
    config.steps_per_call = 50
    config.num_samples = 100
    return config


# grouped on CPU too, one trial a core (measured: genjax.train.policy.cpu_trials_per_device)
CONTENDERS = (Contender("infogan", "InfoGAN, 10-way and 2 continuous codes (Chen et al. 2016)", cpu_vectorize="vmap"),)


def main(argv=None) -> int:
    return cli.main("infogan_mnist", get_config, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
