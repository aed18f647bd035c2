"""study.md, study.html and study.json: the "when" map, its paragraph, the tuning figures, the chosen
settings, each family's best samples, the quality bars, the chosen settings against the defaults and the
published rankings beside genjax's."""

import dataclasses
import json
import math
import os

import numpy as np
from scipy import stats

from genjax.metrics.registry import BY_NAME as METRICS
from genjax.report import write_pages
from genjax.report_figures import figure_of_pngs, final_file
from genjax.study import analysis
from genjax.study.figures import budget_figure, expected_best_figure, settings_figure
from genjax.study.trials import Trial

# Best FIDs on MNIST with a budget of 100 settings (Lucic et al. 2018, Table 2) and the VAE's FID in Dai &
# Wipf (2019, Table 1). Inception-network FIDs: only the order compares with genjax's classifier features.
PUBLISHED = (
    ("NS-GAN", "Lucic et al. 2018", 6.8, ("gan", "dcgan")),
    ("WGAN", "Lucic et al. 2018", 6.7, ()),
    ("WGAN-GP", "Lucic et al. 2018", 20.3, ("wgan_gp",)),
    ("VAE", "Dai & Wipf 2019", 16.6, ("vae",)),
)


def _fmt(name: str, value: float) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return METRICS[name].format(value) if name in METRICS else format(value, ".4g")


def _cell_text(cell: dict) -> str:
    """The cell's mean (analysis.family_cell) and its interval, or what the mean is made of where it has none."""
    value = _fmt(cell["metric"], cell["mean"])
    if cell["interval"]:
        _, low, high = cell["interval"]
        return f"{value} [{_fmt(cell['metric'], low)}, {_fmt(cell['metric'], high)}]"
    seeds, measured = len(cell["seeds"]), sum(math.isfinite(v) for v in cell["seeds"])
    if not seeds:
        return f"{value} (search seed: not re-seeded)"
    if measured == seeds == 1:
        return f"{value} (1 re-seed: no interval)"
    return f"{value} ({measured} of {seeds} re-seeds measured: no interval)"


def map_tables(protocol, when: dict) -> list:
    """Per question: the verdict grid (rows: data sizes, columns: budgets), then the numbers behind it."""
    sections = []
    budgets = [f"{b:g} {protocol.unit}" for b in protocol.budgets]
    for title, found in when.items():
        rows = [["training images", *budgets]]
        rows += [[str(size), *(v or "no interval" for v in verdicts)] for size, verdicts in found["verdicts"].items()]
        sections.append((f"When: {title} (best family per cell; 'A ~ B' where the seed intervals overlap)", rows))
        detail = [["training images", "budget", "family", "setting", "metric", "mean [95% interval over re-seeds]", "search seed"]]
        for size, per_budget in found["cells"].items():
            for budget, cells in zip(budgets, per_budget):
                for family, cell in cells.items():
                    row = [str(size), budget, family, str(cell["setting"]), METRICS[cell["metric"]].title]
                    detail.append(row + [_cell_text(cell), _fmt(cell["metric"], cell["search"])])
        sections.append((f"{title}: the numbers behind the map", detail))
    return sections


def paragraph(protocol, when: dict) -> str:
    """Which, when: sentences built from the map's verdicts (nothing canned but the connectives)."""
    sentences = []
    for title, found in when.items():
        for size, verdicts in found["verdicts"].items():
            named = [(b, v) for b, v in zip(protocol.budgets, verdicts) if v]
            if not named:
                sentences.append(f"For {title} with {size} training images no family has a seed interval, so the study makes no claim.")
                continue
            alone = all(len(cells) == 1 for cells in found["cells"][size])
            if alone:
                sentences.append(f"For {title} with {size} training images only {named[0][1]} measures it.")
                continue
            clear = [(b, v) for b, v in named if "~" not in v]
            parts = [f"{v} at {b:g} {protocol.unit}" for b, v in named]
            lead = f"For {title} with {size} training images the best is " + "; ".join(parts)
            if clear:
                lead += f" ({len(clear)} of {len(named)} budget points separated by the seed intervals)"
            else:
                lead += " (no budget point separates the leaders: they tie within the seed intervals)"
            sentences.append(lead + ".")
    return " ".join(sentences)


