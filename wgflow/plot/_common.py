"""Shared helpers of the figure modules: labels from grids, state fields, figure creation."""
from __future__ import annotations

import numpy as np

from ..errors import ValidationError


def new_figure(n_panels: int, ncols: int | None = None, panel_size=(3.6, 3.0), sharex=False,
               sharey=False):
    """A constrained-layout figure with ``n_panels`` axes (row-major); surplus axes are removed."""
    import matplotlib.pyplot as plt
    n_panels = max(int(n_panels), 1)
    ncols = min(n_panels, 3) if ncols is None else max(1, min(int(ncols), n_panels))
    nrows = int(np.ceil(n_panels / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows),
                             squeeze=False, layout="constrained", sharex=sharex, sharey=sharey)
    flat = list(axes.ravel())
    for a in flat[n_panels:]:
        a.remove()
    return fig, flat[:n_panels]


def axis_label(grid, axis: int, default: str) -> str:
    """``"name [unit]"`` from the grid, or ``default`` when the grid has no names."""
    if grid is None:
        return default
    return grid.label(axis, default=default)


def action_label(actions, axis: int = 0, what: str | None = None) -> str:
    """Label of an action axis, e.g. ``"torque [N m]"``; ``what`` prefixes it (``"mean torque [N m]"``)."""
    default = "action" if actions is None or actions.ndim == 1 else f"action (axis {axis})"
    lab = axis_label(actions, axis, default)
    return lab if what is None else f"{what} {lab}"


def density_label(actions, axis: int = 0, what: str | None = None) -> str:
    """Label of a density over an action axis, with the inverse of the axis' unit.

    ``"density [1/(N m)]"`` for a torque in N m, ``"marginal density [1/m]"`` along one axis of a
    multi-D action grid, ``"density"`` when the grid has no unit; ``what`` replaces the word
    ``density`` (e.g. ``"density change δπ"``).
    """
    word = what or ("density" if actions is None or actions.ndim == 1 else "marginal density")
    unit = ""
    if actions is not None and actions.units is not None:
        unit = str(actions.units[axis]).strip()
    if not unit:
        return word
    inv = f"1/{unit}" if unit.replace("_", "").isalnum() else f"1/({unit})"
    return f"{word} [{inv}]"


def fmt_value(x: float) -> str:
    """Compact number for labels (3 significant digits, no trailing noise)."""
    x = float(x)
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    return f"{x:.2e}"


def compact_formatter():
    """A tick formatter whose every label carries its own exponent (``-5e-17``, ``1000.12``).

    Matplotlib's default moves a common multiplier or offset (``1e-16``, ``+1e3``) into a text
    above the axis, where it collides with the title of a panel or of a colour bar's axes; here
    each label has the fewest digits that print every tick of the axis exactly (decimals between
    1e-4 and 1e5, a mantissa and an exponent outside), and no such text exists.
    """
    from matplotlib.ticker import Formatter

    class CompactFormatter(Formatter):
        _ticks = ()

        def set_locs(self, locs):
            self._ticks = tuple(locs)

        def __call__(self, x, pos=None):
            locs = np.asarray([v for v in self._ticks if np.isfinite(v)] + [x], dtype=float)
            steps = np.abs(np.diff(np.sort(locs)))
            steps = steps[steps > 0]
            step = float(np.min(steps)) if steps.size else abs(x)
            tol = 1e-6 * step if step > 0 else 0.0
            if abs(x) <= tol:
                return "0"
            big = float(np.max(np.abs(locs)))
            if 1e-4 <= big < 1e5:
                # the fewest decimals that print every tick exactly (to a millionth of a step)
                dec = next((d for d in range(16) if np.all(np.abs(np.round(locs, d) - locs) <= tol)), 15)
                return self.fix_minus(f"{x:.{dec}f}")
            p = next((p for p in range(16)
                      if all(abs(float(f"{v:.{p}e}") - v) <= tol for v in locs)), 15)
            mant, exp = f"{x:.{p}e}".split("e")
            return self.fix_minus(f"{mant}e{int(exp)}")

    return CompactFormatter()


def state_label(states, s: int) -> str:
    """A state named by its values, e.g. ``"theta = 0.524 rad, omega = -1.2 rad/s"``.

    Grids without names give ``"x0 = ..., x1 = ..."``; without a grid, ``"state s"``.
    """
    if states is None:
        return f"state {int(s)}"
    c = states.centers[int(s)].copy()
    c[np.abs(c) < 1e-9 * states.spacing] = 0.0       # a centre at 0 up to rounding prints as 0
    parts = []
    for d in range(states.ndim):
        name = states.names[d] if states.names is not None else (f"x{d}" if states.ndim > 1 else "x")
        unit = states.units[d] if states.units is not None else ""
        parts.append(f"{name} = {fmt_value(c[d])}" + (f" {unit}" if unit else ""))
    return ", ".join(parts)


def edges(axis_centres, h):
    """Cell edges from centres and spacing."""
    c = np.asarray(axis_centres, dtype=float)
    return np.concatenate([c - h / 2, [c[-1] + h / 2]])


def check_state_values(values, n_states, name="values"):
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size != n_states:
        raise ValidationError(f"{name} must have one entry per state ({n_states}), got shape {v.shape}")
    return v


