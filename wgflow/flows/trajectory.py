"""Trajectories of flows and their crash-safe HDF5 storage.

File layout (root attributes as in :mod:`wgflow.io`, ``wgflow_type = "Trajectory"``)::

    /trajectory
        times (n,), J (n,), grad_norm2 (n,), masses (n, nS, nA)
        params/<name> (n, ...)    the scheme's own representation (particles, Gaussian parameters)
        state/<name> (n, ...)     scheme state the next step depends on (Scheme.state_dict)
        restart (n,) uint8        1: the frame is a restart point; 0: a final snapshot (a run
                                  stopped or interrupted between regular frames)
        checksum (n,) uint64      blake2b of the frame's values (all of the above)
        attrs: scheme, objective, actions, states, provenance, diagnostics, complete (bool),
               n_frames (int: the committed frames), run (JSON, flows with storage= only:
               the scheme options, dt and fingerprints of the MDP and objective)

**Commit protocol** (:class:`FrameWriter`). A frame is appended as: grow every dataset, write
the frame's values and checksum, flush and fsync; only then raise ``n_frames`` and flush and
fsync again. A frame therefore counts only once all its data is on disk; a process killed
anywhere in between leaves a file whose committed frames are intact. A new file is built under
a temporary name and renamed over ``path`` once its first frame is committed (an existing file
is replaced only with ``overwrite=True``, and stays intact until then).

**Seal.** The file has a 512-byte user block: marked open (``WGFLOW-OPEN``) while the run
writes, sealed with the SHA-256 of the file (:func:`wgflow.h5.seal`) when the run closes it --
at its end, also on an exception -- so that a finished file is verified before the HDF5 library
parses it. A file whose process was killed stays open; loaders probe it in a child process
first (:func:`wgflow.h5.probe`), so damaged metadata raises instead of crashing the reader.
A resume unseals the file while it appends.

**Reading** (:meth:`Trajectory.from_hdf5`) serves the committed frames whose checksums match;
a torn tail (a frame whose data did not reach the disk although it was counted -- which the
commit order prevents, but a file may come from elsewhere) is dropped with a warning and
reported in ``diagnostics["torn_frames"]``; a bad frame followed by good ones is damage, not a
torn tail, and raises :class:`~wgflow.FileFormatError`. Every served frame is validated like
user input (finite, non-negative masses summing to 1, finite J, increasing times).

**Resuming** (:func:`read_restart_frame`) continues from the last committed restart point
(skipping a torn tail, uncommitted frames and final snapshots, which are removed from the file
when the run goes on and counted in the resumed run's ``diagnostics["resumed_from"]``), after
checking that the scheme, its options, ``dt``, the MDP and the objective are those of
the stored run (a difference raises :class:`~wgflow.ValidationError` naming it).
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .. import h5, validation
from ..errors import FileFormatError, MissingFileError, ValidationError
from ..policy import Policy

__all__ = ["Trajectory", "FrameWriter", "RestartFrame", "read_restart_frame", "run_header"]


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
        Steps, rejected steps, evaluations, timings, stop reason, linear-solver statistics
        (read from a file: also ``complete``, ``torn_frames``).
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

        With ``J_star``, gaps below the rounding level of ``J`` are shaded:
        :func:`wgflow.plot.rounding_floor` with ``kappa = 1/(1 - gamma)`` for a discounted
        objective (1 for the average cost).

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
            from ..plot import plot_convergence, rounding_floor
            # the rounding level of J grows with the conditioning 1/(1 - gamma) of I - gamma P
            obj = self.objective if isinstance(self.objective, dict) else {}
            gamma = obj.get("gamma") if obj.get("kind") == "discounted" else None
            kappa = 1.0 / (1.0 - float(gamma)) if gamma is not None else 1.0
            plot_convergence({self.scheme or "flow": self}, J_star, ax=ax,
                             floor=rounding_floor(J_star, kappa))
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
    def to_hdf5(self, path, overwrite: bool = True) -> Path:
        """Write the whole trajectory atomically (with per-frame checksums; the file cannot be
        resumed: it holds no restart data)."""
        n = len(self)
        with h5.atomic_h5(path, overwrite=overwrite, where="Trajectory.to_hdf5") as f:
            g = FrameWriter._init_file(f, self.masses.shape[1:], self.actions, self.states,
                                       self.scheme, self.objective, self.provenance,
                                       {k: (v.shape[1:], v.dtype) for k, v in self.params.items()},
                                       {}, None)
            restart = np.zeros(n, dtype=np.uint8)
            sums = np.array([h5.checksum(_frame_values(
                self.times[i], self.J[i], self.grad_norm2[i], restart[i], self.masses[i],
                {k: v[i] for k, v in self.params.items()}, {})) for i in range(n)], dtype="<u8")
            for name, data in (("times", self.times), ("J", self.J), ("grad_norm2", self.grad_norm2),
                               ("masses", self.masses), ("restart", restart), ("checksum", sums)):
                g[name].resize(n, axis=0)
                g[name][...] = data
            for k, v in self.params.items():
                g["params"][k].resize(n, axis=0)
                g["params"][k][...] = v
            g.attrs["diagnostics"] = json.dumps(h5.jsonable(self.diagnostics, max_array=64))
            g.attrs["complete"] = True
            g.attrs["n_frames"] = n
        return Path(path)

    @classmethod
    def from_hdf5(cls, path) -> "Trajectory":
        """Read a trajectory: every committed frame of a complete or interrupted run.

        A torn tail is dropped (with a warning; ``diagnostics["torn_frames"]`` counts it);
        anything else that is wrong raises :class:`~wgflow.FileFormatError` naming the file and
        the dataset.
        """
        with h5.open_checked(path, kind="Trajectory") as f:
            fr = _read_frames(f, path)
        diag = fr.diagnostics
        return cls(fr.times, fr.J, fr.grad_norm2, fr.masses, fr.actions, fr.states, fr.params,
                   fr.scheme, fr.objective, fr.provenance, diag)


# ------------------------------------------------------------------------------ frames in files
def _frame_values(t, J, gn2, restart, masses, params: dict, state: dict) -> list:
    """The values a frame's checksum covers, in stored dtypes and a fixed order."""
    out = [np.float64(t), np.float64(J), np.float64(gn2), np.uint8(restart),
           np.asarray(masses, dtype=np.float64)]
    for k in sorted(params):
        out.append(np.asarray(params[k]))
    for k in sorted(state):
        out.append(np.asarray(state[k]))
    return out


