"""The learning-curve figure: both panels, the optimum drawn, early returns kept off the range."""
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("torch")

from wgflow.nn.plot import plot_learning_curves  # noqa: E402


def test_learning_curves_figure(tmp_path):
    import matplotlib.pyplot as plt
    c = {"step": [1, 2, 3], "J_exact": [700.0, 120.0, 105.0], "return_mean": [-1500.0, -150.0, -135.0]}
    runs = {"A": SimpleNamespace(curve=c),
            "B": [SimpleNamespace(curve=c), SimpleNamespace(curve={**c, "J_exact": [650.0, 110.0, 104.0]})]}
    fig = plot_learning_curves(runs, J_star=102.8, reference_return=-130.0, env_id="Pendulum-v1",
                               path=tmp_path / "f.png")
    ax0, ax1 = fig.axes
    assert ax0.get_yscale() == "log" and ax0.get_xlabel() and ax1.get_ylabel()
    assert any(np.allclose(line.get_ydata(), 102.8) for line in ax0.lines)     # J* line
    assert ax1.get_ylim()[0] == pytest.approx(-390.0)
    assert (tmp_path / "f.png").stat().st_size > 0
    plt.close(fig)


def test_negative_costs_keep_a_linear_axis():
    """The mountain car's J is negative (the goal's reward): a log axis would draw nothing."""
    import matplotlib.pyplot as plt
    c = {"step": [1, 2], "J_exact": [-20.0, -40.0], "return_mean": [float("nan")] * 2}
    fig = plot_learning_curves({"A": SimpleNamespace(curve=c)}, J_star=-61.7)
    ax = fig.axes[0]
    assert ax.get_yscale() == "linear"
    lo, hi = ax.get_ylim()
    assert lo < -61.7 and hi > -20.0                    # the curve and J* are in view
    plt.close(fig)


def test_runs_of_different_lengths_are_averaged_over_their_common_steps():
    import matplotlib.pyplot as plt
    long = SimpleNamespace(curve={"step": [1, 2, 3], "J_exact": [9.0, 5.0, 3.0], "return_mean": [np.nan] * 3})
    short = SimpleNamespace(curve={"step": [1, 2], "J_exact": [7.0, 3.0], "return_mean": [np.nan] * 2})
    for runs in ([long, short], [short, long]):
        fig = plot_learning_curves({"A": runs})
        line = fig.axes[0].lines[0]
        np.testing.assert_array_equal(line.get_xdata(), [1.0, 2.0])
        np.testing.assert_array_equal(line.get_ydata(), [8.0, 4.0])     # means of (9, 7), (5, 3)
        plt.close(fig)
    other = SimpleNamespace(curve={"step": [1, 4], "J_exact": [7.0, 3.0], "return_mean": [np.nan] * 2})
    with pytest.raises(ValueError, match="different steps"):
        plot_learning_curves({"A": [long, other]})
