"""One rule turns a check row's fields into numbers, for the checks figure and the study file."""
import matplotlib

matplotlib.use("Agg")

import h5py  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import wgflow.plot as wplot  # noqa: E402
from wgflow import study  # noqa: E402
from wgflow.verify import CheckRow, VerifyReport  # noqa: E402


@pytest.mark.parametrize("value, expected", [
    (3, 3.0), (2.5, 2.5), (np.int64(7), 7.0), (np.float32(0.5), 0.5), (np.float64(1e-300), 1e-300),
    (float("inf"), float("inf")),
    (float("nan"), float("nan")), (None, float("nan")), (True, float("nan")),
    (np.bool_(False), float("nan")), ("1e-3", float("nan")), ("-", float("nan")),
    (np.array([1.0, 2.0]), float("nan")),
])
def test_number_or_nan(value, expected):
    from wgflow.plot.checks import number_or_nan
    got = number_or_nan(value)
    assert type(got) is float
    np.testing.assert_equal(got, expected)


def test_study_file_and_checks_figure_read_rows_alike(tmp_path):
    # a NumPy integer error is a number, a bool error and a numeric string tolerance are not:
    # the study file stores what the figure draws
    rows = [CheckRow("int error", 1.0, 1.0, np.int64(3), 10, "pass"),
            CheckRow("bool error", 1.0, 1.0, True, 1e-3, "fail"),
            CheckRow("string tolerance", 1.0, 1.0, 1e-4, "1e-3", "pass")]
    report = VerifyReport(rows, "demo")
    with h5py.File(tmp_path / "v.h5", "w") as f:
        study._write_verify(f.create_group("verify"), report)
        back = study._read_verify(f["verify"])
    errors = [r.error for r in back.rows]
    tols = [r.tolerance for r in back.rows]
    np.testing.assert_equal(errors, [3.0, np.nan, 1e-4])
    np.testing.assert_equal(tols, [10.0, 1e-3, np.nan])

    ax = wplot.plot_checks(report)
    dots = sorted(float(ln.get_xdata()[0]) for ln in ax.lines
                  if ln.get_marker() == "o" and len(ln.get_xdata()) == 1)
    assert dots == sorted(e for e in errors if np.isfinite(e))
    bars = [float(ln.get_xdata()[0]) for ln in ax.lines
            if ln.get_marker() in ("None", "") and len(ln.get_xdata()) == 2]
    assert bars == [t for t in tols if np.isfinite(t)]
    assert [t.get_text() for t in ax.texts].count("FAIL (no value)") == 1
    plt.close("all")
