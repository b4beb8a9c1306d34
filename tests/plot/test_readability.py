"""Figures read as a reader reads them: flow times spanning decades, the rounding level of J,
the units of densities. Each test draws a realistic case and checks what ends up on the canvas."""
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import wgflow as wg  # noqa: E402
import wgflow.plot as wplot  # noqa: E402


class Run:
    """A run whose flow times grow geometrically, as those of otto's default implicit steps do
    (0, then 1e-3 .. 1e6), with J - J* decaying and reaching 0 in the last two points."""

    def __init__(self, J_star=10.0, n=30):
        self.times = np.concatenate([[0.0], np.geomspace(1e-3, 1e6, n - 1)])
        gap = 50.0 * np.exp(-0.05 * self.times) + 1e-9 * np.exp(-self.times / 1e4)
        gap[-2:] = 0.0
        self.J = J_star + gap


def _pixel_x(ax, x):
    ax.figure.canvas.draw()
    return ax.transData.transform(np.column_stack([x, np.ones_like(x)]))[:, 0]


def test_plot_rate_spreads_flow_times_over_decades_and_marks_the_rounding_level(assert_readable):
    run, J_star, floor = Run(), 10.0, 1e-11
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # far from its anchor exp(-r t) must not overflow
        ax = wplot.plot_rate(run, J_star, predicted=0.05, measured={"fit": 0.0499}, floor=floor)
    assert ax.get_xscale() == "symlog"
    # the points of the run are told apart: successive positive flow times (a factor 1.8
    # apart) lie at least 3 pixels apart, and t = 0 left of them
    px = _pixel_x(ax, run.times)
    assert np.all(np.diff(px) > 3.0)
    lo, hi = ax.get_xlim()
    assert lo <= run.times[0] and hi >= run.times[-1]
    # the drawn gap is the run's data above the rounding level
    y = ax.lines[0].get_ydata()
    gap = run.J - J_star
    np.testing.assert_array_equal(y[gap > floor], gap[gap > floor])
    assert np.all(np.isnan(y[gap <= floor]))
    # where the run first reached the rounding level is marked on it
    cross = [ln for ln in ax.lines if ln.get_marker() == "x"]
    assert len(cross) == 1
    first = int(np.argmax(gap <= floor))
    assert cross[0].get_xdata()[0] == run.times[first] and cross[0].get_ydata()[0] == floor
    # the prediction is exp(-r (t - t_i)) from the last resolved point, drawn only where finite
    ref = ax.lines[1]
    i = int(np.nonzero(gap > floor)[0][-1])
    t, yr = ref.get_xdata(), ref.get_ydata()
    assert np.all(np.isfinite(yr)) and np.all(yr > 0)
    np.testing.assert_allclose(yr, gap[i] * np.exp(-0.05 * (t - run.times[i])), rtol=1e-12)
    assert_readable(ax.figure)


def _marker_boxes(fig):
    """Display boxes of the point markers of every axes (ms points wide)."""
    from matplotlib.transforms import Bbox
    fig.canvas.draw()
    out = []
    for ax in fig.axes:
        for ln in ax.lines:
            if ln.get_marker() in (None, "None", "", " ") or ln.get_linestyle() not in ("None", "none", ""):
                continue
            half = ln.get_markersize() * fig.dpi / 72.0 / 2.0
            for x, y in ax.transData.transform(np.column_stack([ln.get_xdata(), ln.get_ydata()])):
                if np.isfinite(x) and np.isfinite(y):
                    out.append(Bbox([[x - half, y - half], [x + half, y + half]]))
    return out


def _texts(fig):
    out = list(fig.texts)
    for ax in fig.axes:
        out += list(ax.texts)
    return [t for t in out if t.get_visible() and t.get_text().strip()]