@dataclass
class _Frames:
    times: np.ndarray
    J: np.ndarray
    grad_norm2: np.ndarray
    masses: np.ndarray
    params: dict
    state: dict
    restart: np.ndarray
    scheme: str
    objective: dict
    provenance: dict
    actions: object
    states: object
    run: dict | None
    diagnostics: dict = field(default_factory=dict)


def _per_frame_datasets(g, path):
    """``{name: dataset}`` of every per-frame dataset, checked (no links, no external data)."""
    out = {}
    for name, kind in (("times", "f"), ("J", "f"), ("grad_norm2", "f"), ("masses", "f")):
        out[name] = h5.dataset(g, name, path, kind=kind, ndim=1 if name != "masses" else 3)
    for sub in ("params", "state"):
        if sub in g:
            sg = h5.group(g, sub, path)
            for k in sg:
                out[f"{sub}/{k}"] = h5.dataset(sg, k, path, kind="biuf")
    return out


def _read_rows(dsets: dict, n: int, path):
    """Read the first ``n`` rows of every dataset; if the tail cannot be read (its chunk was
    not written), read frame by frame and stop at the first unreadable frame."""
    try:
        return {k: d[:n] for k, d in dsets.items()}, n
    except (OSError, RuntimeError, ValueError):
        pass
    rows = {k: [] for k in dsets}
    for i in range(n):
        try:
            vals = {k: d[i] for k, d in dsets.items()}
        except (OSError, RuntimeError, ValueError):
            break
        for k, v in vals.items():
            rows[k].append(v)
    m = len(rows["times"])
    return {k: (np.stack(v) if v else dsets[k][:0]) for k, v in rows.items()}, m


