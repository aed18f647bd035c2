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
