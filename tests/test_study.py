"""The study: search spaces, intervals, the map, expected best, bad input, and `--quick` end to end (report,
resume, slices and merging)."""

import dataclasses
import hashlib
import html.parser
import itertools
import json
import math
import os
import shutil

import numpy as np
import pytest
from scipy import stats

from experiments import study as study_cli
from genjax import models
from genjax.errors import EXIT_BAD_INPUT, UserError
from genjax.search import Choice, LogUniform, Uniform, draw_settings, space_of
from genjax.study import analysis
from genjax.study import report as study_report
from genjax.study.plan import Protocol, protocol_from
from genjax.study.trials import budget_adjust
from tests.conftest import run_module

# one worker runs this module, so the --quick study below runs once per test session
pytestmark = pytest.mark.xdist_group("study")


def test_settings_start_with_the_defaults_and_are_reproducible_per_family():
    contender = study_cli.CONTENDERS["gan"]
    config = contender.config()
    space = space_of(models.get("gan"), config)
    first = draw_settings(space, config, 6, seed=0, name="gan")
    assert first[0] == {field: config[field] for field in space}
    assert first == draw_settings(space, config, 6, seed=0, name="gan")
    assert first[1:] != draw_settings(space, config, 6, seed=1, name="gan")[1:]
    assert first[1:] != draw_settings(space, config, 6, seed=0, name="dcgan")[1:]
    for setting in first[1:]:
        assert 1e-5 <= setting["learning_rate"] <= 1e-2 and 0 <= setting["adam_b1"] < 1 and setting["n_critic"] in (1, 5)


def test_the_gradient_penalty_weight_is_searched_only_with_the_penalty():
    assert "gp_weight" in space_of(models.get("gan"), study_cli.CONTENDERS["wgan_gp"].config())
    assert "gp_weight" not in space_of(models.get("gan"), study_cli.CONTENDERS["dcgan"].config())


def test_every_study_family_declares_a_space_of_its_own_config_fields():
    for name, contender in study_cli.CONTENDERS.items():
        config = contender.config()
        space = space_of(models.get(config.model), config)
        assert "learning_rate" in space and "adam_b1" in space, name  # every family trains with Adam
        assert all(field in config for field in space), name


@pytest.mark.parametrize(
    "distribution, check",
    [
        (LogUniform(1e-4, 1e-1), lambda x: 1e-4 <= x <= 1e-1),
        (Uniform(0.2, 0.4), lambda x: 0.2 <= x < 0.4),
        (Choice((8, 16)), lambda x: x in (8, 16)),
    ],
)
def test_distributions_draw_inside_their_range(distribution, check):
    rng = np.random.default_rng(0)
    draws = [distribution.draw(rng) for _ in range(200)]
    assert all(check(x) for x in draws)
    if isinstance(distribution, LogUniform):  # uniform in log10 on [-4, -1]: mean -2.5, standard error 0.06 at 200 draws
        assert np.mean(np.log10(draws)) == pytest.approx(-2.5, abs=0.25)


def test_expected_best_equals_the_mean_minimum_over_every_subset():
    scores = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6]
    expected = analysis.expected_best(scores)
    for k in range(1, len(scores) + 1):
        brute = np.mean([min(subset) for subset in itertools.combinations(scores, k)])
        assert expected[k - 1] == pytest.approx(brute)
    assert expected[0] == pytest.approx(np.mean(scores)) and expected[-1] == min(scores)


def test_interval_is_the_student_t_interval_and_needs_two_finite_values():
    mean, low, high = analysis.interval([1.0, 2.0, 3.0])
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert analysis.interval([1.0]) is None and analysis.interval([1.0, math.inf]) is None


def _cell(mean, half, sign=1.0):
    return {"interval": (mean, mean - half, mean + half), "sign": sign}


def test_the_cell_ranks_lower_kid_and_higher_recall_first():
    unit = {
        "best": [0],
        "search": [{"points": [{"metrics": {"kid": 1.0, "recall": 0.5}}]}],
        "reseeded": {"0": [{"points": [{"metrics": {"kid": v, "recall": r}}]} for v, r in ((1.0, 0.5), (2.0, 0.6))]},
    }
    assert analysis.family_cell(unit, 0, ("kid",))["sign"] == 1.0
    assert analysis.family_cell(unit, 0, ("recall",))["sign"] == -1.0
    assert analysis.family_cell(unit, 0, ("kid",))["interval"][0] == pytest.approx(1.5)


def test_the_map_names_a_winner_only_when_the_intervals_separate():
    assert analysis.decide({"a": _cell(1.0, 0.1), "b": _cell(2.0, 0.1)})[0] == "a"
    assert analysis.decide({"a": _cell(1.0, 0.6), "b": _cell(2.0, 0.6), "c": _cell(5.0, 0.1)})[0] == "a ~ b"
    assert analysis.decide({"a": _cell(1.0, 0.1, -1.0), "b": _cell(2.0, 0.1, -1.0)})[0] == "b"  # higher is better
    assert analysis.decide({"a": {"interval": None, "sign": 1.0}})[0] == ""


def test_a_bernoulli_bound_and_a_dequantized_exact_likelihood_are_never_ranked_in_one_map():
    """A flow's exact NLL of dequantized 8-bit images and a VAE's Bernoulli IWAE bound are in different units:
    each gets a map of its own, and neither names the other family."""

    def unit(family, metric, values):
        run = lambda v: {"points": [{"metrics": {"kid": 1.0, metric: v}}]}  # noqa: E731
        return {
            "unit": {"family": family, "data_size": 500},
            "best": [0],
            "search": [run(values[0])],
            "reseeded": {"0": [run(v) for v in values]},
        }

    protocol = Protocol(families=("flow", "vae", "vae2stage"), budgets=(1.0,), data_sizes=(500,))
    units = [
        unit("flow", "nll_exact", [1800.0, 1810.0]),
        unit("vae", "nll_iwae", [110.0, 111.0]),
        unit("vae2stage", "nll_iwae", [90.0, 91.0]),
    ]
    found = analysis.when_map(protocol, units)
    bound = [title for title in found if "bound" in title]
    exact = [title for title in found if "exact" in title]
    assert len(bound) == len(exact) == 1
    assert found[bound[0]]["verdicts"] == {500: ["vae2stage"]} and set(found[bound[0]]["cells"][500][0]) == {"vae", "vae2stage"}
    assert found[exact[0]]["verdicts"] == {500: ["flow"]} and set(found[exact[0]]["cells"][500][0]) == {"flow"}


