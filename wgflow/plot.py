"""Matplotlib figures for policies and geodesics.

Every function draws on given axes (or creates a figure), returns the Figure or Axes, and never
calls ``plt.show()``; it works with any backend, including the non-interactive ``Agg``.
"""
from __future__ import annotations

import numpy as np

from .errors import ValidationError

__all__ = ["plot_geodesic", "plot_policy"]


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


def plot_geodesic(policies_or_traj, states=(0,), ax=None, times=None, action_axis: int = 0,
                  cmap: str = "viridis", max_curves: int | None = 60):
    """Fan of action densities along a geodesic (or a flow), one panel per state.

    Parameters
    ----------
    policies_or_traj : list of Policy, or an object with ``times`` and ``policy(i)``
        E.g. ``geometry.geodesic(pi0, pi1, np.linspace(0, 1, 9))`` or a flow trajectory.
    states : sequence of int
        State indices, one panel each.
    ax : Axes or sequence of Axes, optional
        Where to draw (one per state); a new figure otherwise.
    times : array, optional
        Parameter of each policy (default ``linspace(0, 1, n)`` for a list, ``traj.times``).
    action_axis : int
        For multi-D actions the marginal density along this axis is drawn.
    max_curves : int or None
        For a trajectory with more frames, that many evenly spaced frames are drawn.

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
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    pols, t = _policies_and_times(policies_or_traj, times, max_curves)
    states = [int(s) for s in np.atleast_1d(states)]
    nS = pols[0].n_states
    for s in states:
        if not 0 <= s < nS:
            raise ValidationError(f"state {s} is outside [0, {nS})")
    if ax is None:
        fig, axes = plt.subplots(1, len(states), figsize=(4.0 * len(states), 3.2), squeeze=False)
        axes = list(axes[0])
    else:
        axes = list(np.atleast_1d(ax))
        if len(axes) != len(states):
            raise ValidationError(f"got {len(axes)} axes for {len(states)} states")
        fig = axes[0].figure
    norm = Normalize(vmin=float(t.min()), vmax=float(t.max()) if t.max() > t.min() else float(t.min()) + 1)
    cm = plt.get_cmap(cmap)
    for a, s in zip(axes, states):
        for p, tt in zip(pols, t):
            x, dens = _marginal(p, action_axis)
            a.plot(x, dens[s], color=cm(norm(tt)), lw=1.2)
        a.set_title(f"state {s}")
        a.set_xlabel("action" if p.actions.ndim == 1 else f"action (axis {action_axis})")
        a.set_ylabel("density" if p.actions.ndim == 1 else "marginal density")
    sm = ScalarMappable(norm=norm, cmap=cm)
    sm.set_array([])
    fig.colorbar(sm, ax=axes, label="t")
    return fig


def plot_policy(policy, ax=None, action_axis: int = 0, state_slice=None, cmap: str = "magma"):
    """Heatmap of the action density ``pi(a|s)`` (state on x, action on y).

    1-D state grid: x is the state coordinate. Otherwise x is the flat state index, unless
    ``state_slice=(axis, index)`` selects the states whose cell index along ``axis`` equals
    ``index`` on a 2-D state grid (x is then the coordinate along the other axis). For multi-D
    actions y is the action coordinate along ``action_axis`` and the colour the marginal
    density along it.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import wgflow as wg
    >>> mdp = wg.problems.get("lqr1d", n_states=11, n_actions=21)
    >>> ax = wg.plot.plot_policy(wg.Policy.gaussian(mdp, 0.0, 1.0))
    >>> ax.get_xlabel()
    'state'
    """
    import matplotlib.pyplot as plt

    y, dens = _marginal(policy, action_axis)
    S = policy.states
    nS = policy.n_states
    if state_slice is not None:
        if S is None or S.ndim != 2:
            raise ValidationError("state_slice needs a 2-D state grid")
        axis, index = int(state_slice[0]), int(state_slice[1])
        if axis not in (0, 1) or not 0 <= index < S.shape[axis]:
            raise ValidationError(f"state_slice {state_slice} is outside the state grid {S.shape}")
        keep = np.take(np.arange(nS).reshape(S.shape), index, axis=axis)
        other = 1 - axis
        x = S.axes[other]
        dens = dens[keep]
        xlabel = f"state (axis {other}; axis {axis} cell {index})"
        xe = np.concatenate([x - S.spacing[other] / 2, [x[-1] + S.spacing[other] / 2]])
    elif S is not None and S.ndim == 1:
        x = S.axes[0]
        xe = np.concatenate([x - S.spacing[0] / 2, [x[-1] + S.spacing[0] / 2]])
        xlabel = "state"
    else:
        xe = np.arange(nS + 1) - 0.5
        xlabel = "state index"
    A = policy.actions
    ye = np.concatenate([y - A.spacing[action_axis] / 2, [y[-1] + A.spacing[action_axis] / 2]])
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.6))
    mesh = ax.pcolormesh(xe, ye, dens.T, cmap=cmap, shading="flat")
    ax.figure.colorbar(mesh, ax=ax, label="density" if A.ndim == 1 else "marginal density")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("action" if A.ndim == 1 else f"action (axis {action_axis})")
    return ax