def ranking_table(protocol, units: list[dict]) -> list:
    """The published best FIDs beside genjax's best KID (largest budget and data size), with both orders."""
    size, last = max(protocol.data_sizes), len(protocol.budgets) - 1
    ours = {}
    for unit in units:
        if unit["unit"]["data_size"] == size:
            cell = analysis.family_cell(unit, last, ("kid",))
            if cell and math.isfinite(cell["mean"]):  # the map's numbers (re-seed means), so both order alike
                ours[unit["unit"]["family"]] = cell["mean"]
    rows = [["model", "source", "published best FID (Inception)", "genjax family", "genjax best KID (classifier)"]]
    kids = {}  # model: genjax's value, ordered as numbers, not as their formatted text
    for model, source, fid, families in PUBLISHED:
        present = [f for f in families if f in ours]
        best = min(present, key=ours.get) if present else None
        if best:
            kids[model] = ours[best]
        rows.append([model, source, f"{fid:g}", best or "not in this study", _fmt("kid", ours[best]) if best else ""])
    published = [r[0] for r in sorted(rows[1:], key=lambda r: float(r[2]))]
    genjax = sorted(kids, key=kids.get)
    rows.append(["order", "", " < ".join(published), "", " < ".join(genjax) or "n/a"])
    return rows


def _margin_text(margin: dict | None) -> str:
    if margin is None:
        return ""
    tie = " (a tie)" if margin["tie"] else ""
    return f"{_fmt('kid', margin['difference'])} over setting {margin['runner_up']}: {margin['z']:.1f} s.e.{tie}"


def margin_summary(protocol, units: list[dict]) -> str:
    """How decisive the choices were (analysis.selection_margin), generated: how many were clear of the samples'
    noise, and each that was not."""
    margins = [(u, b, analysis.selection_margin(u, i)) for u in units for i, b in enumerate(protocol.budgets)]
    measured = [(u, b, m) for u, b, m in margins if m]
    if not measured:
        return "No KID standard errors in these records (their trials were measured before kid_se), so no margins."
    ties = [
        f"{u['unit']['family']} on {u['unit']['data_size']} images at {b:g} {protocol.unit} (setting {m['setting']} over {m['runner_up']}, {m['z']:.1f})"
        for u, b, m in measured
        if m["tie"]
    ]
    bound = f"{analysis.TIE_STANDARD_ERRORS:g} standard errors"
    text = f"On the search seed KID chose by at least {bound} in {len(measured) - len(ties)} of {len(measured)} choices"
    if not ties:
        return text + "."
    return (
        f"{text}; within {bound}, where the samples' noise could have made the choice either way (re-seeding both "
        f"settings would tell them apart), in {len(ties)}: {'; '.join(ties)}."
    )


SAMPLES_FACTOR = 4  # the what-if of the noise summary: this many times the samples a point


