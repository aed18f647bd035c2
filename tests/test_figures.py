"""The figures' layout: every title and tick label fits the figure and none overlaps another."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from genjax import report_figures


@pytest.fixture
def kept(monkeypatch):
    """The figures the code under test closes, kept open (as they were saved) for the test to measure."""
    close, figures = plt.close, []
    monkeypatch.setattr(plt, "close", figures.append)
    yield figures
    for fig in figures:
        close(fig)


@pytest.mark.parametrize("panels", [1, 2, 6])
def test_the_title_of_a_figure_of_pngs_lies_inside_the_figure(tmp_path, kept, panels):
    """With one model's reconstructions, the one-panel figure was narrower than its title, which was cut at both
    ends ("ges (odd rows) and reconstructions (eve")."""
    png = tmp_path / "panel.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(png)
    images = {f"model{i}": str(png) for i in range(panels)}
    assert report_figures.figure_of_pngs(str(tmp_path / "fig.png"), images, "test images (odd rows) and reconstructions (even rows)")
    (fig,) = kept
    renderer = fig.canvas.get_renderer()
    title = fig.get_suptitle() and fig._suptitle.get_window_extent(renderer)
    assert title, "no title drawn"
    inside = fig.bbox
    assert inside.x0 <= title.x0 and title.x1 <= inside.x1 and inside.y0 <= title.y0 and title.y1 <= inside.y1, (title, inside)
    for ax in fig.axes:  # and the title is not drawn over the panels' own titles
        if ax.get_title():
            assert ax.title.get_window_extent(renderer).y1 <= title.y0


def _drawn_labels(axis, ticks) -> list:
    """The labels with text of the ticks in the axis's view (drawn ones: the figure was saved)."""
    low, high = sorted(axis.get_view_interval())
    return [t.label1 for t in ticks if low <= t.get_loc() <= high and t.label1.get_visible() and t.label1.get_text()]


@pytest.mark.parametrize(
    "seconds",
    [(0.3, 0.45), (0.09, 0.6), (0.011, 0.099), (0.0143, 0.1), (0.2, 30.0), (1.2, 1.25), (0.05, 4.0)],
)
def test_the_log_axes_of_the_budget_figure_label_no_minor_tick_and_no_label_overlaps_another(tmp_path, kept, seconds):
    """A view of under a decade or so (the quick study's training seconds, 0.09 to 0.6) had minor tick labels on the
    log axis, and on a third of the figure's width "3×10⁻¹" ran into "4×10⁻¹"."""
    from genjax.study.figures import budget_figure
    from genjax.study.plan import Protocol

    def run(scale):
        points = [
            {"steps": steps, "train_seconds": s * scale, "flops": 1e9 * s * scale, "metrics": {"kid": 700.0 / (i + 1) / scale}}
            for i, (steps, s) in enumerate(zip((20, 40), seconds))
        ]
        return {"points": points}

    units = [
        {"unit": {"family": family, "data_size": 500}, "best": [0, 0], "search": [run(scale)], "reseeded": {}}
        for family, scale in (("vae", 1.0), ("gan", 1.05))
    ]
    assert budget_figure(str(tmp_path / "budget.png"), Protocol(families=("vae", "gan"), budgets=(1.0, 2.0), data_sizes=(500,)), units)
    (fig,) = kept
    renderer = fig.canvas.get_renderer()
    log_axes = [axis for ax in fig.axes for axis in (ax.xaxis, ax.yaxis) if axis.get_scale() == "log"]
    assert len(log_axes) == 6
    for axis in log_axes:
        assert not _drawn_labels(axis, axis.get_minor_ticks()), [t.get_text() for t in _drawn_labels(axis, axis.get_minor_ticks())]
        labels = _drawn_labels(axis, axis.get_major_ticks())
        assert len(labels) >= 2, (axis.axis_name, axis.get_view_interval(), [t.get_text() for t in labels])
        boxes = [label.get_window_extent(renderer) for label in labels]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert not a.overlaps(b), (axis.axis_name, [t.get_text() for t in labels])


def test_curves_mark_a_train_series_of_one_record(tmp_path, kept):
    """A run of one call logs one train record: drawn as a line without a marker it was invisible."""
    from genjax import viz

    records = [{"step": 100, "split": "train", "loss": 2.0}] + [{"step": s, "split": "test", "loss": 1.0 + s / 100} for s in (50, 100)]
    viz.save_curves(str(tmp_path / "curves.png"), records, ("loss",))
    (fig,) = kept
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert lines["train"].get_marker() not in (None, "None", "") and lines["test"].get_marker() == "."