def _read_frames(f, path) -> _Frames:
    g = h5.group(f, "trajectory", path)
    fmt = h5.attr(f, "format_version", path, "int", default=1)
    scheme = h5.attr(g, "scheme", path, "str")
    objective = h5.attr(g, "objective", path, "json")
    provenance = h5.attr(g, "provenance", path, "json")
    diag = h5.attr(g, "diagnostics", path, "json", default={})
    if not isinstance(objective, dict) or not isinstance(provenance, dict) or not isinstance(diag, dict):
        raise h5.file_error(path, "attributes of /trajectory", "objective, provenance and "
                                                               "diagnostics must be JSON objects")
    actions = h5.grid_from_attr(g, "actions", path)
    states = h5.grid_from_attr(g, "states", path)
    run = h5.attr(g, "run", path, "json", default=None)
    complete = h5.attr(g, "complete", path, "bool", default=False)
    n_commit = h5.attr(g, "n_frames", path, "int", default=None)
    dsets = _per_frame_datasets(g, path)
    if fmt >= 2:
        dsets["restart"] = h5.dataset(g, "restart", path, kind="u", ndim=1)
        dsets["checksum"] = h5.dataset(g, "checksum", path, kind="u", ndim=1)
    lengths = {k: d.shape[0] for k, d in dsets.items()}
    if n_commit is None:
        n_commit = min(lengths.values())
    if n_commit < 0:
        raise h5.file_error(path, "attribute n_frames of /trajectory", f"must be >= 0, got {n_commit}")
    n = min([n_commit] + list(lengths.values()))
    short = n_commit - n              # counted frames whose datasets are shorter: a torn tail
    shape = dsets["masses"].shape[1:]
    if actions is not None and states is not None and shape != (states.size, actions.size):
        raise h5.file_error(path, "dataset /trajectory/masses", f"has frames of shape {shape}, the "
                                                                f"grids need ({states.size}, {actions.size})")
    rows, m = _read_rows(dsets, n, path)
    short += n - m
    n = m
    torn = short
    if fmt >= 2 and n:
        ok = np.array([rows["checksum"][i] == h5.checksum(_frame_values(
            rows["times"][i], rows["J"][i], rows["grad_norm2"][i], rows["restart"][i],
            rows["masses"][i], {k[7:]: rows[k][i] for k in rows if k.startswith("params/")},
            {k[6:]: rows[k][i] for k in rows if k.startswith("state/")}))
            for i in range(n)], dtype=bool)
        if not ok.all():
            first = int(np.argmin(ok))
            if ok[first:].any():
                raise h5.file_error(path, f"frame {first} of /trajectory", "its checksum does not "
                                          "match its data, and later frames are intact: the file is "
                                          "damaged (not a torn tail)")
            torn += n - first
            n = first
            rows = {k: v[:n] for k, v in rows.items()}
    if torn:
        warnings.warn(f"{path}: dropped a torn tail of {torn} frame(s) (counted but not completely "
                      f"written); serving the {n} complete frame(s)", UserWarning, stacklevel=3)
    with h5.reading(path, "dataset /trajectory/times"):
        t = validation.array(rows["times"], "times")
        if n > 1 and np.any(np.diff(t) <= 0):
            i = int(np.nonzero(np.diff(t) <= 0)[0][0])
            raise ValidationError(f"times must increase, but frame {i + 1} has t = {t[i + 1]!r} after "
                                  f"t = {t[i]!r}")
    with h5.reading(path, "dataset /trajectory/J"):
        validation.array(rows["J"], "J")
    with h5.reading(path, "dataset /trajectory/masses"):
        if n:
            validation.masses(rows["masses"], name="masses")
    params = {k[7:]: v for k, v in rows.items() if k.startswith("params/")}
    state = {k[6:]: v for k, v in rows.items() if k.startswith("state/")}
    for k, v in params.items():
        if v.dtype.kind == "f":
            with h5.reading(path, f"dataset /trajectory/params/{k}"):
                validation.array(v, k)
    restart = rows["restart"].astype(bool) if "restart" in rows else np.zeros(n, dtype=bool)
    diag["complete"] = bool(complete) and torn == 0
    diag["torn_frames"] = int(torn)
    diag["uncommitted_frames"] = int(max(lengths["times"] - n_commit, 0))
    return _Frames(rows["times"], rows["J"], rows["grad_norm2"], rows["masses"], params, state,
                   restart, scheme, objective, provenance, actions, states, run, diag)


