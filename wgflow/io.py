"""HDF5 storage: :func:`save` and :func:`load` for MDP, Policy, Evaluation and Solution.

Arrays are datasets; parameters, grids and the package version are attributes (JSON for nested
values). Writes are atomic: the file is written under a temporary name in the same directory
and moved into place only when complete, so a crash never leaves a half-written file where a
good one was. A file that is not HDF5, or an HDF5 file that wgflow did not write, raises
:class:`~wgflow.FileFormatError`.

Layout (root attributes ``wgflow_type``, ``wgflow_version``, ``format_version``)::

    /mdp        P_data, P_indices, P_indptr (CSR), C; attrs P_shape, states, actions, provenance
    /policy     masses; attrs states, actions
    /solution   V, Q, weights, history, policy/…; attrs J, iterations, converged, residual, method,
                objective, diagnostics
"""
from __future__ import annotations

import json
import os
import uuid
import warnings
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp

from .errors import FileFormatError, MissingFileError, ValidationError
from .grids import Grid
from .version import __version__

__all__ = ["save", "load", "atomic_h5"]

FORMAT_VERSION = 1


class atomic_h5:
    """Context manager: an ``h5py.File`` written to a temporary name, renamed on success."""

    def __init__(self, path):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")

    def __enter__(self) -> h5py.File:
        self.file = h5py.File(self.tmp, "w")
        return self.file

    def __exit__(self, exc_type, exc, tb):
        try:
            self.file.close()
        finally:
            if exc_type is None:
                with open(self.tmp, "rb+") as fh:       # durable before it replaces a good file
                    os.fsync(fh.fileno())
                os.replace(self.tmp, self.path)
            elif self.tmp.exists():
                self.tmp.unlink()
        return False


def _grid_attr(g):
    return json.dumps(None if g is None else g.to_dict())


def _grid_from_attr(s):
    d = json.loads(s)
    return None if d is None else Grid.from_dict(d)


