"""Tests of wgflow.plot.checks: the verify table as a figure."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import wgflow.plot as wplot  # noqa: E402
from wgflow.errors import ValidationError  # noqa: E402
from wgflow.verify import CheckRow, VerifyReport  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


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
    assert "skipped" in texts and any(t.startswith("informational") for t in texts)
    assert ax.get_xscale() == "log"
    assert_readable(ax.figure)
    with pytest.raises(ValidationError):
        wplot.plot_checks(VerifyReport([], "empty"))
