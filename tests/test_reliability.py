"""Faults survived, bad inputs refused, nothing lost: one test per guarantee in the README."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import cli, data, experiment
from genjax.checkpoint import Checkpoints
from genjax.config import base_config
from genjax.errors import EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_IO, UserError
from genjax.train import Family, TrainingDiverged, fit
from genjax.train.rundir import WorkdirLock
from tests.conftest import REPO, run_module, tiny_vae_config

TINY = [
    "--config.hidden_sizes=(32,)",
    "--config.latent_dim=4",
    "--config.batch_size=32",
    "--config.steps_per_call=5",
    "--config.eval_every=100000",
    "--config.num_samples=16",
    "--config.source=embedded",
]
META = {"experiment": "vae_mnist", "model": "vae"}


def _cli(workdir, *args, **popen):
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.vae_mnist", f"--workdir={workdir}", *TINY, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def _wait_for_checkpoints(workdir, process, count, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        steps = [d for d in os.listdir(workdir / "checkpoints") if d.isdigit()] if (workdir / "checkpoints").exists() else []
        if len(steps) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {count} checkpoints: {process.communicate()[1][-2000:]}")


def _straight_state(tmp_path, num_steps, **overrides):
    config = tiny_vae_config(num_steps=num_steps, eval_every=100000, **overrides)
    return experiment.run(config, str(tmp_path / "straight"), "vae_mnist").state


def _assert_same(a, b):
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(a), jax.device_get(b))


# ---- faults ------------------------------------------------------------------------------------------


def test_kill_9_mid_run_resumes_from_the_last_complete_checkpoint_exactly(tmp_path):
    run = tmp_path / "run"
    process = _cli(run, "--config.num_steps=100000", "--config.checkpoint_every=5")
    _wait_for_checkpoints(run, process, count=2)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    steps = sorted(int(d) for d in os.listdir(run / "checkpoints") if d.isdigit())  # finished saves only
    total = steps[-1] + 10
    finish = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.vae_mnist",
            f"--workdir={run}",
            *TINY,
            f"--config.num_steps={total}",
            "--config.checkpoint_every=5",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert finish.returncode == 0, finish.stderr
    assert f"resuming from checkpoint step {steps[-1]}" in finish.stderr
    assert not glob.glob(str(run / "checkpoints" / "*tmp*")), "half-written saves are cleaned up"
    resumed = Checkpoints(str(run / "checkpoints")).restore(total, _straight_state(tmp_path, total, checkpoint_every=5), META)
    _assert_same(resumed, _straight_state(tmp_path / "again", total, checkpoint_every=5))


def test_a_save_killed_mid_write_is_cleaned_up_and_ignored(tmp_path):
    experiment.run(tiny_vae_config(num_steps=10, checkpoint_every=10), str(tmp_path), "vae_mnist")
    half_written = tmp_path / "checkpoints" / "20.orbax-checkpoint-tmp-1234567"
    shutil.copytree(tmp_path / "checkpoints" / "10", half_written)  # what kill -9 during a save leaves
    for path in glob.glob(str(half_written / "**" / "*"), recursive=True)[::2]:
        if os.path.isfile(path):
            os.truncate(path, 0)
    result = experiment.run(tiny_vae_config(num_steps=20, checkpoint_every=10), str(tmp_path), "vae_mnist")
    assert not half_written.exists()
    _assert_same(result.state, _straight_state(tmp_path, 20, checkpoint_every=10))


def test_a_corrupted_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    experiment.run(tiny_vae_config(num_steps=20, checkpoint_every=10), str(tmp_path), "vae_mnist")
    files = [p for p in glob.glob(str(tmp_path / "checkpoints" / "20" / "state" / "**" / "*"), recursive=True) if os.path.isfile(p)]
    largest = max(files, key=os.path.getsize)
    os.truncate(largest, os.path.getsize(largest) // 2)
    warnings = []
    logger = __import__("logging").getLogger("genjax")
    handler = __import__("logging").Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())
    logger.addHandler(handler)
    try:
        result = experiment.run(tiny_vae_config(num_steps=30, checkpoint_every=10), str(tmp_path), "vae_mnist")
    finally:
        logger.removeHandler(handler)
    assert any("checkpoint step 20 is unreadable" in w and "fell back" in w for w in warnings), warnings
    assert (tmp_path / "corrupt_checkpoints" / "20").is_dir()
    _assert_same(result.state, _straight_state(tmp_path, 30, checkpoint_every=10))


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


def test_a_second_run_on_the_same_workdir_is_refused(tmp_path):
    first = _cli(tmp_path, "--config.num_steps=100000", "--config.checkpoint_every=50")
    try:
        _wait_for_checkpoints(tmp_path, first, count=1)
        second = subprocess.run(
            [sys.executable, "-m", "experiments.vae_mnist", f"--workdir={tmp_path}", *TINY],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == EXIT_BAD_INPUT and "Traceback" not in second.stderr
        assert f"is in use by another genjax run (pid {first.pid})" in second.stderr
        assert first.poll() is None, "the first run must be unaffected"
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 143


def test_the_lock_is_released_by_a_finished_run(tmp_path):
    with WorkdirLock(str(tmp_path)), pytest.raises(UserError, match="in use by another genjax run"):
        WorkdirLock(str(tmp_path)).__enter__()
    with WorkdirLock(str(tmp_path)):
        pass


def test_a_file_size_limit_ends_with_exit_74_and_no_complete_looking_run(tmp_path):
    """RLIMIT_FSIZE makes every write past 100 kB fail (EFBIG), like a full disk: the first checkpoint fails.

    The limit is set inside the child (no preexec_fn: forking a multithreaded JAX process is unsafe).
    """
    args = [f"--workdir={tmp_path}", *TINY, "--config.hidden_sizes=(64,)", "--config.num_steps=20", "--config.checkpoint_every=10"]
    limited = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000)); "
        "from experiments import vae_mnist; sys.exit(vae_mnist.main(sys.argv[1:]))"
    )
    result = subprocess.run([sys.executable, "-c", limited, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == EXIT_IO, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: the run could not write its files (File too large)")
    assert not (tmp_path / "summary.json").exists()
    again = subprocess.run([sys.executable, "-m", "experiments.vae_mnist", *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tmp_path / "summary.json").exists()


def test_a_full_disk_at_a_later_checkpoint_keeps_the_earlier_one_and_resumes(tmp_path, monkeypatch, capsys):
    from experiments import vae_mnist

    original_save, calls = Checkpoints.save, []

    def save_until_disk_is_full(self, step, state, meta):
        calls.append(step)
        if len(calls) == 2:
            raise OSError(28, os.strerror(28), str(tmp_path / "checkpoints"))
        original_save(self, step, state, meta)

    monkeypatch.setattr(Checkpoints, "save", save_until_disk_is_full)
    argv = [f"--workdir={tmp_path}", *TINY, "--config.num_steps=30", "--config.checkpoint_every=10"]
    assert cli.main("vae_mnist", vae_mnist.get_config, argv) == EXIT_IO
    assert "No space left on device" in capsys.readouterr().err
    assert Checkpoints(str(tmp_path / "checkpoints")).manager.all_steps() == [10] and not (tmp_path / "summary.json").exists()
    monkeypatch.setattr(Checkpoints, "save", original_save)
    assert cli.main("vae_mnist", vae_mnist.get_config, argv) == 0
    resumed = Checkpoints(str(tmp_path / "checkpoints")).restore(30, _straight_state(tmp_path, 30, checkpoint_every=10), META)
    _assert_same(resumed, _straight_state(tmp_path / "again", 30, checkpoint_every=10))


def test_a_run_trained_further_is_not_complete_until_it_ends(tmp_path):
    experiment.run(tiny_vae_config(num_steps=10), str(tmp_path), "vae_mnist")
    assert (tmp_path / "summary.json").exists()
    with pytest.raises(TrainingDiverged):
        experiment.run(tiny_vae_config(num_steps=300, learning_rate=1e9), str(tmp_path), "vae_mnist")
    assert not (tmp_path / "summary.json").exists()


# ---- bad inputs --------------------------------------------------------------------------------------


def test_an_unknown_experiment_is_refused():
    result = run_module("experiments", "vae_cifar100")
    assert result.returncode == EXIT_BAD_INPUT and "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        == f"error: unknown experiment 'vae_cifar100'; choose one of: {', '.join(__import__('experiments.__main__').__main__.names())}"
    )


def test_experiments_run_by_name(tmp_path):
    result = run_module("experiments", "vae_mnist", f"--workdir={tmp_path}", *TINY, "--config.num_steps=5")
    assert result.returncode == 0, result.stderr and (tmp_path / "summary.json").exists()


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
