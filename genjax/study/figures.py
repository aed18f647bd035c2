"""The study's figures: score over the K settings, expected best after k settings, quality against budget."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import numpy as np  # noqa: E402

from genjax.report_figures import _save  # noqa: E402
from genjax.study.analysis import expected_best, family_cell, search_scores  # noqa: E402

AXES = (("steps", "training steps"), ("train_seconds", "training seconds"), ("flops", "XLA FLOPs"))


def _by_size(protocol, units: list[dict]) -> dict:
    return {size: [u for u in units if u["unit"]["data_size"] == size] for size in protocol.data_sizes}


def _finite(values):
    return [v for v in values if math.isfinite(v)]


MARKERS = "osD^v"


def family_style(units: list[dict], family: str) -> dict:
    """One look per family (by its order among the units) in every figure: matplotlib's 10 cycle colours, then
    the same colours with another marker and a dashed line (with 11 families the 11th had repeated the 1st's look)."""
    index = list(dict.fromkeys(u["unit"]["family"] for u in units)).index(family)
    return {"color": f"C{index % 10}", "marker": MARKERS[index // 10 % len(MARKERS)], "linestyle": "-" if index < 10 else "--"}


def settings_figure(path: str, protocol, units: list[dict]) -> bool:
    """Per data size, each family's KID at the largest budget over its K settings (a strip plot; the default
    setting circled, diverged settings marked at the top)."""
    last = len(protocol.budgets) - 1
    groups = _by_size(protocol, units)
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 3.8), squeeze=False)
    drawn = False
    for ax, (size, of_size) in zip(axes[0], groups.items()):
        top = max([max(_finite(search_scores(u, last)) or [1e-3]) for u in of_size] or [1e-3])
        for x, unit in enumerate(of_size):
            scores = search_scores(unit, last)
            shown = [s if math.isfinite(s) else top * 2 for s in scores]
            jitter = np.linspace(-0.15, 0.15, len(shown))
            ax.scatter(x + jitter, np.maximum(shown, 1e-5), s=18, color="C0", alpha=0.8)
            ax.scatter([x + jitter[0]], [max(shown[0], 1e-5)], s=80, facecolors="none", edgecolors="C3")
            drawn = True
        ax.set_yscale("log")
        label_log_axis(ax, "y")
        ax.set_xticks(range(len(of_size)), [u["unit"]["family"] for u in of_size], rotation=30)
        ax.set_ylabel("KID (lower is better)")
        ax.set_title(f"{size} training images, budget {protocol.budgets[last]:g} {protocol.unit}")
    if drawn:
        _save(fig, path)
    plt.close(fig)
    return drawn


def label_narrow_symlog(ax) -> None:
    """A symlog y axis labels its decades only (and, unlike a log axis, none of its minor ticks), so a view
    within one decade (a small study's KIDs: 700 to 900, say) showed no numbers at all; there, plain numbers at
    a few evenly spaced ticks instead. A view with two decades or more keeps them."""
    low, high = ax.get_ylim()
    if sum(low <= tick <= high for tick in ax.yaxis.get_major_locator()()) < 2:
        ax.yaxis.set_major_locator(ticker.MaxNLocator(5))
        ax.yaxis.set_major_formatter(ticker.ScalarFormatter())
        ax.yaxis.set_minor_locator(ticker.NullLocator())


def label_log_axis(ax, which: str) -> None:
    """A log axis ("x" or "y" of `ax`) labels no minor tick: matplotlib labels them in a view of about a decade or
    less, and on a narrow panel "3×10⁻¹" ran into "4×10⁻¹". It labels its decades when two or more are in view;
    else 1, 2 and 5 times a power of ten when the view spans over a factor of 7; else a few evenly spaced plain
    numbers (within a factor of 7, log and linear spacing differ little). Call it once the data are drawn: it
    reads the view."""
    axis = getattr(ax, f"{which}axis")
    low, high = sorted(ax.get_xlim() if which == "x" else ax.get_ylim())  # get_view_interval can be stale before a draw
    axis.set_minor_formatter(ticker.NullFormatter())
    if sum(low <= tick <= high for tick in axis.get_major_locator().tick_values(low, high)) >= 2:
        return
    if high > 7 * low:  # then two or more of 1, 2, 5 x 10^n are in view (LogLocator falls back to linear ticks below two)
        axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(ticker.LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(math.inf, math.inf)))
    else:
        axis.set_major_locator(ticker.MaxNLocator(5, steps=[1, 2, 2.5, 5, 10]))
        axis.set_major_formatter(ticker.ScalarFormatter())
        axis.set_minor_locator(ticker.NullLocator())


