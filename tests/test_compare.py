"""The head-to-head comparison: the quick command end to end, its bad inputs, and the report's arithmetic."""

import dataclasses
import json
import os

import pytest

from experiments import compare
from experiments.compare import IMAGE_CONTENDERS, TOY_CONTENDERS
from genjax import comparison, report
from tests.conftest import train_steps


def test_quick_compare_writes_a_report_with_every_family_and_reuses_finished_runs(tmp_path, capsys):
    args = ["--quick", f"--workdir={tmp_path}", "--toy_datasets=ring8"]  # grid25 runs the same code
    assert compare.main(args) == 0
    markdown = (tmp_path / "report.md").read_text()
    html = (tmp_path / "report.html").read_text()
    image_table = markdown.split("## mnist")[1].split("## ring8")[0]
    for name in IMAGE_CONTENDERS:
        assert f"| {name} |" in image_table and f"<td>{name}</td>" in html
    toy_table = markdown.split("## ring8")[1].split("\n## ")[0]
    assert all(f"| {name} |" in toy_table for name in TOY_CONTENDERS) and "grid25" not in markdown
    assert "When to use which" in markdown and "For sample quality, " in markdown and "## Metrics" in markdown
    for figure in [
        "fig_samples.png",
        "fig_reconstructions.png",
        "fig_losses.png",
        "fig_frechet.png",
        "fig_interpolations.png",
        "fig_ring8.png",
    ]:
        assert f"]({figure})" in markdown and (tmp_path / figure).stat().st_size > 1000, figure
    records = json.load(open(tmp_path / "records.json"))
    vae = [r for r in records["image"] if r["model"] == "vae"][0]
    assert vae["metrics"]["nll_iwae"] <= vae["metrics"]["neg_elbo"] + 1.0  # the IWAE bound is at least the ELBO (up to MC noise)
    assert len(vae["curve"]) == 2 and vae["steps"] == compare.QUICK["steps"]
    vqvae = [r for r in records["image"] if r["model"] == "vqvae"][0]
    assert vqvae["steps"] == compare.QUICK["steps"]  # a two-stage model gets the whole budget in one segment
    assert 0 <= vae["metrics"]["precision"] <= 1 and vae["metrics"]["classes_covered"] >= 1

    record_file = tmp_path / "runs" / "mnist" / "vae" / "seed0" / "compare_record.json"
    before = record_file.stat().st_mtime_ns
    capsys.readouterr()
    assert compare.main(args) == 0  # everything finished: reused, not retrained
    assert record_file.stat().st_mtime_ns == before and "reusing the finished run" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models=vae,diffusion"], "unknown model 'diffusion'"),
        (["--steps=10", "--seconds=5"], "not both"),
        (["--seeds=0,0"], "seeds must be distinct"),
        (["--dataset=ring8"], "unknown image dataset 'ring8'"),
        (["--toy_datasets=moons"], "unknown toy dataset 'moons'"),
        (["--steps=0"], "the image models' budget must be a positive number of steps or a finite positive number of seconds"),
        (["--seconds=inf"], "(--steps or --seconds), got steps=0 seconds=inf"),
        (["--toy_steps=0"], "the 2-D models' budget must be a positive number of steps"),
        (["--quick", "--steps=-1"], "got steps=-1"),  # a flag given with --quick counts, and is checked
        (["--models=vae,gan,vae"], "model 'vae' is named twice in --models; name each once"),
        (["--num_samples=5"], "--num_samples must be at least 10, got 5"),
    ],
)
def test_bad_inputs_give_one_line_and_exit_2(tmp_path, capsys, args, message):
    assert compare.main([f"--workdir={tmp_path}", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not os.path.exists(tmp_path / "runs")


def test_flags_given_with_quick_win_over_its_sizes():
    settings = compare.parse_settings(["--quick", "--seeds=0,1", "--num_samples=50"])
    assert settings.seeds == (0, 1) and settings.num_samples == 50 and settings.budget.steps == compare.QUICK["steps"]
    assert settings.curve_samples == compare.QUICK["curve_samples"]
    timed = compare.parse_settings(["--quick", "--seconds=5"]).budget
    assert (timed.steps, timed.seconds) == (0, 5.0)


def _record(model, seed, fd, recall, nll=None, diverged=None):
    metrics = {} if diverged else {"frechet_distance": fd, "precision": 0.5, "recall": recall, **({"nll_iwae": nll} if nll else {})}
    return {
        "model": model,
        "dataset": "mnist",
        "seed": seed,
        "workdir": "",
        "kinds": ["image"],
        "metrics": metrics,
        "train_seconds": 10.0,
        "examples_per_s": 100.0 * (seed + 1),
        "diverged": diverged,
    }


def test_report_table_means_seed_spread_and_divergence():
    records = [
        _record("vae", 0, 10.0, 0.2, nll=90.0),
        _record("vae", 1, 14.0, 0.4, nll=92.0),
        _record("gan", 0, 5.0, 0.6),
        _record("gan", 1, None, None, diverged="loss became nan at step 3"),
    ]
    rows = report.table(records)
    header, vae, gan = rows
    assert header[-1] == "seed std of Frechet dist."
    column = {title: i for i, title in enumerate(header)}
    assert "parameters" not in column and "NLL exact (nats)" not in column  # no record has them: no column
    assert vae[column["Frechet dist."]] == "12.00" and vae[-1] == "2.83"  # mean and sample std of 10 and 14
    assert vae[column["NLL bound (nats)"]] == "91.0" and gan[column["NLL bound (nats)"]] == "—"
    assert gan[0] == "gan (1 of 2 seeds diverged)" and gan[column["Frechet dist."]] == "5.00" and gan[-1] == "—"


def test_the_floor_line_takes_each_metric_s_title_and_format_from_the_registry():
    """The setup's real-data floor (comparison and study alike) formats as the tables do: the study printed its KID
    with four decimals (-64.5085) beside the tables' four significant digits."""
    floor = {"frechet_distance": 42.9123, "frechet_distance_infinity": 13.4, "kid": -64.50851, "recall": 0.8876, "classes_covered": 10}
    text = comparison.floor_text(floor, ("frechet_distance", "frechet_distance_infinity", "kid", "recall", "classes_covered"))
    assert text == "Frechet dist. 42.91, FD-inf 13.40, KID -64.51, recall 0.89, classes 10.0"


def test_a_new_capability_brings_its_column_and_its_sentence():
    """A family with an exact likelihood (say, a flow) gets the registry's nll_exact column and a sentence."""
    flow = _record("flow", 0, 8.0, 0.5)
    flow["metrics"]["nll_exact"] = 700.0
    rows = report.table([_record("vae", 0, 10.0, 0.2, nll=90.0), flow])
    column = rows[0].index("NLL exact (nats)")
    assert rows[1][column] == "—" and rows[2][column] == "700.0"
    text = report.when_to_use_which([_record("vae", 0, 10.0, 0.2, nll=90.0), flow], [])
    assert "For an exact likelihood, flow is best (NLL exact 700.0 nats); only flow of the 2 models report it." in text


def test_when_to_use_which_is_computed_from_the_numbers():
    records = [_record("vae", 0, 10.0, 0.2, nll=90.0), _record("gan", 0, 5.0, 0.6)]
    text = report.when_to_use_which(records, [])
    assert "For sample quality, gan is best (Frechet dist. 5.00), ahead of vae (10.00)." in text
    assert "For a likelihood bound, vae is best (NLL bound 90.0 nats); only vae of the 2 models report it." in text
    flipped = report.when_to_use_which([_record("vae", 0, 3.0, 0.2, nll=90.0), _record("gan", 0, 5.0, 0.6)], [])
    assert "For sample quality, vae is best (Frechet dist. 3.00)" in flipped
    collapsed = report.when_to_use_which([_record("vae", 0, 10.0, 0.2, nll=90.0), _record("gan", 0, 50.0, 0.05)], [])
    assert "At this budget gan fall below 0.1 in recall" in collapsed
    assert "For coverage of the data, vae is best (recall 0.20), ahead of gan (0.05)." in collapsed
    assert "For sample quality, vae is best (Frechet dist. 10.00)." in collapsed  # the collapsed gan is left out


def test_the_paragraph_names_ties_as_ties_and_equal_seed_spreads_as_equal():
    scores = (("ae", 5.0), ("flow", 5.0), ("gan", 9.0), ("vae", 5.0), ("sngan", 12.0), ("lsgan", 12.0))
    same_every_seed = [_record(model, seed, fd, 0.5) for model, fd in scores for seed in (0, 1)]
    text = report.when_to_use_which(same_every_seed, [])
    assert (
        "For sample quality, ae, flow and vae tie for best (Frechet dist. 5.00), ahead of gan (9.00); sngan and lsgan are last (12.00)."
        in text
    )
    text = report.when_to_use_which(same_every_seed[:6] + same_every_seed[8:], [])  # without vae
    assert "For sample quality, ae and flow tie for best (Frechet dist. 5.00), ahead of gan (9.00); sngan and lsgan are last" in text
    text = report.when_to_use_which(same_every_seed[:4] + same_every_seed[8:], [])  # ae, flow, sngan, lsgan
    assert "For sample quality, ae and flow tie for best (Frechet dist. 5.00), ahead of sngan and lsgan (12.00)." in text
    assert "Across seeds, no model is steadier than another: each one's Frechet dist. varies by 0.0% of its mean." in text
    assert "most stable" not in text
    spread = [_record("vae", 0, 10.0, 0.2), _record("vae", 1, 14.0, 0.4), _record("gan", 0, 5.0, 0.6), _record("gan", 1, 5.2, 0.6)]
    text = report.when_to_use_which(spread, [])
    assert "Across seeds, gan is the most stable (Frechet dist. 5.10 ± 0.14) and vae the least (12.00 ± 2.83)." in text
    assert "For sample quality, gan is best (Frechet dist. 5.10), ahead of vae (12.00)." in text


def test_html_tables_align_numbers_right_and_sentences_left():
    """The pages' CSS right-aligns cells (numbers line up); a cell that is a sentence (a verdict, a reason) is
    marked to align left, and everything is escaped."""
    why = "NOT met: recall 0.14 < 0.3; setting 2 met it on the search seed, but KID chose setting 4"
    table = report.html_table([["family", "recall", "verdict"], ["sngan", "0.14", why], ["gan", "0.81", "met"]])
    assert "<td class='prose'>NOT met: recall 0.14 &lt; 0.3;" in table
    assert "<td>0.14</td>" in table and "<td>met</td>" in table and table.count("class='prose'") == 1


def _tiny_vae():
    """The comparison's VAE entry at sizes that train 30 steps in about a second."""
    tiny = dict(hidden_sizes=(32,), latent_dim=4, steps_per_call=5, num_samples=16, source="embedded")
    return dataclasses.replace(IMAGE_CONTENDERS["vae"], overrides=tiny)


def test_a_run_trains_its_segments_in_one_fit_that_stops_at_each_end(tmp_path, monkeypatch):
    """A one-stage model's segments are one fit (its programs built and traced once, not once a segment) that
    stops and checkpoints at every segment's end and gives the curve its point at each but the last."""
    from genjax import experiment
    from genjax.checkpoint import Checkpoints
    from genjax.comparison import Budget, train_contender

    contender = _tiny_vae()
    fits, ends, fit_one = [], [], experiment.fit_one
    monkeypatch.setattr(experiment, "fit_one", lambda config, *rest: fits.append(config.num_steps) or fit_one(config, *rest))
    budget = Budget(steps=30, batch_size=32, segments=3)
    (result,) = train_contender(contender, budget, "mnist", 0, str(tmp_path), lambda segment, *rest: ends.append((segment, *rest)))
    assert fits == [30] and [segment for segment, *_ in ends] == [1, 2]
    assert 0 < ends[0][3] < ends[1][3] < result.summary["total_train_seconds"] and result.summary["steps"] == 30
    assert Checkpoints(str(tmp_path / "checkpoints")).manager.all_steps() == [10, 20, 30]
    assert (tmp_path / "samples_10.png").exists() and (tmp_path / "curves.png").exists()


def test_an_interrupted_run_resumes_from_its_last_segment_end(tmp_path):
    """Killed after the checkpoint at a segment's end, the rerun trains only the segments after it; the ends it
    resumed past give the curve one point (the state it resumed), not one each."""
    from genjax.comparison import Budget, train_contender

    contender = _tiny_vae()
    budget, ends = Budget(steps=30, batch_size=32, segments=3), []

    def killed_at_the_second_end(segment, *rest):
        if segment == 2:
            raise KeyboardInterrupt  # as a kill while the curve's point is drawn, after the end's checkpoint

    with pytest.raises(KeyboardInterrupt):
        train_contender(contender, budget, "mnist", 0, str(tmp_path), killed_at_the_second_end)
    assert train_steps(tmp_path)[-1] == 20
    (result,) = train_contender(contender, budget, "mnist", 0, str(tmp_path), lambda segment, *rest: ends.append(segment))
    assert ends == [1] and result.summary["steps"] == 30
    trained = train_steps(tmp_path)
    assert trained == sorted(trained) and trained.count(20) == 1  # resumed at 20, not retrained from the start
