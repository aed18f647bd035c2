"""genjax: generative models (AE, VAE, VQ-VAE, GANs) in JAX/Flax, built to be compared."""

__version__ = "0.1.0"