@pytest.mark.parametrize("own", [True, False])
def test_convergence_markers_are_not_covered_by_text(own, assert_readable):
    # two runs that reach the rounding level at the right end of the axis, where a label of the
    # band would sit
    J_star, floor = 10.0, 1e-11
    runs = {"a": Run(J_star), "b": Run(J_star, n=25)}
    ax = None if own else plt.subplots(figsize=(6.6, 3.8), layout="constrained")[1]
    fig = wplot.plot_convergence(runs, J_star, floor=floor, ax=ax)
    marks = _marker_boxes(fig)
    assert len(marks) == 2
    for t in _texts(fig):
        bb = t.get_window_extent()
        for m in marks:
            assert not bb.overlaps(m), f"text {t.get_text()!r} covers a marker"
    # the band is named in the legend, with its level
    leg = fig.legends[0] if own else fig.axes[0].get_legend()
    assert "rounding level of J (1.0e-11)" in [t.get_text() for t in leg.get_texts()]
    assert_readable(fig)


def _captured_animation(monkeypatch, traj, tmp_path, **kw):
    """Run animate_flow and keep its figure (it closes it once the frames are rendered)."""
    kept = []
    monkeypatch.setattr(plt, "close", lambda fig=None: kept.append(fig))
    wplot.animate_flow(traj, tmp_path / "f.gif", **kw)
    monkeypatch.undo()
    return kept[0]


class GeometricTrajectory:
    """A pendulum pmd flow's frames with the flow times of otto's geometric steps."""

    def __init__(self):
        mdp = wg.problems.get("pendulum", n_theta=8, n_omega=7, n_actions=5)
        self._t = wg.flow(mdp, wg.Discounted(0.8, entropy=1.0), wg.Policy.uniform(mdp), scheme="pmd",
                          t_end=2.0, progress=False)
        self.states, self.actions = mdp.states, mdp.actions
        n = 8
        self.times = np.concatenate([[0.0], np.geomspace(1e-2, 1e6, n - 1)])
        self.J = 5.0 + np.concatenate([10.0 ** -np.arange(n - 2.0), [0.0, 0.0]])
        self._idx = np.round(np.linspace(0, len(self._t) - 1, n)).astype(int)

    def __len__(self):
        return self.times.size

    def policy(self, i):
        return self._t.policy(int(self._idx[i]))


def test_animation_marks_every_frame_on_its_time_axis(monkeypatch, tmp_path):
    traj = GeometricTrajectory()
    fig = _captured_animation(monkeypatch, traj, tmp_path, J_star=5.0, max_frames=8)
    floor = wplot.rounding_floor(5.0)
    ax1 = fig.axes[1]
    assert ax1.get_xscale() == "symlog"
    marker = [ln for ln in ax1.lines if ln.get_marker() == "o"][0]
    # after the last frame the marker is at the last time, on the rounding band's edge (the gap
    # is 0 there): inside the axes, not at NaN
    x, y = marker.get_xdata()[0], marker.get_ydata()[0]
    assert x == traj.times[-1] and y == floor
    (x0, x1), (y0, y1) = ax1.get_xlim(), ax1.get_ylim()
    assert x0 <= traj.times[0] and x1 >= traj.times[-1] and y0 < y < y1
    px = _pixel_x(ax1, traj.times)
    assert np.all(np.diff(px) > 3.0)


def test_density_axes_carry_the_inverse_action_unit(assert_readable):
    mdp = wg.problems.get("pendulum", n_theta=8, n_omega=7, n_actions=5)
    assert list(mdp.actions.units) == ["N m"]
    pol = wg.Policy.uniform(mdp)
    ax = wplot.plot_policy(pol, state_slice=(1, 3))
    cbar = ax.figure.axes[-1]
    assert cbar.get_ylabel() == "density [1/(N m)]"
    # the density drawn integrates to 1 over the torque cells: its unit is 1/(N m)
    np.testing.assert_allclose(ax.collections[0].get_array().reshape(5, 8).sum(axis=0) * mdp.actions.spacing[0],
                               1.0, rtol=1e-12)
    fig = wplot.plot_frames_by_state([pol, pol], states=[0, 5])
    assert fig.axes[0].get_ylabel() == "density [1/(N m)]"
    assert_readable(fig)
    # a grid without units keeps the bare word
    lqr = wg.problems.get("lqr1d", n_states=5, n_actions=7)
    ax = wplot.plot_policy(wg.Policy.uniform(lqr))
    assert ax.figure.axes[-1].get_ylabel() == "density"


