"""The engine: determinism, exact resume, divergence, checkpoint compatibility, chunking."""

import json
import os
import re
import types

import jax
import numpy as np
import pytest

from genjax import experiment
from genjax.checkpoint import Checkpoints
from genjax.errors import UserError
from genjax.train import TrainingDiverged
from genjax.train.loop import chunk_schedule
from tests.conftest import tiny_vae_config, train_steps


def _fit(workdir, **overrides):
    return experiment.run(tiny_vae_config(**overrides), str(workdir), "vae_mnist")


def _params(result):
    return jax.device_get(result.state["params"])


def test_same_seed_same_params_other_seed_different(tmp_path):
    first = _params(_fit(tmp_path / "a", num_steps=10))
    again = _params(_fit(tmp_path / "b", num_steps=10))
    other = _params(_fit(tmp_path / "c", num_steps=10, seed=1))
    jax.tree.map(np.testing.assert_array_equal, first, again)
    assert not np.array_equal(first["encoder"]["Dense_0"]["kernel"], other["encoder"]["Dense_0"]["kernel"])


def test_resume_equals_uninterrupted_run_bitwise(tmp_path):
    """20 steps, stop, resume to 40 == 40 straight: same keys (fold_in(step)) and batches (seed, epoch)."""
    straight = _fit(tmp_path / "straight", num_steps=40)
    _fit(tmp_path / "resumed", num_steps=20)
    resumed = _fit(tmp_path / "resumed", num_steps=40)
    jax.tree.map(np.testing.assert_array_equal, _params(straight), _params(resumed))
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(straight.state["opt_state"]), jax.device_get(resumed.state["opt_state"]))
    records = [json.loads(line) for line in open(tmp_path / "resumed" / "metrics.jsonl")]
    assert [r["step"] for r in records if r["split"] == "train"] == list(range(5, 41, 5))


def test_resume_drops_log_lines_after_the_checkpoint(tmp_path):
    workdir = tmp_path / "run"
    _fit(workdir, num_steps=20)
    with open(workdir / "metrics.jsonl", "a") as f:  # as if the run had logged step 25 and then died
        f.write(json.dumps({"step": 25, "split": "train", "loss": 1.0}) + "\n")
    _fit(workdir, num_steps=30)
    steps = [json.loads(line)["step"] for line in open(workdir / "metrics.jsonl") if '"train"' in line]
    assert steps == [5, 10, 15, 20, 25, 30]


def test_checkpoints_every_n_steps_keep_the_last_k(tmp_path):
    _fit(tmp_path, num_steps=40, checkpoint_every=10, keep_checkpoints=3)
    assert Checkpoints(str(tmp_path / "checkpoints")).manager.all_steps() == [20, 30, 40]


def test_fresh_flag_starts_over(tmp_path):
    _fit(tmp_path, num_steps=20)
    result = _fit(tmp_path, num_steps=10, fresh=True)
    assert result.summary["steps"] == 10
    assert Checkpoints(str(tmp_path / "checkpoints")).manager.all_steps() == [10]


def test_a_checkpoint_of_another_shape_is_refused_not_replaced(tmp_path):
    _fit(tmp_path, num_steps=10)
    with pytest.raises(
        UserError, match=r"does not fit this model: 'params/decoder/Dense_0/bias' is float32\[32\] there and float32\[16\] here"
    ):
        _fit(tmp_path, num_steps=20, hidden_sizes=(16,))
    assert Checkpoints(str(tmp_path / "checkpoints")).latest_step() == 10


def test_a_fit_of_no_steps_keeps_its_initial_state_to_evaluate_and_continue(tmp_path):
    from genjax.evaluate import load_run

    initial = _fit(tmp_path, num_steps=0)
    assert Checkpoints(str(tmp_path / "checkpoints")).manager.all_steps() == [0]
    jax.tree.map(np.testing.assert_array_equal, _params(initial), jax.device_get(load_run(str(tmp_path))[2]["params"]))
    assert _fit(tmp_path, num_steps=10).summary["steps"] == 10
    jax.tree.map(
        np.testing.assert_array_equal, _params(_fit(tmp_path / "whole", num_steps=10)), jax.device_get(load_run(str(tmp_path))[2]["params"])
    )


