"""The study's two-stage trials: the VQ-VAE trains through the budget points in one fit and its prior is fitted at
each point to the VQ-VAE's checkpoint there; each point equals the two stages fitted straight to it, and a trial
stopped after a point resumes to the same numbers. Each point's samples picture is drawn from the samples its
metrics were computed on."""

import dataclasses
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from experiments import study as study_cli
from genjax import data, experiment, viz
from genjax.evaluate import evaluate_state
from genjax.metrics import sample_quality
from genjax.metrics.classifier import images_of, load_classifier
from genjax.study.trials import PICTURE_SAMPLES, Trial, budget_adjust, evaluate_trial, run_trial, trial_config
from tests.test_vqvae import TINY

PROTOCOL = dataclasses.replace(
    study_cli.DEFAULT,
    families=("vqvae",),
    budgets=(4.0, 8.0),
    unit="steps",
    data_sizes=(200,),
    reseeds=0,
    num_samples=100,
    classifier_steps=100,
)
METRICS = ("kid", "frechet_distance", "recall", "recon_mse")


def _tiny_vqvae():
    contender = study_cli.CONTENDERS["vqvae"]
    get_config = contender.get_config

    def tiny():
        config = get_config()
        config.update({k: v for k, v in TINY.items() if k not in ("batch_size", "num_steps", "source")})
        return config

    return dataclasses.replace(contender, get_config=tiny)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    train, test = data.load("mnist", "train"), data.load("mnist", "test")
    classifier = load_classifier(train, test, PROTOCOL.classifier_steps)
    contender = _tiny_vqvae()
    trial = Trial("vqvae", 200, 0, {}, PROTOCOL.search_seed)
    root = tmp_path_factory.mktemp("stages")
    record = run_trial(PROTOCOL, contender, trial, str(root / "through"), classifier, test)
    return contender, trial, classifier, test, record, root


@pytest.fixture(scope="module")
def straight(setup):
    """{budget: (the stages' fit results, their directory)}: both stages fitted straight to each budget point."""
    contender, trial, _, _, record, root = setup
    fitted = {}
    for point in record["points"]:
        config = trial_config(PROTOCOL, contender, trial)
        adjust = budget_adjust(PROTOCOL, point["budget"], contender.stages)
        directory = str(root / f"straight{point['budget']:g}")
        fitted[point["budget"]] = experiment.run_stages(config, directory, contender.experiment, contender.stages, adjust), directory
    return fitted


def _close(got: dict, want: dict) -> None:
    for name in METRICS:
        assert got[name] == pytest.approx(want[name], rel=1e-4, abs=1e-6), name


def test_each_point_equals_both_stages_fitted_straight_to_it(setup, straight):
    contender, trial, classifier, test, record, root = setup
    assert record["diverged"] is None and [p["steps"] for p in record["points"]] == [4, 8]
    for point in record["points"]:
        config = trial_config(PROTOCOL, contender, trial)
        results, directory = straight[point["budget"]]
        prior = results[-1]
        assert [r.summary["steps"] for r in results] == [point["steps"], point["steps"] // 2]  # the prior: half the steps
        train, _ = experiment.load_data(config)
        measured = evaluate_trial(
            PROTOCOL, trial, prior.family, prior.state, prior.config, train, test, classifier, directory, point["steps"]
        )
        _close(point["metrics"], measured)
        flops = sum(r.summary["flops_per_step"] * r.summary["steps"] for r in results)
        assert point["flops"] == pytest.approx(flops, rel=1e-6)


def test_each_point_leaves_the_picture_of_its_evaluation_samples_and_the_runs_none(setup, tmp_path):
    contender, trial, classifier, test, record, root = setup
    directory = trial.directory(str(root / "through"))
    pictures = sorted(p.name for p in Path(directory).rglob("*.png"))
    # in the trial's directory, no reconstructions and no first stage's grids; the prior's run there starts afresh at each
    # point, clearing the last point's picture (the report shows the last)
    assert pictures == ["samples_8.png"]
    assert not list(Path(directory).rglob("samples.npz"))
    with Image.open(Path(directory) / "samples_8.png") as picture:
        assert picture.size == _grid_size(PICTURE_SAMPLES, tmp_path / "grid.png")


def _grid_size(n: int, path: Path) -> tuple:
    viz.save_image_grid(str(path), np.zeros((n, 28, 28, 1), np.float32))
    with Image.open(path) as grid:
        return grid.size


def test_the_samples_handed_on_are_those_the_metrics_were_computed_on(setup, straight):
    contender, trial, classifier, test, record, root = setup
    result = straight[4.0][0][-1]  # the prior fitted to the VQ-VAE at the first point
    train, _ = experiment.load_data(trial_config(PROTOCOL, contender, trial))
    handed = []
    metrics = evaluate_state(
        result.family,
        result.state,
        result.config,
        train,
        test,
        jax.random.PRNGKey(0),
        100,
        0,
        classifier,
        on_samples=handed.append,
    )
    (samples,) = handed
    assert samples.shape == (100, 28, 28, 1)
    again = sample_quality(classifier, images_of(test), samples, test.num_classes)
    assert metrics["kid"] == again["kid"] and metrics["frechet_distance"] == again["frechet_distance"]


def test_a_trial_stopped_after_a_point_resumes_to_the_same_numbers(setup, tmp_path):
    contender, trial, classifier, test, record, _ = setup
    first = run_trial(PROTOCOL, contender, trial, str(tmp_path), classifier, test, num_points=1)
    assert len(first["points"]) == 1
    resumed = run_trial(PROTOCOL, contender, trial, str(tmp_path), classifier, test)
    assert [p["steps"] for p in resumed["points"]] == [4, 8]
    for got, want in zip(resumed["points"], record["points"], strict=True):
        _close(got["metrics"], want["metrics"])
