"""PacGAN (Lin et al. 2018): packing as the paper describes it, maxout units, the packed family against a
hand-packed discriminator, pack 1 as the plain GAN, bad packs refused, and the table command end to end."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import pacgan_table
from genjax.data import to_model_batch
from genjax.errors import EXIT_BAD_INPUT, UserError
from genjax.models import gan, gan_nets
from tests.test_gan import dataset, tiny_gan_config


def test_packing_concatenates_consecutive_examples_along_the_channel_axis():
    points = jnp.arange(12.0).reshape(6, 2)
    packed = gan_nets.pack_examples(points, 3)
    np.testing.assert_array_equal(packed, [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]])  # [x0 x1 x2], [x3 x4 x5]
    images = jax.random.normal(jax.random.PRNGKey(0), (4, 5, 3, 2))
    packed = gan_nets.pack_examples(images, 2)
    assert packed.shape == (2, 5, 3, 4)
    for pack in range(2):
        np.testing.assert_array_equal(packed[pack, ..., :2], images[2 * pack])
        np.testing.assert_array_equal(packed[pack, ..., 2:], images[2 * pack + 1])
    assert gan_nets.pack_examples(images, 1) is images  # pack 1: the unpacked GAN's inputs, untouched


def test_maxout_is_the_max_over_its_linear_pieces():
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    layer = gan_nets.Maxout(width=2, pieces=5)
    params = layer.init(jax.random.PRNGKey(2), x)["params"]["Dense_0"]
    pieces = (np.asarray(x) @ np.asarray(params["kernel"]) + np.asarray(params["bias"])).reshape(4, 2, 5)
    np.testing.assert_allclose(layer.apply({"params": {"Dense_0": params}}, x), pieces.max(axis=-1), rtol=1e-6)


def pacgan_family(pack: int):
    config = tiny_gan_config("pacgan_toy2d", pack=pack, g_hidden_sizes=(16, 16), d_hidden_sizes=(16, 16), batch_size=8)
    gan.validate(config)
    return config, gan.make_family(config, dataset("ring8"))


def test_the_packed_discriminator_scores_m_examples_at_once():
    """pack 2: D's first layer takes 2 x 2 inputs, and eval's terms are D's scores of hand-packed pairs,
    each pair's score given to both of its examples."""
    config, family = pacgan_family(2)
    batch = to_model_batch(dataset("ring8").take(np.arange(8)))
    state = family.init(jax.random.PRNGKey(0), batch)
    assert state["discriminator"]["params"]["Maxout_0"]["Dense_0"]["kernel"].shape == (4, 16 * config.maxout_pieces)
    assert "batch_stats" in state["generator"]  # the paper's BatchNorm generator
    _, discriminator = gan.build_networks(config, dataset("ring8"))
    pairs = np.asarray(batch["point"]).reshape(4, 4)  # [x0 x1], [x2 x3], ...
    scores = discriminator.apply(state["discriminator"], jnp.asarray(pairs))
    outputs = family.eval_step(state, batch, jax.random.PRNGKey(1))
    np.testing.assert_allclose(outputs["d_real"], np.repeat(np.asarray(jax.nn.softplus(-scores)), 2), rtol=1e-5)
    state, metrics = jax.jit(family.train_step)(state, batch, jax.random.PRNGKey(2))
    assert np.isfinite(float(metrics["d_loss"])) and np.isfinite(float(metrics["g_loss"]))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"pack": 3}, "batch_size 8 is not a multiple of pack 3"),
        ({"pack": 0}, "pack must be a positive integer"),
        ({"pack": 2, "conditional": True}, "pack > 1 has no class label per pack"),
        ({"d_activation": "maxout", "discriminator_norm": "spectral"}, "maxout units are not normalized"),
        ({"d_activation": "relu"}, "unknown d_activation"),
        ({"maxout_pieces": 1}, "maxout_pieces must be >= 2"),
    ],
)
def test_bad_packing_fields_are_refused(overrides, message):
    with pytest.raises(UserError, match=message):
        gan.validate(tiny_gan_config("pacgan_toy2d", **overrides))


def test_the_table_command_writes_the_papers_form_and_reuses_finished_runs(tmp_path, capsys):
    argv = ["--workdir", str(tmp_path), "--datasets", "ring8", "--packs", "1,2", "--runs", "2", "--steps", "20"]
    assert pacgan_table.main(argv) == 0
    table = json.loads((tmp_path / "pacgan_table.json").read_text())["table"]["ring8"]
    assert set(table) == {"1", "2"}
    for summary in table.values():
        assert 0 <= summary["modes_captured"][0] <= 8 and 0 <= summary["high_quality_percent"][0] <= 100
        assert summary["modes_captured"][1] >= 0  # the standard error over 2 runs
    text = (tmp_path / "pacgan_table.md").read_text()
    assert "| ring8 | PacGAN2 |" in text and "7.9 +- 0.1" in text  # the paper's PacGAN2 beside ours
    result = tmp_path / "pacgan_toy2d" / "ring8" / "pack2" / "seed1" / "result.json"
    before = result.stat().st_mtime
    assert pacgan_table.main(argv) == 0
    assert result.stat().st_mtime == before  # reused, not retrained
    capsys.readouterr()
    assert pacgan_table.main(["--workdir", str(tmp_path), "--datasets", "moons"]) == EXIT_BAD_INPUT
    assert "unknown mixture 'moons'" in capsys.readouterr().err


