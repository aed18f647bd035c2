"""How well a discrete code matches the data's classes, from their joint distribution p(k, y) (a K x C
table summing to 1): for InfoGAN (Chen et al. 2016), its categorical code k against the digit y that genjax's
classifier sees in the image made with k, or Q's most likely code k for a real test digit of label y.

    purity  sum_k max_y p(k, y): the accuracy of labelling each example by its code's most frequent class
            (1 / C when codes and classes are independent and the classes uniform). The classes' shares are
            the data's when k is read off real digits; for generated images they are the generator's, and
            purity is 1 also when every code makes the same digit: read it with nmi and the classes covered.
    nmi     I(k; y) / ((H(k) + H(y)) / 2), mutual information normalized by the mean entropy (the arithmetic
            normalization, scikit-learn's default; Strehl & Ghosh 2002 use the geometric): 0 for independent
            k and y, or when every code makes the same digit; 1 when each code makes one class and each
            class comes from one code.

Written in jax.numpy so that a family's summarize_eval can compute them inside the compiled evaluation.
"""

import jax
import jax.numpy as jnp


def _entropy(p: jax.Array) -> jax.Array:
    """-sum p log p in nats, with 0 log 0 = 0."""
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))


def code_class_agreement(joint: jax.Array) -> dict:
    """{purity, nmi} of a joint distribution p(k, y) [K, C] whose marginals are not both single points."""
    code_marginal, class_marginal = joint.sum(axis=1), joint.sum(axis=0)
    mutual_information = _entropy(code_marginal) + _entropy(class_marginal) - _entropy(joint)
    return {
        "purity": jnp.sum(jnp.max(joint, axis=1)),
        "nmi": 2 * mutual_information / (_entropy(code_marginal) + _entropy(class_marginal)),
    }