def test_a_rerun_on_a_finished_run_does_nothing_more_and_keeps_its_record(tmp_path):
    """No evaluation again (metrics.jsonl unchanged) and summary.json as the run wrote it (a rerun once recorded
    0 training seconds and no train metrics); the result carries that summary and the trained state."""
    first = _fit(tmp_path, num_steps=20)
    files = {name: (tmp_path / name).read_bytes() for name in ("summary.json", "metrics.jsonl")}
    again = _fit(tmp_path, num_steps=20)
    assert {name: (tmp_path / name).read_bytes() for name in files} == files
    assert again.summary == json.loads(files["summary.json"]) and again.summary["train"]
    jax.tree.map(np.testing.assert_array_equal, _params(first), _params(again))


def test_a_refused_command_leaves_the_run_as_it_was(tmp_path):
    """config.json is the run's only once the run passes its checks: a refused command (a checkpoint that does not
    fit, a batch larger than the data, also with fresh=True) changes nothing, and the first command resumes."""
    _fit(tmp_path, num_steps=10)
    saved = (tmp_path / "config.json").read_text()
    with pytest.raises(UserError, match="does not fit this model"):
        _fit(tmp_path, num_steps=20, hidden_sizes=(16,))
    for fresh in (False, True):
        with pytest.raises(UserError, match="batch_size 99999 is larger than the"):
            _fit(tmp_path, num_steps=20, batch_size=99999, fresh=fresh)
    assert (tmp_path / "config.json").read_text() == saved
    assert Checkpoints(str(tmp_path / "checkpoints")).latest_step() == 10
    assert _fit(tmp_path, num_steps=20).summary["steps"] == 20 and train_steps(tmp_path) == [5, 10, 15, 20]  # one run, resumed
    assert json.loads((tmp_path / "config.json").read_text())["num_steps"] == 20


def test_a_checkpoint_of_another_experiment_is_refused(tmp_path):
    _fit(tmp_path, num_steps=10)
    with pytest.raises(UserError, match="written by experiment 'vae_mnist', not 'other'"):
        experiment.run(tiny_vae_config(num_steps=20), str(tmp_path), "other")


def test_divergence_stops_with_step_and_metric(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"'(loss|reconstruction|kl)' became (nan|inf) at step \d+; no checkpoint was written yet"):
        _fit(tmp_path, num_steps=100, learning_rate=1e9)
    assert not os.path.exists(tmp_path / "summary.json")


def test_divergence_keeps_the_last_good_checkpoint(tmp_path):
    _fit(tmp_path, num_steps=10)
    with pytest.raises(TrainingDiverged, match=r"at step (\d+); the last good checkpoint \(step (\d+)\) is kept") as error:
        _fit(tmp_path, num_steps=40, learning_rate=1e9, checkpoint_every=1)
    bad_step, kept_step = map(int, re.search(r"at step (\d+).*\(step (\d+)\)", str(error.value)).groups())
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"))
    assert 10 <= kept_step < bad_step and checkpoints.latest_step() == kept_step
    restored = experiment.run(tiny_vae_config(num_steps=kept_step), str(tmp_path), "vae_mnist")  # resumes, trains nothing
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(jax.device_get(restored.state)))


def test_run_directory_contents(tmp_path):
    result = _fit(tmp_path, num_steps=20, latent_dim=2)
    for name in [
        "config.json",
        "metrics.jsonl",
        "summary.json",
        "samples.npz",
        "samples_10.png",
        "samples_20.png",
        "reconstructions_20.png",
        "curves.png",
        "latent_scatter.png",
        "latent_manifold.png",
    ]:
        assert (tmp_path / name).is_file(), name
    assert os.listdir(tmp_path / "tb") and os.listdir(tmp_path / "checkpoints")
    with np.load(tmp_path / "samples.npz") as f:
        assert f["samples"].shape == (16, 28, 28, 1)
    summary = json.load(open(tmp_path / "summary.json"))
    assert summary["steps"] == 20 and summary["test"] == result.summary["test"]
    assert summary["examples_per_s"] > 0 and summary["num_params"] > 0
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert all({"step", "split"} <= set(r) for r in records)
    assert [r["step"] for r in records if r["split"] == "test"] == [10, 20]


