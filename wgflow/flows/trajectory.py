"""The result of a flow: saved frames, J, gradient norms, diagnostics; HDF5 storage.

HDF5 layout (root attributes ``wgflow_type = "Trajectory"``, ``wgflow_version``,
``format_version``)::

    /trajectory  times (n,), J (n,), grad_norm2 (n,), masses (n, nS, nA), params/<name> (n, ...)
                 attrs: scheme, objective (JSON), actions, states (JSON grids), provenance,
                        diagnostics (JSON), complete (bool)

Frames are appended one at a time and flushed (:class:`FrameWriter`), so a run that is
interrupted leaves a readable file with every frame written so far (``complete`` is False).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from ..errors import FileFormatError, ValidationError
from ..io import FORMAT_VERSION, _grid_attr, _grid_from_attr, _jsonable, atomic_h5, open_checked
from ..policy import Policy
from ..version import __version__

__all__ = ["Trajectory", "FrameWriter"]


class Trajectory:
    """Saved frames of a flow.

    Attributes
    ----------
    times, J, grad_norm2 : ndarray ``(n_frames,)``
        Time, objective and squared gradient norm at each saved frame.
    masses : ndarray ``(n_frames, nS, nA)``
    params : dict of arrays ``(n_frames, ...)``
        The scheme's own representation (particles, Gaussian parameters), when it has one.
    final : Policy
        The policy at the last frame.
    diagnostics : dict
        Steps, rejected steps, evaluations, timings, stop reason, linear-solver statistics.
    """

    def __init__(self, times, J, grad_norm2, masses, actions=None, states=None, params=None,
                 scheme: str = "", objective: dict | None = None, provenance: dict | None = None,
                 diagnostics: dict | None = None):
        self.times = np.asarray(times, dtype=float)
        self.J = np.asarray(J, dtype=float)
        self.grad_norm2 = np.asarray(grad_norm2, dtype=float)
        self.masses = np.asarray(masses, dtype=float)
        self.actions = actions
        self.states = states
        self.params = {k: np.asarray(v) for k, v in (params or {}).items()}
        self.scheme = scheme
        self.objective = dict(objective or {})
        self.provenance = dict(provenance or {})
        self.diagnostics = dict(diagnostics or {})

    def __len__(self) -> int:
        return self.times.size

    def __repr__(self) -> str:
        if not len(self):
            return f"<Trajectory ({self.scheme}): empty>"
        return (f"<Trajectory ({self.scheme}): {len(self)} frames, t in [{self.times[0]:g}, "
                f"{self.times[-1]:g}], J {self.J[0]:.6g} -> {self.J[-1]:.6g}>")

    def plot(self, J_star: float | None = None, ax=None):
        """``J`` (or ``J - J*`` on a log scale when ``J_star`` is given) against flow time.

        Returns the Axes. :func:`wgflow.plot.plot_frames_by_state`, :func:`wgflow.plot.animate_flow`
        and :func:`wgflow.plot.plot_convergence` draw the other views of a trajectory.
        """
        import matplotlib.pyplot as plt
        if ax is None:
            _, ax = plt.subplots(figsize=(5.0, 3.5), layout="constrained")
        if J_star is None:
            ax.plot(self.times, self.J, lw=1.5)
            ax.set_ylabel("J")
        else:
            from ..plot import plot_convergence
            plot_convergence({self.scheme or "flow": self}, J_star, ax=ax)
            return ax
        ax.set_xlabel("flow time t")
        ax.set_title(f"{self.scheme}: {len(self)} frames")
        ax.grid(alpha=0.3)
        return ax

    def policy(self, i: int) -> Policy:
        """The policy of frame ``i`` (negative indices count from the end)."""
        return Policy(self.masses[i], self.actions, self.states, validate=False)

    @property
    def final(self) -> Policy:
        return self.policy(-1)

    # ------------------------------------------------------------------ storage
    def to_hdf5(self, path) -> Path:
        """Write the whole trajectory atomically."""
        with atomic_h5(path) as f:
            w = FrameWriter._init_file(f, self.masses.shape[1:], self.actions, self.states,
                                       self.scheme, self.objective, self.provenance,
                                       {k: v.shape[1:] for k, v in self.params.items()},
                                       {k: v.dtype for k, v in self.params.items()})
            n = len(self)
            for name, data in (("times", self.times), ("J", self.J), ("grad_norm2", self.grad_norm2),
                               ("masses", self.masses)):
                w[name].resize(n, axis=0)
                w[name][...] = data
            for k, v in self.params.items():
                w["params"][k].resize(n, axis=0)
                w["params"][k][...] = v
            w.attrs["diagnostics"] = json.dumps(_jsonable(self.diagnostics, max_array=64))
            w.attrs["complete"] = True
            w.attrs["n_frames"] = n
        return Path(path)

    @classmethod
    def from_hdf5(cls, path) -> "Trajectory":
        """Read a trajectory (complete, or as far as an interrupted run wrote it)."""
        with open_checked(path) as f:
            if f.attrs["wgflow_type"] != "Trajectory":
                raise FileFormatError(f"{path} holds a {f.attrs['wgflow_type']}, not a Trajectory")
            try:
                g = f["trajectory"]
                n = int(g.attrs.get("n_frames", g["times"].shape[0]))
                params = {k: g["params"][k][:n] for k in g["params"]} if "params" in g else {}
                diag = json.loads(g.attrs.get("diagnostics", "{}"))
                diag["complete"] = bool(g.attrs.get("complete", False))
                return cls(g["times"][:n], g["J"][:n], g["grad_norm2"][:n], g["masses"][:n],
                           _grid_from_attr(g.attrs["actions"]), _grid_from_attr(g.attrs["states"]),
                           params, str(g.attrs["scheme"]), json.loads(g.attrs["objective"]),
                           json.loads(g.attrs["provenance"]), diag)
            except (KeyError, OSError) as exc:
                raise FileFormatError(f"{path} is a damaged wgflow Trajectory file: {exc}") from exc


class FrameWriter:
    """Append frames to an HDF5 trajectory file, flushing after each (crash-safe storage).

    Used by :class:`~wgflow.flows.trackers.StorageTracker`. ``resume=True`` opens an existing
    file and continues after its last frame.
    """

    def __init__(self, path, frame_shape, actions, states, scheme, objective, provenance,
                 param_shapes=None, param_dtypes=None, resume: bool = False):
        self.path = Path(path)
        if resume:
            if not self.path.exists():
                raise ValidationError(f"cannot resume: {self.path} does not exist")
            open_checked(self.path).close()
            self.file = h5py.File(self.path, "a")
            self.group = self.file["trajectory"]
            if tuple(self.group["masses"].shape[1:]) != tuple(frame_shape):
                raise ValidationError(f"cannot resume {self.path}: it holds frames of shape "
                                      f"{self.group['masses'].shape[1:]}, this flow has {frame_shape}")
        else:
            if self.path.exists():
                os.remove(self.path)
            self.file = h5py.File(self.path, "w")
            self.group = self._init_file(self.file, frame_shape, actions, states, scheme, objective,
                                         provenance, param_shapes or {}, param_dtypes or {})
            self.file.flush()

    @staticmethod
    def _init_file(f, frame_shape, actions, states, scheme, objective, provenance, param_shapes,
                   param_dtypes):
        f.attrs["wgflow_type"] = "Trajectory"
        f.attrs["wgflow_version"] = __version__
        f.attrs["format_version"] = FORMAT_VERSION
        g = f.create_group("trajectory")
        for name in ("times", "J", "grad_norm2"):
            g.create_dataset(name, shape=(0,), maxshape=(None,), dtype="f8", chunks=(1024,))
        g.create_dataset("masses", shape=(0,) + tuple(frame_shape), maxshape=(None,) + tuple(frame_shape),
                         dtype="f8", chunks=(1,) + tuple(frame_shape))
        pg = g.create_group("params")
        for k, shp in param_shapes.items():
            pg.create_dataset(k, shape=(0,) + tuple(shp), maxshape=(None,) + tuple(shp),
                              dtype=param_dtypes.get(k, "f8"), chunks=(1,) + tuple(shp) if shp else (1024,))
        g.attrs["scheme"] = scheme
        g.attrs["objective"] = json.dumps(_jsonable(objective))
        g.attrs["actions"] = _grid_attr(actions)
        g.attrs["states"] = _grid_attr(states)
        g.attrs["provenance"] = json.dumps(_jsonable(provenance))
        g.attrs["diagnostics"] = "{}"
        g.attrs["complete"] = False
        g.attrs["n_frames"] = 0
        return g

    def last_frame(self):
        """``(t, masses, params)`` of the last stored frame (for resuming)."""
        g = self.group
        n = int(g.attrs["n_frames"])
        if n == 0:
            raise ValidationError(f"cannot resume: {self.path} has no frames")
        params = {k: g["params"][k][n - 1] for k in g["params"]}
        return float(g["times"][n - 1]), g["masses"][n - 1], params

    def append(self, t, J, grad_norm2, masses, params=None):
        g = self.group
        n = int(g.attrs["n_frames"])
        for name, val in (("times", t), ("J", J), ("grad_norm2", grad_norm2), ("masses", masses)):
            g[name].resize(n + 1, axis=0)
            g[name][n] = val
        for k, v in (params or {}).items():
            if k in g["params"]:
                g["params"][k].resize(n + 1, axis=0)
                g["params"][k][n] = v
        g.attrs["n_frames"] = n + 1
        self.file.flush()

    def close(self, diagnostics=None, complete=True):
        if self.file:
            self.group.attrs["diagnostics"] = json.dumps(_jsonable(diagnostics or {}, max_array=64))
            self.group.attrs["complete"] = bool(complete)
            self.file.flush()
            self.file.close()
            self.file = None
