"""Tests of wgflow.plot.checks: the verify table as a figure."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import wgflow.plot as wplot  # noqa: E402
from wgflow.errors import ValidationError  # noqa: E402
from wgflow.verify import CheckRow, VerifyReport  # noqa: E402


def test_rows_errors_and_tolerances(assert_readable):
    rows = [CheckRow("gradient", 1.0, 1.0, 3e-12, 1e-6, "pass"),
            CheckRow("rate", 0.5, 0.4, 0.25, 2e-2, "fail"),
            CheckRow("riesz", 0.0, 0.0, 0.0, 1e-8, "pass"),
            CheckRow("convexity (McCann)", 2.0, ">= 0", 0.0, 1e-3, "info"),
            CheckRow("hessian", float("nan"), "-", float("nan"), float("nan"), "skip", "too large")]
    ax = wplot.plot_checks(VerifyReport(rows, "demo"))
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [r.check for r in rows]
    dots = [ln for ln in ax.lines if ln.get_marker() == "o" and len(ln.get_xdata()) == 1]
    xs = sorted(float(d.get_xdata()[0]) for d in dots)
    lo = ax.get_xlim()[0]
    # the exact 0 error is drawn at the left edge; the others at their value
    np.testing.assert_allclose(xs, sorted([3e-12, 0.25, lo]))
    texts = [t.get_text() for t in ax.texts]
    assert "skipped: too large" in texts and any(t.startswith("informational") for t in texts)
    # the status column names the rows that did not pass
    assert texts.count("FAIL") == 1 and texts.count("skip") == 1
    assert ax.get_xscale() == "log"
    assert_readable(ax.figure)
    with pytest.raises(ValidationError):
        wplot.plot_checks(VerifyReport([], "empty"))


def test_failed_row_without_a_number_is_drawn_and_legend_clears_the_data(assert_readable):
    """A failed row whose error is NaN (the check raised or produced NaN) gets a red cross at the
    right edge and FAIL (no value); the legend lies outside the axes, so no dot or tolerance bar
    (the last row's included) is under it."""
    rows = [CheckRow("gradient", 1.0, 1.0, 3e-12, 1e-6, "pass"),
            CheckRow("rate", float("nan"), 0.4, float("nan"), 2e-2, "fail", "nan"),
            CheckRow("geodesic (McCann speed)", 0.1, 1.0, 0.5, 1.0, "pass")]
    ax = wplot.plot_checks(VerifyReport(rows, "demo"))
    crosses = [ln for ln in ax.lines if ln.get_marker() == "X"]
    assert len(crosses) == 1
    assert float(crosses[0].get_ydata()[0]) == 1.0          # the rate row (rows run top to bottom)
    assert "FAIL (no value)" in [t.get_text() for t in ax.texts]
    fig = ax.figure
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    inside = ax.get_window_extent()
    assert legend.y0 >= inside.y1 - 1.0                      # above the axes
    assert_readable(fig)
