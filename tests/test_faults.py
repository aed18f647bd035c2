"""Faults survived and nothing lost: kill -9, damaged checkpoints, a held workdir, a full disk."""

import glob
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from genjax import cli, experiment
from genjax.checkpoint import Checkpoints
from genjax.errors import EXIT_BAD_INPUT, EXIT_IO, UserError
from genjax.train import TrainingDiverged
from genjax.train.rundir import WorkdirLock
from tests.conftest import REPO, tiny_vae_config
from tests.test_reliability import TINY

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
