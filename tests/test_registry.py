"""Declared once, derived everywhere: families found by name, capabilities from hooks, metrics from the
registry, stages from the experiment, renamed fields refused by name, run directories evaluated alone."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import vqvae_mnist
from genjax import data, evaluate, experiment, models
from genjax.config import apply_overrides, config_from_dict
from genjax.data import to_model_batch
from genjax.errors import UserError
from genjax.metrics import registry
from genjax.train import Family
from genjax.train.family import CAPABILITIES
from tests.conftest import REPO, tiny_vae_config
from tests.test_vqvae import TINY


def test_families_are_the_modules_that_export_make_family():
    assert set(models.names()) == {"ae", "cvae", "gan", "infogan", "vae", "vae2stage", "vqvae", "vqvae_prior"} | (
        {"flow"} & set(models.names())
    )
    assert models.get("vae").make_family is not None
    for name in ("gan_nets", "nope", "", "a.b"):
        with pytest.raises(UserError, match=f"unknown model '{name}'; choose one of: ae,"):
            models.get(name)


def test_every_suite_metric_is_declared_once_and_every_capability_is_known():
    names = [m.name for m in registry.METRICS]
    assert len(names) == len(set(names))
    assert {m.suite for m in registry.METRICS} - {"run", "eval_step"} == set(evaluate.SUITES)  # read from the run, reported by eval_step
    assert {m.needs for m in registry.METRICS} - {None} <= set(CAPABILITIES)
    assert all(m.better in (-1, 0, 1) and m.reference for m in registry.METRICS if m.column)
    assert [m.name for m in registry.METRICS if m.stability] == ["frechet_distance", "modes_captured"]


def test_capabilities_follow_from_the_hooks_and_choose_the_suites(mnist):
    vae_family = vae_mnist_family(mnist)
    assert vae_family.capabilities == {"sample", "reconstruct", "latent", "likelihood_bound"}
    assert evaluate.applicable_suites(vae_family, mnist[1]) == ["sample_quality", "reconstruction", "likelihood_bound"]
    ring = data.load("ring8", "test")
    point_family = _gaussian_family()
    assert point_family.capabilities == {"sample", "exact_likelihood"}
    assert evaluate.applicable_suites(point_family, ring) == ["modes", "exact_likelihood"]
    assert evaluate.applicable_suites(point_family, data.load("moons", "test")) == ["exact_likelihood"]


def vae_mnist_family(mnist):
    return models.get("vae").make_family(tiny_vae_config(), mnist[0])


def _gaussian_family(mean=(0.5, -0.25)):
    """A family of 2-D points with an exact likelihood: N(mean, I), nothing to train."""
    mean = jnp.asarray(mean, jnp.float32)

    def log_likelihood(state, batch, key):
        x = batch["point"] - state["mean"]
        return -0.5 * jnp.sum(x**2, axis=-1) - jnp.log(2 * jnp.pi)

    return Family(
        name="gaussian",
        init=lambda key, batch: {"mean": mean},
        train_step=lambda state, batch, key: (state, {"loss": jnp.zeros(())}),
        eval_step=lambda state, batch, key: {"nll": -log_likelihood(state, batch, key)},
        sample=lambda state, key, n: state["mean"] + jax.random.normal(key, (n, 2)),
        log_likelihood=log_likelihood,
    )


def test_an_exact_likelihood_family_gets_nll_exact_from_the_registry_alone():
    train, test = data.load("ring8", "train"), data.load("ring8", "test")
    family = _gaussian_family()
    state = family.init(None, None)
    config = tiny_vae_config(dataset="ring8", batch_size=100)
    metrics = evaluate.evaluate_state(family, state, config, train, test, jax.random.PRNGKey(0), iwae_samples=10)
    points = np.asarray(test.arrays["point"], np.float64) - np.array([0.5, -0.25])
    expected = np.mean(0.5 * np.sum(points**2, axis=1) + np.log(2 * np.pi))  # -log N(x; mean, I) in float64
    assert metrics["nll_exact"] == pytest.approx(expected, rel=1e-5)
    assert metrics["nll"] == pytest.approx(expected, rel=1e-5) and "nll_iwae" not in metrics
    assert {"modes_captured", "high_quality_percent", "reverse_kl"} <= set(metrics) and "frechet_distance" not in metrics
    first = evaluate.evaluate_state(family, state, config, train, test, jax.random.PRNGKey(0), iwae_samples=10, likelihood_examples=150)
    expected_first = np.mean(0.5 * np.sum(points[:150] ** 2, axis=1) + np.log(2 * np.pi))  # over the first 150 points only
    assert first["nll_exact"] == pytest.approx(expected_first, rel=1e-5) and expected_first != pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize(
    "module, old, new",
    [
        ("experiments.vqvae_mnist", "beta", "commitment_weight"),
        ("experiments.gan_mnist", "loss", "adversarial_loss"),
        ("experiments.ae_mnist", "loss", "reconstruction_loss"),
    ],
)
def test_a_renamed_field_names_its_new_name(module, old, new):
    config = __import__(module, fromlist=["get_config"]).get_config()
    with pytest.raises(UserError, match=rf"config field '{old}' of model {config.model} was renamed to '{new}'; use --config.{new}=1"):
        apply_overrides(config, {old: "1"})
    assert old not in config and new in config


def test_a_saved_config_comes_back_with_tuples_and_new_names():
    saved = json.loads(vqvae_mnist.get_config().to_json())
    saved["beta"] = saved.pop("commitment_weight")  # a config.json written before the rename
    config = config_from_dict(saved)
    assert config.commitment_weight == 0.25 and "beta" not in config and config.conv_channels == (16, 32)


def test_stages_are_declared_validated_together_and_recorded(tmp_path):
    config = vqvae_mnist.get_config()
    config.update({**TINY, "prior_width": 7})  # invalid for the prior stage only: refused before the VQ-VAE trains
    with pytest.raises(UserError, match="prior_width 7 must be a multiple of prior_heads 2"):
        experiment.run_stages(config, str(tmp_path), "vqvae_mnist", vqvae_mnist.STAGES)
    assert not (tmp_path / "vqvae" / "checkpoints").exists()
    config.prior_width = 8
    results = experiment.run_stages(config, str(tmp_path), "vqvae_mnist", vqvae_mnist.STAGES)
    assert [r.config.model for r in results] == ["vqvae", "vqvae_prior"] and results[1].family.name == "vqvae_prior"
    layout = json.loads((tmp_path / "stages.json").read_text())
    assert [s["subdir"] for s in layout["stages"]] == ["vqvae", ""] and layout["stages"][1]["budget_share"] == 0.5


def test_a_run_directory_is_evaluated_without_its_experiment_module(tmp_path):
    overrides = [f"--config.{field}={value}" for field, value in TINY.items()]
    assert vqvae_mnist.main([f"--workdir={tmp_path}", *overrides]) == 0
    blocked = "import sys; sys.modules['experiments'] = None; from genjax import evaluate; sys.exit(evaluate.main(sys.argv[1:]))"
    args = [str(tmp_path), "--num_samples=50", "--classifier_steps=100"]
    result = _python(blocked, *args)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "eval.json").read_text())
    assert {"code_nll", "perplexity", "recon_mse", "frechet_distance", "recall"} <= set(metrics)


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_adam_betas_are_engine_fields_that_reach_the_optimizer(mnist):
    """adam_b1/adam_b2 are declared once (genjax.config); Adam's first step is the same for any beta1 (its
    bias correction makes m_hat = g), its second is not, and a bad beta is one line."""
    batch = to_model_batch(mnist[0].take(np.arange(32)))

    def two_steps(b1):
        family = models.get("vae").make_family(tiny_vae_config(adam_b1=b1), mnist[0])
        state = family.init(jax.random.key(0), batch)
        steps = []
        for i in range(2):
            state, _ = family.train_step(state, batch, jax.random.key(i + 1))
            steps.append(state["params"])
        return steps

    one, other = two_steps(0.9), two_steps(0.0)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), one[0], other[0])
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(one[1]), jax.tree.leaves(other[1]), strict=True))
    for bad in ({"adam_b1": 1.0}, {"adam_b2": -0.1}):
        with pytest.raises(UserError, match=f"{next(iter(bad))} must be in \\[0, 1\\)"):
            experiment.validate(tiny_vae_config(**bad))
    assert config_from_dict({"model": "vae"}).adam_b1 == 0.9  # a config saved before the betas were fields
