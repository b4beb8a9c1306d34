"""Tests of wgflow.plot.convergence: several schemes on one axis, the rounding level shaded."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import wgflow as wg  # noqa: E402
import wgflow.plot as wplot  # noqa: E402
from wgflow.errors import ValidationError  # noqa: E402


class Run:
    def __init__(self, times, J, wall=None):
        self.times, self.J, self.wall = np.asarray(times), np.asarray(J), wall


def test_gaps_below_the_rounding_level_are_not_drawn(assert_readable):
    J_star, floor = 10.0, 1e-11
    t = np.linspace(0, 5, 11)
    gap = 10.0 ** (-3.0 * t)                   # reaches the floor at t = 11/3
    gap[-3:] = [3e-13, -2e-13, 5e-12]          # rounding noise, even negative
    J = J_star + gap
    fig = wplot.plot_convergence({"a": Run(t, J)}, J_star, floor=floor)
    ax = fig.axes[0]
    line, cross = ax.lines[0], ax.lines[1]
    y = line.get_ydata()
    above = (J - J_star) > floor
    np.testing.assert_array_equal(above, gap > floor)
    np.testing.assert_array_equal(y[above], (J - J_star)[above])
    assert np.all(np.isnan(y[~above]))
    # the run is marked where it first entered the band, at the level of the band
    first = int(np.argmax(~above))
    assert cross.get_xdata()[0] == t[first] and cross.get_ydata()[0] == floor
    assert ax.get_yscale() == "log" and ax.get_ylim()[0] < floor
    assert ax.get_ylabel() == "J − J*" and ax.get_xlabel() == "flow time t"
    assert_readable(fig)


def test_default_floor_scales_with_J_and_kappa():
    eps = np.finfo(float).eps
    assert wplot.rounding_floor(100.0, kappa=20.0) == pytest.approx(64 * eps * 20 * 100)
    assert wplot.rounding_floor(1e-3) == pytest.approx(64 * eps)       # |J*| < 1 counts as 1


def test_wall_axis_needs_wall_times_and_distance_panel(assert_readable):
    mdp = wg.problems.get("quadratic_bandit", n_actions=41)
    obj = wg.Discounted(0.5, entropy=0.5)
    sol = wg.solve(mdp, obj)
    runs = {s: wg.flow(mdp, obj, wg.Policy.uniform(mdp), scheme=s, t_end=3.0, progress=False)
            for s in ("otto", "pmd")}
    with pytest.raises(ValidationError, match="wall"):
        wplot.plot_convergence(runs, sol.J, x="wall")
    dist = {k: (r.times, [wg.geometry.distance(r.policy(i), sol.policy, sol.weights) for i in range(len(r))])
            for k, r in runs.items()}
    fig = wplot.plot_convergence(runs, sol.J, distance=dist, labels={"otto": "Wasserstein flow"})
    assert len([a for a in fig.axes]) == 2
    assert fig.axes[1].get_yscale() == "log"
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), dist["otto"][1])
    floor = wplot.rounding_floor(sol.J)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:3] == ["Wasserstein flow", "pmd", f"rounding level of J ({floor:.1e})"]
    assert_readable(fig)
    fig2 = wplot.plot_convergence({"w": Run([0, 1, 2], [2.0, 1.5, 1.25], wall=[0.0, 0.1, 0.3])}, 1.0, x="wall")
    np.testing.assert_allclose(fig2.axes[0].lines[0].get_xdata(), [0.0, 0.1, 0.3])
    assert fig2.axes[0].get_xlabel() == "wall time [s]"
    with pytest.raises(ValidationError, match="x axis"):
        wplot.plot_convergence(runs, sol.J, x="steps_per_second")
    with pytest.raises(ValidationError, match="floor"):
        wplot.plot_convergence(runs, sol.J, floor=-1.0)


def test_trajectory_plot_method():
    mdp = wg.problems.get("quadratic_bandit", n_actions=31)
    obj = wg.Discounted(0.5, entropy=0.5)
    traj = wg.flow(mdp, obj, wg.Policy.uniform(mdp), t_end=1.0, progress=False)
    ax = traj.plot()
    np.testing.assert_allclose(ax.lines[0].get_ydata(), traj.J)
    J_star = wg.solve(mdp, obj).J
    ax2 = traj.plot(J_star=J_star)
    assert ax2.get_yscale() == "log"
    y = ax2.lines[0].get_ydata()
    ok = np.isfinite(y)
    np.testing.assert_allclose(y[ok], (traj.J - J_star)[ok])


def test_trajectory_plot_shades_the_rounding_level_of_its_discount():
    # the rounding level of J scales with the conditioning 1/(1 - gamma) of I - gamma P: at
    # gamma = 0.9 it is 10x the average-cost level of the same |J*|
    mdp = wg.problems.get("quadratic_bandit", n_actions=31)
    for obj, kappa in ((wg.Discounted(0.9, entropy=0.5), 10.0), (wg.Average(entropy=0.5), 1.0)):
        traj = wg.flow(mdp, obj, wg.Policy.uniform(mdp), t_end=1.0, progress=False)
        J_star = wg.solve(mdp, obj).J
        ax = traj.plot(J_star=J_star)
        labels = [p.get_label() for p in ax.patches]
        want = 64 * np.finfo(float).eps * kappa * max(1.0, abs(J_star))
        assert f"rounding level of J ({want:.1e})" in labels, labels


def test_flow_times_over_many_decades_get_a_symlog_axis_from_zero(assert_readable):
    """Implicit steps grow geometrically (t from 1e-3 to 1e6): the default axis shows every step
    and t = 0; a run within three decades keeps a linear axis."""
    t = np.concatenate([[0.0], 1e-3 * 10.0 ** np.arange(10)])
    fig = wplot.plot_convergence({"otto": Run(t, 1.0 + np.exp(-np.arange(11.0)))}, 1.0, floor=1e-12)
    ax = fig.axes[0]
    assert ax.get_xscale() == "symlog" and ax.get_xlim()[0] == 0.0
    ticks = ax.get_xticks()
    assert ticks[0] == 0.0 and len(ticks) <= 8 and ticks[-1] <= t[-1]
    assert_readable(fig)
    fig = wplot.plot_convergence({"a": Run([0.0, 1.0, 2.0], [3.0, 2.0, 1.5])}, 1.0)
    assert fig.axes[0].get_xscale() == "linear"
    with pytest.raises(ValidationError, match="xscale"):
        wplot.plot_convergence({"a": Run([0.0, 1.0], [2.0, 1.5])}, 1.0, xscale="logit")
