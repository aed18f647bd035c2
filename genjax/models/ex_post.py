"""Ex-post density estimation (Ghosh et al. 2020, "From Variational to Deterministic Autoencoders",
section 4): sample an autoencoder (or a VAE) by fitting a density to the codes of its training images after
training and decoding draws from it, instead of decoding draws from a fixed prior.

`with_gmm_sampler(family, ...)` wraps any family that can encode and decode (the "latent" capability):
its state gains a "gmm" entry, a mixture of K full-covariance Gaussians

    p(z) = sum_k pi_k N(z; mu_k, L_k L_k^T),

fitted by scikit-learn's GaussianMixture (EM from a k-means start, random_state = the run's seed) to the
codes of every training image, and `sample` decodes z ~ p(z): pick k ~ Categorical(pi), then
z = mu_k + L_k eps with eps ~ N(0, I). The fit is the family's `ex_post` hook: the engine refits before
every evaluation and checkpoint, so a checkpoint holds the mixture of its own encoder, and a resumed run
fits the same mixture as an uninterrupted one (the same codes, the same EM). Until the first fit the
mixture is a standard normal (every component N(0, I)).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.mixture import GaussianMixture

from genjax.config import check
from genjax.data import Dataset, to_model_batch
from genjax.train.family import Family

GMM = "gmm"
ENCODE_BATCH = 500
DEFAULT_COMPONENTS = 10


def check_sampler(config, samplers: tuple) -> str:
    """The config's sampler, checked against `samplers` (the family's own first, then 'gmm'); configs
    saved before samplers existed have none and get the family's own."""
    sampler = config.get("sampler", samplers[0])
    check(sampler in samplers, f"unknown sampler '{sampler}'; choose one of: {', '.join(samplers)}")
    components = config.get("gmm_components", DEFAULT_COMPONENTS)
    check(components >= 1, f"gmm_components must be >= 1, got {components}")
    return sampler


def with_sampler(family: Family, config, samplers: tuple) -> Family:
    """`family` as it is, or with the gmm sampler when the config asks for it."""
    if config.get("sampler", samplers[0]) != GMM:
        return family
    return with_gmm_sampler(family, config.get("gmm_components", DEFAULT_COMPONENTS), config.seed)


def standard_gmm(latent_dim: int, components: int) -> dict:
    """K equal components N(0, I): the mixture before its first fit."""
    return {
        "log_weights": jnp.full((components,), -np.log(components), jnp.float32),
        "means": jnp.zeros((components, latent_dim), jnp.float32),
        "cholesky": jnp.broadcast_to(jnp.eye(latent_dim, dtype=jnp.float32), (components, latent_dim, latent_dim)),
    }


def fit_gmm(codes: np.ndarray, components: int, seed: int) -> dict:
    """scikit-learn's full-covariance mixture of `components` Gaussians fitted to codes [N, D], as host arrays."""
    mixture = GaussianMixture(components, covariance_type="full", random_state=seed).fit(np.asarray(codes, np.float64))
    return {
        "log_weights": np.log(mixture.weights_).astype(np.float32),
        "means": mixture.means_.astype(np.float32),
        "cholesky": np.linalg.cholesky(mixture.covariances_).astype(np.float32),
    }


def sample_gmm(gmm: dict, key: jax.Array, n: int) -> jax.Array:
    """n draws [n, D] of the mixture: a component by its weight, then its mean plus its Cholesky factor times N(0, I)."""
    component_key, noise_key = jax.random.split(key)
    k = jax.random.categorical(component_key, gmm["log_weights"], shape=(n,))
    eps = jax.random.normal(noise_key, gmm["means"][k].shape)
    return gmm["means"][k] + jnp.einsum("nij,nj->ni", gmm["cholesky"][k], eps)


def training_codes(encode, state, train: Dataset) -> np.ndarray:
    """The codes [N, D] of every training example, encoded in batches."""
    codes = []
    for start in range(0, train.num_examples, ENCODE_BATCH):
        batch = to_model_batch(train.take(np.arange(start, min(start + ENCODE_BATCH, train.num_examples))))
        codes.append(np.asarray(encode(state, batch)))
    return np.concatenate(codes)


def with_gmm_sampler(family: Family, components: int, seed: int) -> Family:
    """`family` sampled by a mixture fitted to its training codes (module docstring); everything else unchanged."""
    if family.encode is None or family.decode is None:
        raise ValueError(f"the {family.name} family cannot encode and decode, so it has no codes to fit a mixture to")
    encode = jax.jit(family.encode)

    def inner(state):
        return {name: value for name, value in state.items() if name != GMM}

    def init(key, batch):
        state = family.init(key, batch)
        latent_dim = jax.eval_shape(family.encode, state, batch).shape[-1]
        return {**state, GMM: standard_gmm(latent_dim, components)}

    def train_step(state, batch, key):
        new_state, metrics = family.train_step(inner(state), batch, key)
        return {**new_state, GMM: state[GMM]}, metrics

    def sample(state, key, n):
        return family.decode(inner(state), sample_gmm(state[GMM], key, n))

    def ex_post(state, train: Dataset):
        return {**state, GMM: fit_gmm(training_codes(encode, inner(state), train), components, seed)}

    return dataclasses.replace(family, init=init, train_step=train_step, sample=sample, ex_post=ex_post)
