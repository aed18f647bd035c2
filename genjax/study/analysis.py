"""What a study's records say: seed intervals, the "when" map, tuning curves and the quality bars.

Intervals. A family's score at a budget point is that of its best setting there (picked on the search seed
by KID). The search seed's own score is the minimum over K settings and so biased low (the winner's
curse), so the interval uses only the re-seeded runs: mean +- t(0.975, n - 1) s / sqrt(n) over the n
re-seeding seeds (a 95% Student-t interval). With no re-seeds there is no interval, and no claim.

The map. At each (budget, data size) cell the family with the best mean wins; the cell names it alone
only when its interval and every other family's are disjoint from it ("A"), and otherwise every family
whose interval overlaps the winner's ("A ~ B").

How decisive the choice is. KID picks the best setting on one seed, and one KID has sampling noise of its own:
its 500 samples (`kid_se`, genjax.metrics.kid, the test images held fixed, since every setting is measured
against the same ones). The margin of a choice is the runner-up's KID minus the chosen one's in standard
errors of that difference, z = (KID_2 - KID_1) / sqrt(se_1^2 + se_2^2) (the two sample sets are independent):
under TIE_STANDARD_ERRORS (2) the samples' noise could have made the choice either way. It says nothing of the
training seed's noise, which only re-seeding measures.

What the intervals are made of. A re-seed's KID varies with its training seed and with its 500 samples; the
second part is measured in each run (kid_se^2, the test images fixed as for the re-seeds, which share them).
In a cell the samples' share of the re-seeds' KID variance is mean(kid_se^2) / var(KIDs) (an estimate: it can
pass 1 with few seeds). The rest is the training seed's, which only more seeds average; the samples' part
falls like 1/N with N samples a point (the U-statistic's leading term), so N x c leaves a variance of
(1 - share) + share / c of it and the interval sqrt of that as wide.

Expected best after k settings (Lucic et al. 2018, Fig. 4): the expected minimum of the scores of k
settings drawn without replacement from the K tried; with the scores sorted s_(1) <= ... <= s_(K),
P(min = s_(i)) = C(K - i, k - 1) / C(K, k).
"""

import math

import numpy as np
from scipy import stats

from genjax.metrics.registry import BY_NAME as METRICS
from genjax.study.run import point_at, score

# (title, metrics in order of preference): the quantities the map answers "which, when" for. The two likelihoods
# are two questions: the IWAE bound is of a Bernoulli likelihood of [0, 1] intensities, the exact NLL of 8-bit
# images under uniform dequantization (genjax.metrics.registry), so one map ranking both would compare units
# that differ (a flow's 1,800 nats against a VAE's 110 say nothing about which models the data better).
QUESTIONS = (
    ("sample quality", ("kid",)),
    ("reconstruction", ("recon_mse",)),
    ("likelihood bound (Bernoulli)", ("nll_iwae",)),
    ("exact likelihood (dequantized)", ("nll_exact",)),
)