def test_every_family_of_a_study_has_a_look_of_its_own_in_the_figures():
    from genjax.study.figures import family_style

    units = [{"unit": {"family": name, "data_size": size}} for size in (500, 4500) for name in study_cli.CONTENDERS]
    looks = {name: tuple(sorted(family_style(units, name).items())) for name in study_cli.CONTENDERS}
    assert len(looks) == len(study_cli.CONTENDERS) > 10 and len(set(looks.values())) == len(looks)


def test_the_budget_figure_draws_a_family_whose_mean_kid_is_negative(tmp_path):
    """KID is an unbiased estimate, so the mean over re-seeds can be below 0 (the AE's at 20 s on 4,500 images:
    65, 5 and -131): the log-scale figure draws it at its floor instead of failing the report."""
    from genjax.study.figures import budget_figure

    def run(kid):
        return {"points": [{"steps": 100, "train_seconds": 1.0, "flops": 1e9, "metrics": {"kid": kid}}]}

    units = [
        {
            "unit": {"family": "ae", "data_size": 500},
            "best": [0],
            "search": [run(283.4)],
            "reseeded": {"0": [run(k) for k in (65.1, 5.4, -131.1)]},
        },
        {
            "unit": {"family": "vae", "data_size": 500},
            "best": [0],
            "search": [run(900.0)],
            "reseeded": {"0": [run(k) for k in (800.0, 1000.0)]},
        },
    ]
    path = tmp_path / "budget.png"
    assert budget_figure(str(path), Protocol(families=("ae", "vae"), budgets=(1.0,), data_sizes=(500,)), units) is not False
    assert path.stat().st_size > 1000


def test_a_seconds_budget_is_split_over_the_stages_by_their_shares():
    contender = study_cli.CONTENDERS["vqvae"]
    adjust = budget_adjust(Protocol(families=("vqvae",)), 30.0, contender.stages)
    budgets = [adjust(stage, contender.config()).time_budget for stage in contender.stages]
    assert budgets == pytest.approx([20.0, 10.0])
    steps = Protocol(families=("vqvae",), unit="steps", budgets=(400.0,))
    assert [
        adjust(s, contender.config()).num_steps for s in contender.stages for adjust in [budget_adjust(steps, 400.0, contender.stages)]
    ] == [400, 200]


def test_study_fits_trace_the_first_stages_continuous_search_fields():
    """A study fit takes its family's continuous search fields as program arguments (one compiled train program
    serves every setting of equal shapes); a later stage traces none: its family loads the earlier stage when built."""
    from genjax.study.groups import traced_fields

    dcgan = study_cli.CONTENDERS["dcgan"]
    [config] = [budget_adjust(Protocol(families=("dcgan",)), 5.0, dcgan.stages)(stage, dcgan.config()) for stage in dcgan.stages]
    assert config.traced_hyperparameters.split(",") == list(traced_fields(dcgan)) and "learning_rate" in traced_fields(dcgan)
    vqvae = study_cli.CONTENDERS["vqvae"]
    first, prior = (budget_adjust(Protocol(families=("vqvae",)), 5.0, vqvae.stages)(stage, vqvae.config()) for stage in vqvae.stages)
    assert "learning_rate" in first.traced_hyperparameters.split(",") and prior.traced_hyperparameters == ""


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--families", "vae,nosuch"], "unknown family 'nosuch'"),
        (["--settings", "0"], "the number of settings K must be >= 1"),
        (["--budgets", ""], "the budget list is empty"),
        (["--budgets", "20,10"], "strictly increasing"),
        (["--quick", "--budgets", "inf"], "budgets must be finite positive numbers, got [inf]"),
        (["--quick", "--budgets", "10,nan"], "budgets must be finite positive numbers, got [10.0, nan]"),
        (["--quick", "--budgets", "1e309"], "budgets must be finite positive numbers, got [inf]"),
        (["--budgets", "nan"], "budgets must be finite positive numbers"),  # in seconds: nan had passed every check
        (["--data_sizes", ""], "the data size list is empty; give at least one training-set size, e.g. --data_sizes"),
        (["--data_sizes", "500,500"], "data sizes must be distinct, got [500, 500]"),
        (["--num_samples", "5"], "--num_samples must be at least 10, got 5"),
        (["--reseeds", "-1"], "--reseeds must be >= 0, got -1"),
        (["--search_seed", "-1"], "--search_seed must be >= 0, got -1"),
        (["--data_sizes", "500,99999"], "data size 99999 is outside"),
        (["--shard", "9/3"], "--shard 9/3 is out of range"),
        (["--shard", "x"], "--shard must be i/n"),
        (["--merge", "/nonexistent/slice"], "is not a study slice"),
        (["--shard", "1/4", "--merge", "/nonexistent/slice"], "--shard runs one slice and --merge builds the report from finished slices"),
        (["--merge", "/nonexistent/slice", "--quick", "--settings", "3"], "so --settings, --quick would be ignored; drop them"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_training(tmp_path, capsys, argv, message):
    workdir = tmp_path / "study"
    assert study_cli.main([*argv, "--workdir", str(workdir)]) == EXIT_BAD_INPUT
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], errors
    assert not (workdir / "runs").exists()


def test_a_bad_field_is_refused_before_the_data_is_loaded(tmp_path, capsys, monkeypatch):
    """The fields are checked before the dataset is loaded, so no data warning comes before their one line."""
    from genjax import data

    def not_yet(*args, **kwargs):
        raise AssertionError("data loaded before the fields were checked")

    monkeypatch.setattr(data, "load", not_yet)
    assert study_cli.main(["--num_samples", "5", "--workdir", str(tmp_path)]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.strip() == "error: --num_samples must be at least 10, got 5"


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("iwae_samples", -1, "iwae_samples must be at least 0, got -1"),
        ("likelihood_examples", -2, "likelihood_examples must be at least 0, got -2"),
    ]
    + [("classifier_steps", 0, "classifier_steps must be at least 1, got 0")],
)
def test_a_bad_evaluation_field_is_named_with_its_value(field, value, message):
    from genjax.study.plan import check

    protocol = dataclasses.replace(study_cli.DEFAULT, **{field: value})
    with pytest.raises(UserError) as error:
        check(protocol, study_cli.CONTENDERS)
    assert str(error.value) == message


