"""SIGTERM/SIGINT: checkpoint at the end of the current chunk, exit 128+signal, resume exactly."""

import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from genjax.checkpoint import Checkpoints
from tests.conftest import REPO, tiny_vae_config

ARGS = [
    "--config.hidden_sizes=(32,)",
    "--config.latent_dim=4",
    "--config.batch_size=32",
    "--config.steps_per_call=5",
    "--config.eval_every=100000",
    "--config.checkpoint_every=100000",
    "--config.num_samples=16",
    "--config.source=embedded",
]


def _start(workdir, num_steps):
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.vae_mnist", f"--workdir={workdir}", f"--config.num_steps={num_steps}", *ARGS],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_training(workdir, process, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if (workdir / "metrics.jsonl").exists() and (workdir / "metrics.jsonl").read_text().count("\n") >= 2:
            return
        time.sleep(0.1)
    raise AssertionError(f"training did not start: {process.communicate()[1][-2000:]}")


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_checkpoints_and_exits_cleanly(tmp_path, signum, exit_code):
    process = _start(tmp_path, num_steps=1_000_000)
    _wait_for_training(tmp_path, process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == exit_code, stderr
    assert "Traceback" not in stderr
    assert f"stopped by {signal.Signals(signum).name} at step" in stderr and "run the same command to resume" in stderr
    step = Checkpoints(str(tmp_path / "checkpoints")).latest_step()
    assert step is not None and step % 5 == 0 and 10 <= step < 1_000_000
    assert not (tmp_path / "summary.json").exists()


def test_resume_after_sigterm_equals_an_uninterrupted_run(tmp_path):
    from genjax import experiment

    interrupted = tmp_path / "interrupted"
    total = 4000  # long enough that the signal lands mid-run (the tiny model does a few thousand steps/s)
    process = _start(interrupted, num_steps=total)
    _wait_for_training(interrupted, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    stopped_at = Checkpoints(str(interrupted / "checkpoints")).latest_step()
    assert process.returncode == 143 and stopped_at < total, stderr
    finish = subprocess.run(
        [sys.executable, "-m", "experiments.vae_mnist", f"--workdir={interrupted}", f"--config.num_steps={total}", *ARGS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finish.returncode == 0, finish.stderr
    config = tiny_vae_config(num_steps=total, eval_every=100000, checkpoint_every=100000)
    straight = experiment.run(config, str(tmp_path / "straight"), "vae_mnist")
    resumed = Checkpoints(str(interrupted / "checkpoints")).restore(total, straight.state, {"experiment": "vae_mnist", "model": "vae"})
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(straight.state), jax.device_get(resumed))
