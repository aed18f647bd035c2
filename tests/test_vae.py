"""The VAE family: module and step shapes, the ELBO against numpy, no recompiles."""

import chex
import jax
import numpy as np
import pytest

from genjax.data import to_model_batch
from genjax.models import vae
from tests.conftest import tiny_vae_config


@pytest.fixture(scope="module")
def batch(mnist):
    return to_model_batch(mnist[0].take(np.arange(8)))


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_module_shapes(architecture, likelihood, batch):
    model = vae.VAE(
        image_shape=(28, 28, 1), latent_dim=3, architecture=architecture, hidden_sizes=(16,), conv_channels=(4, 8), likelihood=likelihood
    )
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), batch["image"], jax.random.PRNGKey(1))

    @jax.jit
    def forward(variables, x, key):
        mean, log_var = model.apply(variables, x, method=vae.VAE.encode)
        return mean, log_var, model.apply(variables, mean, method=vae.VAE.decode), model.apply(variables, x, key)

    mean, log_var, out, (reconstruction, kl) = forward(variables, batch["image"], jax.random.PRNGKey(2))
    chex.assert_shape([mean, log_var], (8, 3))
    chex.assert_shape(out, (8, 28, 28, 1))
    chex.assert_shape([reconstruction, kl], (8,))
    chex.assert_tree_all_finite((reconstruction, kl))
    assert ("log_std" in variables["params"]) == (likelihood == "gaussian")


def test_family_step_shapes_and_dtypes(mnist, batch):
    config = tiny_vae_config()
    family = vae.make_family(config, mnist[0])
    state = jax.jit(family.init)(jax.random.PRNGKey(0), batch)
    new_state, metrics = jax.jit(family.train_step)(state, batch, jax.random.PRNGKey(1))
    chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)
    assert set(metrics) == {"loss", "reconstruction", "kl"}
    chex.assert_rank(list(metrics.values()), 0)
    per_example = jax.jit(family.eval_step)(new_state, batch, jax.random.PRNGKey(2))
    assert set(per_example) == {"neg_elbo", "reconstruction", "kl", "recon_mse"}
    chex.assert_shape(list(per_example.values()), (8,))
    np.testing.assert_allclose(per_example["neg_elbo"], per_example["reconstruction"] + per_example["kl"], rtol=1e-6)
    samples = jax.jit(family.sample, static_argnums=2)(new_state, jax.random.PRNGKey(3), 5)
    chex.assert_shape(samples, (5, 28, 28, 1))
    assert float(samples.min()) >= 0.0 and float(samples.max()) <= 1.0
    chex.assert_shape(jax.jit(family.reconstruct)(new_state, batch, jax.random.PRNGKey(4)), (8, 28, 28, 1))


def test_train_step_compiles_once_across_steps(mnist, batch):
    family = vae.make_family(tiny_vae_config(), mnist[0])
    state = jax.jit(family.init)(jax.random.PRNGKey(0), batch)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(state, batch, key):
        return family.train_step(state, batch, key)

    for i in range(4):
        state, _ = step(state, batch, jax.random.PRNGKey(i))


