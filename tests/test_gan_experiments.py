"""Every GAN and CVAE experiment end to end with tiny networks and a few steps: the whole run directory."""

import json

import numpy as np
import pytest

from genjax import experiment
from tests.test_cvae import tiny_cvae_config
from tests.test_gan import tiny_gan_config

TINY_CONV = dict(conv_channels=(2, 4), batch_size=4, num_steps=2, steps_per_call=2, eval_every=2, checkpoint_every=2)
RUNS = {  # experiment -> (overrides, shape of samples.npz, test metrics)
    "gan_mnist": ({}, (25, 28, 28, 1), {"d_real", "d_fake", "d_loss", "g_loss"}),
    "cgan_mnist": ({}, (20, 28, 28, 1), {"d_real", "d_fake", "d_loss", "g_loss"}),
    "dcgan_mnist": (TINY_CONV, (25, 28, 28, 1), {"d_real", "d_fake", "d_loss", "g_loss"}),
    "wgan_gp_mnist": (TINY_CONV, (25, 28, 28, 1), {"d_real", "d_fake", "d_loss", "g_loss"}),
    "lsgan_mnist": (TINY_CONV, (25, 28, 28, 1), {"d_real", "d_fake", "d_loss", "g_loss"}),
    "sngan_mnist": (TINY_CONV, (25, 28, 28, 1), {"d_real", "d_fake", "d_loss", "g_loss"}),
    "gan_toy2d": ({}, (25, 2), {"d_real", "d_fake", "d_loss", "g_loss", "mode_distance", "high_quality", "modes_populated"}),
    "pacgan_toy2d": (
        {"pack": 2, "g_hidden_sizes": (16, 16), "d_hidden_sizes": (16, 16)},
        (25, 2),
        {"d_real", "d_fake", "d_loss", "g_loss", "mode_distance", "high_quality", "modes_populated"},
    ),
    "cvae_mnist": ({}, (20, 28, 28, 1), {"neg_elbo", "reconstruction", "kl", "recon_mse"}),
}


@pytest.mark.parametrize("name", RUNS)
def test_experiment_writes_its_run_directory(name, tmp_path):
    overrides, samples_shape, test_metrics = RUNS[name]
    config = tiny_cvae_config() if name == "cvae_mnist" else tiny_gan_config(name, **overrides)
    result = experiment.run(config, str(tmp_path), name)
    steps = config.num_steps
    images = [f"samples_{steps}.png"] + ([f"reconstructions_{steps}.png"] if name == "cvae_mnist" else [])
    for file in ["config.json", "metrics.jsonl", "summary.json", "samples.npz", "curves.png", *images]:
        assert (tmp_path / file).is_file(), file
    assert (tmp_path / "checkpoints" / str(steps)).is_dir()
    with np.load(tmp_path / "samples.npz") as f:
        assert f["samples"].shape == samples_shape
        assert np.isfinite(f["samples"]).all()
    summary = json.load(open(tmp_path / "summary.json"))
    assert summary["steps"] == steps and set(summary["test"]) == test_metrics
    assert summary["num_params"] == result.summary["num_params"] > 0
    if name == "dcgan_mnist":  # BatchNorm running averages left their initial (0, 1) in training
        for network in ("generator", "discriminator"):
            means = [np.asarray(layer["mean"]) for layer in result.state[network]["batch_stats"].values()]
            assert all(np.abs(mean).max() > 0 for mean in means), network
