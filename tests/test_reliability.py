"""Bad inputs refused before any work, and divergence stopped or skipped: one test per guarantee in the README."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import cli, data
from genjax.config import base_config
from genjax.errors import EXIT_BAD_INPUT, EXIT_DIVERGED
from genjax.train import Family, TrainingDiverged, fit
from tests.conftest import run_module, tiny_vae_config

TINY = [
    "--config.hidden_sizes=(32,)",
    "--config.latent_dim=4",
    "--config.batch_size=32",
    "--config.steps_per_call=5",
    "--config.eval_every=100000",
    "--config.num_samples=16",
    "--config.source=embedded",
]


class _PointRegression:
    """A minimal family on 2-D points: fit w so that w . x ~ 1. Any NaN in x poisons the step that sees it."""

    @staticmethod
    def family(learning_rate=0.01):
        tx = optax.sgd(learning_rate)

        def init(key, batch):
            params = {"w": jax.random.normal(key, (2,))}
            return {"params": params, "opt_state": tx.init(params)}

        def loss(params, batch):
            return jnp.mean((batch["point"] @ params["w"] - 1.0) ** 2)

        def train_step(state, batch, key):
            value, grads = jax.value_and_grad(loss)(state["params"], batch)
            updates, opt_state = tx.update(grads, state["opt_state"])
            return {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state}, {"loss": value}

        def eval_step(state, batch, key):
            return {"loss": (batch["point"] @ state["params"]["w"] - 1.0) ** 2}

        def sample(state, key, n):
            return jax.random.normal(key, (n, 2))

        return Family("point_regression", init, train_step, eval_step, sample)


def _poisoned_points(poisoned_index=7):
    points = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
    points[poisoned_index] = np.nan
    train = data.Dataset("points", "train", "toy", {"point": points, "label": np.zeros(200, np.int32)}, num_classes=1)
    test = data.Dataset("points", "test", "toy", {"point": points[100:110] * 0 + 1, "label": np.zeros(10, np.int32)}, num_classes=1)
    return train, test


def _point_config(**overrides):
    config = base_config()
    config.update(
        dict(
            model="point_regression",
            dataset="ring8",
            batch_size=20,
            num_steps=50,
            steps_per_call=5,
            eval_every=50,
            checkpoint_every=50,
            num_samples=8,
        )
    )
    config.update(overrides)
    return config


def test_a_poisoned_batch_stops_the_run_naming_the_step_and_metric(tmp_path):
    train, test = _poisoned_points()
    indices = data.batch_indices(0, 200, 20, 0, 50)
    first_bad_step = int(np.flatnonzero((indices == 7).any(axis=1))[0]) + 1
    with pytest.raises(TrainingDiverged, match=rf"'loss' became nan at step {first_bad_step};"):
        fit(_PointRegression.family(), _point_config(), train, test, str(tmp_path), "points")


def test_skip_mode_discards_exactly_the_poisoned_steps_and_counts_them(tmp_path):
    train, test = _poisoned_points()
    indices = data.batch_indices(0, 200, 20, 0, 50)
    poisoned_steps = int((indices == 7).any(axis=1).sum())
    result = fit(_PointRegression.family(), _point_config(skip_nonfinite=True), train, test, str(tmp_path), "points")
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert sum(r.get("skipped_steps", 0) for r in records) == poisoned_steps > 0
    assert all(np.isfinite(r["loss"]) for r in records if r["split"] == "train" and isinstance(r["loss"], float))
    assert np.isfinite(jax.device_get(result.state["params"]["w"])).all()


def test_a_huge_learning_rate_stops_the_cli_with_exit_code_3(tmp_path, capsys):
    from experiments import vae_mnist

    code = cli.main(
        "vae_mnist", vae_mnist.get_config, [f"--workdir={tmp_path}", *TINY, "--config.num_steps=200", "--config.learning_rate=1e9"]
    )
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert code == EXIT_DIVERGED and len(errors) == 1 and "training diverged" in errors[0] and "at step" in errors[0]


def test_an_unknown_experiment_is_refused():
    from experiments.__main__ import DRIVERS, names

    result = run_module("experiments", "vae_cifar100")
    assert result.returncode == EXIT_BAD_INPUT and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: unknown experiment 'vae_cifar100'; choose one of: {', '.join(names() + list(DRIVERS))}"


def test_experiments_run_by_name(tmp_path, capsys):
    from experiments.__main__ import main

    result = run_module("experiments", "vae_mnist", f"--workdir={tmp_path}", *TINY, "--config.num_steps=5")
    assert result.returncode == 0, result.stderr and (tmp_path / "summary.json").exists()
    assert main(["study", "--settings", "0"]) == EXIT_BAD_INPUT  # the drivers too (the README's `python -m experiments NAME`)
    assert "the number of settings K must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"image": np.zeros((4, 28, 28, 1), np.float32), "label": np.zeros(4, np.int32)}, "'image' must be uint8"),
        ({"image": np.zeros((4, 28, 28), np.uint8), "label": np.zeros(4, np.int32)}, r"'image' must be uint8 \[N, H, W, C\]"),
        ({"image": np.zeros((4, 28, 28, 1), np.uint8), "label": np.zeros(3, np.int32)}, "different lengths"),
        ({"image": np.zeros((4, 28, 28, 1), np.uint8), "label": np.zeros(4, np.float32)}, "'label' must be integer"),
        ({"pixels": np.zeros((4, 2), np.float32), "label": np.zeros(4, np.int32)}, "one of 'image' or 'point'"),
    ],
)
def test_datasets_of_the_wrong_shape_or_dtype_are_refused(arrays, message):
    with pytest.raises(ValueError, match=message):
        data.Dataset("mine", "train", "toy", arrays, num_classes=1)


def test_batches_of_the_wrong_shape_or_dtype_are_refused_by_the_family(mnist):
    from genjax.models import vae

    family = vae.make_family(tiny_vae_config(), mnist[0])
    state = jax.jit(family.init)(jax.random.PRNGKey(0), data.to_model_batch(mnist[0].take(np.arange(4))))
    key = jax.random.PRNGKey(1)
    with pytest.raises(
        ValueError,
        match=r"vae.train_step: batch\['image'\] holds examples of shape \[32, 32, 3\], but the model was built for \[28, 28, 1\]",
    ):
        family.train_step(state, {"image": jnp.zeros((4, 32, 32, 3)), "label": jnp.zeros(4, jnp.int32)}, key)
    with pytest.raises(ValueError, match=r"vae.eval_step: batch\['image'\] is uint8"):
        family.eval_step(state, {"image": jnp.zeros((4, 28, 28, 1), jnp.uint8), "label": jnp.zeros(4, jnp.int32)}, key)
    with pytest.raises(ValueError, match="the batch has no 'image'"):
        family.reconstruct(state, {"point": jnp.zeros((4, 2))}, key)


def test_train_and_test_of_different_shapes_are_refused(tmp_path, mnist):
    from genjax.models import vae

    ring = data.load("ring8", "test")
    with pytest.raises(ValueError, match="train and test examples differ"):
        fit(vae.make_family(tiny_vae_config(), mnist[0]), tiny_vae_config(), mnist[0], ring, str(tmp_path), "vae_mnist")


@pytest.mark.parametrize("name", [n for n in __import__("experiments.__main__").__main__.names() if n != "compare"])
@pytest.mark.parametrize(
    "override, message",
    [
        ("--config.batch_size=0", "batch_size must be a positive number"),
        ("--config.num_steps=-1", "num_steps must be >= 0"),
        ("--config.dataset=imagenet", "unknown dataset 'imagenet'"),
        ("--config.no_such_field=1", "no_such_field"),
    ],
)
def test_every_experiment_refuses_bad_config_values_before_any_work(tmp_path, capsys, name, override, message):
    from experiments.__main__ import main as run_experiment

    workdir = tmp_path / "run"
    assert run_experiment([name, f"--workdir={workdir}", override]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (workdir / "checkpoints").exists()