def test_a_mean_over_an_infinite_reverse_kl_has_no_standard_error(recwarn):
    """A run with no high-quality sample has reverse KL inf (genjax.metrics.modes): the mean is inf, its error undefined."""
    runs = [{"modes_captured": 0, "high_quality_percent": 0.0, "reverse_kl": float("inf")}]
    runs.append({"modes_captured": 2, "high_quality_percent": 10.0, "reverse_kl": 1.5})
    summary = pacgan_table.summarize(runs)
    assert summary["reverse_kl"] == (float("inf"), None) and summary["modes_captured"] == (1.0, 1.0)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert "| inf |" in pacgan_table.markdown({"ring8": {2: summary}}, 2, 10)


def test_the_table_measures_another_experiment_with_overrides_in_a_directory_of_its_own(tmp_path, capsys):
    argv = ["--workdir", str(tmp_path), "--experiment", "gan_toy2d", "--datasets", "ring8", "--packs", "2", "--runs", "1"]
    assert pacgan_table.main([*argv, "--steps", "20", "--config.ema_decay=0.9"]) == 0
    run = tmp_path / "gan_toy2d,ema_decay=0.9" / "ring8" / "pack2" / "seed0"
    config = json.loads((run / "config.json").read_text())
    assert (config["ema_decay"], config["pack"], config["batch_size"], config["g_hidden_sizes"]) == (0.9, 2, 512, [128, 128])
    assert json.loads((tmp_path / "pacgan_table.json").read_text())["configuration"] == "gan_toy2d,ema_decay=0.9"
    text = (tmp_path / "pacgan_table.md").read_text()
    assert "PacGAN table (gan_toy2d,ema_decay=0.9): one run (no standard error)" in text
    row = text.split("| ring8 | PacGAN2 | ")[1].split(" | ")[:3]
    assert all("+-" not in cell for cell in row), row  # ours: a mean, no made-up error of 0
    summary = json.loads((tmp_path / "pacgan_table.json").read_text())["table"]["ring8"]["2"]
    assert all(summary[name][1] is None for name in pacgan_table.METRICS)  # null: one run has no standard error
    capsys.readouterr()
    assert pacgan_table.main([*argv, "--config.emma_decay=0.9"]) == EXIT_BAD_INPUT
    assert "unknown config field 'emma_decay'" in capsys.readouterr().err
    assert not (tmp_path / "gan_toy2d,emma_decay=0.9").exists()  # refused before any run


@pytest.mark.parametrize(
    "override, hint",
    [
        ("pack=3", "give the pack sizes with --packs"),
        ("seed=4", "the runs are seeds 0 .. --runs - 1"),
        ("num_steps=5", "give the steps with --steps"),
    ],
)
def test_the_table_refuses_overrides_of_the_fields_it_sets(tmp_path, capsys, override, hint):
    argv = ["--workdir", str(tmp_path), "--datasets", "ring8", "--packs", "1", "--runs", "1", "--steps", "5"]
    assert pacgan_table.main([*argv, f"--config.{override}"]) == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert f"--config.{override.split('=')[0]} is set by the table itself: {hint}" in error
    assert not any(tmp_path.iterdir())  # refused before any run


def test_table_shards_train_disjoint_runs_and_the_unsharded_command_writes_the_table_from_them(tmp_path, capsys):
    argv = ["--workdir", str(tmp_path), "--datasets", "ring8", "--packs", "1,2", "--runs", "2", "--steps", "10"]
    runs = tmp_path / "pacgan_toy2d" / "ring8"
    assert pacgan_table.main([*argv, "--shard", "0/3"]) == 0  # jobs 0 and 3 of (pack1 seed0, pack1 seed1, pack2 seed0, pack2 seed1)
    assert sorted(p.parent.relative_to(runs).as_posix() for p in runs.glob("*/*/result.json")) == ["pack1/seed0", "pack2/seed1"]
    assert not (tmp_path / "pacgan_table.json").exists()  # a shard writes no table
    assert "shard 0/3: 2 of 4 runs done" in capsys.readouterr().out
    assert pacgan_table.main([*argv, "--shard", "1/3"]) == 0 and pacgan_table.main([*argv, "--shard", "2/3"]) == 0
    assert len(list(runs.glob("*/*/result.json"))) == 4
    mtimes = {p: p.stat().st_mtime for p in runs.glob("*/*/result.json")}
    assert pacgan_table.main(argv) == 0
    assert {p: p.stat().st_mtime for p in runs.glob("*/*/result.json")} == mtimes  # the table reuses every shard's run
    assert set(json.loads((tmp_path / "pacgan_table.json").read_text())["table"]["ring8"]) == {"1", "2"}
    capsys.readouterr()
    assert pacgan_table.main([*argv, "--shard", "4/4"]) == EXIT_BAD_INPUT
    assert "need 0 <= i < n <= 4 (the table's runs)" in capsys.readouterr().err
