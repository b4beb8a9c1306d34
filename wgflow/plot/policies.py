"""Action densities: a policy as a heatmap, and fans of densities along a flow or a geodesic.

Every function draws on given axes (or creates a constrained-layout figure), returns the Figure
or Axes, and never calls ``plt.show()``; it works with any backend, including ``Agg``. States
are named by their values (``theta = 0.524 rad, omega = -1.2 rad/s``) and axes by the grid's
names and units when the grid has them.
"""
from __future__ import annotations

import numpy as np

from ..errors import ValidationError
from ._common import (action_label, axis_label, density_label, edges, fmt_value, new_figure,
                      representative_states, state_label, suptitle)

__all__ = ["plot_geodesic", "plot_policy", "plot_frames_by_state"]


def _policies_and_times(policies_or_traj, times, max_curves=None):
    """Accept a list of Policy (e.g. from ``geometry.geodesic``) or a trajectory-like object."""
    if hasattr(policies_or_traj, "times") and callable(getattr(policies_or_traj, "policy", None)):
        traj = policies_or_traj
        t = np.asarray(traj.times, dtype=float) if times is None else np.asarray(times, dtype=float)
        keep = np.arange(t.size)
        if max_curves is not None and t.size > max_curves:
            keep = np.unique(np.round(np.linspace(0, t.size - 1, int(max_curves))).astype(int))
        return [traj.policy(int(i)) for i in keep], t[keep]
    pols = list(policies_or_traj)
    if not pols:
        raise ValidationError("plot_geodesic needs at least one policy")
    t = np.linspace(0.0, 1.0, len(pols)) if times is None else np.asarray(times, dtype=float)
    if t.shape != (len(pols),):
        raise ValidationError(f"times must have one entry per policy ({len(pols)}), got shape {t.shape}")
    if max_curves is not None and len(pols) > max_curves:
        keep = np.unique(np.round(np.linspace(0, len(pols) - 1, int(max_curves))).astype(int))
        pols, t = [pols[i] for i in keep], t[keep]
    return pols, t


def _marginal(policy, axis: int):
    """Action coordinates and marginal density along ``axis`` of the action grid, ``(nS, n_axis)``."""
    A = policy.actions
    if A is None:
        raise ValidationError("plotting needs an action grid; this policy has none")
    if not 0 <= axis < A.ndim:
        raise ValidationError(f"action axis {axis} is outside [0, {A.ndim})")
    m = policy.masses.reshape((policy.n_states,) + A.shape)
    other = tuple(d + 1 for d in range(A.ndim) if d != axis)
    marg = m.sum(axis=other) if other else m
    return A.axes[axis], marg / A.spacing[axis]