def noise_summary(protocol, rows: list[dict]) -> str:
    """What the map's intervals are made of (`rows`: analysis.noise_shares), generated: per family the samples'
    median share of its cells' re-seed KID variance, what SAMPLES_FACTOR times the samples would leave of its
    intervals' width at that share, and what SAMPLES_FACTOR times the re-seeds would (the same for every family)."""
    if not rows:
        return "No cell has two re-seeds with KID standard errors (trials measured before kid_se, or no re-seeds)."
    by_family = {}
    for r in rows:  # a share above 1 is the estimate's own noise: all of the variance the samples'
        by_family.setdefault(r["family"], []).append(min(r["share"], 1.0))
    medians = sorted(((float(np.median(v)), f) for f, v in by_family.items()), reverse=True)
    listed = ", ".join(f"{f} {m:.0%} ({math.sqrt(1.0 - m + m / SAMPLES_FACTOR):.0%})" for m, f in medians)
    n = protocol.reseeds  # a 95% t interval's half-width is t(0.975, n - 1) s / sqrt(n)
    seeds_width = stats.t.ppf(0.975, SAMPLES_FACTOR * n - 1) / stats.t.ppf(0.975, n - 1) / math.sqrt(SAMPLES_FACTOR) if n > 1 else math.nan
    return (
        f"A re-seed's KID moves with its training seed and with its {protocol.num_samples} samples; kid_se^2 measures the second. "
        f"The samples' share of the re-seeds' KID variance, the median over each family's cells (shares above 100%, an "
        f"estimate's noise, counted as 100%), and in brackets how wide its intervals would be at that share with "
        f"{SAMPLES_FACTOR}x the samples a point (--num_samples {SAMPLES_FACTOR * protocol.num_samples}): {listed}. "
        f"{SAMPLES_FACTOR}x the re-seeds ({SAMPLES_FACTOR * n} a setting) would leave every family's intervals {seeds_width:.0%} as "
        f"wide (Student's t with more degrees of freedom included)."
    )


def equal_compute_table(protocol, rows: list[dict]) -> list | str:
    """Per family and budget point, the range of its trials' training seconds / budget - 1 (`rows`:
    analysis.budget_errors) and how many trials reached the point."""
    if protocol.unit == "steps":
        return "A budget in steps: every trial trains exactly its steps."
    if not rows:
        return "No trial has reached a budget point yet."
    table = [["family", *(f"{b:g} {protocol.unit}" for b in protocol.budgets)]]
    for family in dict.fromkeys(r["family"] for r in rows):
        cells = {r["budget"]: r for r in rows if r["family"] == family}
        ranges = [f"{c['low']:+.1%} to {c['high']:+.1%} ({c['trials']})" if (c := cells.get(b)) else "" for b in protocol.budgets]
        table.append([family, *ranges])
    return table


def evaluation_table(rows: list[dict]) -> list | str:
    """Per family (`rows`: analysis.evaluation_seconds), its evaluations' seconds, a point's mean and its share of
    all of them; then the total."""
    total = sum(r["seconds"] for r in rows)
    if not rows or total <= 0:
        return "No trial has been measured at a budget point yet."
    table = [["family", "points measured", "evaluation seconds", "seconds a point", "share"]]
    for r in [*rows, {"family": "all", "points": sum(r["points"] for r in rows), "seconds": total}]:
        table.append(
            [r["family"], str(r["points"]), f"{r['seconds']:.0f}", f"{r['seconds'] / r['points']:.1f}", f"{r['seconds'] / total:.0%}"]
        )
    return table


def settings_table(protocol, units: list[dict]) -> list:
    rows = [["family", "training images", "budget", "chosen setting", "KID margin over the runner-up", "values"]]
    for unit in units:
        for i, (budget, k) in enumerate(zip(protocol.budgets, unit["best"])):
            values = ", ".join(
                f"{field}={value:.4g}" if isinstance(value, float) else f"{field}={value}" for field, value in unit["settings"][k].items()
            )
            rows.append(
                [
                    unit["unit"]["family"],
                    str(unit["unit"]["data_size"]),
                    f"{budget:g} {protocol.unit}",
                    "default" if k == 0 else str(k),
                    _margin_text(analysis.selection_margin(unit, i)),
                    values,
                ]
            )
    return rows


def bars_section(bars: list[dict]) -> list:
    """The quality bars' table (`bars`: analysis.quality_bars)."""
    names = ("recall", "classes_covered", "kid", "frechet_distance", "frechet_distance_infinity")
    titles = [METRICS[name].title for name in names]
    bar_title = f"recall >= {analysis.RECALL_BAR} and >= {analysis.CLASSES_BAR} classes"
    rows = [["family", "best setting", "steps", *titles, "diverged settings", bar_title]]
    for bar in bars:
        verdict = "met" if bar["passed"] else f"NOT met: {bar['why']}"
        values = [_fmt(name, bar[name]) for name in names]
        rows.append([bar["family"], str(bar["setting"]), f"{bar['steps']:,}", *values, str(bar["diverged_settings"]), verdict])
    return rows


