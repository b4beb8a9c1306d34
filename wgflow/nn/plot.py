"""Learning curves against the exact optimum."""
from __future__ import annotations

import numpy as np

from ..errors import ValidationError

__all__ = ["plot_learning_curves"]


def plot_learning_curves(runs: dict, J_star: float | None = None, reference_return: float | None = None,
                         reference_label: str = "exact grid optimum", objective: str = "discounted",
                         env_id: str | None = None, path=None, title: str | None = None):
    """Two panels: exact ``J`` (or gain) of the learned policy, and real-environment return.

    The first panel has a log axis when every value drawn there (and ``J_star``) is positive, a
    linear one otherwise (the mountain car's ``J`` is negative, a gain may be 0).

    Parameters
    ----------
    runs : dict
        ``label -> result`` (a :class:`~wgflow.nn.results.TrainResult` or a loaded result: anything
        with a ``curve`` dict holding ``step``, ``J_exact``, ``return_mean``); a list of results
        under one label is drawn as its mean with a min-max band over their common steps (runs
        stopped at different step counts; their evaluation steps must agree).
    J_star : float, optional
        The exact optimum, drawn as a horizontal line in the first panel.
    reference_return : float, optional
        Mean return of the exact grid optimum in the environment (same episodes as the curves).
    path : path, optional
        Save the figure there (PNG at 150 dpi).

    Returns
    -------
    matplotlib Figure
    """
    import matplotlib
    import matplotlib.pyplot as plt
    has_return = any(np.isfinite(np.asarray(_curves(r)[0]["return_mean"], float)).any()
                     for r in runs.values())
    ncols = 2 if has_return else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.0 * ncols, 4.2), layout="constrained", squeeze=False)
    axes = axes[0]
    colors = matplotlib.colormaps["tab10"]
    kind = "gain (average cost per step)" if objective == "average" else "exact discounted cost J"
    drawn = []                      # every value of the first panel, to choose its scale
    for i, (label, res) in enumerate(runs.items()):
        cs = _curves(res)
        col = colors(i % 10)
        for ax, key in zip(axes, ("J_exact", "return_mean")):
            # runs of one label stopped at different steps are averaged over their common steps
            n = min(len(c["step"]) for c in cs)
            steps = np.asarray(cs[0]["step"], float)[:n]
            if any(not np.array_equal(np.asarray(c["step"], float)[:n], steps) for c in cs[1:]):
                raise ValidationError(f"the runs under {label!r} were evaluated at different steps; "
                                      "their mean needs the same evaluation steps")
            vals = np.stack([np.asarray(c[key], float)[:n] for c in cs])
            if not np.isfinite(vals).any():
                continue
            if key == "J_exact":
                drawn.append(vals[np.isfinite(vals)])
            ax.plot(steps, np.nanmean(vals, axis=0), "-o", ms=3, color=col,
                    label=label if len(cs) == 1 else f"{label} (mean of {len(cs)})")
            if len(cs) > 1:
                ax.fill_between(steps, np.nanmin(vals, axis=0), np.nanmax(vals, axis=0), color=col, alpha=0.2)
    if J_star is not None and np.isfinite(J_star):
        axes[0].axhline(J_star, color="k", ls="--", lw=1.2, label=f"exact optimum J* = {J_star:.4g}")
    if J_star is not None and np.isfinite(J_star):
        drawn.append(np.array([J_star]))
    values = np.concatenate(drawn) if drawn else np.zeros(0)
    if values.size and np.all(values > 0):
        # costs spanning decades are read on a log axis; a negative J (the mountain car's goal
        # reward) or a zero gain cannot be drawn there, so those curves keep a linear axis
        axes[0].set_yscale("log")
    axes[0].set_xlabel("environment steps")
    axes[0].set_ylabel(f"{kind} of the learned policy (grid MDP)")
    axes[0].set_title("exact evaluation on the grid (lower is better)")
    if has_return:
        if reference_return is not None:
            axes[1].axhline(reference_return, color="k", ls="--", lw=1.2,
                            label=f"{reference_label}: {reference_return:.1f}")
            lo, hi = axes[1].get_ylim()
            floor = 3.0 * reference_return if reference_return < 0 else lo
            if lo < floor:          # early returns are far below: keep the interesting range visible
                axes[1].set_ylim(floor, hi)
                axes[1].text(0.02, 0.02, f"points below {floor:.0f} are off the axis", fontsize=8,
                             transform=axes[1].transAxes)
        axes[1].set_xlabel("environment steps")
        axes[1].set_ylabel(f"mean return{' in ' + env_id if env_id else ''}")
        axes[1].set_title("real environment (higher is better)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig


def _curves(res):
    if isinstance(res, (list, tuple)):
        return [r.curve for r in res]
    return [res.curve]
