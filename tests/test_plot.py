"""Tests of wgflow.plot (Agg backend, figures closed after each test)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import wgflow as wg  # noqa: E402
import wgflow.geometry as G  # noqa: E402
import wgflow.plot as wplot  # noqa: E402
from wgflow.errors import ValidationError  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


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
    assert ax.get_xlabel() == "state" and ax.get_ylabel() == "action"
    mdp2 = wg.problems.get("lqr2d", n_states=(3, 4), n_actions=(5, 5))
    pi = wg.Policy.uniform(mdp2)
    ax2 = wplot.plot_policy(pi)
    assert ax2.get_xlabel() == "state index"
    ax3 = wplot.plot_policy(pi, state_slice=(0, 1))
    assert "axis 1" in ax3.get_xlabel()
    arr = ax3.collections[0].get_array()
    assert np.asarray(arr).size == 4 * 5       # 4 states along axis 1 x 5 action cells (marginal)
    with pytest.raises(ValidationError, match="state_slice"):
        wplot.plot_policy(pi, state_slice=(0, 7))
    fig, axx = plt.subplots()
    assert wplot.plot_policy(g[1], ax=axx) is axx
