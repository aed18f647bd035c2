"""The study's figures: score over the K settings, expected best after k settings, quality against budget."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
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
        ax.set_xticks(range(len(of_size)), [u["unit"]["family"] for u in of_size], rotation=30)
        ax.set_ylabel("KID (lower is better)")
        ax.set_title(f"{size} training images, budget {protocol.budgets[last]:g} {protocol.unit}")
    if drawn:
        _save(fig, path)
    plt.close(fig)
    return drawn


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
        ax.set_xlabel("settings tried k")
        ax.set_ylabel("expected best KID")
        ax.set_title(f"{size} training images")
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))  # beside the curves, not over them
    _save(fig, path)
    return True


def budget_figure(path: str, protocol, units: list[dict]) -> bool:
    """Each family's best setting's KID against steps, training seconds and FLOPs (rows: data sizes), with
    the seed interval where it has one."""
    groups = _by_size(protocol, units)
    fig, axes = plt.subplots(len(groups), len(AXES), figsize=(14, 3.6 * len(groups)), squeeze=False)
    for row, (size, of_size) in zip(axes, groups.items()):
        for unit in of_size:
            xs = {axis: [] for axis, _ in AXES}
            ys, lows, highs = [], [], []
            for i in range(len(protocol.budgets)):
                cell = family_cell(unit, i, ("kid",))
                point = unit["search"][unit["best"][i]]["points"]
                if not cell or i >= len(point):
                    continue
                centre = cell["interval"][0] if cell["interval"] else cell["search"]
                if not math.isfinite(centre):
                    continue
                for axis, _ in AXES:
                    xs[axis].append(point[i][axis])
                # a log axis cannot show KID <= 0 (the unbiased estimate, and a mean over seeds, can be): the point
                # is drawn at 1e-5 at least, and a lower bar below a tenth of the value is cut there
                shown = max(centre, 1e-5)
                ys.append(shown)
                lows.append(shown - max(cell["interval"][1], shown / 10, 0.0) if cell["interval"] else 0.0)
                highs.append(max(cell["interval"][2] - shown, 0.0) if cell["interval"] else 0.0)
            for ax, (axis, _) in zip(row, AXES):
                if ys:
                    family = unit["unit"]["family"]
                    ax.errorbar(xs[axis], ys, yerr=[lows, highs], capsize=3, label=family, **family_style(units, family))
        for ax, (_, label) in zip(row, AXES):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel("KID of the best setting")
            ax.set_title(f"{size} training images")
        row[0].legend(fontsize=7)
    _save(fig, path)
    return True