def interval(values: list[float]) -> tuple[float, float, float] | None:
    """(mean, low, high): a 95% Student-t interval of the mean; None without two finite values."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) < 2 or len(finite) < len(values):
        return None
    mean, half = float(np.mean(finite)), float(stats.t.ppf(0.975, len(finite) - 1) * np.std(finite, ddof=1) / math.sqrt(len(finite)))
    return mean, mean - half, mean + half


def metric_of(point: dict | None, names: tuple) -> tuple[str, float] | None:
    """The first of `names` a point measured, as (name, value)."""
    for name in names:
        value = (point or {}).get("metrics", {}).get(name)
        if value is not None:
            return name, value
    return None


def family_cell(unit: dict, budget_index: int, names: tuple) -> dict | None:
    """One family's entry at one budget point for one question: its best setting's search score, its
    re-seeded scores, their interval, and `mean`, the value every section reports (None when the family does not
    measure that question). `mean` is the re-seeds' mean wherever the setting was re-seeded, one re-seed included
    (the search seed's score is biased low: module docstring), over those that measured the point; the search
    seed's score only with no re-seeds."""
    k = unit["best"][budget_index]
    found = metric_of(point_at(unit["search"][k], budget_index), names)
    if found is None and all(metric_of(point_at(r, budget_index), names) is None for r in unit["search"]):
        return None
    name = found[0] if found else names[0]
    reseeded = [metric_of(point_at(r, budget_index), (name,)) for r in unit["reseeded"].get(str(k), [])]
    values = [v[1] if v else math.nan for v in reseeded]
    search = found[1] if found else math.nan
    measured = [v for v in values if math.isfinite(v)]
    return {
        "setting": k,
        "metric": name,
        "search": search,
        "seeds": values,
        "interval": interval(values),
        "mean": (float(np.mean(measured)) if measured else math.nan) if values else search,
        "sign": -float(METRICS[name].better),  # registry: -1 when lower is better; the map ranks by sign x mean, lowest first
    }


def decide(cells: dict) -> tuple[str, list[str]]:
    """(verdict, families tied with the winner) for {family: cell}: 'A', 'A ~ B', or '' when no family has an
    interval. Lower sign * mean wins."""
    ranked = {name: c for name, c in cells.items() if c and c["interval"]}
    if not ranked:
        return "", []
    key = {name: c["sign"] * c["interval"][0] for name, c in ranked.items()}
    winner = min(key, key=key.get)
    low, high = ranked[winner]["interval"][1:]
    tied = [n for n, c in ranked.items() if n != winner and c["interval"][1] <= high and c["interval"][2] >= low]
    tied.sort(key=key.get)
    return " ~ ".join([winner, *tied]), [winner, *tied]


def when_map(protocol, units: list[dict]) -> dict:
    """{question: {data_size: [verdict per budget point]}} plus the cells behind each verdict."""
    result = {}
    for title, names in QUESTIONS:
        rows, details = {}, {}
        for size in protocol.data_sizes:
            of_size = [u for u in units if u["unit"]["data_size"] == size]
            row, row_cells = [], []
            for i in range(len(protocol.budgets)):
                cells = {u["unit"]["family"]: family_cell(u, i, names) for u in of_size}
                cells = {n: c for n, c in cells.items() if c}
                row.append(decide(cells)[0] if cells else "")
                row_cells.append(cells)
            rows[size], details[size] = row, row_cells
        if any(any(cells for cells in row) for row in details.values()):
            result[title] = {"verdicts": rows, "cells": details}
    return result


def noise_shares(protocol, units: list[dict]) -> list[dict]:
    """Per unit and budget point with >= 2 re-seeds of the chosen setting that recorded kid_se: the variance
    of their KIDs (ddof 1), the mean of their kid_se^2, and the samples' share of the first (module docstring)."""
    rows = []
    for unit in units:
        for i, budget in enumerate(protocol.budgets):
            points = [point_at(r, i) for r in unit["reseeded"].get(str(unit["best"][i]), [])]
            found = [(p["metrics"].get("kid"), p["metrics"].get("kid_se")) for p in points if p]
            found = [(k, se) for k, se in found if k is not None and se is not None and math.isfinite(k) and math.isfinite(se)]
            if len(found) < 2 or len(found) < len(points):
                continue
            kids, errors = np.array(found).T
            seeds, samples = float(np.var(kids, ddof=1)), float(np.mean(np.square(errors)))
            share = samples / seeds if seeds > 0 else math.inf
            rows.append(
                {
                    "family": unit["unit"]["family"],
                    "data_size": unit["unit"]["data_size"],
                    "budget": budget,
                    "seeds_variance": seeds,
                    "samples_variance": samples,
                    "share": share,
                }
            )
    return rows


def budget_errors(protocol, units: list[dict]) -> list[dict]:
    """Under a budget in seconds, how far the trials trained from it (equal compute): per family and budget
    point, the lowest and highest of training seconds / budget - 1 over every trial that reached the point
    (its settings and re-seeds, every data size). Empty under a budget in steps: every trial trains its steps."""
    if protocol.unit != "seconds":
        return []
    errors = {}
    for family, point in measured_points(units):
        errors.setdefault((family, point["budget"]), []).append(point["train_seconds"] / point["budget"] - 1)
    return [{"family": f, "budget": b, "low": min(e), "high": max(e), "trials": len(e)} for (f, b), e in errors.items()]


def measured_points(units: list[dict]):
    """(family, point) for every budget point a trial of the units was measured at: its K settings and its
    re-seeds (a diverged trial's points before it diverged; a re-seed not run yet has none)."""
    for unit in units:
        for record in unit["search"] + [r for seeds in unit["reseeded"].values() for r in seeds]:
            for point in (record or {}).get("points", []):
                yield unit["unit"]["family"], point


def evaluation_seconds(units: list[dict]) -> list[dict]:
    """Per family, the budget points its trials were measured at and the seconds those evaluations took (samples,
    metrics, likelihoods), apart from training; the most expensive family first."""
    totals = {}
    for family, point in measured_points(units):
        entry = totals.setdefault(family, {"family": family, "points": 0, "seconds": 0.0})
        entry["points"] += 1
        entry["seconds"] += point["eval_seconds"]
    return sorted(totals.values(), key=lambda entry: -entry["seconds"])


def expected_best(scores: list[float]) -> list[float]:
    """E[min of k of the scores drawn without replacement], k = 1..K (lower is better; inf stays inf)."""
    ordered = sorted(scores)
    total = len(ordered)
    out = []
    for k in range(1, total + 1):
        weights = [math.comb(total - i, k - 1) / math.comb(total, k) for i in range(1, total + 1)]
        terms = [w * s for w, s in zip(weights, ordered) if w > 0]
        out.append(float(sum(terms)) if all(math.isfinite(t) for t in terms) else math.inf)
    return out


def search_scores(unit: dict, budget_index: int) -> list[float]:
    """The criterion of each of the K settings at one budget point (search seed; inf: diverged)."""
    return [score(point_at(r, budget_index)) for r in unit["search"]]


TIE_STANDARD_ERRORS = 2.0  # a KID margin under this many standard errors: a choice within one KID's noise


def standard_errors_apart(unit: dict, budget_index: int, chosen: int, other: int) -> float | None:
    """(KID_other - KID_chosen) / sqrt(se_chosen^2 + se_other^2) on the search seed (module docstring); None
    where a KID or its standard error is missing (records written before kid_se) or not finite."""
    metrics = [(point_at(unit["search"][i], budget_index) or {}).get("metrics", {}) for i in (chosen, other)]
    values = [m.get(name) for m in metrics for name in ("kid", "kid_se")]
    if None in values or not all(map(math.isfinite, values)):
        return None
    spread = math.hypot(values[1], values[3])
    return (values[2] - values[0]) / spread if spread > 0 else math.inf


def selection_margin(unit: dict, budget_index: int) -> dict | None:
    """The chosen setting's KID margin over the runner-up's on the search seed: {"setting", "runner_up",
    "difference", "z", "tie"}; None with fewer than two measured settings or no standard errors."""
    scores, k = search_scores(unit, budget_index), unit["best"][budget_index]
    others = sorted((s, j) for j, s in enumerate(scores) if j != k and math.isfinite(s))
    z = standard_errors_apart(unit, budget_index, k, others[0][1]) if others and math.isfinite(scores[k]) else None
    if z is None:
        return None
    j = others[0][1]
    return {"setting": k, "runner_up": j, "difference": scores[j] - scores[k], "z": z, "tie": z < TIE_STANDARD_ERRORS}


RECALL_BAR, CLASSES_BAR = 0.3, 9  # the bar: recall >= 0.3 and >= 9 classes covered


def meets_bar(metrics: dict) -> bool:
    recall, classes = metrics.get("recall"), metrics.get("classes_covered")
    return recall is not None and classes is not None and recall >= RECALL_BAR and classes >= CLASSES_BAR


def _classes(count: float) -> str:
    """A count of classes, or a mean over re-seeds to a tenth: 8.7 rounded to "9 classes < 9" read as met."""
    text = f"{count:.0f}" if float(count).is_integer() else f"{count:.1f}"
    return f"{text} class" if text == "1" else f"{text} classes"


def why_not_met(unit: dict, k: int, budget_index: int, values: dict, reseeds: int) -> list[str]:
    """Why a family's chosen setting k misses the bar at a point, from the search records: the three causes
    read differently. The chosen setting met it on the search seed but not over its re-seeds (seed
    variance); another setting met it on the search seed and KID chose k (a lower KID with lower recall: the
    selection, not the training); or no setting met it (none of the K trains to it in this budget)."""
    why = []
    if not values["recall"] >= RECALL_BAR:
        why.append(f"recall {values['recall']:.2f} < {RECALL_BAR}")
    if not values["classes_covered"] >= CLASSES_BAR:
        why.append(f"{_classes(values['classes_covered'])} < {CLASSES_BAR}")
    found = [(j, (point_at(r, budget_index) or {}).get("metrics", {})) for j, r in enumerate(unit["search"])]
    scores = search_scores(unit, budget_index)

    def described(j, metrics):
        error = f" +- {metrics['kid_se']:.3g}" if metrics.get("kid_se") is not None else ""
        return (
            f"setting {j} (KID {metrics.get('kid', math.nan):.4g}{error}, recall {metrics.get('recall', math.nan):.2f}, "
            f"{_classes(metrics.get('classes_covered', 0))})"
        )

    passing = sorted((scores[j], j) for j, m in found if meets_bar(m))
    if reseeds and meets_bar(found[k][1]):
        why.append(
            f"it met the bar on the search seed as {described(*found[k])} but not on average over its {reseeds} re-seeds: seed variance"
        )
    elif passing:
        j = passing[0][1]
        z, apart = standard_errors_apart(unit, budget_index, k, j), ""
        if z is not None:
            within = f", within one KID's noise (< {TIE_STANDARD_ERRORS:g})" if z < TIE_STANDARD_ERRORS else ""
            apart = f" ({z:.1f} standard errors apart{within})"
        why.append(
            f"{described(*found[j])} met it on the search seed, but KID chose {described(*found[k])}{apart}: the selection, not the training"
        )
    else:
        j = max(range(len(found)), key=lambda i: (found[i][1].get("recall", -1.0), -scores[i]))
        why.append(f"no setting of the {len(found)} met it on the search seed; the highest recall: {described(*found[j])}")
    return why


def quality_bars(protocol, units: list[dict]) -> list[dict]:
    """Per family at its largest budget and largest data size: does its best setting reach recall >= 0.3
    and cover >= 9 classes (seed means over the re-seeded runs, else the search run)? A family that does not
    gets why (why_not_met)."""
    size, last = max(protocol.data_sizes), len(protocol.budgets) - 1
    rows = []
    for unit in units:
        if unit["unit"]["data_size"] != size:
            continue
        k = unit["best"][last]
        reseeded = unit["reseeded"].get(str(k)) or []
        runs = reseeded or [unit["search"][k]]
        values = {}
        for name in ("recall", "classes_covered", "kid", "frechet_distance", "frechet_distance_infinity"):
            found = [point_at(r, last)["metrics"].get(name) for r in runs if point_at(r, last)]
            values[name] = float(np.mean(found)) if found and None not in found else math.nan
        diverged = sum(r.get("diverged") is not None for r in unit["search"])
        best_point = point_at(unit["search"][k], last)
        steps = best_point["steps"] if best_point else 0
        passed = meets_bar(values)
        why = []
        if not passed:
            why = why_not_met(unit, k, last, values, len(reseeded))
            why.append(f"the chosen setting trained {steps:,} steps in the budget")
            if diverged:
                why.append(f"{diverged} settings diverged")
        rows.append(
            {
                "family": unit["unit"]["family"],
                "setting": k,
                "steps": steps,
                "diverged_settings": diverged,
                "passed": bool(passed),
                "why": "; ".join(why),
                **values,
            }
        )
    return rows


def against_default(protocol, units: list[dict]) -> list[dict]:
    """Does the search beat the defaults? Per unit and budget point, the chosen setting's KID against the
    default's (setting 0): on the search seed (where the chosen one wins by construction, so this alone is
    no evidence), and, where both were re-seeded (`reseed_default`), as means with 95% intervals over the
    same re-seeding seeds and paired seed by seed (the same initial keys and batches for both): the paired gain is
    the mean and 95% interval of default - chosen over the seeds (wholly above 0: the chosen setting is better).

    verdict: 'default' (the search chose the default), 'beats' (lower mean; 'beats, separated' when the
    intervals are disjoint), 'does not beat' (the search seed's pick is worse on the other seeds), or
    'search seed only' (the default was not re-seeded at that point)."""
    rows = []
    for unit in units:
        for i, budget in enumerate(protocol.budgets):
            k = unit["best"][i]
            searched = search_scores(unit, i)
            # a re-seed that diverged before this point scores inf; one that stopped earlier (a default not
            # re-seeded this far) has no score here
            default, chosen = (
                [score(point_at(r, i)) for r in unit["reseeded"].get(str(s), []) if point_at(r, i) or r.get("diverged")] for s in (0, k)
            )
            row = {
                "family": unit["unit"]["family"],
                "data_size": unit["unit"]["data_size"],
                "budget": budget,
                "setting": k,
                "search_default": searched[0],
                "search_chosen": searched[k],
                "default_seeds": default,
                "chosen_seeds": chosen,
                "default_interval": interval(default),
                "chosen_interval": interval(chosen),
                "lower_on_seeds": sum(c < d for c, d in zip(chosen, default)),
                # default - chosen seed by seed (> 0: the chosen setting is better): shared seeds, so the paired interval
                "paired_gain": interval([d - c for d, c in zip(default, chosen)]) if k and len(default) == len(chosen) else None,
            }
            if k == 0:
                row["verdict"] = "default"
            elif not default or len(default) != len(chosen):
                row["verdict"] = "search seed only"
            elif np.mean(chosen) < np.mean(default):  # inf (a diverged re-seed) makes a mean inf: it loses
                disjoint = row["chosen_interval"] and row["default_interval"] and row["chosen_interval"][2] < row["default_interval"][1]
                row["verdict"] = "beats, separated" if disjoint else "beats"
            else:
                row["verdict"] = "does not beat"
            rows.append(row)
    return rows