class _Images(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The --quick study, run once for the tests below, as the command runs it: in a process of its own, with one
    CPU device per core (genjax.xla_flags.add_host_devices)."""
    root = tmp_path_factory.mktemp("study") / "quick"
    result = run_module("experiments.study", "--quick", "--workdir", str(root), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def test_quick_study_writes_the_report_with_every_image_present(quick):
    for name in ("study.md", "study.html", "study.json"):
        assert (quick / name).exists()
    parser = _Images()
    parser.feed((quick / "study.html").read_text())
    assert {"fig_settings.png", "fig_expected_best.png", "fig_budget.png", "fig_samples.png"} <= set(parser.sources)
    assert all((quick / source).is_file() and (quick / source).stat().st_size > 1000 for source in parser.sources)
    result = json.loads((quick / "study.json").read_text())
    verdicts = result["map"]["sample quality"]["verdicts"]
    assert set(verdicts) == {"200", "500"} and all(len(row) == 2 for row in verdicts.values())
    assert all(v for row in verdicts.values() for v in row)  # every cell has re-seeded intervals
    text = (quick / "study.md").read_text()
    assert "Which, when" in text and "Published rankings" in text and "Quality bars" in text
    assert "Does the search work?" in text
    # --quick re-seeds the default: every cell judges the search on the re-seeds, none on the search seed alone
    judged = result["against_default"]
    assert len(judged) == 2 * 2 * 2 and "search seed only" not in {r["verdict"] for r in judged}
    assert all(len(r["default_seeds"]) == 2 for r in judged)


def test_every_point_records_steps_seconds_and_flops(quick):
    result = json.loads((quick / "study.json").read_text())
    for unit in result["units"]:
        for record in unit["search"]:
            steps = [p["steps"] for p in record["points"]]
            assert steps == [20, 40]
            assert all(p["flops"] > 0 and p["train_seconds"] > 0 and p["eval_seconds"] > 0 for p in record["points"])
            assert record["points"][1]["flops"] == pytest.approx(2 * record["points"][0]["flops"])
            assert {"kid", "frechet_distance", "recall"} <= set(record["points"][0]["metrics"])
    # the evaluation-time section sums every measured point's eval_seconds, re-seeds included, from the trials' records
    recorded = {}
    for path in (quick / "runs").glob("*/*/*/*/trial.json"):
        for point in json.loads(path.read_text())["points"]:
            recorded.setdefault(path.relative_to(quick / "runs").parts[0], []).append(point["eval_seconds"])
    reported = {r["family"]: r for r in result["evaluation_seconds"]}
    assert set(reported) == set(recorded) == set(result["protocol"]["families"])
    for family, seconds in recorded.items():
        assert reported[family]["points"] == len(seconds) and reported[family]["seconds"] == pytest.approx(sum(seconds))
    assert "Evaluation time, apart from training" in (quick / "study.md").read_text()
    trial = quick / "runs" / "gan" / "n200" / "setting0" / "seed0"
    assert (trial / "samples_40.png").exists() and not (trial / "curves.png").exists()  # figures=False: the study draws its own
    assert len(list((trial / "checkpoints").iterdir())) == 1  # keep_checkpoints=1


def test_a_reseeded_setting_trains_up_to_the_last_point_it_is_best_at(monkeypatch, tmp_path):
    """Setting 1 is best at the first budget point only, setting 0 at the other two: setting 1's re-seeds
    stop after one point, setting 0's go to the last."""
    from genjax.study import run as study_run

    kids = {0: [5.0, 1.0, 1.0], 1: [2.0, 3.0, 4.0]}
    asked = []

    def fake_trial(protocol, contender, trial, root, classifier, test, num_points=None):
        asked.append((trial.setting_index, trial.seed, num_points))
        points = [{"metrics": {"kid": kid}} for kid in kids[trial.setting_index % 2][:num_points]]
        return {"points": points, "diverged": None}

    monkeypatch.setattr(study_run, "run_trial", fake_trial)
    protocol = dataclasses.replace(study_cli.DEFAULT, families=("vae",), num_settings=2, reseeds=2)
    bar = study_run.tqdm(total=0, disable=True)
    unit = study_run.run_unit(protocol, study_cli.CONTENDERS["vae"], study_run.Unit("vae", 500), str(tmp_path), None, None, bar)
    assert unit["best"] == [1, 0, 0]
    assert sorted(asked[2:]) == [(0, 1, 3), (0, 2, 3), (1, 1, 1), (1, 2, 1)]
    assert {k: [len(r["points"]) for r in runs] for k, runs in unit["reseeded"].items()} == {"0": [3, 3], "1": [1, 1]}


def test_reseed_default_re_seeds_the_default_over_every_point_and_the_report_judges_the_search_on_those_seeds(monkeypatch, tmp_path):
    """Setting 1 is best on the search seed at every point; with reseed_default the default (setting 0) is
    re-seeded to the last point too, and against_default compares the two on the re-seeds, paired by seed."""
    from genjax.study import report as study_report
    from genjax.study import run as study_run

    kids = {  # (setting, seed): KID at the three budget points
        (0, 0): [9.0, 9.0, 9.0],
        (1, 0): [1.0, 1.0, 1.0],
        (0, 1): [5.0, 5.0, 2.0],
        (1, 1): [4.0, 3.0, 8.0],
        (0, 2): [6.0, 5.0, 3.0],
        (1, 2): [5.0, 2.0, 7.0],
    }
    asked = []

    def fake_trial(protocol, contender, trial, root, classifier, test, num_points=None):
        asked.append((trial.setting_index, trial.seed, num_points))
        points = [{"metrics": {"kid": kid}} for kid in kids[trial.setting_index, trial.seed][:num_points]]
        return {"points": points, "diverged": None}

    monkeypatch.setattr(study_run, "run_trial", fake_trial)
    protocol = dataclasses.replace(study_cli.DEFAULT, families=("vae",), num_settings=2, reseeds=2, reseed_default=True)
    bar = study_run.tqdm(total=0, disable=True)
    unit = study_run.run_unit(protocol, study_cli.CONTENDERS["vae"], study_run.Unit("vae", 500), str(tmp_path), None, None, bar)
    assert unit["best"] == [1, 1, 1]
    assert sorted(asked[2:]) == [(0, 1, 3), (0, 2, 3), (1, 1, 3), (1, 2, 3)]
    rows = analysis.against_default(protocol, [unit])
    assert [r["verdict"] for r in rows] == ["beats", "beats", "does not beat"]
    assert [r["lower_on_seeds"] for r in rows] == [2, 2, 0]
    assert rows[1]["default_seeds"] == [5.0, 5.0] and rows[1]["chosen_seeds"] == [3.0, 2.0]
    assert rows[1]["chosen_interval"] == analysis.interval([3.0, 2.0])
    assert rows[0]["search_default"] == 9.0 and rows[0]["search_chosen"] == 1.0
    assert rows[1]["paired_gain"] == analysis.interval([2.0, 3.0])  # default - chosen, seed by seed
    _, note = study_report.search_section(protocol, rows)
    assert "does not beat the default on the re-seeds (0 of 2 paired seeds lower; default - chosen, paired: -5 [" in note
    # without it the default is not re-seeded, and the search seed alone is no evidence
    asked.clear()
    protocol = dataclasses.replace(protocol, reseed_default=False)
    unit = study_run.run_unit(protocol, study_cli.CONTENDERS["vae"], study_run.Unit("vae", 500), str(tmp_path), None, None, bar)
    assert sorted(asked[2:]) == [(1, 1, 3), (1, 2, 3)]
    assert {r["verdict"] for r in analysis.against_default(protocol, [unit])} == {"search seed only"}
    both = [unit, {**unit, "unit": {"family": "vae", "data_size": 4500}}]
    _, note = study_report.search_section(protocol, analysis.against_default(protocol, both))
    # each unit named once, the caveat said once
    assert note == (
        "At 12 seconds: it chose another setting for vae (setting 1 on 500 images, setting 1 on 4500 images), compared "
        "on the search seed only (the default was not re-seeded here: --reseed_default)."
    )


def test_the_search_summary_lists_each_verdict_once_and_each_compared_unit_in_a_clause():
    from genjax.study import report as study_report

    def row(family, size, setting, verdict):
        return {
            "family": family,
            "data_size": size,
            "setting": setting,
            "verdict": verdict,
            "lower_on_seeds": 3,
            "chosen_seeds": [1, 2, 3],
            "paired_gain": None,
        }

    protocol = Protocol(families=("gan", "vae", "ae"), budgets=(5.0, 20.0))
    found = [
        row("gan", 500, 0, "default"),
        row("gan", 4500, 0, "default"),
        row("vae", 500, 2, "search seed only"),
        row("ae", 500, 1, "beats"),
    ]
    assert study_report._search_summary(protocol, found) == (
        "At 20 seconds: the search chose the default for gan (500 images, 4500 images); it chose another setting for vae "
        "(setting 2 on 500 images), compared on the search seed only (the default was not re-seeded here: --reseed_default); "
        "ae on 500 images, the search chose setting 1, which beats the default on the re-seeds' mean, not separated by the "
        "intervals (3 of 3 paired seeds lower)."
    )


def test_separated_needs_disjoint_intervals_and_a_diverged_re_seed_loses():
    def unit(default, chosen):
        search = [{"points": [{"metrics": {"kid": 2.0}}]}, {"points": [{"metrics": {"kid": 1.0}}]}]
        runs = {k: [{"points": [{"metrics": {"kid": v}}]} for v in values] for k, values in (("0", default), ("1", chosen))}
        return {"unit": {"family": "gan", "data_size": 500}, "best": [1], "search": search, "reseeded": runs}

    protocol = Protocol(families=("gan",), budgets=(1.0,))
    verdict = lambda d, c: analysis.against_default(protocol, [unit(d, c)])[0]["verdict"]  # noqa: E731
    assert verdict([10.0, 10.1, 9.9], [1.0, 1.1, 0.9]) == "beats, separated"
    assert verdict([10.0, 1.0, 19.0], [1.0, 1.1, 0.9]) == "beats"  # lower mean, overlapping intervals
    assert verdict([10.0, 10.1, math.nan], [1.0, 1.1, 0.9]) == "beats"  # the default diverged on a re-seed
    assert verdict([10.0, 10.1, 9.9], [1.0, 1.1, math.inf]) == "does not beat"
    # a chosen re-seed that diverged before the point (no point there) scores inf, and loses
    diverged = unit([10.0, 10.1, 9.9], [1.0, 1.1])
    diverged["reseeded"]["1"].append({"points": [], "diverged": {"budget": 1.0, "error": "nan loss"}})
    assert analysis.against_default(protocol, [diverged])[0]["verdict"] == "does not beat"


def test_a_missed_quality_bar_says_which_of_three_causes_it_was():
    """Seed variance (the chosen setting met the bar on the search seed only), the selection (another setting
    met it, KID chose this one) or the training (no setting met it) read differently, with the settings'
    numbers; a family that meets the bar has no why."""

    def run(kid, recall, classes=10):
        return {"points": [{"steps": 700, "metrics": {"kid": kid, "recall": recall, "classes_covered": classes}}]}

    def bar(search, reseeds):
        best = min(range(len(search)), key=lambda k: search[k]["points"][0]["metrics"]["kid"])
        unit = {"unit": {"family": "sngan", "data_size": 500}, "best": [best], "search": search, "reseeded": {str(best): reseeds}}
        return analysis.quality_bars(Protocol(families=("sngan",), budgets=(1.0,), data_sizes=(500,)), [unit])[0]

    met = bar([run(2.0, 0.5), run(1.0, 0.6)], [run(1.0, 0.5), run(1.1, 0.4)])
    assert met["passed"] and met["why"] == ""
    seeds = bar([run(2.0, 0.5), run(1.0, 0.6)], [run(1.0, 0.1), run(1.1, 0.2)])
    assert not seeds["passed"] and seeds["recall"] == pytest.approx(0.15)
    assert "recall 0.15 < 0.3" in seeds["why"] and "setting 1 (KID 1, recall 0.60, 10 classes)" in seeds["why"]
    assert "not on average over its 2 re-seeds: seed variance" in seeds["why"]
    # setting 2 meets the bar with the lower KID of the two that do: it is the one named
    chosen = bar([run(3.0, 0.9), run(1.0, 0.2, 9), run(2.0, 0.7)], [run(1.0, 0.2), run(1.1, 0.2)])
    assert "setting 2 (KID 2, recall 0.70, 10 classes) met it on the search seed" in chosen["why"]
    assert "KID chose setting 1 (KID 1, recall 0.20, 9 classes): the selection, not the training" in chosen["why"]
    # classes alone can miss it too; with no re-seeds the search run is the value
    none = bar([run(3.0, 0.1, 3), run(1.0, 0.5, 8), run(2.0, 0.2, 9)], [])
    assert "8 classes < 9" in none["why"] and "recall" not in none["why"].split(";")[0]
    assert "no setting of the 3 met it on the search seed; the highest recall: setting 1 (KID 1, recall 0.50, 8 classes)" in none["why"]
    assert none["why"].endswith("the chosen setting trained 700 steps in the budget")
    assert bar([run(1.0, 0.5, 1)], [])["why"].startswith("1 class < 9; ")  # one class, not "1 classes"
    # a mean over re-seeds to a tenth: 8.7 is not "9 classes < 9" (the default study's flow matching read so)
    mean = bar([run(1.0, 0.5, 9)], [run(1.0, 0.5, 9), run(1.0, 0.5, 8), run(1.0, 0.5, 9)])
    assert mean["why"].startswith("8.7 classes < 9; ")


@pytest.mark.parametrize("reseeds", [0, 1, 2])
def test_every_section_reports_one_value_per_family_the_reseeds_mean_or_without_reseeds_the_search_seeds(reseeds):
    """The search seed's KID is biased low (the winner's curse), so wherever the chosen setting was re-seeded, one
    re-seed included, the map's numbers, the quality bars and the published-rankings order all read the re-seeds'
    mean; only with --reseeds 0 do they all read the search seed. Here the search seed ranks gan first and the
    re-seeds vae: one order whatever the section."""

    def run(kid):
        return {"points": [{"steps": 700, "metrics": {"kid": kid, "recall": 0.5, "classes_covered": 10}}]}

    def unit(family, search, seeds):
        return {"unit": {"family": family, "data_size": 500}, "best": [0], "search": [run(search)], "reseeded": {"0": seeds}}

    gan_seeds, vae_seeds = [0.040, 0.050][:reseeds], [0.020, 0.030][:reseeds]
    units = [unit("gan", 0.010, [run(k) for k in gan_seeds]), unit("vae", 0.030, [run(k) for k in vae_seeds])]
    protocol = Protocol(families=("gan", "vae"), budgets=(1.0,), data_sizes=(500,), reseeds=reseeds)
    expected = {"gan": np.mean(gan_seeds) if reseeds else 0.010, "vae": np.mean(vae_seeds) if reseeds else 0.030}

    bars = {b["family"]: b["kid"] for b in analysis.quality_bars(protocol, units)}
    assert bars == pytest.approx(expected)
    ranking = study_report.ranking_table(protocol, units)
    assert [r[4] for r in ranking if r[3] == "vae"] == [study_report._fmt("kid", expected["vae"])]
    assert ranking[-1][4] == ("NS-GAN < VAE" if reseeds == 0 else "VAE < NS-GAN")
    numbers = study_report.map_tables(protocol, analysis.when_map(protocol, units))[1][1]
    for family, text in {row[2]: row[5] for row in numbers[1:]}.items():  # "mean [95% interval over re-seeds]"
        assert text.startswith(study_report._fmt("kid", expected[family]))
        assert text.endswith({0: "(search seed: not re-seeded)", 1: "(1 re-seed: no interval)", 2: "]"}[reseeds])
    cells = analysis.when_map(protocol, units)["sample quality"]["cells"][500][0]
    assert {f: c["mean"] for f, c in cells.items()} == pytest.approx(expected)  # the value figures.py can read too


def test_the_setup_says_what_the_reseeds_give_zero_and_one_included():
    from genjax.study import reseeding_text

    text = lambda **fields: reseeding_text(Protocol(families=("gan",), **fields))  # noqa: E731
    assert (
        text(reseeds=3, reseed_default=True)
        == "the best setting per point re-trained with 3 more seeds, and the default setting at every point"
    )
    assert (
        text(reseeds=1) == "the best setting per point re-trained with 1 more seed (one seed: its numbers are reported, with no intervals)"
    )
    zero = text(reseeds=0, reseed_default=True)
    assert zero.startswith("the best setting per point not re-trained with more seeds (--reseeds 0)") and "0 more" not in zero
    assert "no intervals" in zero and "default" not in zero


class _Setup(html.parser.HTMLParser):
    """The items of the list under the page's "setup" heading, as text, and any <br> in that section."""

    def __init__(self):
        super().__init__()
        self.heading, self.item, self.section, self.items, self.breaks = False, False, None, [], 0

    def handle_starttag(self, tag, attrs):
        self.heading, self.item = tag == "h2", self.section == "setup" and tag == "li"
        self.items += [""] if self.item else []
        self.breaks += self.section == "setup" and tag == "br"

    def handle_endtag(self, tag):
        self.item = self.item and tag != "li"

    def handle_data(self, data):
        if self.heading:
            self.section = data
        elif self.item:
            self.items[-1] += data


def test_the_setup_renders_as_an_html_list_of_escaped_items(tmp_path):
    """study.html's setup is a <ul> of one <li> per header line (not "- key: value" lines joined by <br>), its
    text escaped; study.md keeps the markdown list."""
    from genjax.report import write_pages

    header = {"dataset": "mnist (embedded), training sets of 200, 500", "families": "gan: a <b>GAN</b> & more"}
    setup = [("setup", "\n".join(f"- {k}: {v}" for k, v in header.items()))]  # as write_study_report builds it
    paths = write_pages(str(tmp_path), "study", "genjax study", [*setup, ("next", "a paragraph\nof two lines")], [])
    parser = _Setup()
    parser.feed(open(paths["html"]).read())
    assert parser.items == [f"{k}: {v}" for k, v in header.items()] and parser.breaks == 0
    assert "<b>GAN</b>" not in open(paths["html"]).read()
    assert "<p>a paragraph<br>of two lines</p>" in open(paths["html"]).read()  # prose keeps its line breaks
    assert "- families: gan: a <b>GAN</b> & more" in open(paths["markdown"]).read()


def test_how_decisive_a_choice_is_reads_the_kid_standard_errors():
    """The margin of a choice: the runner-up's KID minus the chosen one's over the root sum of their squared
    standard errors; under 2 it is a tie, said in the quality bar's why and in the report's summary. Records
    without kid_se (trials measured before it) give no margin and a sentence that says so."""

    def run(kid, se, recall=0.5):
        metrics = {"kid": kid, "recall": recall, "classes_covered": 10} | ({"kid_se": se} if se is not None else {})
        return {"points": [{"steps": 700, "metrics": metrics}]}

    def unit(search, family="sngan"):
        best = min(range(len(search)), key=lambda k: search[k]["points"][0]["metrics"]["kid"])
        settings = [{"learning_rate": 10.0**-k} for k in range(len(search))]
        return {"unit": {"family": family, "data_size": 500}, "best": [best], "search": search, "reseeded": {}, "settings": settings}

    protocol = Protocol(families=("sngan", "vae"), budgets=(1.0,), data_sizes=(500,))
    # chosen setting 1 (KID 100 +- 30), runner-up setting 2 (160 +- 40): 60 / 50 = 1.2 standard errors
    close = unit([run(300.0, 10.0), run(100.0, 30.0, recall=0.1), run(160.0, 40.0)])
    margin = analysis.selection_margin(close, 0)
    assert margin == {"setting": 1, "runner_up": 2, "difference": 60.0, "z": pytest.approx(1.2), "tie": True}
    clear = unit([run(300.0, 10.0), run(100.0, 3.0), run(160.0, 4.0)], "vae")
    assert analysis.selection_margin(clear, 0)["z"] == pytest.approx(12.0) and not analysis.selection_margin(clear, 0)["tie"]
    assert analysis.selection_margin(unit([run(1.0, None), run(2.0, 1.0)]), 0) is None  # a record from before kid_se
    assert analysis.selection_margin(unit([run(1.0, 1.0), run(math.inf, 1.0)]), 0) is None  # one measured setting

    why = analysis.quality_bars(protocol, [close])[0]["why"]
    assert "setting 2 (KID 160 +- 40, recall 0.50, 10 classes) met it on the search seed" in why
    assert "KID chose setting 1 (KID 100 +- 30, recall 0.10, 10 classes) (1.2 standard errors apart, within one KID's noise (< 2))" in why
    summary = study_report.margin_summary(protocol, [close, clear])
    assert summary.startswith("On the search seed KID chose by at least 2 standard errors in 1 of 2 choices; within 2 standard errors")
    assert summary.endswith("in 1: sngan on 500 images at 1 seconds (setting 1 over 2, 1.2).") and "vae on" not in summary
    assert study_report.margin_summary(protocol, [clear]).endswith("in 1 of 1 choices.")
    assert "before kid_se" in study_report.margin_summary(protocol, [unit([run(1.0, None), run(2.0, None)])])
    table = study_report.settings_table(protocol, [close])
    assert table[0][4] == "KID margin over the runner-up" and table[1][4] == "60 over setting 2: 1.2 s.e. (a tie)"


def test_what_the_intervals_are_made_of_splits_the_reseeds_variance_by_kid_se():
    """The samples' share of a cell's re-seed variance is mean(kid_se^2) / var(KIDs, ddof 1); the summary gives
    its median and quartiles and what 4x the samples or 4x the re-seeds would leave of the intervals."""

    def run(kid, se):
        return {"points": [{"metrics": {"kid": kid} | ({"kid_se": se} if se is not None else {})}]}

    def unit(family, reseeds):
        return {"unit": {"family": family, "data_size": 500}, "best": [0], "search": [run(1.0, 1.0)], "reseeded": {"0": reseeds}}

    protocol = Protocol(families=("ae", "vae", "gan"), budgets=(1.0,), data_sizes=(500,), reseeds=3)
    # KIDs 10, 20, 30: variance 100; kid_se^2 of 20, 30, 40 (mean 30): a share of 30%
    half = unit("ae", [run(10.0, math.sqrt(20.0)), run(20.0, math.sqrt(30.0)), run(30.0, math.sqrt(40.0))])
    rows = analysis.noise_shares(protocol, [half, unit("vae", [run(1.0, 0.5)]), unit("gan", [run(1.0, None), run(2.0, 1.0)])])
    assert rows == [{"family": "ae", "data_size": 500, "budget": 1.0, "seeds_variance": 100.0, "samples_variance": 30.0, "share": 0.3}]
    # a second family whose re-seeds differ by less than their samples' noise: its share counts as 100%
    noisy = unit("vae", [run(10.0, 10.0), run(11.0, 10.0)])
    summary = study_report.noise_summary(protocol, analysis.noise_shares(protocol, [half, noisy]))
    # 4x samples: sqrt(0.7 + 0.3 / 4) = 0.88 and sqrt(0 + 1 / 4) = 0.5; 4x re-seeds: t(0.975, 11) / t(0.975, 2) / 2
    # = 2.201 / 4.303 / 2 = 0.26
    assert (
        "(--num_samples 2000): vae 100% (50%), ae 30% (88%). 4x the re-seeds (12 a setting) would leave every family's intervals 26% as wide"
        in summary
    )
    assert "No cell has two re-seeds" in study_report.noise_summary(
        protocol, analysis.noise_shares(protocol, [unit("gan", [run(1.0, None), run(2.0, 1.0)])])
    )


def test_equal_compute_gives_each_familys_range_of_training_seconds_over_the_budget():
    """Every trial that reached a point counts (settings and re-seeds, every data size; a diverged trial's
    missing points do not); a budget in steps says so instead."""

    def run(*seconds):
        return {"points": [{"budget": b, "train_seconds": s} for b, s in zip((2.0, 4.0), seconds)]}

    def unit(family, size, search, reseeds):
        return {"unit": {"family": family, "data_size": size}, "search": search, "reseeded": {"0": reseeds}}

    protocol = Protocol(families=("flow", "gan"), budgets=(2.0, 4.0), data_sizes=(500, 4500))
    units = [
        unit("flow", 500, [run(1.6, 4.4), run(2.1)], [run(2.0, 4.0)]),  # the second setting diverged before 4 s
        unit("flow", 4500, [run(2.2, 3.9)], []),
        unit("gan", 500, [run(2.01, 4.02)], [None]),
    ]
    rows = analysis.budget_errors(protocol, units)
    flow = {r["budget"]: r for r in rows if r["family"] == "flow"}
    assert flow[2.0]["trials"] == 4 and flow[4.0]["trials"] == 3
    assert flow[2.0]["low"] == pytest.approx(-0.2) and flow[2.0]["high"] == pytest.approx(0.1)
    assert flow[4.0]["low"] == pytest.approx(-0.025) and flow[4.0]["high"] == pytest.approx(0.1)
    table = study_report.equal_compute_table(protocol, rows)
    assert table[0] == ["family", "2 seconds", "4 seconds"]
    assert table[1] == ["flow", "-20.0% to +10.0% (4)", "-2.5% to +10.0% (3)"]
    assert table[2] == ["gan", "+0.5% to +0.5% (1)", "+0.5% to +0.5% (1)"]
    steps = Protocol(families=("gan",), budgets=(100.0,), unit="steps")
    assert analysis.budget_errors(steps, units) == []
    assert study_report.equal_compute_table(steps, []) == "A budget in steps: every trial trains exactly its steps."


def test_the_evaluation_time_table_sums_each_familys_points_and_gives_shares():
    def run(*seconds):
        return {"points": [{"budget": 1.0, "train_seconds": 1.0, "eval_seconds": s} for s in seconds]}

    units = [
        {"unit": {"family": "vae"}, "search": [run(1.0, 2.0), None], "reseeded": {"0": [run(1.0)], "1": [None]}},
        {"unit": {"family": "flow"}, "search": [run(10.0, 14.0)], "reseeded": {}},
        {"unit": {"family": "vae"}, "search": [run(4.0)], "reseeded": {}},
    ]
    rows = analysis.evaluation_seconds(units)
    assert rows == [{"family": "flow", "points": 2, "seconds": 24.0}, {"family": "vae", "points": 4, "seconds": 8.0}]
    table = study_report.evaluation_table(rows)
    assert table[0] == ["family", "points measured", "evaluation seconds", "seconds a point", "share"]
    assert table[1:] == [["flow", "2", "24", "12.0", "75%"], ["vae", "4", "8", "2.0", "25%"], ["all", "6", "32", "5.3", "100%"]]
    assert study_report.evaluation_table([]) == "No trial has been measured at a budget point yet."


def test_an_older_study_keeps_its_protocol_id_when_a_field_is_added():
    protocol = Protocol(families=("gan",))
    values = {k: v for k, v in dataclasses.asdict(protocol).items() if k != "reseed_default"}
    legacy = hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]
    assert protocol.fingerprint() == legacy
    assert dataclasses.replace(protocol, reseed_default=True).fingerprint() != legacy