def _jsonable(obj, max_array: int | None = None):
    """JSON-ready copy; arrays become lists (or a placeholder above ``max_array`` elements)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v, max_array) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, max_array) for v in obj]
    if isinstance(obj, np.ndarray):
        if max_array is not None and obj.size > max_array:
            return f"<array shape={obj.shape}>"
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


# --------------------------------------------------------------------------------- writers
def _write_mdp(grp, mdp):
    P = mdp.P
    grp.create_dataset("P_data", data=P.data, compression="gzip", shuffle=True)
    grp.create_dataset("P_indices", data=P.indices, compression="gzip", shuffle=True)
    grp.create_dataset("P_indptr", data=P.indptr, compression="gzip", shuffle=True)
    grp.create_dataset("C", data=mdp.C)
    grp.attrs["P_shape"] = np.asarray(P.shape)
    grp.attrs["states"] = _grid_attr(mdp.states)
    grp.attrs["actions"] = _grid_attr(mdp.actions)
    grp.attrs["provenance"] = json.dumps(_jsonable(mdp.provenance))
    from .mdp import DynamicsModel
    grp.attrs["model"] = "dynamics" if isinstance(mdp.model, DynamicsModel) else "tabulated"


def _write_policy(grp, pol):
    grp.create_dataset("masses", data=pol.masses)
    grp.attrs["states"] = _grid_attr(pol.states)
    grp.attrs["actions"] = _grid_attr(pol.actions)


def _write_objective_attr(grp, obj):
    d = obj.to_dict()
    if getattr(obj, "initial", None) is not None:
        grp.create_dataset("initial", data=np.asarray(obj.initial))
    grp.attrs["objective"] = json.dumps(d)


def _write_result(grp, res, kind):
    _write_policy(grp.create_group("policy"), res.policy)
    for name in ("V", "Q", "weights"):
        grp.create_dataset(name, data=getattr(res, name))
    grp.attrs["J"] = res.J
    _write_objective_attr(grp, res.objective)
    diag = dict(res.diagnostics)
    hist = diag.pop("history", None)
    if hist is not None:
        grp.create_dataset("history", data=np.asarray(hist, dtype=float))
    grp.attrs["diagnostics"] = json.dumps(_jsonable(diag, max_array=64))
    if kind == "Solution":
        grp.attrs["iterations"] = res.iterations
        grp.attrs["converged"] = bool(res.converged)
        grp.attrs["residual"] = res.residual
        grp.attrs["method"] = res.method
    else:
        grp.create_dataset("c_pi", data=res.c_pi)


_GROUP = {"MDP": "mdp", "Policy": "policy", "Solution": "solution", "Evaluation": "evaluation"}


def save(path, obj) -> Path:
    """Save an MDP, Policy, Evaluation or Solution (or a Trajectory, or a study's result) to an
    HDF5 file, atomically.

    Examples
    --------
    >>> import wgflow as wg, tempfile, os
    >>> mdp = wg.problems.get("garnet", n_states=5, n_actions=2)
    >>> path = os.path.join(tempfile.mkdtemp(), "garnet.h5")
    >>> _ = wg.save(path, mdp)
    >>> wg.load(path).P.shape
    (10, 5)
    """
    from .evaluation import Evaluation, Solution
    from .mdp import MDP
    from .policy import Policy
    if hasattr(obj, "to_hdf5") and not isinstance(obj, (MDP, Policy, Evaluation, Solution)):
        obj.to_hdf5(path)
        return Path(path)
    kind = {MDP: "MDP", Policy: "Policy", Solution: "Solution", Evaluation: "Evaluation"}.get(type(obj))
    if kind is None:
        raise ValidationError(f"wgflow.save stores MDP, Policy, Evaluation, Solution or Trajectory, "
                              f"not {type(obj).__name__}")
    with atomic_h5(path) as f:
        f.attrs["wgflow_type"] = kind
        f.attrs["wgflow_version"] = __version__
        f.attrs["format_version"] = FORMAT_VERSION
        grp = f.create_group(_GROUP[kind])
        if kind == "MDP":
            _write_mdp(grp, obj)
        elif kind == "Policy":
            _write_policy(grp, obj)
        else:
            _write_result(grp, obj, kind)
    return Path(path)


# --------------------------------------------------------------------------------- readers
def _read_mdp(grp):
    from .mdp import MDP
    from . import problems
    shape = tuple(int(n) for n in grp.attrs["P_shape"])
    P = sp.csr_matrix((grp["P_data"][...], grp["P_indices"][...], grp["P_indptr"][...]), shape=shape)
    prov = json.loads(grp.attrs["provenance"])
    model = None
    if "problem" in prov and prov["problem"] in problems.names():
        model = problems.model(prov["problem"], **prov.get("params", {}))
    elif grp.attrs.get("model", "tabulated") == "dynamics":
        warnings.warn("this MDP was built from user dynamics, which a file cannot hold: off-grid "
                      "evaluation of the loaded MDP interpolates the tables linearly in the action "
                      "instead of using the drift and cost functions", UserWarning, stacklevel=3)
    return MDP(P, grp["C"][...], _grid_from_attr(grp.attrs["states"]),
               _grid_from_attr(grp.attrs["actions"]), model=model, provenance=prov)


def _read_policy(grp):
    from .policy import Policy
    return Policy(grp["masses"][...], _grid_from_attr(grp.attrs["actions"]),
                  _grid_from_attr(grp.attrs["states"]))


def _read_objective(grp):
    from .objectives import objective_from_dict
    d = json.loads(grp.attrs["objective"])
    if "initial" in grp:
        d["initial"] = grp["initial"][...]
    return objective_from_dict(d)


def _read_result(grp, kind):
    from .evaluation import Evaluation, Solution
    pol = _read_policy(grp["policy"])
    diag = json.loads(grp.attrs["diagnostics"])
    if "history" in grp:
        diag["history"] = grp["history"][...]
    common = dict(J=float(grp.attrs["J"]), V=grp["V"][...], Q=grp["Q"][...],
                  weights=grp["weights"][...], objective=_read_objective(grp), diagnostics=diag)
    if kind == "Solution":
        return Solution(policy=pol, iterations=int(grp.attrs["iterations"]),
                        converged=bool(grp.attrs["converged"]), residual=float(grp.attrs["residual"]),
                        method=str(grp.attrs["method"]), **common)
    return Evaluation(policy=pol, c_pi=grp["c_pi"][...], **common)


def open_checked(path) -> h5py.File:
    """Open a wgflow HDF5 file for reading, or raise :class:`FileFormatError` saying why not."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"no such file: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise FileFormatError(f"{path} is not a readable HDF5 file (corrupted or another format): {exc}") from exc
    if "wgflow_type" not in f.attrs:
        f.close()
        raise FileFormatError(f"{path} is an HDF5 file but was not written by wgflow "
                              "(no 'wgflow_type' attribute)")
    return f


def load(path):
    """Load what :func:`save` (or a Trajectory, or :func:`wgflow.run_study`) wrote.

    Raises
    ------
    FileFormatError
        The file is corrupted, not HDF5, or not written by wgflow.
    """
    with open_checked(path) as f:
        kind = str(f.attrs["wgflow_type"])
        fmt = int(f.attrs.get("format_version", -1))
        if fmt > FORMAT_VERSION:
            raise FileFormatError(f"{path} has format version {fmt}, newer than this wgflow "
                                  f"({__version__}) reads ({FORMAT_VERSION}); upgrade wgflow")
        try:
            if kind == "MDP":
                return _read_mdp(f["mdp"])
            if kind == "Policy":
                return _read_policy(f["policy"])
            if kind in ("Solution", "Evaluation"):
                return _read_result(f[_GROUP[kind]], kind)
        except (KeyError, OSError) as exc:
            raise FileFormatError(f"{path} is a damaged wgflow {kind} file: {exc}") from exc
    if kind == "Trajectory":
        from .flows.trajectory import Trajectory  # added with the flows
        return Trajectory.from_hdf5(path)
    if kind == "Study":
        from .study import StudyResult
        return StudyResult.from_hdf5(path)
    raise FileFormatError(f"{path} holds an unknown wgflow object type {kind!r}")