def expected_best_figure(path: str, protocol, units: list[dict]) -> bool:
    """Expected best KID after k random settings, k = 1..K, per family (Lucic et al. 2018, Fig. 4)."""
    last = len(protocol.budgets) - 1
    groups = _by_size(protocol, units)
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 3.8), squeeze=False)
    for ax, (size, of_size) in zip(axes[0], groups.items()):
        for unit in of_size:
            curve = expected_best(search_scores(unit, last))
            ks = [k + 1 for k, v in enumerate(curve) if math.isfinite(v)]
            family = unit["unit"]["family"]
            ax.plot(ks, [curve[k - 1] for k in ks], label=family, **family_style(units, family))
        # KID is unbiased, so a best of several settings can be <= 0: logarithmic beyond +-10, linear within
        ax.set_yscale("symlog", linthresh=10.0)
        label_narrow_symlog(ax)
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))  # k counts settings: no 1.2, 1.4, ... ticks
        ax.set_xlabel("settings tried k")
        ax.set_ylabel("expected best KID")
        ax.set_title(f"{size} training images")
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))  # beside the curves, not over them
    _save(fig, path)
    return True


def _kid_series(protocol, unit: dict) -> dict:
    """One family's best-setting KID along the budget points: {axis: x values}, centres (the cell's mean, as every
    section of the report reads it: the re-seeds', or the search seed's score without re-seeds) and each centre's
    interval (low, high; None without one: fewer than two re-seeds)."""
    series = {"x": {axis: [] for axis, _ in AXES}, "centre": [], "interval": []}
    for i in range(len(protocol.budgets)):
        cell = family_cell(unit, i, ("kid",))
        point = unit["search"][unit["best"][i]]["points"]
        if not cell or i >= len(point):
            continue
        centre = cell["mean"]
        if not math.isfinite(centre):
            continue
        for axis, _ in AXES:
            series["x"][axis].append(point[i][axis])
        series["centre"].append(centre)
        series["interval"].append(cell["interval"][1:] if cell["interval"] else None)
    return series


def budget_figure(path: str, protocol, units: list[dict]) -> bool:
    """Each family's best setting's KID against steps, training seconds and FLOPs (rows: data sizes), with
    the seed interval where it has one. KID is an unbiased estimate, so a mean (and an interval's end) can be
    <= 0, which a log axis cannot show: such a point is drawn at the figure's floor, a tenth of its smallest
    positive KID, with a downward marker, and a bar below a tenth of its point is cut there."""
    groups = _by_size(protocol, units)
    series = {id(unit): _kid_series(protocol, unit) for unit in units}
    positive = [c for s in series.values() for c in s["centre"] if c > 0]
    floor = min(positive) / 10 if positive else 1.0
    fig, axes = plt.subplots(len(groups), len(AXES), figsize=(14, 3.6 * len(groups)), squeeze=False)
    for row, (size, of_size) in zip(axes, groups.items()):
        for unit in of_size:
            found = series[id(unit)]
            if not found["centre"]:
                continue
            shown = [max(c, floor) for c in found["centre"]]
            lows = [y - max(iv[0], y / 10) if iv else 0.0 for y, iv in zip(shown, found["interval"], strict=True)]
            highs = [max(iv[1] - y, 0.0) if iv else 0.0 for y, iv in zip(shown, found["interval"], strict=True)]
            family = unit["unit"]["family"]
            style = family_style(units, family)
            at_floor = [j for j, c in enumerate(found["centre"]) if c <= 0]
            for ax, (axis, _) in zip(row, AXES):
                xs = found["x"][axis]
                ax.errorbar(xs, shown, yerr=[lows, highs], capsize=3, label=family, **style)
                if at_floor:
                    ax.plot([xs[j] for j in at_floor], [floor] * len(at_floor), "v", color=style.get("color"), markersize=9)
        for ax, (_, label) in zip(row, AXES):
            ax.set_xscale("log")
            ax.set_yscale("log")
            label_log_axis(ax, "x")
            label_log_axis(ax, "y")
            ax.set_xlabel(label)
            ax.set_ylabel("KID of the best setting")
            ax.set_title(f"{size} training images")
        row[0].legend(fontsize=7)
    _save(fig, path)
    return True