def test_a_rerun_reuses_finished_trials_and_a_lost_point_is_recomputed_exactly(quick, capsys):
    trial_dir = quick / "runs" / "vae" / "n200" / "setting1" / "seed0"
    path = trial_dir / "trial.json"
    record = json.loads(path.read_text())
    lost = record["points"].pop()
    path.write_text(json.dumps(record))
    # and its checkpoint (the study keeps the last only): steps 0-40 in one go must equal 0-20, then 20-40
    shutil.rmtree(trial_dir / "checkpoints")
    before = {p: os.path.getmtime(p) for p in (quick / "runs" / "gan" / "n500" / "setting0" / "seed0").glob("trial.json")}
    assert study_cli.main(["--quick", "--workdir", str(quick)]) == 0
    again = json.loads(path.read_text())["points"][-1]
    assert again["steps"] == lost["steps"]
    for name in ("kid", "frechet_distance", "neg_elbo", "nll_iwae"):
        assert again["metrics"][name] == pytest.approx(lost["metrics"][name], rel=1e-4), name
    assert {p: os.path.getmtime(p) for p in before} == before  # untouched: reused, not retrained


def test_slices_merge_into_the_same_map_and_a_missing_slice_is_named(quick, tmp_path, capsys):
    slices = [tmp_path / "slice0", tmp_path / "slice1"]
    for size, directory in zip((200, 500), slices):
        (directory / "units").mkdir(parents=True)
        shutil.copy(quick / "study_plan.json", directory)
        for unit in (quick / "units").glob(f"*_n{size}.json"):
            shutil.copy(unit, directory / "units")
        for family in ("gan", "vae"):
            shutil.copytree(quick / "runs" / family / f"n{size}", directory / "runs" / family / f"n{size}")
    merged = tmp_path / "merged"
    assert study_cli.main(["--merge", *map(str, slices), "--workdir", str(merged)]) == 0
    assert json.loads((merged / "study.json").read_text())["map"] == json.loads((quick / "study.json").read_text())["map"]
    capsys.readouterr()
    assert study_cli.main(["--merge", str(slices[0]), "--workdir", str(merged)]) == EXIT_BAD_INPUT
    assert "unit gan/n500 is in no slice" in capsys.readouterr().err
    (slices[1] / "units" / "vae_n500.json").write_text("{not json")
    assert study_cli.main(["--merge", *map(str, slices), "--workdir", str(merged)]) == EXIT_BAD_INPUT
    assert "vae_n500.json is corrupted" in capsys.readouterr().err