# ------------------------------------------------------------------------------ restart points
@dataclass
class RestartFrame:
    """The frame a resumed flow continues from (see :func:`read_restart_frame`).

    ``n_dropped`` counts the intact frames stored after it (final snapshots), ``n_torn`` the
    frames of a torn tail and ``n_uncommitted`` the frames written but never counted (as the
    read reports them in ``diagnostics["torn_frames"]`` and ``["uncommitted_frames"]``): the
    resume removes all of them from the file.
    """

    index: int
    t: float
    J: float
    grad_norm2: float
    masses: np.ndarray
    params: dict
    state: dict
    n_torn: int
    n_dropped: int
    n_uncommitted: int = 0

    def resume_diagnostics(self) -> dict:
        """``diagnostics["resumed_from"]`` of the resumed run: where it continued, and how many
        frames of the file it dropped (``dropped_frames``: intact snapshots after the restart
        frame; ``torn_frames``; ``uncommitted_frames``)."""
        return {"t": self.t, "frame": self.index, "dropped_frames": self.n_dropped,
                "torn_frames": self.n_torn, "uncommitted_frames": self.n_uncommitted}


def run_header(scheme, options: dict, dt) -> dict:
    """What a resume must find unchanged: scheme, options, ``dt``, fingerprints of the MDP and
    the objective (JSON-ready)."""
    mdp, obj = scheme.mdp, scheme.objective
    init = getattr(obj, "initial", None)
    return {"scheme": scheme.name,
            "options": h5.jsonable(options),
            "dt": None if dt is None else float(dt),
            # the initial law by its digest (a description of thousands of numbers would be
            # compared and printed whole, and headers written before it was described match)
            "objective": {k: v for k, v in obj.to_dict().items() if k != "initial"},
            "objective_initial": None if init is None else h5.digest(np.asarray(init, dtype=float)),
            "mdp": {"shape": [mdp.n_states, mdp.n_actions],
                    "states": None if mdp.states is None else mdp.states.to_dict(),
                    "actions": None if mdp.actions is None else mdp.actions.to_dict(),
                    "digest": h5.digest(mdp.P.indptr.astype(np.int64), mdp.P.indices.astype(np.int64),
                                        mdp.P.data, mdp.C)}}


def _differences(stored: dict, now: dict) -> list:
    out = []
    if stored.get("scheme") != now["scheme"]:
        out.append(f"the scheme ({stored.get('scheme')!r} in the file, {now['scheme']!r} now)")
    so, no = stored.get("options", {}), now["options"]
    keys = sorted(k for k in set(so) | set(no) if so.get(k, "<unset>") != no.get(k, "<unset>"))
    if keys:
        out.append("the scheme options " + ", ".join(
            f"{k} ({so.get(k, '<unset>')!r} in the file, {no.get(k, '<unset>')!r} now)" for k in keys))
    if stored.get("dt") != now["dt"]:
        out.append(f"dt ({stored.get('dt')!r} in the file, {now['dt']!r} now)")
    if stored.get("objective") != now["objective"] or \
            stored.get("objective_initial") != now["objective_initial"]:
        out.append(f"the objective ({stored.get('objective')} in the file, {now['objective']} now"
                   + (", and the initial law" if stored.get("objective_initial") != now["objective_initial"]
                      else "") + ")")
    sm, nm = stored.get("mdp", {}), now["mdp"]
    if sm != nm:
        what = [k for k in ("shape", "states", "actions", "digest") if sm.get(k) != nm.get(k)]
        names = {"shape": "size", "states": "state grid", "actions": "action grid",
                 "digest": "transitions or costs"}
        out.append("the MDP (" + ", ".join(names[k] for k in what) + " differ; file "
                   f"{sm.get('shape')}, now {nm.get('shape')})")
    return out


