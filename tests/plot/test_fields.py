"""Tests of wgflow.plot.fields: quantities over the state space."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import wgflow as wg  # noqa: E402
import wgflow.plot as wplot  # noqa: E402
from wgflow.errors import ValidationError  # noqa: E402


@pytest.fixture(scope="module")
def pend():
    mdp = wg.problems.get("pendulum", n_theta=11, n_omega=9, n_actions=7)
    obj = wg.Discounted(0.9, entropy=0.5)
    return mdp, obj, wg.solve(mdp, obj)


def _mesh(ax):
    (m,) = [c for c in ax.collections if isinstance(c, matplotlib.collections.QuadMesh)]
    return np.asarray(m.get_array()).reshape(m._coordinates.shape[0] - 1, m._coordinates.shape[1] - 1)


def test_solution_panels_over_theta_omega(pend, assert_readable):
    mdp, obj, sol = pend
    fig = sol.plot()
    panels = [a for a in fig.axes if not hasattr(a, "_colorbar")]
    assert [a.get_title() for a in panels] == ["value V", "mean torque", "spread of torque",
                                                "discounted occupancy"]
    for a in panels:
        assert a.get_xlabel() == "theta [rad]" and a.get_ylabel() == "omega [rad/s]"
    # each map shows the field on the (theta, omega) cells: row = omega, column = theta
    S = mdp.states
    np.testing.assert_allclose(_mesh(panels[0]), sol.V.reshape(S.shape).T)
    mean = sol.policy.masses @ mdp.actions.centers[:, 0]
    np.testing.assert_allclose(_mesh(panels[1]), mean.reshape(S.shape).T, atol=1e-15)
    var = sol.policy.masses @ mdp.actions.centers[:, 0] ** 2 - mean ** 2
    np.testing.assert_allclose(_mesh(panels[2]), np.sqrt(var).reshape(S.shape).T, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(_mesh(panels[3]), sol.weights.reshape(S.shape).T)
    cbars = [a for a in fig.axes if hasattr(a, "_colorbar")]
    assert [c.get_ylabel() for c in cbars] == ["V (cost to go)", "mean torque [N m]", "std of torque [N m]",
                                                "mass per cell"]
    assert_readable(fig)


def test_deterministic_policy_has_no_spread_panel_and_average_shows_bias(assert_readable):
    mdp = wg.problems.get("lqr1d", n_states=21, n_actions=11)
    sol = wg.solve(mdp, wg.Average())
    fig = wplot.plot_solution(sol)
    titles = [a.get_title() for a in fig.axes]
    assert titles == ["bias h", "mean a", "stationary law"]
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), sol.V)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_xdata(), mdp.states.axes[0])
    assert fig.axes[0].get_xlabel() == "x"
    assert_readable(fig)
    with pytest.raises(ValidationError, match="unknown fields"):
        wplot.plot_solution(sol, fields=("V", "speed"))


def test_state_field_without_grid_uses_the_index(assert_readable):
    mdp = wg.problems.get("garnet", n_states=12, n_actions=4)
    sol = wg.solve(mdp, wg.Discounted(0.9, entropy=0.2))
    ax = wplot.plot_state_field(sol.V, None, label="V")
    assert ax.get_xlabel() == "state index" and ax.get_ylabel() == "V"
    np.testing.assert_allclose(ax.lines[0].get_xdata(), np.arange(12))
    assert_readable(ax.figure)
    with pytest.raises(ValidationError, match="one entry per state"):
        wplot.plot_state_field(sol.V[:5], mdp.states if mdp.states else wg.Grid([(0, 1)], [12]))


def test_log_and_diverging_scales(pend):
    mdp, _, sol = pend
    ax = wplot.plot_state_field(sol.weights, mdp.states, label="w", log=True)
    norm = ax.collections[0].norm
    assert isinstance(norm, matplotlib.colors.LogNorm)
    assert norm.vmax == pytest.approx(sol.weights.max()) and norm.vmin >= sol.weights.max() * 1e-6 * (1 - 1e-12)
    d = sol.V - sol.V.mean()
    ax2 = wplot.plot_state_field(d, mdp.states, diverging=True)
    lo, hi = ax2.collections[0].get_clim()
    assert lo == pytest.approx(-np.abs(d).max()) and hi == pytest.approx(np.abs(d).max())


def test_log_scale_draws_exact_zeros_in_their_own_colour(assert_readable):
    # the stationary law of the mountain car with resets at entropy 1e-3: transient cells have
    # exactly zero mass. They are drawn in ZERO_COLOR (not the scale's lowest colour, which
    # would read as a small positive mass); the colour bar says so; values below the six-decade
    # floor keep the lowest colour
    from matplotlib.colors import to_rgba
    from wgflow.plot._common import ZERO_COLOR
    mdp = wg.problems.get("mountain_car", n_position=15, n_velocity=15, n_actions=7, goal="reset")
    sol = wg.solve(mdp, wg.Average(entropy=1e-3))
    w = np.asarray(sol.weights)
    assert np.any(w == 0.0) and np.any(w > 0.0)
    ax = wplot.plot_state_field(w, mdp.states, label="mass per cell", log=True)
    fig = ax.figure
    fig.canvas.draw()
    mesh = ax.collections[0]
    rgba = mesh.get_facecolors()                  # cells in pcolormesh order: (omega, theta) rows
    flat = w.reshape(mdp.states.shape).T.ravel()
    zero, pos = flat == 0.0, flat > 0.0
    np.testing.assert_allclose(rgba[zero], np.tile(to_rgba(ZERO_COLOR), (zero.sum(), 1)))
    low = mesh.cmap(0.0)
    smallest = np.argmin(np.where(pos, flat, np.inf))
    np.testing.assert_allclose(rgba[smallest], low)
    assert not np.any(np.all(np.isclose(rgba[zero], low), axis=1))
    assert "grey: 0" in fig.axes[-1].get_ylabel()
    assert_readable(fig)


def test_field_snapshots_2d_and_1d(pend, assert_readable):
    mdp, obj, sol = pend
    traj = wg.flow(mdp, obj, wg.Policy.uniform(mdp), scheme="pmd", t_end=6.0, progress=False)
    fig = wplot.plot_field_snapshots(traj, "mean", n=5, reference=sol.policy, reference_title="optimum")
    panels = [a for a in fig.axes if not hasattr(a, "_colorbar")]
    assert [a.get_title() for a in panels][-1] == "optimum"
    assert panels[0].get_title() == "t = 0"
    np.testing.assert_allclose(_mesh(panels[-1]), (sol.policy.masses @ mdp.actions.centers[:, 0])
                               .reshape(mdp.states.shape).T, atol=1e-15)
    (cb,) = [a for a in fig.axes if hasattr(a, "_colorbar")]
    assert cb.get_ylabel() == "mean torque [N m]"
    assert_readable(fig)
    m1 = wg.problems.get("lqr1d", n_states=15, n_actions=11)
    o1 = wg.Discounted(0.9, entropy=0.5)
    t1 = wg.flow(m1, o1, wg.Policy.uniform(m1), scheme="pmd", t_end=4.0, progress=False)
    fig1 = wplot.plot_field_snapshots(t1, "std", n=4, reference=wg.solve(m1, o1).policy)
    ax = fig1.axes[0]
    assert len(ax.lines) == 5 and ax.get_ylabel() == "std of a" and ax.get_xlabel() == "x"
    assert_readable(fig1)
