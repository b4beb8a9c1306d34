"""Quantities over the state space: V, the mean action, the policy's spread, the occupancy.

Over 2-D state grids (pendulum, mountain car, double integrator) each quantity is a map whose
axes are named by the grid (``theta [rad]``, ``omega [rad/s]``); over 1-D grids a curve; without
a state grid, a curve against the state index.
"""
from __future__ import annotations

import numpy as np

from ..errors import ValidationError
from ._common import (action_label, axis_label, fmt_value, log_norm, new_figure, state_field, suptitle,
                      symmetric_limits)

__all__ = ["plot_state_field", "plot_solution", "plot_field_snapshots", "policy_fields"]

#: the panels :func:`plot_solution` knows
FIELDS = ("V", "mean", "std", "weights")


def plot_state_field(values, states=None, ax=None, label: str = "", cmap: str = "viridis",
                     log: bool = False, diverging: bool = False, title: str | None = None):
    """One per-state quantity over the state space.

    Parameters
    ----------
    values : array ``(nS,)``
    states : Grid, optional
        The state grid (2-D: a map; 1-D: a curve; None: a curve against the state index).
    ax : Axes, optional
    label : str
        Colorbar (2-D) or y-axis (1-D) label.
    log : bool
        Logarithmic colour scale over the six decades below the maximum (occupancies).
    diverging : bool
        A colour scale symmetric about 0 (``RdBu_r``), e.g. for differences or eigen-fields.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import wgflow as wg
    >>> mdp = wg.problems.get("pendulum", n_theta=11, n_omega=11, n_actions=5)
    >>> sol = wg.solve(mdp, wg.Discounted(0.9))
    >>> ax = wg.plot.plot_state_field(sol.V, mdp.states, label="V")
    >>> ax.get_xlabel(), ax.get_ylabel()
    ('theta [rad]', 'omega [rad/s]')
    """
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 3.6), layout="constrained")
    norm = log_norm(values) if log else None
    vmin = vmax = None
    if diverging:
        vmin, vmax = symmetric_limits(values)
        cmap = "RdBu_r" if cmap == "viridis" else cmap
    state_field(values, states, ax, label=label, cmap=cmap, norm=norm, title=title, vmin=vmin, vmax=vmax)
    return ax


def _weights_label(objective) -> str:
    kind = (objective.to_dict().get("kind", "") if hasattr(objective, "to_dict") else "")
    if "average" in str(kind).lower() or type(objective).__name__ == "Average":
        return "stationary law (mass per cell)"
    return "discounted occupancy (mass per cell)"


def policy_fields(policy, fields=("mean", "std")) -> dict:
    """Per-state fields of a policy: ``"mean"`` ``(nS, da)`` and ``"std"`` ``(nS, da)`` of the
    action (cell centres as atoms; a deterministic policy has std 0)."""
    out = {}
    if "mean" in fields or "std" in fields:
        mu = policy.mean()
        out["mean"] = mu
        if "std" in fields:
            var = policy.variance(piecewise_constant=False)
            out["std"] = np.sqrt(np.maximum(var, 0.0))
    return out


def plot_solution(result, fields=FIELDS, states=None, title: str | None = None, ncols: int | None = None):
    """The panels of a solved (or evaluated) policy over the state space.

    Parameters
    ----------
    result : Solution or Evaluation
        Its ``V`` (value, or bias for the average cost), ``policy`` and ``weights``.
    fields : sequence of {"V", "mean", "std", "weights"}
        ``"mean"``: mean action; ``"std"``: the policy's spread (standard deviation of the action;
        omitted when it is 0 everywhere, i.e. a deterministic policy); ``"weights"``: the
        discounted occupancy or the stationary law (log colour scale). Multi-D actions get one
        mean and one std panel per action axis.
    states : Grid, optional
        Default: the policy's state grid.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import wgflow as wg
    >>> mdp = wg.problems.get("pendulum", n_theta=11, n_omega=11, n_actions=5)
    >>> fig = wg.plot.plot_solution(wg.solve(mdp, wg.Discounted(0.9, entropy=0.5)))
    >>> [a.get_title() for a in fig.axes if a.get_title()]
    ['value V', 'mean torque', 'spread of torque', 'discounted occupancy']
    """
    bad = [f for f in fields if f not in FIELDS]
    if bad:
        raise ValidationError(f"unknown fields {bad}; choose from {FIELDS}")
    pol = result.policy
    S = pol.states if states is None else states
    A = pol.actions
    stats = policy_fields(pol, [f for f in fields if f in ("mean", "std")]) if A is not None else {}
    panels = []
    for f in fields:
        if f == "V":
            average = type(getattr(result, "objective", None)).__name__ == "Average"
            panels.append(("bias h" if average else "value V", np.asarray(result.V), {}, "viridis",
                           "h" if average else "V (cost to go)"))
        elif f in ("mean", "std") and A is not None:
            for d in range(A.ndim):
                name = A.names[d] if A.names is not None else ("action" if A.ndim == 1 else f"action {d}")
                if f == "mean":
                    panels.append((f"mean {name}", stats["mean"][:, d], {}, "coolwarm",
                                   action_label(A, d, "mean")))
                else:
                    sd = stats["std"][:, d]
                    if np.max(sd) > 0:
                        panels.append((f"spread of {name}", sd, {"zero": True}, "magma",
                                       action_label(A, d, "std of")))
        elif f == "weights":
            w = np.asarray(result.weights)
            lab = _weights_label(getattr(result, "objective", None))
            panels.append((lab.split(" (")[0], w, {"log": True}, "cividis", "mass per cell"))
    if not panels:
        raise ValidationError("plot_solution: nothing to draw for fields " + repr(tuple(fields)))
    fig, axes = new_figure(len(panels), ncols=ncols or (2 if len(panels) == 4 else None),
                           panel_size=(4.2, 3.3))
    for ax, (ttl, vals, opts, cmap, lab) in zip(axes, panels):
        norm = log_norm(vals) if opts.get("log") else None
        vmin = vmax = None
        if cmap == "coolwarm" and A is not None:
            d = 0
            vmin, vmax = A.bounds[d, 0], A.bounds[d, 1]
            if A.ndim > 1:
                vmin, vmax = float(np.min(A.bounds[:, 0])), float(np.max(A.bounds[:, 1]))
        if opts.get("zero"):
            vmin, vmax = 0.0, float(np.max(vals))
        state_field(vals, S, ax, label=lab, cmap=cmap, norm=norm, title=ttl, vmin=vmin, vmax=vmax)
        if (S is None or S.ndim != 2) and opts.get("zero"):
            ax.set_ylim(0.0, 1.15 * float(np.max(vals)))
    if title:
        suptitle(fig, title)
    return fig