# what the chosen setting does against the default: the table's verdict and the summary's clause
VERDICTS = {
    "default": "is the default",
    "beats": "beats the default on the re-seeds' mean, not separated by the intervals",
    "beats, separated": "beats the default on the re-seeds, intervals disjoint",
    "does not beat": "does not beat the default on the re-seeds",
    "search seed only": "was compared on the search seed only (the default was not re-seeded here: --reseed_default)",
}
COMPARED = ("beats", "beats, separated", "does not beat")  # the verdicts with both settings re-seeded


def _span_text(span) -> str:
    """'mean [low, high]' of a KID interval."""
    return f"{_fmt('kid', span[0])} [{_fmt('kid', span[1])}, {_fmt('kid', span[2])}]"


def _seeds_text(values: list[float], span) -> str:
    """The interval of a setting's re-seeds, or the values themselves where there is none."""
    if not values:
        return ""
    return _span_text(span) if span else ", ".join(_fmt("kid", v) for v in values)


def search_section(protocol, found: list[dict]) -> tuple[list, str]:
    """The chosen setting against the default per unit and budget point (KID; `found`: analysis.against_default),
    and a summary generated from it."""
    rows = [
        [
            "family",
            "training images",
            "budget",
            "chosen setting",
            "KID default / chosen (search seed)",
            "default: mean [95%] over re-seeds",
            "chosen: mean [95%] over re-seeds",
            "chosen lower on paired seeds",
            "default - chosen, paired: mean [95%]",
            "verdict",
        ]
    ]
    for r in found:
        compared = r["verdict"] in COMPARED
        rows.append(
            [
                r["family"],
                str(r["data_size"]),
                f"{r['budget']:g} {protocol.unit}",
                "default" if r["setting"] == 0 else str(r["setting"]),
                f"{_fmt('kid', r['search_default'])} / {_fmt('kid', r['search_chosen'])}",
                _seeds_text(r["default_seeds"], r["default_interval"]),
                _seeds_text(r["chosen_seeds"], r["chosen_interval"]) if r["setting"] else "",
                f"{r['lower_on_seeds']} of {len(r['chosen_seeds'])}" if compared else "",
                _span_text(r["paired_gain"]) if compared and r["paired_gain"] else "",
                VERDICTS[r["verdict"]],
            ]
        )
    return rows, _search_summary(protocol, [r for r in found if r["budget"] == protocol.budgets[-1]])


def _search_summary(protocol, found: list[dict]) -> str:
    """The largest budget point's verdicts in sentences: the units that kept the default, and those whose choice
    was compared on the search seed only, each named once in a list; a clause for each re-seeded comparison."""

    def listed(verdict: str, what) -> str:
        by_family = {}
        for r in found:
            if r["verdict"] == verdict:
                by_family.setdefault(r["family"], []).append(what(r))
        return ", ".join(f"{family} ({', '.join(items)})" for family, items in by_family.items())

    parts = []
    kept = listed("default", lambda r: f"{r['data_size']} images")
    if kept:
        parts.append(f"the search chose the default for {kept}")
    unjudged = listed("search seed only", lambda r: f"setting {r['setting']} on {r['data_size']} images")
    if unjudged:
        parts.append(f"it chose another setting for {unjudged}, {VERDICTS['search seed only'].removeprefix('was ')}")
    for r in found:
        if r["verdict"] in COMPARED:
            gain = f"; default - chosen, paired: {_span_text(r['paired_gain'])}" if r["paired_gain"] else ""
            parts.append(
                f"{r['family']} on {r['data_size']} images, the search chose setting {r['setting']}, which {VERDICTS[r['verdict']]} "
                f"({r['lower_on_seeds']} of {len(r['chosen_seeds'])} paired seeds lower{gain})"
            )
    return f"At {protocol.budgets[-1]:g} {protocol.unit}: " + "; ".join(parts) + "."


