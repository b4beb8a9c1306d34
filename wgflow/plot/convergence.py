r"""Convergence of several schemes on one axis: ``J - J*`` and the distance to ``pi*``.

The gap ``J - J*`` is computed from two exact evaluations, each carrying rounding errors; below
the *rounding level* of ``J`` the difference is noise, not convergence. The figures draw that
level as a shaded band and do not draw the curves inside it (a scheme that reached it is marked
where it entered the band), instead of plotting noise on a log scale.
"""
from __future__ import annotations

import numpy as np

from ..errors import ValidationError
from ._common import new_figure, suptitle

__all__ = ["plot_convergence", "rounding_floor", "XAXES"]

#: x-axes of :func:`plot_convergence`
XAXES = {"time": "flow time t", "wall": "wall time [s]", "step": "step"}


def rounding_floor(J_star: float, kappa: float = 1.0, ulps: float = 64.0) -> float:
    """A default rounding level of ``J``: ``ulps * eps * kappa * max(1, |J*|)``.

    ``kappa`` (``1/(1-gamma)`` for a discounted objective) accounts for the conditioning of
    ``I - gamma P``. Callers that measured the level (e.g. the disagreement of two independent
    evaluations of ``pi*``) should pass that instead.
    """
    return float(ulps * np.finfo(float).eps * kappa * max(1.0, abs(float(J_star))))


def _series(run, x):
    """``(x values, J)`` of a Trajectory-like object (``times``, ``J``, optional ``wall``, ``steps``)."""
    J = np.asarray(run.J, dtype=float)
    if x == "time":
        xs = np.asarray(run.times, dtype=float)
    elif x == "wall":
        if getattr(run, "wall", None) is None:
            raise ValidationError("x='wall' needs runs with a 'wall' attribute (wall time of each "
                                  "point), e.g. the flow histories of wg.run_study")
        xs = np.asarray(run.wall, dtype=float)
    elif x == "step":
        st = getattr(run, "steps", None)
        xs = np.arange(J.size, dtype=float) if st is None else np.asarray(st, dtype=float)
    else:
        raise ValidationError(f"unknown x axis {x!r}; choose from {sorted(XAXES)}")
    if xs.shape != J.shape:
        raise ValidationError(f"x values ({xs.shape}) and J ({J.shape}) differ in shape")
    return xs, J


def _xscale(xscale, xs_list) -> dict:
    """Keyword arguments of ``Axes.set_xscale`` for ``xscale`` (``"auto"`` resolved on the data)."""
    if xscale not in ("auto", "linear", "log", "symlog"):
        raise ValidationError(f"xscale must be 'auto', 'linear', 'log' or 'symlog', got {xscale!r}")
    pos = np.concatenate([np.asarray(v, dtype=float).ravel() for v in xs_list] or [np.empty(0)])
    pos = pos[np.isfinite(pos) & (pos > 0)]
    if xscale == "auto":
        xscale = "symlog" if pos.size and pos.max() > 1e3 * pos.min() else "linear"
    if xscale == "symlog":
        return {"value": "symlog", "linthresh": float(pos.min()) if pos.size else 1.0, "linscale": 0.5}
    return {"value": xscale}


