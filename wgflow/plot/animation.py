"""A flow (or a geodesic) as an animation: GIF through pillow, MP4 through ffmpeg.

Each frame shows the policy at one saved time -- the mean action over a 2-D state space, or the
density ``pi(a|s)`` over (state, action) for a 1-D state space -- next to ``J - J*`` (or ``J``)
with the current time marked.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ValidationError
from ._common import action_label, axis_label, density_label, edges, fmt_value, state_field

__all__ = ["animate_flow", "ffmpeg_available"]


def ffmpeg_available() -> bool:
    """Whether matplotlib finds an ffmpeg executable (needed for MP4)."""
    from matplotlib import animation
    return bool(animation.writers.is_available("ffmpeg"))


def animate_flow(traj, path, J_star: float | None = None, max_frames: int = 60, fps: int = 8,
                 dpi: int = 90, action_axis: int = 0, title: str | None = None,
                 floor: float | None = None):
    """Write an animation of ``traj`` to ``path`` (``.gif``: pillow; ``.mp4``: ffmpeg).

    Parameters
    ----------
    traj : Trajectory (or an object with ``times``, ``J``, ``policy(i)``, ``states``, ``actions``)
    path : str or Path
        Output file; its suffix picks the writer.
    J_star : float, optional
        With it the right panel shows ``J - J*`` on a log scale, otherwise ``J``.
    max_frames : int
        At most that many evenly spaced frames of ``traj``.
    floor : float, optional
        The rounding level of ``J`` (default :func:`~wgflow.plot.rounding_floor` of ``J_star``):
        gaps at or below it are not drawn, the band below it is shaded, and the current-time
        marker of a frame inside it sits on the band's edge. The time axis is that of
        :func:`~wgflow.plot.plot_convergence` (symmetric-log when the frames' times span more
        than three decades, as those of ``otto``'s geometric steps do), so every frame's time
        lies on it.

    Returns
    -------
    Path

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import os, tempfile, wgflow as wg
    >>> mdp = wg.problems.get("lqr1d", n_states=11, n_actions=15)
    >>> traj = wg.flow(mdp, wg.Discounted(0.9, entropy=0.5), wg.Policy.uniform(mdp), t_end=0.5)
    >>> p = wg.plot.animate_flow(traj, os.path.join(tempfile.mkdtemp(), "flow.gif"), max_frames=4)
    >>> p.suffix
    '.gif'
    """
    import matplotlib.pyplot as plt
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".mp4" and not ffmpeg_available():
        raise ValidationError("an .mp4 animation needs ffmpeg, which matplotlib does not find; "
                              "write a .gif instead")
    if suffix not in (".gif", ".mp4"):
        raise ValidationError(f"animation path must end in .gif or .mp4, got {path.name!r}")
    n = len(traj.times)
    if n == 0:
        raise ValidationError("animate_flow: the trajectory has no frames")
    idx = np.unique(np.round(np.linspace(0, n - 1, min(int(max_frames), n))).astype(int))
    S, A = traj.states, traj.actions
    if A is None:
        raise ValidationError("animate_flow needs an action grid")
    t = np.asarray(traj.times, dtype=float)
    J = np.asarray(traj.J, dtype=float)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9.0, 3.6), layout="constrained", dpi=dpi,
                                   gridspec_kw={"width_ratios": [1.25, 1.0]})
    two_d = S is not None and S.ndim == 2
    if two_d:
        mean0 = traj.policy(int(idx[0])).mean()[:, action_axis]
        art = state_field(mean0, S, ax0, label=action_label(A, action_axis, "mean"), cmap="coolwarm",
                          vmin=A.bounds[action_axis, 0], vmax=A.bounds[action_axis, 1])
    else:
        from .policies import _marginal
        y, dens = _marginal(traj.policy(int(idx[0])), action_axis)
        if S is not None and S.ndim == 1:
            xe, xl = edges(S.axes[0], S.spacing[0]), axis_label(S, 0, "state")
        else:
            xe, xl = np.arange(dens.shape[0] + 1) - 0.5, "state index"
        vmax = max(float(np.max(_marginal(traj.policy(int(i)), action_axis)[1])) for i in idx)
        art = ax0.pcolormesh(xe, edges(y, A.spacing[action_axis]), dens.T, cmap="magma", vmin=0,
                             vmax=vmax, shading="flat")
        fig.colorbar(art, ax=ax0, label=density_label(A, action_axis))
        ax0.set_xlabel(xl)
        ax0.set_ylabel(action_label(A, action_axis))
    from .convergence import _symlog_ticks, _xscale, rounding_floor
    if J_star is not None:
        floor = rounding_floor(J_star) if floor is None else float(floor)
        gap = J - J_star
        y1 = np.where(gap > floor, gap, np.nan)
        # a frame inside the rounding band is marked on its edge: the marker never vanishes
        ymark = np.where(gap > floor, gap, floor)
        ax1.set_yscale("log")
        ax1.set_ylabel("J − J*")
        ylo = floor / 30.0
        ax1.axhspan(ylo, floor, color="0.85", lw=0, zorder=0)
        shown = y1[np.isfinite(y1)]
        ax1.set_ylim(ylo, 3.0 * (float(shown.max()) if shown.size else floor))
        ax1.set_title(f"grey: below the rounding level of J ({floor:.1e})", fontsize=8.5)
    else:
        y1 = ymark = J
        ax1.set_ylabel("J")
    ax1.plot(t, y1, color="C0", lw=1.5)
    (marker,) = ax1.plot([t[idx[0]]], [ymark[idx[0]]], "o", color="C3", ms=7)
    scale_kw = _xscale("auto", [t])
    ax1.set_xscale(**scale_kw)
    _symlog_ticks(ax1, scale_kw, float(np.max(t)))
    if scale_kw["value"] != "symlog":
        # every frame's time, also those whose gap is not drawn (autoscaling skips NaN points)
        t0, t1 = float(np.min(t)), float(np.max(t))
        pad = 0.03 * (t1 - t0) if t1 > t0 else 0.5
        ax1.set_xlim(t0 - pad, t1 + pad)
    ax1.set_xlabel("flow time t")
    ax1.grid(alpha=0.3)
    head = (title + ": ") if title else ""

    def update(k):
        i = int(idx[k])
        pol = traj.policy(i)
        if two_d:
            art.set_array(pol.mean()[:, action_axis].reshape(S.shape).T.ravel())
        else:
            art.set_array(_marginal(pol, action_axis)[1].T.ravel())
        marker.set_data([t[i]], [ymark[i]])
        ax0.set_title(f"{head}t = {fmt_value(t[i])}", fontsize=10)

    # Render the static parts once (constrained layout included), then per frame only the three
    # artists that change on top of a copy of that background: one cheap partial draw per frame.
    update(0)
    for a in (art, marker, ax0.title):
        a.set_animated(True)
    fig.canvas.draw()
    fig.set_layout_engine("none")
    background = fig.canvas.copy_from_bbox(fig.bbox)
    frames = []
    for k in range(len(idx)):
        update(k)
        fig.canvas.restore_region(background)
        ax0.draw_artist(art)
        ax0.draw_artist(ax0.title)
        ax1.draw_artist(marker)
        frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        _write_gif(frames, path, fps)
    else:
        _write_mp4(frames, path, fps)
    return path


def _write_gif(frames, path, fps):
    """Frames ``(h, w, 3)`` uint8 -> animated GIF (pillow; one adaptive palette per frame)."""
    from PIL import Image
    ims = [Image.fromarray(f).quantize(colors=256, method=Image.Quantize.MEDIANCUT) for f in frames]
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=int(round(1000 / fps)), loop=0)


def _write_mp4(frames, path, fps):
    """Frames ``(h, w, 3)`` uint8 -> H.264 MP4 through the ffmpeg matplotlib uses."""
    import subprocess
    import matplotlib
    h, w = frames[0].shape[:2]
    cmd = [matplotlib.rcParams["animation.ffmpeg_path"], "-y", "-loglevel", "error", "-f", "rawvideo",
           "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-",
           "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-vcodec", "libx264", "-pix_fmt", "yuv420p", str(path)]
    proc = subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), capture_output=True)
    if proc.returncode != 0:
        raise ValidationError(f"ffmpeg could not write {path}: {proc.stderr.decode(errors='replace')[-500:]}")