def _numpy_elbo_terms(params, x, eps):
    """The MLP VAE's per-example (BCE, KL) computed in float64 numpy from the same parameters and noise."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    flat = x.reshape(len(x), -1).astype(np.float64)
    h = np.maximum(flat @ p["encoder"]["Dense_0"]["kernel"] + p["encoder"]["Dense_0"]["bias"], 0)
    stats = h @ p["encoder"]["Dense_1"]["kernel"] + p["encoder"]["Dense_1"]["bias"]
    mean, log_var = np.split(stats, 2, axis=1)
    z = mean + np.exp(0.5 * log_var) * eps
    h = np.maximum(z @ p["decoder"]["Dense_0"]["kernel"] + p["decoder"]["Dense_0"]["bias"], 0)
    logits = h @ p["decoder"]["Dense_1"]["kernel"] + p["decoder"]["Dense_1"]["bias"]
    bce = np.sum(flat * np.logaddexp(0, -logits) + (1 - flat) * np.logaddexp(0, logits), axis=1)
    kl = 0.5 * np.sum(np.exp(log_var) + mean**2 - 1 - log_var, axis=1)
    return bce, kl


def test_elbo_terms_equal_a_numpy_reference(batch):
    model = vae.VAE(image_shape=(28, 28, 1), latent_dim=3, hidden_sizes=(16,))
    key = jax.random.PRNGKey(5)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), batch["image"], key)["params"]
    reconstruction, kl = jax.jit(model.apply)({"params": params}, batch["image"], key)
    eps = np.asarray(jax.random.normal(key, (8, 3)))  # the noise reparameterize draws from `key`
    expected_bce, expected_kl = _numpy_elbo_terms(params, np.asarray(batch["image"]), eps)
    np.testing.assert_allclose(reconstruction, expected_bce, rtol=1e-4)
    np.testing.assert_allclose(kl, expected_kl, rtol=1e-4, atol=1e-5)


def test_beta_weights_only_the_training_kl(mnist, batch):
    states = {}
    for beta in (1.0, 4.0):
        family = vae.make_family(tiny_vae_config(beta=beta), mnist[0])
        state = jax.jit(family.init)(jax.random.PRNGKey(0), batch)
        _, metrics = jax.jit(family.train_step)(state, batch, jax.random.PRNGKey(1))
        states[beta] = metrics
    np.testing.assert_allclose(states[4.0]["loss"], states[4.0]["reconstruction"] + 4 * states[4.0]["kl"], rtol=1e-6)
    np.testing.assert_allclose(states[1.0]["kl"], states[4.0]["kl"], rtol=1e-6)  # same init, same noise


def test_kl_warmup_weights_the_kl_by_step_over_warmup(mnist, batch):
    family = vae.make_family(tiny_vae_config(beta=2.0, kl_warmup_steps=4), mnist[0])
    state = jax.jit(family.init)(jax.random.PRNGKey(0), batch)
    step = jax.jit(family.train_step)
    for expected_weight in (0.5, 1.0, 1.5, 2.0, 2.0):  # beta * min(1, (step + 1) / 4)
        state, metrics = step(state, batch, jax.random.PRNGKey(1))
        np.testing.assert_allclose(metrics["loss"], metrics["reconstruction"] + expected_weight * metrics["kl"], rtol=1e-5)
    assert int(state["step"]) == 5


def test_points_need_the_gaussian_likelihood_and_train_on_ring8():
    from genjax import data
    from genjax.errors import UserError

    ring8 = data.load("ring8", "train")
    with pytest.raises(UserError, match="likelihood=gaussian"):
        vae.make_family(tiny_vae_config(dataset="ring8"), ring8)
    family = vae.make_family(tiny_vae_config(dataset="ring8", likelihood="gaussian", kl_warmup_steps=10), ring8)
    points = to_model_batch(ring8.take(np.arange(16)))
    state = jax.jit(family.init)(jax.random.PRNGKey(0), points)
    state, metrics = jax.jit(family.train_step)(state, points, jax.random.PRNGKey(1))
    chex.assert_shape(jax.jit(family.sample, static_argnums=2)(state, jax.random.PRNGKey(2), 7), (7, 2))
    assert np.isfinite(metrics["loss"])


def test_invalid_model_fields_are_refused():
    from genjax.errors import UserError

    for field, value, message in [
        ("latent_dim", -1, "latent_dim"),
        ("likelihood", "poisson", "unknown likelihood"),
        ("architecture", "rnn", "unknown architecture"),
        ("beta", -1.0, "beta"),
        ("ema_decay", 1.0, "ema_decay"),
        ("kl_warmup_steps", -1, "kl_warmup_steps"),
    ]:
        with pytest.raises(UserError, match=message):
            vae.validate(tiny_vae_config(**{field: value}))


def test_ema_params_follow_the_exponential_moving_average(mnist, batch):
    family = vae.make_family(tiny_vae_config(ema_decay=0.9), mnist[0])
    state = jax.jit(family.init)(jax.random.PRNGKey(0), batch)
    new_state, _ = jax.jit(family.train_step)(state, batch, jax.random.PRNGKey(1))
    expected = jax.tree.map(lambda old, new: 0.9 * old + 0.1 * new, state["params"], new_state["params"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), new_state["ema_params"], expected)