def _symlog_ticks(ax, kw, xmax):
    """0 and at most seven powers of ten on a symmetric-log x axis that starts at 0."""
    if kw["value"] != "symlog" or not np.isfinite(xmax) or xmax <= 0:
        return
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator
    lo, hi = int(np.ceil(np.log10(kw["linthresh"]))), int(np.floor(np.log10(xmax)))
    decades = list(range(lo, hi + 1))
    step = max(1, -(-len(decades) // 7))
    ticks = [0.0] + [10.0 ** d for d in decades[::step]]
    ax.set_xlim(0.0, xmax * 2.0)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(
        lambda v, _: "0" if v == 0 else f"$10^{{{int(round(np.log10(v)))}}}$"))


def plot_convergence(runs: dict, J_star: float, x: str = "time", ax=None, floor: float | None = None,
                     distance: dict | None = None, title: str | None = None, xscale: str = "auto",
                     labels: dict | None = None, distance_xlabel: str | None = None):
    r"""``J - J*`` of several runs on one log-scale axis (and optionally the distance to ``pi*``).

    Parameters
    ----------
    runs : dict name -> run
        Each run has ``times`` and ``J`` (a :class:`~wgflow.Trajectory`, or a flow history with
        ``wall`` and ``steps`` too).
    J_star : float
        The optimal value (``wg.solve(...).J``).
    x : {"time", "wall", "step"}
        Flow time (for iterative schemes the sum of their step sizes), wall time, or step count.
    ax : Axes or pair of Axes, optional
        One axes for ``J - J*``; two when ``distance`` is given.
    floor : float, optional
        The rounding level of ``J`` (default :func:`rounding_floor`). Gaps at or below it are
        not drawn; the band ``[.., floor]`` is shaded and each run that reached it is marked
        (``x``) where it first did.
    distance : dict name -> (x values, d values), optional
        Also draw ``d(pi, pi*)`` on a second log-scale axis.
    xscale : {"auto", "linear", "log", "symlog"}
        ``"auto"`` (default): linear, unless the positive x values span more than three decades
        (implicit ``otto`` and ``jko`` steps grow geometrically: flow times from 1e-3 to 1e15);
        then symmetric-log, linear below the smallest positive x, so that ``t = 0`` is shown.
    labels : dict name -> str, optional
        Legend entries (default: the names).
    distance_xlabel : str, optional
        x label of the distance axis (default the label of ``x``).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import wgflow as wg
    >>> mdp = wg.problems.get("quadratic_bandit", n_actions=41)
    >>> obj = wg.Discounted(0.5, entropy=0.5)
    >>> runs = {s: wg.flow(mdp, obj, wg.Policy.uniform(mdp), scheme=s, t_end=2.0) for s in ("otto", "pmd")}
    >>> fig = wg.plot.plot_convergence(runs, wg.solve(mdp, obj).J)
    >>> fig.axes[0].get_yscale()
    'log'
    """
    import matplotlib.pyplot as plt
    if not runs:
        raise ValidationError("plot_convergence needs at least one run")
    floor = rounding_floor(J_star) if floor is None else float(floor)
    if not (np.isfinite(floor) and floor > 0):
        raise ValidationError(f"floor must be a positive number, got {floor}")
    n_ax = 2 if distance else 1
    own = ax is None
    if own:
        fig, axes = new_figure(n_ax, ncols=n_ax, panel_size=(4.6, 3.6) if n_ax == 2 else (6.6, 3.8))
    else:
        axes = list(np.atleast_1d(ax))
        if len(axes) != n_ax:
            raise ValidationError(f"got {len(axes)} axes, need {n_ax}")
        fig = axes[0].figure
    labels = labels or {}
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    a = axes[0]
    ymax = floor
    xmin, xmax = np.inf, -np.inf
    all_xs = []
    for k, (name, run) in enumerate(runs.items()):
        xs, J = _series(run, x)
        all_xs.append(xs)
        gap = J - float(J_star)
        c = colours[k % len(colours)]
        shown = np.where(gap > floor, gap, np.nan)
        a.plot(xs, shown, color=c, lw=1.5, label=labels.get(name, name))
        inside = np.nonzero(gap <= floor)[0]
        if inside.size:
            i = int(inside[0])
            a.plot([xs[i]], [floor], marker="x", color=c, ms=7, mew=2, ls="none")
        if np.any(np.isfinite(shown)):
            ymax = max(ymax, float(np.nanmax(shown)))
        if xs.size:
            xmin, xmax = min(xmin, float(np.min(xs))), max(xmax, float(np.max(xs)))
    scale_kw = _xscale(xscale, all_xs)
    a.set_yscale("log")
    ylo = floor / 30.0
    # the band is named in the legend, not by a text on it: the runs' markers sit on its edge,
    # anywhere along x, and would cover such a text
    band = a.axhspan(ylo, floor, color="0.85", zorder=0, lw=0,
                     label=f"rounding level of J ({floor:.1e})")
    a.axhline(floor, color="0.5", lw=0.8, ls=":")
    a.set_ylim(ylo, ymax * 3.0)
    a.set_xscale(**scale_kw)
    _symlog_ticks(a, scale_kw, xmax)
    a.set_xlabel(XAXES[x])
    a.set_ylabel("J − J*")
    a.grid(alpha=0.3, which="major")
    from matplotlib.lines import Line2D
    handles = [ln for ln in a.lines if not ln.get_label().startswith("_")] + [band]
    if any(ln.get_marker() == "x" for ln in a.lines):
        handles.append(Line2D([], [], marker="x", color="0.3", ms=7, mew=2, ls="none",
                              label="reached the rounding level"))
    if own:      # one legend for the figure, beside the panels (it never hides a curve)
        fig.legend(handles=handles, loc="outside right center", fontsize=8, frameon=False)
    else:
        a.legend(handles=handles, fontsize=8, frameon=False, loc="best")
    if distance:
        b = axes[1]
        for k, (name, (xd, d)) in enumerate(distance.items()):
            d = np.asarray(d, dtype=float)
            b.plot(np.asarray(xd, dtype=float), np.where(d > 0, d, np.nan),
                   color=colours[list(runs).index(name) % len(colours)] if name in runs else None,
                   lw=1.5, marker=".", ms=3, label="_" + labels.get(name, name))
        b.set_yscale("log")
        b.set_xscale(**scale_kw)
        _symlog_ticks(b, scale_kw, xmax)
        b.set_xlabel(distance_xlabel or XAXES[x])
        b.set_ylabel("d(π, π*)  (Wasserstein, weights of π*)")
        b.grid(alpha=0.3)
    if title:
        suptitle(fig, title)
    return fig
