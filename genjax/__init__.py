"""genjax: generative models (AE, VAE, VQ-VAE, GANs) in JAX/Flax, built to be compared."""

from genjax.xla_flags import add_cpu_flags

add_cpu_flags()  # before JAX creates its backend: XLA reads its flags once (genjax.xla_flags)

__version__ = "0.1.0"
