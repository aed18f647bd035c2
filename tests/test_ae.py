"""The AE family: shapes, denoising corrupts inputs only, ex-post Gaussian against numpy, end to end."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import ae_mnist
from genjax import cli, losses
from genjax.data import to_model_batch
from genjax.errors import UserError
from genjax.models import ae


def tiny_ae_config(**overrides):
    config = ae_mnist.get_config()
    config.update(
        dict(
            hidden_sizes=(16,),
            conv_channels=(4, 8),
            latent_dim=3,
            batch_size=8,
            num_steps=4,
            steps_per_call=2,
            eval_every=2,
            checkpoint_every=2,
            num_samples=4,
            source="embedded",
        )
    )
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def batch(mnist):
    return to_model_batch(mnist[0].take(np.arange(8)))


@pytest.fixture(scope="module")
def masked_ae(mnist, batch):
    """An MLP denoising AE (masking noise, BCE), its initial state and the state after one step with key 1."""
    config = tiny_ae_config(noise="mask")
    family = ae.make_family(config, mnist[0])
    state = jax.jit(family.init)(jax.random.PRNGKey(0), batch)
    return config, family, state, jax.jit(family.train_step)(state, batch, jax.random.PRNGKey(1))


def test_mlp_family_shapes_and_no_recompiles(masked_ae, batch):
    _, family, state, _ = masked_ae
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(state, batch, key):
        return family.train_step(state, batch, key)

    for i in range(3):
        new_state, metrics = step(state, batch, jax.random.PRNGKey(i))
        chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)
        state = new_state
    assert set(metrics) == {"loss"} and np.isfinite(metrics["loss"])
    per_example = jax.jit(family.eval_step)(state, batch, jax.random.PRNGKey(5))
    assert set(per_example) == {"reconstruction", "recon_mse", "denoise_mse"}
    chex.assert_shape(list(per_example.values()), (8,))
    samples = jax.jit(family.sample, static_argnums=2)(state, jax.random.PRNGKey(6), 5)
    reconstructions = jax.jit(family.reconstruct)(state, batch, jax.random.PRNGKey(7))
    chex.assert_shape(samples, (5, 28, 28, 1))
    chex.assert_shape(reconstructions, (8, 28, 28, 1))
    chex.assert_tree_all_finite((samples, reconstructions))
    assert float(samples.min()) >= 0 and float(samples.max()) <= 1


def test_conv_family_with_mse_shapes(mnist, batch):
    family = ae.make_family(tiny_ae_config(architecture="conv", reconstruction_loss="mse"), mnist[0])
    state = jax.jit(family.init)(jax.random.PRNGKey(0), batch)
    new_state, metrics = jax.jit(family.train_step)(state, batch, jax.random.PRNGKey(1))
    chex.assert_trees_all_equal_shapes_and_dtypes(state, new_state)
    per_example = jax.jit(family.eval_step)(new_state, batch, jax.random.PRNGKey(2))
    chex.assert_shape(list(per_example.values()), (8,))
    np.testing.assert_allclose(per_example["reconstruction"], 784 * per_example["recon_mse"], rtol=1e-5)  # mse: the same error


def test_corruptions(batch):
    x, key = batch["image"], jax.random.PRNGKey(3)
    np.testing.assert_array_equal(ae.corrupt(key, x, "none", 0.5, 0.5), x)
    noisy = ae.corrupt(key, x, "gaussian", 0.5, 0.0)
    np.testing.assert_allclose(noisy, x + 0.5 * jax.random.normal(key, x.shape), rtol=1e-6)
    masked = np.asarray(ae.corrupt(key, jnp.ones_like(x), "mask", 0.0, 0.25))
    assert set(np.unique(masked)) == {0.0, 1.0}
    np.testing.assert_array_equal((masked == 0).reshape(8, -1).sum(axis=1), round(0.25 * 784))  # exactly the fraction, per image
    assert not np.array_equal(masked[0], masked[1])  # a different mask for each image


def test_denoising_corrupts_the_input_and_keeps_the_target_clean(masked_ae, batch):
    config, _, state, (_, metrics) = masked_ae
    model = ae.build_model(config, (28, 28, 1))
    x = batch["image"]
    noisy = ae.corrupt(jax.random.PRNGKey(1), x, "mask", config.noise_std, config.mask_fraction)

    @jax.jit
    def loss(inputs, targets):
        return jnp.mean(losses.bernoulli_nll(model.apply({"params": state["params"]}, inputs), targets))

    np.testing.assert_allclose(metrics["loss"], loss(noisy, x), rtol=1e-5)
    assert abs(float(loss(noisy, x) - loss(x, x))) > 1e-3  # the input was corrupted
    assert abs(float(loss(noisy, x) - loss(noisy, noisy))) > 1e-3  # the target was not


def test_ex_post_gaussian_equals_numpy_weighted_mean_and_covariance():
    decay, batches = 0.9, [np.random.default_rng(i).normal(i, 1 + i, (6, 3)).astype(np.float32) for i in range(4)]
    update = jax.jit(ae.update_code_stats, static_argnums=2)
    stats = ae.init_code_stats(3)
    for codes in batches:
        stats = update(stats, codes, decay)
    mean, cov = ae.code_gaussian(stats)
    weights = np.concatenate([np.full(6, decay ** (len(batches) - 1 - t)) for t in range(len(batches))])
    codes = np.concatenate(batches)
    np.testing.assert_allclose(mean, np.average(codes, axis=0, weights=weights), rtol=1e-5)
    np.testing.assert_allclose(cov, np.cov(codes, rowvar=False, aweights=weights, bias=True), rtol=1e-4, atol=1e-5)


def test_train_step_collects_the_codes_of_clean_images(masked_ae, batch):
    """After one step the (bias-corrected) moments are those of the first batch's clean codes, whatever the decay."""
    config, _, state, (new_state, _) = masked_ae
    model = ae.build_model(config, (28, 28, 1))
    codes = np.asarray(model.apply({"params": state["params"]}, batch["image"], method=ae.Autoencoder.encode), np.float64)
    mean, cov = ae.code_gaussian(new_state["code_stats"])
    np.testing.assert_allclose(mean, codes.mean(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cov, np.cov(codes, rowvar=False, bias=True), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("reconstruction_loss", "l1", "unknown reconstruction_loss"),
        ("noise", "salt", "unknown noise"),
        ("mask_fraction", 1.0, "mask_fraction"),
        ("noise_std", -1.0, "noise_std"),
        ("code_stats_decay", 1.0, "code_stats_decay"),
        ("latent_dim", 0, "latent_dim"),
    ],
)
def test_invalid_fields_are_refused(field, value, message):
    with pytest.raises(UserError, match=message):
        ae.validate(tiny_ae_config(**{field: value}))


def test_experiment_end_to_end(tmp_path, capsys):
    args = [
        f"--workdir={tmp_path}",
        "--config.hidden_sizes=(16,)",
        "--config.latent_dim=3",
        "--config.batch_size=8",
        "--config.num_steps=4",
        "--config.steps_per_call=2",
        "--config.eval_every=2",
        "--config.checkpoint_every=2",
        "--config.num_samples=4",
        "--config.source=embedded",
        "--config.noise=mask",
    ]
    assert cli.main("ae_mnist", ae_mnist.get_config, args) == 0
    assert "done: 4 steps" in capsys.readouterr().out
    for name in ["config.json", "metrics.jsonl", "summary.json", "samples.npz", "samples_4.png", "reconstructions_4.png", "curves.png"]:
        assert (tmp_path / name).is_file(), name
    summary = json.load(open(tmp_path / "summary.json"))
    assert set(summary["test"]) == {"reconstruction", "recon_mse", "denoise_mse"} and summary["model"] == "ae"
    with np.load(tmp_path / "samples.npz") as f:
        assert f["samples"].shape == (4, 28, 28, 1)
