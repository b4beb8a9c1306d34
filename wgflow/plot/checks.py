"""The ``verify`` table as a figure: each check's error against its tolerance."""
from __future__ import annotations

import numbers

import numpy as np

from ..errors import ValidationError

__all__ = ["plot_checks"]

_COLOURS = {"pass": "C2", "fail": "C3", "info": "0.45", "skip": "0.45"}


def number_or_nan(v) -> float:
    """A check row's number as a float, NaN where the row has none.

    Real numbers (Python or NumPy, integer or floating; NaN and inf kept) become floats; anything
    else -- ``None``, a bool, a string such as ``"-"``, an array -- is not a measured number and
    becomes NaN (a bool is not the number 0 or 1 here, nor a numeric string a number). The one
    rule for the checks figure and for the study file (:mod:`wgflow.study`)."""
    if isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)):
        return float(v)
    return np.nan


def _skip_reason(r) -> str:
    reason = getattr(r, "reason", "") or getattr(r, "note", "") or ""
    reason = reason.split(";")[0].strip()
    return reason if len(reason) <= 48 else reason[:45] + "..."


def plot_checks(report, ax=None, title: str | None = None):
    """One row per check: its error (dot) and tolerance (bar) on a log scale.

    ``report`` is a :class:`wgflow.verify.VerifyReport` (or anything with ``rows`` of
    ``check, error, tolerance, status``). A status column right of the axes says ``FAIL`` or
    ``skip`` for rows that did not pass. A failed row whose error is not a number (the check
    raised, or produced NaN) is drawn as a red cross at the right edge with ``FAIL (no value)``:
    it never disappears. Skipped rows are listed with the word ``skipped`` and their reason;
    informational rows (properties such as convexity, not identities) are listed as such. An
    error of exactly 0 is drawn at the left edge and marked ``0``. The legend sits above the axes,
    clear of the data.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.transforms import blended_transform_factory
    rows = list(getattr(report, "rows", []))
    if not rows:
        raise ValidationError("plot_checks needs a report with at least one row")
    if ax is None:
        _, ax = plt.subplots(figsize=(7.2, 0.32 * len(rows) + 1.6), layout="constrained")
    vals = []
    for r in rows:
        for v in (number_or_nan(r.error), number_or_nan(r.tolerance)):
            if np.isfinite(v) and v > 0:
                vals.append(v)
    lo = min(vals) / 10 if vals else 1e-16
    hi = max(vals) * 10 if vals else 1.0
    # x in axes coordinates, y in data coordinates: the status column and edge markers
    edge = blended_transform_factory(ax.transAxes, ax.transData)
    y = np.arange(len(rows))[::-1]
    for yi, r in zip(y, rows):
        c = _COLOURS.get(r.status, "k")
        tol, err = number_or_nan(r.tolerance), number_or_nan(r.error)
        if r.status == "info":
            ax.text(lo * 1.5, yi, "informational (a property, not an identity)", va="center", fontsize=8,
                    color=c)
            continue
        if r.status == "skip":
            ax.text(lo * 1.5, yi, f"skipped: {_skip_reason(r)}", va="center", fontsize=8, color=c)
            ax.text(1.02, yi, "skip", transform=edge, va="center", fontsize=8, color=c)
            continue
        if np.isfinite(tol) and tol > 0:
            ax.plot([tol, tol], [yi - 0.3, yi + 0.3], color="k", lw=1.5)
            ax.hlines(yi, lo, tol, color="0.85", lw=4, zorder=0)
        if np.isfinite(err):
            x = err if err > 0 else lo
            # an error of 0 sits on the left edge: the whole dot is drawn (not half clipped) and
            # its "0" beside it, a fixed distance in points clear of the dot
            ax.plot([x], [yi], "o", color=c, ms=6, clip_on=err > 0)
            if err == 0:
                ax.annotate("0", (x, yi), xytext=(6, 0), textcoords="offset points", va="center",
                            fontsize=8, color=c)
        elif r.status == "fail":
            ax.plot([0.985], [yi], "X", color=c, ms=8, transform=edge, clip_on=False)
        if r.status == "fail":
            ax.text(1.02, yi, "FAIL" if np.isfinite(err) else "FAIL (no value)", transform=edge,
                    va="center", fontsize=8, color=c, fontweight="bold")
    ax.set_yticks(y)
    ax.set_yticklabels([r.check for r in rows], fontsize=8.5)
    ax.set_ylabel("check")
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("error (dot) and tolerance (bar) of each check (dimensionless)")
    ax.grid(alpha=0.3, axis="x")
    handles = [Line2D([], [], marker="o", ls="none", color=_COLOURS[s], label=s)
               for s in ("pass", "fail")
               if any(r.status == s and np.isfinite(number_or_nan(r.error)) for r in rows)]
    if any(r.status == "fail" and not np.isfinite(number_or_nan(r.error)) for r in rows):
        handles.append(Line2D([], [], marker="X", ls="none", color=_COLOURS["fail"], label="fail, no value"))
    if any(np.isfinite(number_or_nan(r.tolerance)) and r.status in ("pass", "fail") for r in rows):
        handles.append(Line2D([], [], marker="|", ls="none", color="k", ms=10, mew=1.5, label="tolerance"))
    if handles:
        ax.legend(handles=handles, fontsize=8, frameon=False, loc="lower center", ncol=len(handles),
                  bbox_to_anchor=(0.5, 1.0), borderaxespad=0.2)
    if title:
        ax.set_title(title, fontsize=10, pad=22 if handles else 6)
    return ax