def read_restart_frame(path, header: dict) -> RestartFrame:
    """The last committed restart point of a flow's storage file, after checking that the run
    matches ``header`` (:func:`run_header`).

    Raises
    ------
    MissingFileError
        No file at ``path``.
    FileFormatError
        The file is not a readable trajectory, or holds no complete restart point.
    ValidationError
        The file was written by another kind of run (scheme, options, dt, MDP or objective
        differ), or by something other than a flow's ``storage=`` (no restart data).
    """
    with h5.open_checked(path, kind="Trajectory") as f:
        fmt = h5.attr(f, "format_version", path, "int", default=1)
        if fmt < 2:
            raise ValidationError(f"cannot resume {path}: it was written by an older wgflow "
                                  f"(format {fmt}) without restart data; start a new run")
        fr = _read_frames(f, path)
    if fr.run is None:
        raise ValidationError(f"cannot resume {path}: it holds a saved trajectory, not a flow's "
                              "storage= file (no restart data)")
    diff = _differences(fr.run, header)
    if diff:
        raise ValidationError(f"cannot resume {path}: this call differs from the stored run in "
                              + "; ".join(diff) + ". Use the same arguments, or start a new run "
                              "(overwrite=True or another file)")
    idx = np.nonzero(fr.restart)[0]
    if idx.size == 0:
        raise FileFormatError(f"cannot resume {path}: it holds no complete restart frame "
                              f"({len(fr.times)} frame(s), {fr.diagnostics['torn_frames']} torn); "
                              "start a new run with overwrite=True")
    i = int(idx[-1])
    n = len(fr.times)
    return RestartFrame(i, float(fr.times[i]), float(fr.J[i]), float(fr.grad_norm2[i]),
                        fr.masses[i], {k: v[i] for k, v in fr.params.items()},
                        {k: v[i] for k, v in fr.state.items()}, fr.diagnostics["torn_frames"],
                        n - 1 - i, fr.diagnostics["uncommitted_frames"])