def _trial_times(root) -> dict:
    return {path: os.path.getmtime(path) for path in root.glob("runs/*/*/*/*/trial.json")}


def _plan_for(root, families) -> None:
    """Rewrite root's study plan as if its study had named `families`."""
    plan = json.loads((root / "study_plan.json").read_text())
    protocol = dataclasses.replace(protocol_from(plan["protocol"]), families=tuple(families))
    plan |= {"protocol": dataclasses.asdict(protocol), "fingerprint": protocol.fingerprint()}
    (root / "study_plan.json").write_text(json.dumps(plan))


def test_a_study_narrowed_and_grown_by_families_trains_only_the_families_it_lacks(quick, tmp_path):
    root = tmp_path / "grown"
    shutil.copytree(quick, root)
    shutil.rmtree(root / "runs" / "gan" / "n200")  # the family grown back below lacks this unit's trials
    kept = {path: time for path, time in _trial_times(root).items() if "/gan/" not in str(path)}
    assert study_cli.main(["--quick", "--families", "vae", "--workdir", str(root)]) == 0
    result = json.loads((root / "study.json").read_text())
    assert result["protocol"]["families"] == ["vae"] and {u["unit"]["family"] for u in result["units"]} == {"vae"}
    assert study_cli.main(["--quick", "--workdir", str(root)]) == 0  # gan and vae again
    times = _trial_times(root)
    assert {path: times[path] for path in kept} == kept  # vae and gan/n500: reused, not retrained
    assert len(list((root / "runs" / "gan" / "n200").glob("*/*/trial.json"))) >= 2  # gan/n200: trained
    assert json.loads((root / "study.json").read_text())["protocol"]["families"] == ["gan", "vae"]
    plan = json.loads((root / "study_plan.json").read_text())
    assert plan["fingerprint"] == json.loads((quick / "study_plan.json").read_text())["fingerprint"]


