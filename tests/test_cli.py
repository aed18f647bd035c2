"""`python -m experiments.vae_mnist` end to end, and its refusals of bad input."""

import json
import os
import re

import pytest

from experiments import vae_mnist
from genjax import cli
from tests.conftest import run_module


def vae_mnist_cli(argv):
    return cli.main("vae_mnist", vae_mnist.get_config, argv)


TINY = [
    "--config.hidden_sizes=(32,)",
    "--config.latent_dim=2",
    "--config.batch_size=32",
    "--config.num_steps=20",
    "--config.steps_per_call=10",
    "--config.eval_every=10",
    "--config.checkpoint_every=10",
    "--config.num_samples=16",
]


def test_tiny_run_writes_the_whole_run_directory(tmp_path):
    result = run_module("experiments.vae_mnist", f"--workdir={tmp_path}", *TINY)
    assert result.returncode == 0, result.stderr
    assert "done: 20 steps" in result.stdout and "neg_elbo" in result.stdout
    for name in [
        "config.json",
        "metrics.jsonl",
        "summary.json",
        "samples.npz",
        "samples_20.png",
        "reconstructions_20.png",
        "curves.png",
        "latent_scatter.png",
        "latent_manifold.png",
    ]:
        assert (tmp_path / name).is_file(), name
    assert os.listdir(tmp_path / "tb") and sorted(os.listdir(tmp_path / "checkpoints"))[:2] == ["10", "20"]
    config = json.load(open(tmp_path / "config.json"))
    assert config["num_steps"] == 20 and config["hidden_sizes"] == [32] and config["model"] == "vae"
    assert "Traceback" not in result.stderr


def test_help_lists_every_config_field():
    result = run_module("experiments.vae_mnist", "--help")
    assert result.returncode == 0
    for field in [
        "seed",
        "dataset",
        "batch_size",
        "num_steps",
        "learning_rate",
        "latent_dim",
        "hidden_sizes",
        "architecture",
        "likelihood",
        "beta",
        "eval_every",
        "checkpoint_every",
    ]:
        assert f"\n  {field} " in result.stdout, field
    # every field's help starts in one column, the longest names included (traced_hyperparameters, 22 letters)
    rows = [line for line in result.stdout.split("config fields")[1].splitlines()[1:] if line.strip()]
    columns = [re.match(r"  (\S+) +(\S.*?)  +(\S.*)$", row) for row in rows]
    assert all(columns), rows
    assert len({match.start(2) for match in columns}) == 1 and len({match.start(3) for match in columns}) == 1
    assert any(row.split()[0] == "traced_hyperparameters" for row in rows)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config.dataset=imagenet"], "unknown dataset 'imagenet'"),
        (["--config.learning_rate=-0.1"], "learning_rate must be a positive number"),
        (["--config.learning_rate=nan"], "learning_rate must be a positive number, got nan"),
        (["--config.batch_size=0"], "batch_size must be a positive number"),
        (["--config.time_budget=-5"], "time_budget must be >= 0 seconds"),
        (["--config.latent_dim=-1"], "latent_dim must be a positive integer"),
        (["--config.num_steps=-5"], "num_steps must be >= 0"),
        (["--config.batch_size=ten"], "not a valid int"),
        (["--config.model=diffusion"], "unknown model 'diffusion'"),
        (["--config.likelihood=poisson"], "unknown likelihood 'poisson'"),
        (["--config.no_such_field=1"], "unknown config field 'no_such_field'"),
        (["--batch_size=3"], "unknown argument '--batch_size=3'"),
        (["--config.batch_size=5000", "--config.source=embedded"], "batch_size 5000 is larger than the 4500 training examples"),
        (["--config.source=tfds", "--config.data_dir=/nonexistent-tfds"], "genjax.data.prepare mnist"),
    ],
)
def test_bad_input_returns_2_with_one_error_line(args, message, tmp_path, capsys):
    """In-process for speed: cli.main returns the exit code instead of raising."""
    exit_code = vae_mnist_cli([f"--workdir={tmp_path / 'run'}", *args])
    stderr = capsys.readouterr().err
    assert exit_code == 2
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], stderr
    assert not (tmp_path / "run" / "summary.json").exists()


def test_bad_input_in_a_real_process_has_no_traceback(tmp_path):
    result = run_module("experiments.vae_mnist", f"--workdir={tmp_path}", "--config.dataset=imagenet")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: unknown dataset 'imagenet'")


def test_unwritable_workdir_is_refused(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    result = run_module("experiments.vae_mnist", f"--workdir={blocker / 'run'}", *TINY)
    assert result.returncode == 2 and "cannot write to workdir" in result.stderr and "Traceback" not in result.stderr


def test_mismatched_checkpoint_is_refused(tmp_path):
    first = run_module("experiments.vae_mnist", f"--workdir={tmp_path}", *TINY)
    assert first.returncode == 0, first.stderr
    result = run_module("experiments.vae_mnist", f"--workdir={tmp_path}", *TINY, "--config.hidden_sizes=(16,)", "--config.num_steps=30")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "does not fit this model" in result.stderr and "--config.fresh=True" in result.stderr