def _samples_figure(path: str, protocol, units: list[dict]) -> bool:
    size, last = max(protocol.data_sizes), len(protocol.budgets) - 1
    images = {}
    for unit in units:
        if unit["unit"]["data_size"] == size:
            k = unit["best"][last]
            trial = Trial(unit["unit"]["family"], size, k, unit["settings"][k], protocol.search_seed)
            directory = trial.directory(unit["root"])
            images[f"{trial.family} (setting {k})"] = final_file(directory, "samples") if os.path.isdir(directory) else None
    return figure_of_pngs(path, images, f"best setting of each family: {size} images, {protocol.budgets[last]:g} {protocol.unit}")


def write_study_report(root: str, protocol, units: list[dict], header: dict) -> dict:
    """study.md, study.html, study.json and the figures in `root` (each unit's record names the workdir its
    trials are in: `root` itself, or a slice's); returns the page paths."""
    os.makedirs(root, exist_ok=True)
    when = analysis.when_map(protocol, units)
    # each computed once, for its section and for study.json
    quality_bars, against_default = analysis.quality_bars(protocol, units), analysis.against_default(protocol, units)
    search_rows, search_note = search_section(protocol, against_default)
    noise_shares, budget_errors = analysis.noise_shares(protocol, units), analysis.budget_errors(protocol, units)
    evaluation = analysis.evaluation_seconds(units)
    sections = [("setup", "\n".join(f"- {k}: {v}" for k, v in header.items()))]
    sections += map_tables(protocol, when)
    sections.append(("Which, when (generated from the map)", paragraph(protocol, when) or "no claims: no family has a seed interval"))
    sections.append(("What the intervals are made of: the samples' noise and the training seed's", noise_summary(protocol, noise_shares)))
    sections.append(("Quality bars (largest budget and data size; seed means)", bars_section(quality_bars)))
    sections.append(("Does the search work? The chosen setting against the default (KID, lower is better)", search_note))
    sections.append(("The chosen setting against the default, per cell", search_rows))
    sections.append(
        ("Published rankings (only the orders compare: Inception FIDs against classifier-feature KIDs)", ranking_table(protocol, units))
    )
    sections.append(("How decisive is each choice? (KID margin over the runner-up, in standard errors)", margin_summary(protocol, units)))
    sections.append(("Chosen settings (best KID on the search seed)", settings_table(protocol, units)))
    sections.append(
        (
            "Equal compute: training seconds / budget - 1 over each family's trials (lowest to highest; trials)",
            equal_compute_table(protocol, budget_errors),
        )
    )
    sections.append(("Evaluation time, apart from training: per family", evaluation_table(evaluation)))
    figures = []
    for name, title, draw in (
        ("fig_settings.png", "KID over the K settings (default circled)", settings_figure),
        ("fig_expected_best.png", "expected best KID after k settings (Lucic et al. 2018)", expected_best_figure),
        (
            "fig_budget.png",
            "best setting's KID against steps, seconds and FLOPs (95% seed intervals; lower bars cut at a tenth of the value)",
            budget_figure,
        ),
    ):
        if draw(os.path.join(root, name), protocol, units):
            figures.append((title, name))
    if _samples_figure(os.path.join(root, "fig_samples.png"), protocol, units):
        figures.append(("samples of each family's best trial", "fig_samples.png"))
    paths = write_pages(root, "study", "genjax study: which model, when", sections, figures)
    with open(os.path.join(root, "study.json"), "w") as f:
        json.dump(
            {
                "protocol": dataclasses.asdict(protocol),
                "header": header,
                "map": when,
                "units": units,
                "quality_bars": quality_bars,
                "against_default": against_default,
                "noise_shares": noise_shares,
                "budget_errors": budget_errors,
                "evaluation_seconds": evaluation,
            },
            f,
            indent=1,
            default=float,
        )
    paths["json"] = os.path.join(root, "study.json")
    return paths