def test_trials_recorded_before_family_free_ids_are_reused_when_the_study_grows(quick, tmp_path):
    """A workdir from before trials were identified without the family list: its plan has the whole protocol's
    fingerprint only, and so does every trial record. Another family list must reuse those trials."""
    root = tmp_path / "legacy"
    shutil.copytree(quick, root)
    plan = json.loads((root / "study_plan.json").read_text())
    legacy = protocol_from(plan["protocol"]).fingerprint()
    (root / "study_plan.json").write_text(json.dumps({"protocol": plan["protocol"], "fingerprint": legacy}))
    for path in _trial_times(root):
        record = json.loads(path.read_text())
        path.write_text(json.dumps({**record, "identity": {**record["identity"], "protocol": legacy}}))
    before = _trial_times(root)
    assert study_cli.main(["--quick", "--families", "vae", "--workdir", str(root)]) == 0
    assert _trial_times(root) == before  # nothing retrained
    assert json.loads((root / "study_plan.json").read_text())["legacy_fingerprints"] == [legacy]
    # a record of another protocol is still not reused
    path = root / "runs" / "vae" / "n200" / "setting0" / "seed0" / "trial.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "identity": {**record["identity"], "protocol": "0123456789ab"}}))
    assert study_cli.main(["--quick", "--families", "vae", "--workdir", str(root)]) == 0
    assert json.loads(path.read_text())["identity"]["protocol"] == protocol_from(plan["protocol"]).trial_fingerprint()


