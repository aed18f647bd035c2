"""VAE on MNIST: the pytorch/examples architecture (784-400-20 MLP, Bernoulli decoder, Adam 1e-3,
batch 128), trained on the embedded 4,500-image subset offline or on full MNIST when tfds has it.

Variants: --config.architecture=conv, --config.likelihood=gaussian, --config.beta=4 (beta-VAE),
--config.latent_dim=2 (adds latent_scatter.png and latent_manifold.png).
"""

import sys

from genjax import cli
from genjax.config import base_config
from genjax.experiment import Contender


def get_config():
    config = base_config()
    config.model = "vae"
    config.num_steps = 3000
    config.architecture = "mlp"
    config.hidden_sizes = (400,)
    config.conv_channels = (32, 64)
    config.latent_dim = 20
    config.likelihood = "bernoulli"
    config.beta = 1.0
    config.kl_warmup_steps = 0
    config.ema_decay = 0.99
    config.sampler = "prior"  # or gmm: a mixture fitted to the training codes (Ghosh et al. 2020)
    config.gmm_components = 10
    return config


# One setting at a time on CPU (cpu_vectorize 'off'): spread over one XLA device per core its groups trained
# faster than the engine's runs in benchmarks/trials.py, but not in a study, whose groups are of two settings
# (the README's vectorized-trials section).
CONTENDERS = (
    Contender("vae", "VAE (Kingma & Welling 2014)"),
    Contender("beta_vae", "beta-VAE, beta = 4 (Higgins et al. 2017)", {"beta": 4.0}),
)


def main(argv=None) -> int:
    return cli.main("vae_mnist", get_config, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