def test_without_test_metrics_a_run_draws_its_images_but_skips_the_test_pass(tmp_path):
    """config.test_metrics=False (the study's runs): the sample and reconstruction pictures at every eval_every
    steps and at the end as before; no test-set metrics in the log or the summary."""
    result = _fit(tmp_path, num_steps=15, test_metrics=False)
    for name in ["samples_10.png", "samples_15.png", "reconstructions_15.png", "summary.json"]:
        assert (tmp_path / name).is_file(), name
    assert result.summary["test"] == {} and json.load(open(tmp_path / "summary.json"))["test"] == {}
    assert not [line for line in open(tmp_path / "metrics.jsonl") if '"test"' in line]


@pytest.mark.parametrize(
    "start, end, every, expected",
    [
        (0, 10, (5,), [(0, 5), (5, 5)]),
        (0, 12, (5, 4), [(0, 4), (4, 1), (5, 3), (8, 2), (10, 2)]),
        (7, 7, (5,), []),
        (3, 9, (100,), [(3, 6)]),
    ],
)
def test_chunk_schedule(start, end, every, expected):
    assert list(chunk_schedule(start, end, every)) == expected


def test_a_time_budget_stops_training_and_covers_resumed_runs(tmp_path):
    """time_budget counts training seconds over every fit call on the workdir (kept in checkpoint metadata)."""
    budget = dict(num_steps=1_000_000, steps_per_call=5, eval_every=100_000, checkpoint_every=100_000)
    first = _fit(tmp_path, time_budget=0.3, **budget).summary
    assert 0 < first["steps"] < 1_000_000 and first["steps"] % 5 == 0
    assert first["total_train_seconds"] > 0 and first["test"]  # near 0.3: the faked-clock test in test_train_chunks
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"))
    assert checkpoints.latest_step() == first["steps"]
    meta = checkpoints.read_meta(first["steps"])
    assert meta["budget_spent"] == 0.3 and meta["step_seconds"] > 0
    checkpoints.close()
    again = _fit(tmp_path, time_budget=0.3, **budget).summary  # budget spent (even if it ended just below): no more training
    assert again == first  # and the finished run's record kept as it was
    longer = _fit(tmp_path, time_budget=0.6, **budget).summary
    assert longer["steps"] > first["steps"] and longer["total_train_seconds"] > first["total_train_seconds"]


@pytest.mark.parametrize("scan, budget, steps", [(True, 2.34, 20), (False, 2.34, 23), (True, 1.34, 10), (False, 1.34, 13)])
def test_a_time_budget_ends_a_step_by_step_run_at_the_nearest_step(tmp_path, monkeypatch, scan, budget, steps):
    """On a faked clock where each step takes 0.1 s, a 2.34 s budget in calls of 10 steps: a run that scans its
    chunks stops at 20 steps (2.0 s: the call nearest the budget, 30 would end 0.66 s past it); a run step by
    step, where every chunk length shares one compiled step, cuts its third call to 3 steps and stops at 23
    (2.3 s: the step nearest). A budget under two calls, 1.34 s: the fit waits for its first call's rate before
    the second, so it stops at 10 steps scanned and cuts the second call to 3 step by step (13); dispatching the
    second blind, both trained 20 (2.0 s, 49% past)."""
    from genjax.train import chunk_log, loop, policy

    clock = types.SimpleNamespace(now=0.0)
    faked = types.SimpleNamespace(perf_counter=lambda: clock.now)
    monkeypatch.setattr(chunk_log, "time", faked)
    monkeypatch.setattr(loop, "time", faked)
    record = chunk_log.ChunkLog._record

    def record_after_its_steps_ran(self, first_step, length, metrics, dispatched_at):
        clock.now += 0.1 * length  # the host waits for the chunk: its steps' device time passes
        return record(self, first_step, length, metrics, dispatched_at)

    monkeypatch.setattr(chunk_log.ChunkLog, "_record", record_after_its_steps_ran)
    monkeypatch.setattr(policy, "scan_chunks", lambda platform, convolutional: scan)
    calls = dict(num_steps=1_000_000, steps_per_call=10, eval_every=100_000, checkpoint_every=100_000)
    summary = _fit(tmp_path, time_budget=budget, **calls).summary
    assert summary["steps"] == steps
    assert summary["total_train_seconds"] == pytest.approx(0.1 * steps)