def test_slices_of_different_families_merge_into_one_report(quick, tmp_path):
    slices = {family: tmp_path / family for family in ("gan", "vae")}
    for family, directory in slices.items():
        (directory / "units").mkdir(parents=True)
        shutil.copy(quick / "study_plan.json", directory)
        _plan_for(directory, [family])
        for unit in (quick / "units").glob(f"{family}_n*.json"):
            shutil.copy(unit, directory / "units")
        shutil.copytree(quick / "runs" / family, directory / "runs" / family)
    merged = tmp_path / "merged"
    assert study_cli.main(["--merge", str(slices["gan"]), str(slices["vae"]), "--workdir", str(merged)]) == 0
    result = json.loads((merged / "study.json").read_text())
    assert result["protocol"]["families"] == ["gan", "vae"]
    assert result["map"] == json.loads((quick / "study.json").read_text())["map"]


def test_a_slice_runs_only_its_units_and_says_so(quick, capsys):
    assert study_cli.main(["--quick", "--workdir", str(quick), "--shard", "1/4"]) == 0
    assert "slice 1/4 done" in capsys.readouterr().out


def test_a_workdir_of_another_study_is_refused(quick, capsys):
    assert study_cli.main(["--quick", "--settings", "3", "--workdir", str(quick)]) == EXIT_BAD_INPUT
    assert "holds another study" in capsys.readouterr().err