def _colouring(t, cmap):
    """Colours of the curves and a ScalarMappable for the colorbar.

    Up to 12 curves: one discrete colour per curve, colorbar ticks at the curves' times (frames
    of a flow are often spaced geometrically in time, which a continuous scale would squash).
    More: a continuous scale in ``t``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import BoundaryNorm, ListedColormap, Normalize
    cm = plt.get_cmap(cmap)
    n = t.size
    if n <= 12:
        cols = [cm(x) for x in (np.linspace(0.0, 0.92, n) if n > 1 else [0.0])]
        sm = ScalarMappable(norm=BoundaryNorm(np.arange(n + 1) - 0.5, n), cmap=ListedColormap(cols))
        sm.set_array([])
        ticks = np.arange(n)
        labels = [fmt_value(x) for x in t]
        return cols, sm, (ticks, labels)
    hi = float(t.max()) if t.max() > t.min() else float(t.min()) + 1.0
    norm = Normalize(vmin=float(t.min()), vmax=hi)
    sm = ScalarMappable(norm=norm, cmap=cm)
    sm.set_array([])
    return [cm(norm(x)) for x in t], sm, None


def _fan(axes, pols, t, states, action_axis, cmap, time_label, reference=None, ref_label="reference"):
    fig = axes[0].figure
    cols, sm, ticks = _colouring(t, cmap)
    A = pols[0].actions
    x = None
    for a, s in zip(axes, states):
        for p, c in zip(pols, cols):
            x, dens = _marginal(p, action_axis)
            a.plot(x, dens[s], color=c, lw=1.2)
        if reference is not None:
            xr, dr = _marginal(reference, action_axis)
            a.plot(xr, dr[s], color="k", ls="--", lw=1.0, label=ref_label)
        a.set_title(state_label(pols[0].states, s), fontsize=8.5)
        a.set_xlabel(action_label(A, action_axis))
        a.set_ylabel(density_label(A, action_axis))
        a.set_xlim(A.bounds[action_axis, 0], A.bounds[action_axis, 1])
        a.set_ylim(bottom=0)
    if reference is not None:
        fig.legend(handles=axes[0].lines[-1:], loc="outside lower center", fontsize=8, frameon=False)
    cb = fig.colorbar(sm, ax=axes, label=time_label, shrink=0.9)
    if ticks is not None:
        step = max(1, int(np.ceil(len(ticks[0]) / 8)))
        cb.set_ticks(ticks[0][::step])
        cb.set_ticklabels(ticks[1][::step])
    return fig


def _check_states(states, nS):
    states = [int(s) for s in np.atleast_1d(states)]
    for s in states:
        if not 0 <= s < nS:
            raise ValidationError(f"state {s} is outside [0, {nS})")
    return states


def plot_geodesic(policies_or_traj, states=(0,), ax=None, times=None, action_axis: int = 0,
                  cmap: str = "viridis", max_curves: int | None = 60, ncols: int | None = None,
                  reference=None, time_label: str = "t"):
    """Fan of action densities along a geodesic (or a flow), one panel per state.

    Parameters
    ----------
    policies_or_traj : list of Policy, or an object with ``times`` and ``policy(i)``
        E.g. ``geometry.geodesic(pi0, pi1, np.linspace(0, 1, 9))`` or a flow trajectory.
    states : sequence of int
        State indices, one panel each; panels are titled by the states' values.
    ax : Axes or sequence of Axes, optional
        Where to draw (one per state); a new figure otherwise.
    times : array, optional
        Parameter of each policy (default ``linspace(0, 1, n)`` for a list, ``traj.times``).
    action_axis : int
        For multi-D actions the marginal density along this axis is drawn.
    max_curves : int or None
        With more policies or frames, that many evenly spaced ones are drawn.
    ncols : int, optional
        Panels per row of a new figure (default up to 3).
    reference : Policy, optional
        Drawn dashed in black in every panel (e.g. the optimal policy).
    time_label : str
        Colorbar label.

    Returns
    -------
    matplotlib.figure.Figure -- curves coloured by ``t``, with a colorbar.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import numpy as np, wgflow as wg
    >>> mdp = wg.problems.get("lqr1d", n_states=3, n_actions=41)
    >>> g = wg.geometry.geodesic(wg.Policy.gaussian(mdp, -1, .5), wg.Policy.gaussian(mdp, 1, .8), np.linspace(0, 1, 5))
    >>> fig = wg.plot.plot_geodesic(g, states=[0, 2])
    >>> len(fig.axes)   # two panels and the colorbar
    3
    """
    pols, t = _policies_and_times(policies_or_traj, times, max_curves)
    states = _check_states(states, pols[0].n_states)
    if ax is None:
        fig, axes = new_figure(len(states), ncols=ncols, panel_size=(3.8, 3.0))
    else:
        axes = list(np.atleast_1d(ax))
        if len(axes) != len(states):
            raise ValidationError(f"got {len(axes)} axes for {len(states)} states")
    return _fan(axes, pols, t, states, action_axis, cmap, time_label, reference)


def plot_frames_by_state(policies_or_traj, states=None, n_frames: int = 8, reference=None,
                         times=None, action_axis: int = 0, cmap: str = "viridis",
                         time_label: str = "t", reference_label: str = "reference", title=None):
    """Small multiples of a flow or geodesic: the action density at a few states, one panel each.

    With ``states=None`` the states are an evenly spaced 3 x 3 sub-lattice of a 2-D state grid,
    laid out like the state space (first axis left to right, second axis bottom to top), or
    nine evenly spaced states otherwise. Each panel is titled by its state's values; each curve
    is one of ``n_frames`` evenly spaced frames, coloured by its time.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import wgflow as wg
    >>> mdp = wg.problems.get("quadratic_bandit", n_actions=41)
    >>> traj = wg.flow(mdp, wg.Discounted(0.5, entropy=0.5), wg.Policy.uniform(mdp), t_end=1.0)
    >>> fig = wg.plot.plot_frames_by_state(traj, n_frames=4)
    >>> fig.axes[0].get_title()
    's = 0.5'
    """
    pols, t = _policies_and_times(policies_or_traj, times, n_frames)
    nS = pols[0].n_states
    if states is None:
        states = representative_states(pols[0].states, nS, 3)
    states = _check_states(states, nS)
    S = pols[0].states
    ncols = 3 if (S is not None and S.ndim == 2 and len(states) == 9) else None
    fig, axes = new_figure(len(states), ncols=ncols, panel_size=(3.3, 2.6), sharex=True)
    _fan(axes, pols, t, states, action_axis, cmap, time_label, reference, reference_label)
    from matplotlib.ticker import MaxNLocator
    for a in axes:
        # x is shared: tick labels and name on the bottom row only; y is not shared: every panel
        # keeps its own density scale and name
        ss = a.get_subplotspec()
        if not ss.is_last_row():
            a.tick_params(labelbottom=False)
            a.set_xlabel("")
        a.xaxis.set_major_locator(MaxNLocator(nbins=5, prune="both"))
    if title:
        suptitle(fig, title)
    return fig


def plot_policy(policy, ax=None, action_axis: int = 0, state_slice=None, cmap: str = "magma"):
    """Heatmap of the action density ``pi(a|s)`` (state on x, action on y).

    1-D state grid: x is the state coordinate. 2-D state grid: every state, in blocks of the
    first axis (one block per value of the first coordinate, ticks labelled by that value and
    the axis named by it, e.g. ``theta [rad]``), the second coordinate increasing within each
    block; or, with ``state_slice=(axis, index)``, only the states whose cell index along
    ``axis`` equals ``index`` (x is then the coordinate along the other axis). Without a state
    grid, or with more state dimensions, x is the flat state index. For multi-D actions y is
    the action coordinate along ``action_axis`` and the colour the marginal density along it.
    Axes are named by the grids (``"state"``, ``"action"`` when the grids carry no names); the
    colour bar by the density and its unit (``density [1/(N m)]``).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import wgflow as wg
    >>> mdp = wg.problems.get("lqr1d", n_states=11, n_actions=21)
    >>> ax = wg.plot.plot_policy(wg.Policy.gaussian(mdp, 0.0, 1.0))
    >>> ax.get_xlabel(), ax.get_ylabel()
    ('x', 'a')
    """
    import matplotlib.pyplot as plt

    y, dens = _marginal(policy, action_axis)
    S = policy.states
    nS = policy.n_states
    title = None
    if state_slice is not None:
        if S is None or S.ndim != 2:
            raise ValidationError("state_slice needs a 2-D state grid")
        axis, index = int(state_slice[0]), int(state_slice[1])
        if axis not in (0, 1) or not 0 <= index < S.shape[axis]:
            raise ValidationError(f"state_slice {state_slice} is outside the state grid {S.shape}")
        keep = np.take(np.arange(nS).reshape(S.shape), index, axis=axis)
        other = 1 - axis
        dens = dens[keep]
        xlabel = axis_label(S, other, f"state (axis {other}; axis {axis} cell {index})")
        if S.names is not None:
            unit = S.units[axis] if S.units is not None else ""
            title = f"{S.names[axis]} = {fmt_value(S.axes[axis][index])}" + (f" {unit}" if unit else "")
        xe = edges(S.axes[other], S.spacing[other])
    elif S is not None and S.ndim == 1:
        xe = edges(S.axes[0], S.spacing[0])
        xlabel = axis_label(S, 0, "state")
    elif S is not None and S.ndim == 2:
        # states in blocks of the first coordinate, the second increasing within each block: the
        # ticks name the blocks by their value (a flat index would name no state)
        order = (np.arange(S.shape[0])[:, None] * S.strides[0]
                 + np.arange(S.shape[1])[None, :] * S.strides[1]).ravel()
        dens = dens[order]
        xe = np.arange(nS + 1) - 0.5
        n_in = S.shape[1]
        inner = S.names[1] if S.names is not None else "axis 1"
        xlabel = (axis_label(S, 0, "state axis 0") + f"\n(blocks; {inner} from {fmt_value(S.axes[1][0])} "
                  f"to {fmt_value(S.axes[1][-1])} within each)")
        blocks_2d = (S.shape[0], n_in)
    else:
        xe = np.arange(nS + 1) - 0.5
        xlabel = "state index"
    A = policy.actions
    ye = edges(y, A.spacing[action_axis])
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.6), layout="constrained")
    mesh = ax.pcolormesh(xe, ye, dens.T, cmap=cmap, shading="flat", rasterized=True)
    ax.figure.colorbar(mesh, ax=ax, label=density_label(A, action_axis))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(action_label(A, action_axis))
    if state_slice is None and S is not None and S.ndim == 2:
        _block_ticks(ax, S, *blocks_2d)
    if title:
        ax.set_title(title)
    return ax


def _block_ticks(ax, S, n_out, n_in):
    """Ticks of :func:`plot_policy` over a 2-D state grid: at most five blocks of the first
    coordinate labelled by its value at their centres, every block boundary a minor tick."""
    from matplotlib.ticker import FixedLocator, NullFormatter
    k = np.unique(np.round(np.linspace(0, n_out - 1, min(n_out, 5))).astype(int))
    ax.set_xticks(k * n_in + (n_in - 1) / 2.0, [fmt_value(S.axes[0][i]) for i in k])
    if n_out <= 80:
        ax.xaxis.set_minor_locator(FixedLocator(np.arange(n_out + 1) * n_in - 0.5))
        ax.xaxis.set_minor_formatter(NullFormatter())