def test_policy_heatmap_over_a_2d_state_grid_names_states_by_their_values(assert_readable):
    mdp = wg.problems.get("pendulum", n_theta=8, n_omega=7, n_actions=5)
    S, A = mdp.states, mdp.actions
    rng = np.random.default_rng(0)
    m = rng.uniform(0.1, 1.0, (S.size, A.size))
    pol = wg.Policy.from_masses(mdp, m / m.sum(axis=1, keepdims=True))
    ax = wplot.plot_policy(pol)
    ax.figure.canvas.draw()
    assert ax.get_xlabel().startswith("theta [rad]\n")
    dens = ax.collections[0].get_array().reshape(A.size, S.size)      # (action, x)
    # each tick sits on a block of states sharing one theta, and is labelled by that theta; the
    # column at x is the density of the state whose centre has that theta
    for x, lab in zip(ax.get_xticks(), [t.get_text() for t in ax.get_xticklabels()]):
        cols = np.arange(S.size)[np.abs(np.arange(S.size) - x) < S.shape[1] / 2]
        assert cols.size == S.shape[1]
        for c in cols:
            s = int(np.nonzero(np.all(np.isclose(pol.masses / A.spacing[0], dens[:, c]), axis=1))[0][0])
            assert float(lab) == pytest.approx(S.centers[s, 0], abs=5e-3)   # printed to 3 digits: |theta| < 10
    # every state appears once, with its own density
    np.testing.assert_allclose(np.sort(dens.T, axis=0), np.sort(pol.masses / A.spacing[0], axis=0))
    assert_readable(ax.figure)


@pytest.mark.parametrize("grid", [True, False])
def test_zeros_on_a_log_scale_curve_are_drawn(grid, assert_readable):
    # a stationary law with exact zeros (transient states) over a 1-D state space or none
    lqr = wg.problems.get("lqr1d", n_states=7, n_actions=5)
    w = np.array([0.0, 0.0, 1e-4, 0.3, 0.5, 0.1999, 0.0])
    ax = wplot.plot_state_field(w, lqr.states if grid else None, label="mass per cell", log=True)
    x = lqr.states.axes[0] if grid else np.arange(7)
    zeros = [ln for ln in ax.lines if ln.get_marker() == "^"]
    assert len(zeros) == 1
    np.testing.assert_array_equal(zeros[0].get_xdata(), x[w == 0])
    # on the bottom edge (axes coordinates), named in the label
    ax.figure.canvas.draw()
    bottom = ax.transAxes.transform((0.0, 0.0))[1]
    ys = zeros[0].get_transform().transform(np.column_stack([zeros[0].get_xdata(), zeros[0].get_ydata()]))[:, 1]
    np.testing.assert_allclose(ys, bottom)
    assert ax.get_ylabel() == "mass per cell\n(▲ on the bottom edge: 0)"
    # the curve holds the positive values, and no point for the zeros (log 0 would be clipped to
    # the edge: a plunge, not a value)
    y = ax.lines[0].get_ydata()
    np.testing.assert_array_equal(y[w > 0], w[w > 0])
    assert np.all(np.isnan(y[w == 0]))
    assert ax.get_yscale() == "log"
    assert_readable(ax.figure)


def _tick_values(axis):
    """The numbers the shown tick labels print, and the tick positions they label."""
    ticks = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
    return (np.array([float(t.get_text().replace("\u2212", "-")) for t in ticks]),
            np.array([t.get_position()[0 if axis.axis_name == "x" else 1] for t in ticks]))


