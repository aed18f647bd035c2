"""Mixed precision (Micikevicius et al. 2018, "Mixed Precision Training"): float32 parameters, bfloat16 compute.

`config.compute_dtype` names the dtype of activations, matrix products and convolutions. Every network takes
it as its `dtype` field and gives it to each Flax layer it builds (`dtype=`); the layers keep their
parameters float32 (`param_dtype`, Flax's default) and cast parameters and inputs to `dtype` when they
compute. So the cast of an input happens at the network's first layer, gradients arrive at the float32
parameters through that cast, and the optimizer state stays float32.

What must not be rounded to 8 bits of mantissa stays float32:
- every network casts its output to float32 (`to_float32`), so what a family computes from network outputs
  (losses, KL, likelihood logits and their softmax, gradient penalties, codebook distances and EMA
  statistics, code moments, ODE states, metrics, samples) is float32;
- Flax's BatchNorm, LayerNorm and GroupNorm reduce in float32 and keep float32 running statistics;
  SpectralNorm runs its power iteration on the float32 parameters, with a float32 vector u, before the
  wrapped layer casts the normalized weights;
- inputs of a first layer that are computed (time features, one-hot labels, dequantized images) are
  computed in float32 and cast by that layer.

bfloat16 has float32's exponent range, so unlike float16 it needs no loss scaling. The float32 default
casts nothing: its programs are those of a network without these fields.
"""

import jax
import jax.numpy as jnp

COMPUTE_DTYPES = ("float32", "bfloat16")


def compute_dtype(config) -> jnp.dtype:
    """The dtype networks compute in: config.compute_dtype (one of COMPUTE_DTYPES, checked by validate_base)."""
    return jnp.dtype(config.compute_dtype)


def to_float32(x: jax.Array) -> jax.Array:
    """A network's output as float32 (unchanged when it is float32 already)."""
    return x.astype(jnp.float32)
