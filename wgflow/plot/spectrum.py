r"""Second order: the Hessian spectrum, its leading eigen-fields, predicted vs measured rate.

An eigenvector of the Hessian is a grid potential ``phi`` (``(nS, nA)``); it moves the masses
by ``dm = L_theta(m) phi`` (:func:`wgflow.mobility.laplacian_apply`). Over a state space the
figures show what the mode does to the policy: the first-order change of the mean action,
``d mu(s) = sum_a a dm(s, a)`` (2-D state grids), or ``dm / vol`` itself as a map over
(state, action) (1-D state grids).
"""
from __future__ import annotations

import numpy as np

from ..errors import ValidationError
from ..mobility import laplacian_apply
from ._common import (action_label, axis_label, compact_formatter, density_label, edges, fmt_value,
                      new_figure, state_field, state_label, suptitle, symmetric_limits)

__all__ = ["plot_spectrum", "plot_eigenfields", "plot_rate", "mode_mean_shift"]


def plot_spectrum(eigenvalues, kappa: float | None = None, ax=None, title: str | None = None):
    r"""The smallest eigenvalues of the Hessian relative to the metric.

    One stem from 0 per eigenvalue; the vertical range holds 0 and every eigenvalue, whatever
    their signs (negative ones: away from a minimum). With ``kappa`` the right axis gives the
    local rates ``2 lambda / kappa`` of ``otto`` (``J - J* ~ exp(-2 lambda_min t / kappa)``).

    Parameters
    ----------
    eigenvalues : array_like ``(k,)``
        Finite values, e.g. ``H.spectrum(k)``.
    kappa : float, optional
        ``H.kappa``: adds the rate axis.
    ax : matplotlib.axes.Axes, optional
    title : str, optional

    Raises
    ------
    ValidationError
        No eigenvalue, or a non-finite one (named by its index).

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt
    lam = np.asarray(eigenvalues, dtype=float).ravel()
    if lam.size == 0:
        raise ValidationError("plot_spectrum needs at least one eigenvalue")
    bad = np.nonzero(~np.isfinite(lam))[0]
    if bad.size:
        raise ValidationError(f"plot_spectrum: eigenvalues must be finite; index {bad.tolist()} "
                              f"(k = {(bad + 1).tolist()}) holds {lam[bad].tolist()}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 3.4), layout="constrained")
    k = np.arange(1, lam.size + 1)
    ax.plot(k, lam, "o", color="C0", ms=6)
    ax.vlines(k, 0, lam, color="C0", lw=1)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xticks(k)
    ax.set_xlabel("eigenvalue index k")
    ax.set_ylabel("λ_k  (Hessian relative to the metric)")
    # the stems start at 0: the range spans 0 and every eigenvalue, whatever their signs, with
    # room for the markers (12 %) on the sides where eigenvalues lie and 5 % beyond the zero line
    lo, hi = min(0.0, float(lam.min())), max(0.0, float(lam.max()))
    span = hi - lo
    if span == 0.0:                 # every eigenvalue is exactly 0
        span = 1.0
    ax.set_ylim(lo - (0.12 if lo < 0 else 0.05) * span, hi + (0.12 if hi > 0 else 0.05) * span)
    if kappa is not None:
        sec = ax.secondary_yaxis("right", functions=(lambda y: 2.0 * y / kappa, lambda r: r * kappa / 2.0))
        sec.set_ylabel("rate 2λ/κ of otto")
        sec.yaxis.set_major_formatter(compact_formatter())
    # eigenvalues at the rounding level (1e-16): labels with their own exponent, no "1e-16"
    # text above the axis colliding with the title
    ax.yaxis.set_major_formatter(compact_formatter())
    ax.grid(alpha=0.3, axis="y")
    if title:
        ax.set_title(title)
    return ax


def mode_mean_shift(policy, phi, action_axis: int = 0, mobility: str = "sg") -> np.ndarray:
    """``d mu(s) = sum_a a (L_theta(m) phi)(s, a)``: the first-order change of the mean action
    (along ``action_axis``) when the masses move along the potential ``phi`` ``(nS, nA)``."""
    A = policy.actions
    if A is None:
        raise ValidationError("mode_mean_shift needs an action grid")
    phi = np.asarray(phi, dtype=float).reshape(policy.masses.shape)
    dm = laplacian_apply(policy.masses, phi, A, mobility)
    return dm @ A.centers[:, action_axis]


def plot_eigenfields(eigenvectors, policy, eigenvalues=None, k: int = 4, action_axis: int = 0,
                     mobility: str = "sg", title: str | None = None):
    r"""The leading eigen-fields of the Hessian as action fields over the states.

    2-D state grids: one column per mode. Top: the change of the mean action ``d mu(s)``
    (:func:`mode_mean_shift`) over the states, on a colour scale symmetric about 0, with the
    state where it is largest circled (slow modes often live on a few states of small weight).
    Bottom: the density change ``dm / vol`` over the actions at that state, titled by its
    values. 1-D state grids (or none): one map per mode of ``dm / vol`` over (state, action).

    Parameters
    ----------
    eigenvectors : array ``(k, nS, nA)``
        Potentials, e.g. ``H.spectrum(k, return_vectors=True)[1]``.
    policy : Policy
        The policy the Hessian was taken at (its masses define ``L_theta``).
    eigenvalues : array ``(k,)``, optional
        Printed in the panel titles.
    k : int
        How many modes to draw.

    Returns
    -------
    matplotlib.figure.Figure
    """
    V = np.asarray(eigenvectors, dtype=float)
    if V.ndim == 2:
        V = V[None]
    if V.ndim != 3 or V.shape[1:] != policy.masses.shape:
        raise ValidationError(f"eigenvectors must have shape (k, {policy.n_states}, {policy.n_actions}), "
                              f"got {np.shape(eigenvectors)}")
    k = int(min(k, V.shape[0]))
    lam = None if eigenvalues is None else np.asarray(eigenvalues, dtype=float).ravel()
    S, A = policy.states, policy.actions
    if A is None:
        raise ValidationError("plot_eigenfields needs an action grid")

    def ttl(j):
        return f"mode {j + 1}" + (f": λ = {fmt_value(lam[j])}" if lam is not None and j < lam.size else "")

    def density_change(j):
        dm = laplacian_apply(policy.masses, V[j], A, mobility) / A.cell_volume
        if A.ndim > 1:      # marginal along action_axis
            dm = dm.reshape((policy.n_states,) + A.shape)
            dm = dm.sum(axis=tuple(d + 1 for d in range(A.ndim) if d != action_axis)) * (
                A.cell_volume / A.spacing[action_axis])
        return dm

    if S is not None and S.ndim == 2:
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(2, k, figsize=(3.5 * k, 6.0), layout="constrained", squeeze=False,
                                 gridspec_kw={"height_ratios": [1.25, 1.0]})
        for j in range(k):
            top, bot = axes[0, j], axes[1, j]
            dmu = mode_mean_shift(policy, V[j], action_axis, mobility)
            vmin, vmax = symmetric_limits(dmu)
            state_field(dmu, S, top, label=action_label(A, action_axis, "δ mean"), cmap="RdBu_r",
                        title=ttl(j), vmin=vmin, vmax=vmax)
            s = int(np.argmax(np.abs(dmu)))
            c = S.centers[s]
            top.plot([c[0]], [c[1]], "o", mfc="none", mec="k", ms=10, mew=1.3)
            x = A.axes[action_axis]
            dm = density_change(j)[s]
            bot.axhline(0, color="0.6", lw=0.8)
            bot.plot(x, dm, "-o", color="C3", ms=3, lw=1.3)
            bot.set_xlabel(action_label(A, action_axis))
            bot.set_ylabel(density_label(A, action_axis, "density change δπ"))
            bot.yaxis.set_major_formatter(compact_formatter())
            bot.set_title("at " + state_label(S, s), fontsize=8)
            bot.grid(alpha=0.3)
        if title:
            suptitle(fig, title)
        return fig

    fig, axes = new_figure(k, ncols=min(k, 2 if k == 4 else 3), panel_size=(4.0, 3.2))
    for j, ax in enumerate(axes):
        dm = density_change(j)
        if S is not None and S.ndim == 1:
            xe, xl = edges(S.axes[0], S.spacing[0]), axis_label(S, 0, "state")
        else:
            xe, xl = np.arange(policy.n_states + 1) - 0.5, "state index"
        ye = edges(A.axes[action_axis], A.spacing[action_axis])
        vmin, vmax = symmetric_limits(dm)
        mesh = ax.pcolormesh(xe, ye, dm.T, cmap="RdBu_r", vmin=vmin, vmax=vmax, shading="flat",
                             rasterized=True)
        cb = fig.colorbar(mesh, ax=ax, label=density_label(A, action_axis, "density change δπ"))
        cb.ax.yaxis.set_major_formatter(compact_formatter())
        ax.set_xlabel(xl)
        ax.set_ylabel(action_label(A, action_axis))
        ax.set_title(ttl(j))
    if title:
        suptitle(fig, title)
    return fig


def plot_rate(run, J_star: float, predicted: float | None = None, measured: dict | None = None,
              floor: float | None = None, ax=None, label: str = "otto", title: str | None = None,
              xscale: str = "auto"):
    r"""``J - J*`` of a run on a log scale with the predicted exponential decay.

    The line ``exp(-predicted * t)`` is anchored at the last point of the run above the rounding
    level, so its slope is compared with the run's tail (the prediction is asymptotic: it holds
    once the relative gap is small, ~1e-4 and below). ``measured`` maps a description to a
    measured rate, listed in the legend; a string instead of a number is listed as it is (why
    there is no measurement), ``None`` or NaN leaves the entry out.

    ``xscale`` is that of :func:`~wgflow.plot.plot_convergence`: ``"auto"`` (default) is linear,
    unless the positive flow times span more than three decades (the geometrically growing steps
    of the implicit ``otto`` default reach ``t ~ 1e6``); then symmetric-log, linear below the
    smallest positive time, so that ``t = 0`` and every point of the run stay apart.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt
    from .convergence import _symlog_ticks, _xscale, rounding_floor
    t = np.asarray(run.times, dtype=float)
    gap = np.asarray(run.J, dtype=float) - float(J_star)
    floor = rounding_floor(J_star) if floor is None else float(floor)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.8, 3.4), layout="constrained")
    ok = gap > floor
    ax.plot(t, np.where(ok, gap, np.nan), color="C0", lw=1.5, label=f"{label}: J − J*")
    ax.set_yscale("log")
    hi = float(np.nanmax(np.where(ok, gap, np.nan))) if np.any(ok) else floor * 10
    lo = float(np.nanmin(np.where(ok, gap, np.nan))) if np.any(ok) else floor
    reached = np.nonzero(gap <= floor)[0]
    ylo = floor / 30 if reached.size else max(floor / 30, lo / 30)
    yhi = hi * 3
    if predicted is not None and np.any(ok) and predicted > 0:
        i = int(np.nonzero(ok)[0][-1])
        # the line is drawn where it lies within a decade of the y range: its values there are
        # finite (far from the anchor exp(-r (t - t_i)) overflows or underflows)
        t_lo = max(t[0], t[i] - np.log(10 * yhi / gap[i]) / predicted)
        t_hi = min(t[-1], t[i] + np.log(10 * gap[i] / ylo) / predicted)
        tt = np.linspace(t_lo, t_hi, 200)
        if t_hi > t_lo > 0 or (t_lo == 0 and t_hi > 0 and np.any((t > 0) & (t < t_hi))):
            # on a log-like axis evenly spaced points would all fall in its last decade
            start = t_lo if t_lo > 0 else float(np.min(t[t > 0]))
            tt = np.unique(np.concatenate([tt, np.geomspace(start, t_hi, 200)]))
        ref = gap[i] * np.exp(-predicted * (tt - t[i]))
        ax.plot(tt, ref, "k--", lw=1.0, label=f"predicted slope exp(−{fmt_value(predicted)} t)")
    for name, r in (measured or {}).items():
        if isinstance(r, str):
            ax.plot([], [], " ", label=f"{name}: {r}")
        elif r is not None and np.isfinite(r):
            ax.plot([], [], " ", label=f"{name}: {fmt_value(r)}")
    if ylo < floor:                # the rounding level is inside the range: shade it
        ax.axhspan(ylo, floor, color="0.85", lw=0, zorder=0)
    if reached.size:               # marked where the run first reached it, as in plot_convergence
        j = int(reached[0])
        ax.plot([t[j]], [floor], marker="x", color="C0", ms=7, mew=2, ls="none",
                label=f"reached the rounding level of J ({floor:.1e})")
    ax.set_ylim(ylo, yhi)
    scale_kw = _xscale(xscale, [t])
    ax.set_xscale(**scale_kw)
    _symlog_ticks(ax, scale_kw, float(np.max(t)) if t.size else np.nan)
    ax.set_xlabel("flow time t")
    ax.set_ylabel("J − J*")
    ax.grid(alpha=0.3)
    # below the axes: the dashed prediction can cross any corner inside (it is steep when
    # otto's steps are long), and a legend there would hide it
    ax.legend(fontsize=7.5, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2),
              borderaxespad=0.0)
    if title:
        ax.set_title(title)
    return ax
