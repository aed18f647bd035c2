"""The two-stage VAE: stage 2 fitted to the codes of the checkpoint's encoder, samples through both decoders,
the learned-gamma loss against its closed form, the experiment end to end with resume and refit, bad fields."""

import json
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import vae2stage_mnist
from genjax import data, evaluate, models
from genjax.checkpoint import Checkpoints
from genjax.data import to_model_batch
from genjax.errors import UserError
from genjax.models import vae, vae2stage
from genjax.train.rundir import refit_if_stale
from tests.conftest import train_steps

TINY = dict(
    hidden_sizes=(8,),
    latent_dim=3,
    batch_size=8,
    num_steps=4,
    steps_per_call=2,
    eval_every=2,
    checkpoint_every=2,
    num_samples=4,
    source="embedded",
    stage2_num_steps=4,
    stage2_hidden_sizes=(6, 5),
)


def tiny_config(**overrides):
    config = vae2stage_mnist.get_config()
    config.update({**TINY, **overrides})
    return config


def numpy_mlp(params, x):
    """genjax.nn.MLP in float64 numpy: Dense_0 .. Dense_n with ReLU between them."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    names = sorted(params, key=lambda name: int(name.split("_")[1]))
    for i, name in enumerate(names):
        x = x @ np.asarray(params[name]["kernel"], np.float64) + np.asarray(params[name]["bias"], np.float64)
        x = np.maximum(x, 0.0) if i < len(names) - 1 else x
    return x


@pytest.fixture(scope="module")
def batch(mnist):
    return to_model_batch(mnist[0].take(np.arange(8)))


@pytest.fixture()
def stage2(tmp_path, mnist, batch):
    """A stage-1 VAE trained two steps and checkpointed at step 2, and the stage-2 family and state fitted to it."""
    config = tiny_config()
    stage1_family = vae.make_family(vae2stage.stage1_config(config), mnist[0])
    stage1_state = jax.jit(stage1_family.init)(jax.random.PRNGKey(0), batch)
    for step in range(2):
        stage1_state, _ = jax.jit(stage1_family.train_step)(stage1_state, batch, jax.random.PRNGKey(10 + step))
    checkpoints = Checkpoints(str(tmp_path / "vae" / "checkpoints"))
    checkpoints.save(2, stage1_state, {"experiment": "vae2stage_mnist", "model": "vae", "step": 2})
    checkpoints.close()
    stage2_config = vae2stage.stage_config(config, str(tmp_path / "vae"), 2)
    vae2stage.validate(stage2_config)
    family = vae2stage.make_family(stage2_config, mnist[0])
    return family, jax.jit(family.init)(jax.random.PRNGKey(1), batch), stage1_state, stage2_config


def test_stage2_is_fitted_to_the_codes_of_the_checkpoints_encoder(stage2, batch):
    family, state, stage1_state, config = stage2
    chex.assert_trees_all_equal(state["stage1"], stage1_state["ema_params"])  # the parameter average, not the raw params
    assert not np.array_equal(state["stage1"]["encoder"]["Dense_0"]["kernel"], stage1_state["params"]["encoder"]["Dense_0"]["kernel"])

    out = numpy_mlp(stage1_state["ema_params"]["encoder"], batch["image"])
    mean, log_var = out[:, :3], out[:, 3:]
    key = jax.random.PRNGKey(5)
    code_key, stage2_key = jax.random.split(key)
    hand_codes = mean + np.exp(0.5 * log_var) * np.asarray(jax.random.normal(code_key, (8, 3)), np.float64)
    model1 = vae.build_model(config, (28, 28, 1))
    np.testing.assert_allclose(vae2stage.stage1_codes(model1, state["stage1"], batch["image"], code_key, "sample"), hand_codes, atol=1e-5)
    np.testing.assert_allclose(vae2stage.stage1_codes(model1, state["stage1"], batch["image"], code_key, "mean"), mean, atol=1e-5)

    new_state, metrics = jax.jit(family.train_step)(state, batch, key)
    model2 = vae2stage.build_stage2(config)
    nll, kl = model2.apply({"params": state["params"]}, jnp.asarray(mean, jnp.float32), stage2_key)
    np.testing.assert_allclose(metrics["loss"], np.mean(nll + kl), rtol=1e-5)  # the step's loss is on the means (the default)
    chex.assert_trees_all_equal(new_state["stage1"], state["stage1"])  # stage 1 stays frozen
    assert not np.array_equal(new_state["params"]["decoder"]["Dense_0"]["kernel"], state["params"]["decoder"]["Dense_0"]["kernel"])


def test_a_sample_is_the_stage1_decoder_of_a_stage2_draw_from_standard_normal_u(stage2):
    family, state, _, _ = stage2
    key = jax.random.PRNGKey(7)
    samples = jax.jit(family.sample, static_argnums=2)(state, key, 5)
    u_key, noise_key = jax.random.split(key)
    u = np.asarray(jax.random.normal(u_key, (5, 3)), np.float64)
    std = np.exp(np.float64(state["ema_params"]["log_std"]))  # sqrt(gamma)
    z = numpy_mlp(state["ema_params"]["decoder"], u) + std * np.asarray(jax.random.normal(noise_key, (5, 3)), np.float64)
    images = 1.0 / (1.0 + np.exp(-numpy_mlp(state["stage1"]["decoder"], z)))
    chex.assert_shape(samples, (5, 28, 28, 1))
    np.testing.assert_allclose(np.asarray(samples).reshape(5, -1), images, atol=1e-5)


def test_the_learned_gamma_gaussian_loss_equals_its_closed_form():
    """With zero kernels the encoder gives q(u|z) = N(m, diag(exp(v))) and the decoder mean2(u) = c for any u,
    so loss2 = |z - c|^2 / (2 gamma) + D/2 log(2 pi gamma) + 1/2 sum(exp(v) + m^2 - 1 - v), gamma = exp(2 s)."""
    config = tiny_config(latent_dim=2, stage2_hidden_sizes=(4,))
    model2 = vae2stage.build_stage2(config)
    params = model2.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)), jax.random.PRNGKey(1))["params"]
    params = jax.tree.map(jnp.zeros_like, params)
    m, v, c, s = np.array([0.5, -1.0]), np.array([-0.3, 0.2]), np.array([0.25, 2.0]), 0.4
    params["encoder"]["Dense_1"]["bias"] = jnp.asarray(np.concatenate([m, v]), jnp.float32)
    params["decoder"]["Dense_1"]["bias"] = jnp.asarray(c, jnp.float32)
    params["log_std"] = jnp.asarray(s, jnp.float32)
    z = np.array([[1.0, 1.5], [-0.5, 3.0]])
    nll, kl = model2.apply({"params": params}, jnp.asarray(z, jnp.float32), jax.random.PRNGKey(2))
    gamma = math.exp(2 * s)
    expected_nll = np.sum((z - c) ** 2, axis=1) / (2 * gamma) + 2 / 2 * math.log(2 * math.pi * gamma)
    expected_kl = 0.5 * np.sum(np.exp(v) + m**2 - 1 - v)
    np.testing.assert_allclose(nll, expected_nll, rtol=1e-5)
    np.testing.assert_allclose(kl, [expected_kl, expected_kl], rtol=1e-5)
    np.testing.assert_allclose(vae2stage.gamma_of(params), gamma, rtol=1e-6)


def test_the_two_stage_bound_adds_stage1s_reconstruction_and_the_codes_cost_under_stage2(stage2, batch):
    family, state, _, _ = stage2
    metrics = jax.jit(family.eval_step)(state, batch, jax.random.PRNGKey(3))
    np.testing.assert_allclose(metrics["neg_elbo"], metrics["reconstruction"] + metrics["kl"], rtol=1e-6)
    assert set(metrics) == {"neg_elbo", "reconstruction", "kl", "stage1_neg_elbo", "recon_mse", "stage2_loss", "gamma"}
    np.testing.assert_allclose(metrics["gamma"], np.exp(2 * float(state["ema_params"]["log_std"])), rtol=1e-6)
    log_weights = jax.jit(family.importance_log_weights, static_argnums=3)(state, batch, jax.random.PRNGKey(4), 6)
    chex.assert_shape(log_weights, (8, 6))
    chex.assert_tree_all_finite(log_weights)
    assert family.capabilities == {"sample", "reconstruct", "latent", "likelihood_bound"}


def _cli(workdir, *args):
    overrides = [f"--config.{field}={value}" for field, value in TINY.items()]
    return vae2stage_mnist.main([f"--workdir={workdir}", *overrides, *args])


def test_experiment_runs_both_stages_resumes_stage2_and_refits_it_when_stage1_moved(tmp_path, capsys):
    assert _cli(tmp_path) == 0
    for directory in (tmp_path, tmp_path / "vae"):
        for name in ["config.json", "summary.json", "samples.npz", "samples_4.png", "reconstructions_4.png"]:
            assert (directory / name).is_file(), directory / name
    final, first = json.load(open(tmp_path / "summary.json")), json.load(open(tmp_path / "vae" / "summary.json"))
    assert final["model"] == "vae2stage" and first["model"] == "vae"
    assert final["test"]["recon_mse"] == pytest.approx(first["test"]["recon_mse"], rel=1e-5)  # the same frozen VAE
    model2 = vae2stage.build_stage2(tiny_config())
    shapes = jax.eval_shape(model2.init, jax.random.PRNGKey(0), jnp.zeros((1, 3)), jax.random.PRNGKey(1))
    assert final["num_params"] == sum(leaf.size for leaf in jax.tree.leaves(shapes))  # stage 1 is not counted
    with np.load(tmp_path / "samples.npz") as f:
        assert f["samples"].shape == (4, 28, 28, 1)

    assert _cli(tmp_path, "--config.stage2_num_steps=6") == 0  # stage 1 is finished; stage 2 resumes
    assert train_steps(tmp_path) == [2, 4, 6] and train_steps(tmp_path / "vae") == [2, 4]
    capsys.readouterr()

    assert _cli(tmp_path, "--config.stage2_num_steps=6", "--config.num_steps=6") == 0  # stage 1 moved: stage 2 again
    assert "fitting it again" in capsys.readouterr().err
    assert train_steps(tmp_path / "vae") == [2, 4, 6] and train_steps(tmp_path) == [2, 4, 6]
    assert json.load(open(tmp_path / "config.json"))["stage1_step"] == 6
    _, _, state, _, _ = evaluate.load_run(str(tmp_path))  # the run directory alone rebuilds the whole model
    _, _, stage1_state, _, _ = evaluate.load_run(str(tmp_path / "vae"))
    chex.assert_trees_all_equal(state["stage1"], stage1_state["ema_params"])


def test_stage2_without_a_stage1_checkpoint_is_refused_in_one_line(tmp_path):
    train = data.load("mnist", "train", source="embedded")
    config = vae2stage.stage_config(tiny_config(), str(tmp_path / "vae"), 0)
    with pytest.raises(
        UserError, match=r"^no VAE checkpoints in .*; train stage 1 first \(python -m experiments.vae2stage_mnist does both\)$"
    ):
        vae2stage.load_stage1(config, train)
    (tmp_path / "vae" / "checkpoints").mkdir(parents=True)
    with pytest.raises(UserError, match=r"^no VAE checkpoint at step latest in .*; train stage 1 first$"):
        vae2stage.load_stage1(config, train)


def test_stage2_fitted_to_another_stage1_step_is_fitted_again(tmp_path):
    config = tiny_config()
    (tmp_path / "config.json").write_text(vae2stage.stage_config(config, str(tmp_path / "vae"), 4).to_json())
    same, later, placeholder = (vae2stage.stage_config(config, str(tmp_path / "vae"), step) for step in (4, 6, 0))
    for stage2_config in (same, later, placeholder):
        refit_if_stale(stage2_config, str(tmp_path), "stage1_step", "stage 1")
    assert not same.fresh and later.fresh and not placeholder.fresh


@pytest.mark.parametrize(
    "override, message",
    [
        ("stage2_learning_rate=0", "stage2_learning_rate must be a positive number"),
        ("stage2_num_steps=-1", "stage2_num_steps must be >= 0"),
        ("stage2_hidden_sizes=(4, 0)", "stage2_hidden_sizes must be one or more positive widths"),
        ("stage2_input=median", "unknown stage2_input 'median'"),
        ("latent_dim=0", "latent_dim must be a positive integer"),
        ("dataset=ring8", "vae2stage models images"),
    ],
)
def test_bad_fields_are_refused_in_one_line_before_any_work(tmp_path, capsys, override, message):
    assert vae2stage_mnist.main([f"--workdir={tmp_path}", f"--config.{override}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "vae" / "checkpoints").exists()


def test_the_two_stage_vae_is_found_by_the_registry_the_comparison_and_the_study(capsys):
    from experiments import compare, study

    assert "vae2stage" in models.names()
    assert compare.IMAGE_CONTENDERS["vae2stage"].stages == vae2stage_mnist.STAGES
    assert "stage2_learning_rate" in vae2stage.search_space(study.CONTENDERS["vae2stage"].config())
    assert vae2stage_mnist.main(["--help"]) == 0
    text = capsys.readouterr().out
    for field in ["latent_dim", "stage2_num_steps", "stage2_hidden_sizes", "stage2_input"]:
        line = next(line for line in text.splitlines() if line.startswith(f"  {field} "))
        assert len(line.split()) > 2, line  # a help text after the default
