"""Tests of wgflow.plot.policies: density heatmaps and fans (Agg backend, figures closed after each test)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import wgflow as wg  # noqa: E402
import wgflow.geometry as G  # noqa: E402
import wgflow.plot as wplot  # noqa: E402
from wgflow.errors import ValidationError  # noqa: E402


@pytest.fixture(scope="module")
def geo1():
    mdp = wg.problems.get("lqr1d", n_states=5, n_actions=31)
    return mdp, G.geodesic(wg.Policy.gaussian(mdp, -1, 0.5), wg.Policy.gaussian(mdp, 1, 0.9),
                           np.linspace(0, 1, 6))


def test_plot_geodesic_1d(geo1):
    _, g = geo1
    fig = wplot.plot_geodesic(g, states=[0, 3])
    assert isinstance(fig, matplotlib.figure.Figure)
    panels = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert len(fig.axes) == 3 and len(panels) == 2
    assert len(panels[0].lines) == 6
    # the curves are the densities
    y = panels[1].lines[2].get_ydata()
    np.testing.assert_allclose(y, g[2].density[3])
    # colours follow t: first and last curves differ
    assert panels[0].lines[0].get_color() != panels[0].lines[-1].get_color()


def test_plot_geodesic_on_given_axes_and_traj(geo1):
    _, g = geo1
    fig, ax = plt.subplots()
    out = wplot.plot_geodesic(g, states=[1], ax=ax)
    assert out is fig and len(ax.lines) == 6

    class Traj:
        times = np.array([0.0, 0.5, 2.0])

        def policy(self, i):
            return g[i]

    fig2 = wplot.plot_geodesic(Traj(), states=[0])
    assert len(fig2.axes[0].lines) == 3
    fig3 = wplot.plot_geodesic(Traj(), states=[0], max_curves=2)
    assert len(fig3.axes[0].lines) == 2
    with pytest.raises(ValidationError, match="state 9"):
        wplot.plot_geodesic(g, states=[9])
    with pytest.raises(ValidationError, match="axes"):
        wplot.plot_geodesic(g, states=[0, 1], ax=ax)


def test_plot_geodesic_2d_actions():
    mdp = wg.problems.get("lqr2d", n_states=(2, 2), n_actions=(6, 6))
    g = G.geodesic(wg.Policy.gaussian(mdp, [-1, 0], [0.7, 0.7]), wg.Policy.gaussian(mdp, [1, 0], [0.7, 0.7]),
                   np.linspace(0, 1, 3))
    fig = wplot.plot_geodesic(g, states=[0], action_axis=1)
    assert len(fig.axes[0].lines) == 3
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata().sum() * mdp.actions.spacing[1], 1.0, atol=1e-12)


def test_plot_policy_variants(geo1):
    _, g = geo1
    ax = wplot.plot_policy(g[0])
    assert isinstance(ax, matplotlib.axes.Axes)
    assert ax.get_xlabel() == "x" and ax.get_ylabel() == "a"          # the grids' axis names
    mdp2 = wg.problems.get("lqr2d", n_states=(3, 4), n_actions=(5, 5))
    pi = wg.Policy.uniform(mdp2)
    ax2 = wplot.plot_policy(pi)
    # every state, in blocks of x1 (ticks: the values of x1), x2 increasing within each block
    assert ax2.get_xlabel() == "x1\n(blocks; x2 from -3 to 3 within each)"
    assert [t.get_text() for t in ax2.get_xticklabels()] == ["-2.67", "0", "2.67"]
    ax3 = wplot.plot_policy(pi, state_slice=(0, 1))
    assert ax3.get_xlabel() == "x2" and ax3.get_title() == "x1 = 0"
    arr = ax3.collections[0].get_array()
    assert np.asarray(arr).size == 4 * 5       # 4 states along axis 1 x 5 action cells (marginal)
    with pytest.raises(ValidationError, match="state_slice"):
        wplot.plot_policy(pi, state_slice=(0, 7))
    fig, axx = plt.subplots()
    assert wplot.plot_policy(g[1], ax=axx) is axx


def test_unnamed_grids_keep_generic_labels():
    S, A = wg.Grid([(-1, 1)], [5]), wg.Grid([(-2, 2)], [9])
    mdp = wg.MDP.from_dynamics(states=S, actions=A, drift=lambda s, a: s, cost=lambda s, a: a[:, 0] ** 2)
    ax = wplot.plot_policy(wg.Policy.uniform(mdp))
    assert ax.get_xlabel() == "state" and ax.get_ylabel() == "action"


def test_fan_panels_are_titled_by_state_values_and_units(assert_readable):
    mdp = wg.problems.get("pendulum", n_theta=6, n_omega=5, n_actions=9)
    pols = [wg.Policy.gaussian(mdp, m, 0.6) for m in (-1.0, 0.0, 1.0)]
    s = 2 * 5 + 4                                   # theta cell 2, omega cell 4
    fig = wplot.plot_geodesic(pols, states=[s])
    th, om = mdp.states.centers[s]
    assert fig.axes[0].get_title() == f"theta = {th:.3g} rad, omega = {om:.3g} rad/s"
    assert fig.axes[0].get_xlabel() == "torque [N m]"
    assert_readable(fig)


def test_frames_by_state_lays_out_the_state_space(assert_readable):
    mdp = wg.problems.get("pendulum", n_theta=9, n_omega=9, n_actions=11)
    traj = wg.flow(mdp, wg.Discounted(0.5, entropy=0.5), wg.Policy.uniform(mdp), scheme="pmd",
                   t_end=4.0, progress=False)
    sol = wg.solve(mdp, wg.Discounted(0.5, entropy=0.5))
    fig = wplot.plot_frames_by_state(traj, n_frames=4, reference=sol.policy, reference_label="optimum")
    panels = [a for a in fig.axes if not hasattr(a, "_colorbar")]
    assert len(panels) == 9
    # panel (row r, column c) shows theta cell picks[c] and omega cell picks[2 - r]: top row = largest omega
    picks = [1, 4, 7]
    th, om = mdp.states.axes
    for r in range(3):
        for c in range(3):
            assert panels[3 * r + c].get_title() == f"theta = {th[picks[c]]:.3g} rad, omega = {om[picks[2 - r]]:.3g} rad/s"
    # the curves are the frames' densities, the dashed one the reference
    s = picks[0] * 9 + picks[2]
    np.testing.assert_allclose(panels[0].lines[-1].get_ydata(), sol.policy.density[s])
    np.testing.assert_allclose(panels[0].lines[0].get_ydata(), traj.policy(0).density[s])
    assert fig.legends and fig.legends[0].get_texts()[0].get_text() == "optimum"
    assert_readable(fig)
