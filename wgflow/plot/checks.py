"""The ``verify`` table as a figure: each check's error against its tolerance."""
from __future__ import annotations

import numpy as np

from ..errors import ValidationError

__all__ = ["plot_checks"]

_COLOURS = {"pass": "C2", "fail": "C3", "info": "0.45", "skip": "0.6"}


def plot_checks(report, ax=None, title: str | None = None):
    """One row per check: its error (dot) and tolerance (bar) on a log scale.

    ``report`` is a :class:`wgflow.verify.VerifyReport` (or anything with ``rows`` of
    ``check, error, tolerance, status``). Skipped rows are listed with the word ``skipped``;
    informational rows (properties such as convexity, not identities) are listed as such. An
    error of exactly 0 is drawn at the left edge and marked ``0``.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt
    rows = list(getattr(report, "rows", []))
    if not rows:
        raise ValidationError("plot_checks needs a report with at least one row")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 0.32 * len(rows) + 1.3), layout="constrained")
    vals = []
    for r in rows:
        for v in (r.error, r.tolerance):
            if isinstance(v, (int, float, np.floating)) and np.isfinite(v) and v > 0:
                vals.append(float(v))
    lo = min(vals) / 10 if vals else 1e-16
    hi = max(vals) * 10 if vals else 1.0
    y = np.arange(len(rows))[::-1]
    for yi, r in zip(y, rows):
        c = _COLOURS.get(r.status, "k")
        tol = r.tolerance if isinstance(r.tolerance, (int, float, np.floating)) else np.nan
        err = r.error if isinstance(r.error, (int, float, np.floating)) else np.nan
        if r.status in ("skip", "info"):
            ax.text(lo * 1.5, yi, "skipped" if r.status == "skip" else
                    "informational (a property, not an identity)", va="center", fontsize=8, color=c)
            continue
        if np.isfinite(tol) and tol > 0 and r.status != "info":
            ax.plot([tol, tol], [yi - 0.3, yi + 0.3], color="k", lw=1.5)
            ax.hlines(yi, lo, tol, color="0.85", lw=4, zorder=0)
        if np.isfinite(err):
            x = err if err > 0 else lo
            ax.plot([x], [yi], "o", color=c, ms=6)
            if err == 0:
                ax.text(x * 1.6, yi, "0", va="center", fontsize=8, color=c)
    ax.set_yticks(y)
    ax.set_yticklabels([r.check for r in rows], fontsize=8.5)
    ax.set_ylabel("check")
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("error (dot) and tolerance (bar)")
    ax.grid(alpha=0.3, axis="x")
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], marker="o", ls="none", color=_COLOURS[s], label=s)
               for s in ("pass", "fail") if any(r.status == s for r in rows)]
    if handles:
        ax.legend(handles=handles, fontsize=8, frameon=False, loc="lower right")
    if title:
        ax.set_title(title, fontsize=10)
    return ax