def test_tiny_values_are_labelled_without_a_multiplier_text(assert_readable):
    # eigenvalues at the rounding level (a soft optimum with underflowing masses): the labels
    # carry their exponents; no "1e-16" text above the axis (it collides with the title)
    lam = np.array([-3.7e-16, -2.5e-17, -1.7e-17, -9.0e-18])
    ax = wplot.plot_spectrum(lam, kappa=100.0, title="Hessian at π* (τ = 0.001): smallest eigenvalues")
    ax.figure.canvas.draw()
    axes = [ax.yaxis] + [a.yaxis for a in ax.child_axes]
    assert len(axes) == 2
    for axis in axes:
        assert axis.get_offset_text().get_text() == ""
        printed, at = _tick_values(axis)
        assert printed.size >= 3
        # each label is its tick's value to the printed precision (at least 1 digit per tick step)
        step = np.min(np.diff(np.sort(at)))
        np.testing.assert_allclose(printed, at, rtol=0, atol=0.5 * step)
    assert_readable(ax.figure)


def test_state_field_colorbar_of_tiny_values_has_no_multiplier_text(assert_readable):
    mdp = wg.problems.get("pendulum", n_theta=8, n_omega=7, n_actions=5)
    v = 1e-53 * np.sin(np.arange(mdp.n_states))
    ax = wplot.plot_state_field(v, mdp.states, label="δ mean torque [N m]", diverging=True,
                                title="mode 1: λ = -3.75e-16")
    fig = ax.figure
    fig.canvas.draw()
    cbar = fig.axes[-1]
    assert cbar.yaxis.get_offset_text().get_text() == ""
    printed, at = _tick_values(cbar.yaxis)
    np.testing.assert_allclose(printed, at, rtol=0, atol=0.5 * np.min(np.diff(np.sort(at))))
    assert_readable(fig)


def test_ordinary_values_keep_plain_tick_labels():
    # a value function of 0 .. 130 and a mean torque in [-2, 2]: plain decimals, no exponent
    mdp = wg.problems.get("pendulum", n_theta=8, n_omega=7, n_actions=5)
    for v, lo, hi in ((np.linspace(0.0, 130.0, mdp.n_states), 0.0, 130.0),
                      (np.linspace(-2.0, 2.0, mdp.n_states), -2.0, 2.0)):
        ax = wplot.plot_state_field(v, mdp.states, label="V")
        ax.figure.canvas.draw()
        cbar = ax.figure.axes[-1]
        printed, at = _tick_values(cbar.yaxis)
        texts = [t.get_text() for t in cbar.yaxis.get_ticklabels() if t.get_visible() and t.get_text()]
        assert not any("e" in t for t in texts)
        np.testing.assert_allclose(printed, at, rtol=0, atol=1e-9 * (hi - lo))
        plt.close(ax.figure)


def test_checks_error_zero_is_a_whole_dot_with_its_label_beside_it():
    class Row:
        def __init__(self, check, error, tolerance, status):
            self.check, self.error, self.tolerance, self.status = check, error, tolerance, status

    class Report:
        rows = [Row("solve", 1e-15, 1e-8, "pass"), Row("gibbs", 0.0, 1e-8, "pass"),
                Row("rate", 1e-3, 2e-2, "pass")]
    ax = wplot.plot_checks(Report)
    fig = ax.figure
    fig.canvas.draw()
    dot = [ln for ln in ax.lines if ln.get_marker() == "o" and ln.get_ydata()[0] == 1][0]
    assert dot.get_xdata()[0] == ax.get_xlim()[0] and not dot.get_clip_on()
    zero = [t for t in ax.texts if t.get_text() == "0"]
    assert len(zero) == 1
    half = dot.get_markersize() * fig.dpi / 72.0 / 2.0
    cx, cy = ax.transData.transform((dot.get_xdata()[0], 1.0))
    bb = zero[0].get_window_extent()
    assert bb.x0 > cx + half            # the label starts right of the dot
    assert bb.y0 < cy < bb.y1           # on its row