def test_a_corrupted_plan_is_named_with_its_fix_and_nothing_trains(tmp_path, capsys):
    (tmp_path / "study_plan.json").write_text('{"protocol": ')
    assert study_cli.main(["--quick", "--workdir", str(tmp_path)]) == EXIT_BAD_INPUT
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "study_plan.json is unreadable" in errors[0] and "delete it" in errors[0], errors
    assert sorted(os.listdir(tmp_path)) == ["study_plan.json"]


def test_train_examples_cuts_the_training_split_and_refuses_more_than_it_has():
    from genjax import experiment

    config = study_cli.CONTENDERS["vae"].config()
    config.train_examples = 300
    train, test = experiment.load_data(config)
    assert train.num_examples == 300 and test.num_examples == 500
    config.train_examples = 10**6
    with pytest.raises(UserError, match="train_examples=1000000 is more than the 4500 training examples"):
        experiment.load_data(config)


def test_the_expected_best_figure_labels_a_range_within_one_decade():
    """symlog labels only its decades: KIDs of 700 to 900 showed no number on the axis (seen in a small study)."""
    import matplotlib.pyplot as plt

    from genjax.study.figures import label_narrow_symlog

    def labels(values):
        fig, ax = plt.subplots()
        ax.plot(range(len(values)), values)
        ax.set_yscale("symlog", linthresh=10.0)
        label_narrow_symlog(ax)
        fig.canvas.draw()
        low, high = ax.get_ylim()
        shown = [t.get_text() for t in ax.get_yticklabels() if t.get_text() and low <= t.get_position()[1] <= high]
        plt.close(fig)
        return shown

    narrow = labels([900.0, 800.0, 700.0])
    assert len(narrow) >= 2 and all(text.replace(",", "").replace(".", "").isdigit() for text in narrow), narrow
    wide = labels([60000.0, 5000.0, 500.0])  # decades in view: kept as they were
    assert len(wide) >= 2 and all("10^" in text for text in wide), wide