def plot_field_snapshots(traj, field: str = "mean", n: int = 5, reference=None, action_axis: int = 0,
                         title: str | None = None, reference_title: str = "optimum"):
    """Small multiples of one policy field over a 2-D state space along a flow.

    ``n`` evenly spaced frames of ``traj`` (titled by their flow time) and, when given, the
    ``reference`` policy in a last panel; one shared colorbar. ``field`` is ``"mean"`` or
    ``"std"`` (of action axis ``action_axis``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if field not in ("mean", "std"):
        raise ValidationError(f"field must be 'mean' or 'std', got {field!r}")
    S, A = traj.states, traj.actions
    if A is None:
        raise ValidationError("plot_field_snapshots needs an action grid")
    idx = np.unique(np.round(np.linspace(0, len(traj) - 1, max(int(n), 1))).astype(int))
    pols = [traj.policy(int(i)) for i in idx]
    titles = [f"t = {fmt_value(traj.times[i])}" for i in idx]
    if reference is not None:
        pols.append(reference)
        titles.append(reference_title)
    vals = [policy_fields(p, (field,))[field][:, action_axis] for p in pols]
    ylab = action_label(A, action_axis, "mean" if field == "mean" else "std of")
    if field == "mean":
        vmin, vmax, cmap = A.bounds[action_axis, 0], A.bounds[action_axis, 1], "coolwarm"
    else:
        vmin, vmax, cmap = 0.0, max(float(np.max(vals)), 1e-300), "magma"
    if S is None or S.ndim != 2:
        # over a 1-D state space the frames are curves on one axes, coloured by time
        import matplotlib.pyplot as plt
        from .policies import _colouring
        fig, ax = plt.subplots(figsize=(5.6, 3.8), layout="constrained")
        nf = len(vals) - (1 if reference is not None else 0)
        cols, sm, ticks = _colouring(np.asarray([traj.times[i] for i in idx], dtype=float), "viridis")
        x = S.axes[0] if S is not None else np.arange(vals[0].size)
        for v, c in zip(vals[:nf], cols):
            ax.plot(x, v, color=c, lw=1.4)
        if reference is not None:
            ax.plot(x, vals[-1], "k--", lw=1.2, label=reference_title)
            ax.legend(fontsize=8, frameon=False)
        cb = fig.colorbar(sm, ax=ax, label="flow time t")
        if ticks is not None:
            cb.set_ticks(ticks[0])
            cb.set_ticklabels(ticks[1])
        ax.set_xlabel(axis_label(S, 0, "state") if S is not None else "state index")
        ax.set_ylabel(ylab)
        ax.grid(alpha=0.3)
    else:
        fig, axes = new_figure(len(pols), ncols=min(len(pols), 3), panel_size=(3.4, 2.8),
                               sharex=True, sharey=True)
        art = None
        for ax, v, ttl in zip(axes, vals, titles):
            art = state_field(v, S, ax, cmap=cmap, title=ttl, colorbar=False, vmin=vmin, vmax=vmax)
        for ax in axes:
            ax.label_outer()
        fig.colorbar(art, ax=axes, label=ylab, shrink=0.9)
    if title:
        suptitle(fig, title)
    return fig