def test_a_run_with_traced_hyperparameters_trains_as_with_constants(tmp_path):
    """config.traced_hyperparameters (the study sets each family's continuous search fields): the same run, the
    fields now arguments of its programs; a field that is not a float is refused before any work."""
    constant = _params(_fit(tmp_path / "constant", num_steps=10, learning_rate=3e-3, beta=0.5))
    traced = _fit(tmp_path / "traced", num_steps=10, learning_rate=3e-3, beta=0.5, traced_hyperparameters="learning_rate,beta")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), constant, _params(traced))
    with pytest.raises(UserError, match="traced_hyperparameters names 'batch_size', which is not a float field"):
        _fit(tmp_path / "refused", num_steps=10, traced_hyperparameters="batch_size")
    with pytest.raises(UserError, match="names 'no_such_field'"):
        _fit(tmp_path / "refused", num_steps=10, traced_hyperparameters="no_such_field")


def _fit_points(workdir, budgets, **overrides):
    """A fit through budget points; returns (result, [(step, train_seconds, flops_per_step, params) per point])."""
    from genjax.train import BudgetPoints

    seen = []

    def measure(family, state, step, seconds, flops):
        seen.append((step, seconds, flops, jax.device_get(state["params"])))

    config = tiny_vae_config(**overrides)
    return experiment.fit_one(config, str(workdir), "vae_mnist", BudgetPoints(tuple(budgets), measure)), seen


def test_one_fit_through_budget_points_equals_a_fit_per_point(tmp_path):
    """BudgetPoints (the study's one fit per trial): measured at every point with the state a fit to that point
    ends with, checkpointed there, bitwise equal to one fit per point each resuming the last."""
    result, seen = _fit_points(tmp_path / "points", (10, 20, 30), num_steps=30, checkpoint_every=1000, eval_every=1000)
    assert [step for step, *_ in seen] == [10, 20, 30] and seen[0][2] > 0
    assert 0 < seen[0][1] < seen[1][1] < seen[2][1] == result.summary["total_train_seconds"]
    assert Checkpoints(str(tmp_path / "points" / "checkpoints")).manager.all_steps() == [10, 20, 30]
    for steps, (_, _, _, params) in zip((10, 20, 30), seen, strict=True):
        per_point = _fit(tmp_path / "per_point", num_steps=steps, checkpoint_every=1000, eval_every=1000)
        jax.tree.map(np.testing.assert_array_equal, params, _params(per_point))
    with pytest.raises(ValueError, match="must ascend to the fit's own end, 30"):
        _fit_points(tmp_path / "bad", (10, 40), num_steps=30)


def test_budget_points_in_seconds_stop_as_fits_with_those_budgets_do_and_resume_at_a_point(tmp_path):
    """Seconds: each point is a segment stopping by the time-budget rule, its checkpoint recording the budget spent;
    a fit interrupted while measuring a point measures it again on rerun without training."""
    budget = dict(num_steps=1_000_000, steps_per_call=5, eval_every=100_000, checkpoint_every=100_000, keep_checkpoints=5)
    from genjax.train import BudgetPoints

    def interrupt_at_second(family, state, step, seconds, flops):
        seen.append(step)
        if len(seen) == 2:
            raise KeyboardInterrupt  # as a kill while the second point is measured, after its checkpoint

    seen = []
    with pytest.raises(KeyboardInterrupt):
        experiment.fit_one(
            tiny_vae_config(time_budget=0.6, **budget), str(tmp_path), "vae_mnist", BudgetPoints((0.2, 0.4, 0.6), interrupt_at_second)
        )
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"))
    assert checkpoints.manager.all_steps() == seen and seen[0] < seen[1]
    assert [checkpoints.read_meta(step)["budget_spent"] for step in seen] == [0.2, 0.4]
    checkpoints.close()
    result, resumed = _fit_points(tmp_path, (0.4, 0.6), time_budget=0.6, **budget)
    assert resumed[0][0] == seen[1] < resumed[1][0] == result.summary["steps"]  # the second point again, untrained
