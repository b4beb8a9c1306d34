"""Tests of wgflow.plot.spectrum: eigenvalues, eigen-fields over states, predicted rate."""
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import wgflow as wg  # noqa: E402
import wgflow.plot as wplot  # noqa: E402
from wgflow.errors import ValidationError  # noqa: E402
from wgflow.hessian import continuity_curve  # noqa: E402


@pytest.fixture(scope="module")
def pend():
    mdp = wg.problems.get("pendulum", n_theta=8, n_omega=7, n_actions=7)
    obj = wg.Discounted(0.8, entropy=1.0)
    sol = wg.solve(mdp, obj)
    H = wg.hessian(mdp, obj, sol.policy)
    vals, vecs = H.spectrum(3, return_vectors=True, method="dense")
    return mdp, obj, sol, H, vals, vecs


def test_mode_mean_shift_is_the_derivative_of_the_mean_along_the_continuity_curve(pend):
    mdp, _, sol, _, _, vecs = pend
    phi = vecs[0]
    dmu = wplot.mode_mean_shift(sol.policy, phi)
    # independent: integrate dm/de = L_theta(m) phi (RK substeps) both ways, central difference
    eps = 1e-4
    mp = continuity_curve(mdp, sol.policy, phi, eps)
    mm = continuity_curve(mdp, sol.policy, phi, -eps)
    a = mdp.actions.centers[:, 0]
    fd = (mp @ a - mm @ a) / (2 * eps)
    # central difference error O(eps^2 |d^3 mu|) with |phi|_G = 1: well below 1e-6 of the scale
    np.testing.assert_allclose(dmu, fd, rtol=0, atol=1e-6 * np.abs(dmu).max())


def test_eigenfields_2d_states(pend, assert_readable):
    mdp, _, sol, _, vals, vecs = pend
    fig = wplot.plot_eigenfields(vecs, sol.policy, vals, k=2)
    maps = [a for a in fig.axes if a.collections and not hasattr(a, "_colorbar")]
    assert len(maps) == 2
    assert maps[0].get_title() == f"mode 1: λ = {vals[0]:.3g}"
    assert maps[0].get_xlabel() == "theta [rad]"
    # the circled state is where |d mu| is largest; the bottom panel shows dm/vol there
    dmu = wplot.mode_mean_shift(sol.policy, vecs[0])
    s = int(np.argmax(np.abs(dmu)))
    circle = maps[0].lines[0]
    np.testing.assert_allclose([circle.get_xdata()[0], circle.get_ydata()[0]], mdp.states.centers[s])
    profiles = [a for a in fig.axes if a.get_xlabel() == "torque [N m]"]
    from wgflow.hessian import laplacian_apply
    dm = laplacian_apply(sol.policy.masses, vecs[0], mdp.actions)[s] / mdp.actions.cell_volume
    np.testing.assert_allclose(profiles[0].lines[-1].get_ydata(), dm)
    assert_readable(fig)
    with pytest.raises(ValidationError, match="eigenvectors must have shape"):
        wplot.plot_eigenfields(vecs[:, :3], sol.policy)


def test_eigenfields_1d_states_and_spectrum(assert_readable):
    mdp = wg.problems.get("lqr1d", n_states=9, n_actions=11)
    obj = wg.Discounted(0.8, entropy=0.5)
    sol = wg.solve(mdp, obj)
    H = wg.hessian(mdp, obj, sol.policy)
    vals, vecs = H.spectrum(2, return_vectors=True, method="dense")
    fig = wplot.plot_eigenfields(vecs, sol.policy, vals, k=2)
    assert fig.axes[0].get_xlabel() == "x" and fig.axes[0].get_ylabel() == "a"
    assert_readable(fig)
    ax = wplot.plot_spectrum(vals, kappa=H.kappa)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), vals)
    sec = [c for c in ax.child_axes]
    assert sec and sec[0].get_ylabel() == "rate 2λ/κ of otto"
    # the secondary axis maps lambda to 2 lambda / kappa: its limits are the primary's mapped
    ax.figure.canvas.draw()
    lo, hi = ax.get_ylim()
    np.testing.assert_allclose(sec[0].get_ylim(), (2 * lo / H.kappa, 2 * hi / H.kappa))
    assert_readable(ax.figure)


def test_plot_rate_anchors_the_prediction_at_the_last_resolved_point():
    class Run:
        times = np.linspace(0, 4, 9)
        J = 1.0 + np.exp(-2.0 * times)
    ax = wplot.plot_rate(Run, 1.0, predicted=2.0, measured={"fit": 1.98}, floor=1e-12)
    ref = ax.lines[1]
    t, y = ref.get_xdata(), ref.get_ydata()
    np.testing.assert_allclose(y, np.exp(-2.0 * Run.times[-1]) * np.exp(-2.0 * (t - Run.times[-1])), rtol=1e-12)
    assert "fit: 1.98" in [tx.get_text() for tx in ax.get_legend().get_texts()]


def _random_policy_spectrum():
    """The 4 smallest eigenvalues at a random positive lqr1d policy: all negative."""
    mdp = wg.problems.get("lqr1d", n_states=15, n_actions=11)
    obj = wg.Discounted(0.9, entropy=0.5)
    m = np.random.default_rng(1).uniform(0.2, 1.0, (15, 11))
    H = wg.hessian(mdp, obj, wg.Policy.from_masses(mdp, m / m.sum(axis=1, keepdims=True)))
    return H.spectrum(4, method="dense")


@pytest.mark.parametrize("which", ["random policy (all negative)", "mixed signs", "all positive",
                                   "rounding level", "all zero"])
def test_spectrum_limits_show_every_eigenvalue_and_zero(which, assert_readable):
    lam = {"random policy (all negative)": _random_policy_spectrum,
           "mixed signs": lambda: np.array([-2.0, 0.5, 3.0]),
           "all positive": lambda: np.array([1.0, 2.0, 5.0]),
           "rounding level": lambda: np.array([-5.7e-14, -3.1e-14, -1.1e-14]),
           "all zero": lambda: np.zeros(2)}[which]()
    if which.startswith("random"):
        assert np.all(lam < 0)
    ax = wplot.plot_spectrum(lam, kappa=5.0)
    lo, hi = ax.get_ylim()
    # every marker and the zero line (where the stems start) lie strictly inside the axes
    assert lo < min(0.0, lam.min()) and hi > max(0.0, lam.max())
    assert_readable(ax.figure)


def test_spectrum_rejects_non_finite_eigenvalues():
    with pytest.raises(ValidationError, match=r"finite; index \[1\] \(k = \[2\]\) holds \[nan\]"):
        wplot.plot_spectrum([1.0, np.nan, 2.0])