# ------------------------------------------------------------------------------ writer
class FrameWriter:
    """Append frames to an HDF5 trajectory file with the commit protocol of this module.

    Build with :meth:`create` (a new file, under a temporary name until its first frame is
    committed) or :meth:`reopen` (continue a stored run after its restart frame). Used by
    :class:`~wgflow.flows.trackers.StorageTracker`.
    """

    def __init__(self, path: Path, file: h5py.File, tmp: Path | None = None):
        self.path = Path(path)
        self.file = file
        self.group = file["trajectory"]
        self._tmp = tmp
        self._fd = file.id.get_vfd_handle()

    # -- opening ------------------------------------------------------------------------
    @classmethod
    def create(cls, path, frame_shape, actions, states, scheme: str, objective: dict,
               provenance: dict, param_specs: dict, state_specs: dict, run: dict | None,
               overwrite: bool = False) -> "FrameWriter":
        """A new file for a run; ``param_specs`` / ``state_specs`` map names to ``(shape,
        dtype)``. ``path`` is replaced (if ``overwrite``) only once the first frame is committed."""
        p = validation.output_path(path, "storage", "flow", overwrite=overwrite)
        h5.clean_orphans(p)
        tmp = h5.temp_name(p)
        f = h5py.File(tmp, "w", userblock_size=h5.USERBLOCK)
        try:
            cls._init_file(f, frame_shape, actions, states, scheme, objective, provenance,
                           param_specs, state_specs, run)
            f.flush()
            h5.unseal(tmp)     # marked open (no seal yet) in the user block, which HDF5 leaves alone
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise
        return cls(p, f, tmp)

    @classmethod
    def reopen(cls, path, keep: int) -> "FrameWriter":
        """Open a stored run for appending after its first ``keep`` frames (later ones -- a torn
        tail, final snapshots -- are removed)."""
        path = Path(path)
        if not path.exists():
            raise MissingFileError(f"cannot resume: {path} does not exist")
        h5.unseal(path)                 # (a file saved whole is sealed: appending changes it)
        f = h5py.File(path, "a")
        w = cls(path, f)
        g = w.group
        for name in w._datasets():
            d = g[name]
            if d.shape[0] != keep:
                d.resize(keep, axis=0)
        g.attrs["n_frames"] = keep
        g.attrs["complete"] = False
        w._sync()
        return w

    @staticmethod
    def _init_file(f, frame_shape, actions, states, scheme, objective, provenance, param_specs,
                   state_specs, run):
        h5.write_header(f, "Trajectory")
        g = f.create_group("trajectory")
        for name in ("times", "J", "grad_norm2"):
            g.create_dataset(name, shape=(0,), maxshape=(None,), dtype="f8", chunks=(1024,))
        g.create_dataset("restart", shape=(0,), maxshape=(None,), dtype="u1", chunks=(1024,))
        g.create_dataset("checksum", shape=(0,), maxshape=(None,), dtype="<u8", chunks=(1024,))
        g.create_dataset("masses", shape=(0,) + tuple(frame_shape), maxshape=(None,) + tuple(frame_shape),
                         dtype="f8", chunks=(1,) + tuple(frame_shape))
        for sub, specs in (("params", param_specs), ("state", state_specs)):
            sg = g.create_group(sub)
            for k, (shp, dt) in specs.items():
                shp = tuple(shp)
                sg.create_dataset(k, shape=(0,) + shp, maxshape=(None,) + shp, dtype=dt,
                                  chunks=(1,) + shp if shp else (1024,))
        g.attrs["scheme"] = scheme
        g.attrs["objective"] = json.dumps(h5.jsonable(objective))
        g.attrs["actions"] = h5.grid_attr(actions)
        g.attrs["states"] = h5.grid_attr(states)
        g.attrs["provenance"] = json.dumps(h5.jsonable(provenance))
        if run is not None:
            g.attrs["run"] = json.dumps(run)
        g.attrs["diagnostics"] = "{}"
        g.attrs["complete"] = False
        g.attrs["n_frames"] = 0
        return g

    # -- writing ------------------------------------------------------------------------
    def _datasets(self) -> list:
        g = self.group
        names = ["times", "J", "grad_norm2", "masses", "restart", "checksum"]
        names += [f"params/{k}" for k in g["params"]] + [f"state/{k}" for k in g["state"]]
        return names

    def _sync(self):
        self.file.flush()
        os.fsync(self._fd)

    def append(self, t, J, grad_norm2, masses, params: dict, state: dict, restart: bool) -> int:
        """Append one frame (commit protocol: data and checksum durable first, then the count)."""
        g = self.group
        n = int(g.attrs["n_frames"])
        pg, sg = g["params"], g["state"]
        if set(params) != set(pg) or set(state) != set(sg):
            raise ValidationError(f"storage {self.path}: the frame has params {sorted(params)} and "
                                  f"state {sorted(state)}, the file {sorted(pg)} and {sorted(sg)}")
        params = {k: np.asarray(v, dtype=pg[k].dtype) for k, v in params.items()}
        state = {k: np.asarray(v, dtype=sg[k].dtype) for k, v in state.items()}
        values = _frame_values(t, J, grad_norm2, int(restart), masses, params, state)
        rows = {"times": values[0], "J": values[1], "grad_norm2": values[2], "restart": values[3],
                "masses": values[4], "checksum": h5.checksum(values)}
        rows.update({f"params/{k}": v for k, v in params.items()})
        rows.update({f"state/{k}": v for k, v in state.items()})
        for name, val in rows.items():
            d = g[name]
            if d.shape[1:] != np.shape(val):
                raise ValidationError(f"storage {self.path}: {name} of this frame has shape "
                                      f"{np.shape(val)}, the file stores {d.shape[1:]}")
            d.resize(n + 1, axis=0)
            d[n] = val
        self._sync()                      # the frame's data is durable ...
        g.attrs["n_frames"] = n + 1       # ... before it counts
        self._sync()
        if self._tmp is not None:         # a new file appears under its name once it holds a frame
            os.replace(self._tmp, self.path)
            h5.fsync_dir(self.path.parent)
            self._tmp = None
        return n + 1

    def close(self, diagnostics=None, complete: bool = True):
        """Write the run's diagnostics and ``complete`` flag, close the file and seal it
        (:func:`wgflow.h5.seal`: one SHA-256 of the file, so that a later load verifies it instead
        of probing it). A file without a user block (written before seals) stays unsealed."""
        if not self.file:
            return
        committed = self._tmp is None          # a frame was committed: the file is at self.path
        try:
            self.group.attrs["diagnostics"] = json.dumps(h5.jsonable(diagnostics or {}, max_array=64))
            self.group.attrs["complete"] = bool(complete)
            self._sync()
        finally:
            self.file.close()
            self.file = None
            if self._tmp is not None:          # no frame was ever committed: no file
                self._tmp.unlink(missing_ok=True)
                self._tmp = None
        if committed:                          # (not after a failed write: that file stays open)
            h5.seal(self.path)
