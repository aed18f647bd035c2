"""Ex-post density estimation (Ghosh et al. 2020): the mixture's draws against its closed-form moments, the
fit against the mixture it was drawn from, and the AE and VAE `gmm` samplers through the engine: the
checkpointed mixture is the one fitted to that checkpoint's training codes, samples decode its draws, and a
resumed run fits the same mixture as an uninterrupted one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.errors import UserError
from genjax.evaluate import load_run
from genjax.models import ae, ex_post, vae
from genjax.train import fit
from tests.conftest import tiny_vae_config
from tests.test_ae import tiny_ae_config

WEIGHTS = np.array([0.2, 0.8])
MEANS = np.array([[0.0, 3.0], [2.0, -1.0]])
COVARIANCES = np.array([[[1.0, 0.5], [0.5, 2.0]], [[0.3, 0.0], [0.0, 0.1]]])


def known_mixture() -> dict:
    return {
        "log_weights": jnp.log(jnp.asarray(WEIGHTS, jnp.float32)),
        "means": jnp.asarray(MEANS, jnp.float32),
        "cholesky": jnp.asarray(np.linalg.cholesky(COVARIANCES), jnp.float32),
    }


def test_mixture_draws_have_the_closed_form_mean_and_covariance():
    draws = np.asarray(ex_post.sample_gmm(known_mixture(), jax.random.PRNGKey(0), 200_000), np.float64)
    mean = WEIGHTS @ MEANS  # E z = sum_k pi_k mu_k
    second = sum(w * (c + np.outer(m, m)) for w, m, c in zip(WEIGHTS, MEANS, COVARIANCES))  # E zz^T
    np.testing.assert_allclose(draws.mean(axis=0), mean, atol=0.02)
    np.testing.assert_allclose(np.cov(draws.T, bias=True), second - np.outer(mean, mean), atol=0.03)


def test_the_fit_recovers_the_mixture_it_was_drawn_from():
    draws = np.asarray(ex_post.sample_gmm(known_mixture(), jax.random.PRNGKey(1), 100_000))
    fitted = ex_post.fit_gmm(draws, 2, seed=0)
    order = np.argsort(fitted["means"][:, 0])  # components come back in any order
    np.testing.assert_allclose(np.exp(fitted["log_weights"][order]), WEIGHTS, atol=0.01)
    np.testing.assert_allclose(fitted["means"][order], MEANS, atol=0.05)
    covariances = fitted["cholesky"] @ np.swapaxes(fitted["cholesky"], 1, 2)
    np.testing.assert_allclose(covariances[order], COVARIANCES, atol=0.08)  # about 4 standard errors


@pytest.mark.parametrize("model, make_config", [(ae, tiny_ae_config), (vae, tiny_vae_config)])
def test_the_checkpoint_holds_the_mixture_of_its_training_codes(model, make_config, mnist, tmp_path):
    config = make_config(sampler="gmm", gmm_components=3, source="embedded")
    train, test = mnist[0].first(300), mnist[1]
    result = fit(model.make_family(config, train), config, train, test, str(tmp_path), "ex_post")
    state = load_run(str(tmp_path))[2]  # the last checkpoint, as `python -m genjax.evaluate` reads it
    family = result.family
    codes = ex_post.training_codes(jax.jit(family.encode), state, train)
    expected = ex_post.fit_gmm(codes, 3, config.seed)  # the brute-force reference: every code, scikit-learn's EM
    for name, value in expected.items():
        np.testing.assert_allclose(np.asarray(state["gmm"][name]), value, rtol=1e-5, atol=1e-6, err_msg=name)
    key = jax.random.PRNGKey(3)
    decoded = family.decode(state, ex_post.sample_gmm(state["gmm"], key, 5))
    np.testing.assert_allclose(np.asarray(family.sample(state, key, 5)), np.asarray(decoded), rtol=1e-6)
    assert np.isclose(np.exp(np.asarray(state["gmm"]["log_weights"])).sum(), 1.0, atol=1e-5)


def test_a_resumed_run_fits_the_mixture_of_an_uninterrupted_one(mnist, tmp_path):
    train, test = mnist[0].first(200), mnist[1]
    config = tiny_ae_config(sampler="gmm", gmm_components=2)
    whole = fit(ae.make_family(config, train), config, train, test, str(tmp_path / "whole"), "ex_post").state
    half = tiny_ae_config(sampler="gmm", gmm_components=2, num_steps=2)
    fit(ae.make_family(half, train), half, train, test, str(tmp_path / "parts"), "ex_post")
    resumed = fit(ae.make_family(config, train), config, train, test, str(tmp_path / "parts"), "ex_post").state
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, whole["gmm"], resumed["gmm"])))


@pytest.mark.parametrize(
    "model, make_config, overrides, message",
    [
        (ae, tiny_ae_config, {"sampler": "prior"}, "unknown sampler 'prior'; choose one of: gaussian, gmm"),
        (vae, tiny_vae_config, {"sampler": "gaussian"}, "unknown sampler 'gaussian'; choose one of: prior, gmm"),
        (vae, tiny_vae_config, {"gmm_components": 0}, "gmm_components must be >= 1"),
        (vae, tiny_vae_config, {"model": "cvae", "sampler": "gmm"}, "the conditional VAE samples each class from its prior"),
    ],
)
def test_bad_samplers_are_refused(model, make_config, overrides, message):
    with pytest.raises(UserError, match=message):
        model.validate(make_config(**overrides))