def state_field(values, states, ax, label: str = "", cmap: str = "viridis", norm=None,
                title: str | None = None, colorbar: bool = True, vmin=None, vmax=None):
    """Draw a per-state quantity: a map over 2-D state grids, a curve over 1-D ones.

    2-D grids: ``pcolormesh`` on the cell edges, axes named by the grid, a colorbar labelled
    ``label``. 1-D grids: the value against the state coordinate. No grid, or more than two
    state dimensions: the value against the state index. On a logarithmic scale (``norm`` a
    LogNorm) exact zeros are drawn as such: a light grey cell on a map (the colour bar's label
    says so), a grey triangle on the bottom edge under a curve (the y label says so).

    Returns the artist (QuadMesh or Line2D).
    """
    n = np.asarray(values).size
    v = check_state_values(values, n if states is None else states.size, "state field")
    if states is not None and states.ndim == 2:
        S = states
        xe, ye = edges(S.axes[0], S.spacing[0]), edges(S.axes[1], S.spacing[1])
        extend = "neither"
        if norm is not None and type(norm).__name__ == "LogNorm":
            # exact zeros have no logarithm: their own colour (ZERO_COLOR), not the scale's
            # lowest; values below the scale's floor get the lowest colour, marked on the bar
            import matplotlib
            cmap = (matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap).with_extremes(
                bad=ZERO_COLOR)
            if np.any(v <= 0):
                label = f"{label} (grey: 0)" if label else "grey: 0"
            if np.any((v > 0) & (v < norm.vmin)):
                extend = "min"
        art = ax.pcolormesh(xe, ye, v.reshape(S.shape).T, cmap=cmap, norm=norm, shading="flat",
                            vmin=None if norm is not None else vmin,
                            vmax=None if norm is not None else vmax, rasterized=True)
        ax.set_xlabel(axis_label(S, 0, "state axis 0"))
        ax.set_ylabel(axis_label(S, 1, "state axis 1"))
        ax.set_xlim(xe[0], xe[-1])
        ax.set_ylim(ye[0], ye[-1])
        if colorbar:
            cb = ax.figure.colorbar(art, ax=ax, label=label, shrink=0.95, extend=extend)
            if norm is None:
                cb.ax.yaxis.set_major_formatter(compact_formatter())
    else:
        if states is not None and states.ndim == 1:
            x = states.axes[0]
            ax.set_xlabel(axis_label(states, 0, "state"))
        else:
            x = np.arange(v.size)
            ax.set_xlabel("state index")
        (art,) = ax.plot(x, v, lw=1.5, marker="." if v.size <= 60 else None)
        if norm is None:
            ax.yaxis.set_major_formatter(compact_formatter())
        if norm is not None and getattr(norm, "__class__", type(None)).__name__ == "LogNorm":
            ax.set_yscale("log")
            zero = v <= 0
            if np.any(zero):
                # exact zeros have no place on a log axis: each is a grey triangle on the bottom
                # edge, named in the axis label (they would otherwise vanish from the curve)
                from matplotlib.transforms import blended_transform_factory
                ax.plot(np.asarray(x)[zero], np.zeros(int(zero.sum())), ls="none", marker="^",
                        color=ZERO_COLOR_1D, ms=5, clip_on=False,
                        transform=blended_transform_factory(ax.transData, ax.transAxes))
                art.set_ydata(np.where(zero, np.nan, v))      # no plunge to the clipped edge
                label = f"{label}\n(▲ on the bottom edge: 0)" if label else "▲ on the bottom edge: 0"
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return art


#: the colour of exact zeros on logarithmic colour scales (:func:`state_field`)
ZERO_COLOR = "0.85"
#: the colour of the markers of exact zeros on a logarithmic y axis (:func:`state_field`, 1-D)
ZERO_COLOR_1D = "0.45"


def log_norm(values, decades: float = 6.0):
    """A LogNorm spanning ``decades`` below the maximum of positive ``values`` (None if none);
    it masks zeros (drawn in :data:`ZERO_COLOR` by :func:`state_field`) and leaves values below
    its floor to the colormap's lowest colour."""
    from matplotlib.colors import LogNorm
    v = np.asarray(values, dtype=float)
    vmax = float(np.max(v)) if v.size else 0.0
    if not vmax > 0:
        return None
    vmin = max(float(np.min(v[v > 0])), vmax * 10.0 ** (-decades))
    if vmin >= vmax:
        vmin = vmax / 10.0
    return LogNorm(vmin=vmin, vmax=vmax, clip=False)


def symmetric_limits(values):
    """``(-m, m)`` with ``m = max |values|`` (a diverging colormap centred at 0)."""
    m = float(np.max(np.abs(values))) if np.size(values) else 1.0
    m = m if m > 0 else 1.0
    return -m, m


def representative_states(states, n_states: int, n_per_axis: int = 3) -> list:
    """Indices of a few states spread over the state space.

    2-D grids: an evenly spaced ``n_per_axis x n_per_axis`` sub-lattice, ordered so that a grid of
    panels is laid out like the state space (columns: first axis increasing; rows: second axis
    decreasing from the top). 1-D grids, no grid, or more dimensions: ``n_per_axis**2`` evenly
    spaced indices (at most ``n_states``).
    """
    if states is not None and states.ndim == 2:
        picks = [np.unique(np.round((np.arange(n_per_axis) + 0.5) / n_per_axis * n - 0.5).astype(int))
                 for n in states.shape]
        return [int(i * states.strides[0] + j * states.strides[1])
                for j in picks[1][::-1] for i in picks[0]]
    k = min(n_per_axis * n_per_axis, n_states)
    return [int(i) for i in np.unique(np.round(np.linspace(0, n_states - 1, k)).astype(int))]


def suptitle(fig, text: str, fontsize: float = 11.0):
    """A figure title wrapped to the figure's width (about 0.6 em per character)."""
    import textwrap
    width_chars = max(20, int(fig.get_figwidth() * 72.0 / (0.6 * fontsize)))
    return fig.suptitle("\n".join(textwrap.wrap(text, width_chars)), fontsize=fontsize)
