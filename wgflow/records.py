"""HDF5 records of the core objects: the groups that hold an MDP, a Policy, an objective, and an
Evaluation or Solution inside a file.

:mod:`wgflow.io` (``save``/``load``) and the study files (:mod:`wgflow.study`) write and read
these groups; the file-level header and the safe access to datasets are :mod:`wgflow.h5`'s.
Readers trust nothing: every dataset is checked (kind, shape) and every object is rebuilt
through the constructors' validation (:mod:`wgflow.validation`); a failure is a
:class:`~wgflow.FileFormatError` naming the file and the dataset.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import scipy.sparse as sp

from . import h5, validation
from .errors import ValidationError
from .evaluation import Evaluation, Solution
from .mdp import MDP, DynamicsModel
from .objectives import objective_from_dict
from .policy import Policy

__all__ = ["write_mdp", "write_policy", "write_objective", "write_result", "read_mdp", "read_policy",
           "read_objective", "read_result", "GROUP"]

# --------------------------------------------------------------------------------- writers
#: tolerance on the sum of stored metric weights (an exact evaluation makes them sum to 1 up to
#: its accuracy, which evaluation checks to 1e-4 at worst; rounding gives ~1e-15)
WEIGHTS_SUM_TOL = 1e-6


# --------------------------------------------------------------------------------- writers
def write_mdp(grp, mdp):
    P = mdp.P
    grp.create_dataset("P_data", data=P.data, compression="gzip", shuffle=True)
    grp.create_dataset("P_indices", data=P.indices, compression="gzip", shuffle=True)
    grp.create_dataset("P_indptr", data=P.indptr, compression="gzip", shuffle=True)
    grp.create_dataset("C", data=mdp.C)
    grp.attrs["P_shape"] = np.asarray(P.shape)
    grp.attrs["states"] = h5.grid_attr(mdp.states)
    grp.attrs["actions"] = h5.grid_attr(mdp.actions)
    grp.attrs["provenance"] = json.dumps(h5.jsonable(mdp.provenance))
    grp.attrs["model"] = "dynamics" if isinstance(mdp.model, DynamicsModel) else "tabulated"


def write_policy(grp, pol):
    grp.create_dataset("masses", data=pol.masses)
    grp.attrs["states"] = h5.grid_attr(pol.states)
    grp.attrs["actions"] = h5.grid_attr(pol.actions)


def write_objective(grp, obj):
    d = obj.to_dict()
    # the initial law goes to its own dataset (binary, any size), not into the JSON attribute
    initial = d.pop("initial", None)
    if initial is not None:
        grp.create_dataset("initial", data=np.asarray(initial, dtype=float))
    grp.attrs["objective"] = json.dumps(d)


def write_result(grp, res, kind):
    write_policy(grp.create_group("policy"), res.policy)
    for name in ("V", "Q", "weights"):
        grp.create_dataset(name, data=getattr(res, name))
    grp.attrs["J"] = res.J
    write_objective(grp, res.objective)
    diag = dict(res.diagnostics)
    hist = diag.pop("history", None)
    if hist is not None:
        grp.create_dataset("history", data=np.asarray(hist, dtype=float))
    grp.attrs["diagnostics"] = json.dumps(h5.jsonable(diag, max_array=64))
    if kind == "Solution":
        grp.attrs["iterations"] = res.iterations
        grp.attrs["converged"] = bool(res.converged)
        grp.attrs["residual"] = res.residual
        grp.attrs["method"] = res.method
    else:
        grp.create_dataset("c_pi", data=res.c_pi)


#: the group that holds each object type (the file's ``wgflow_type``) in a file of :func:`wgflow.save`
GROUP = {"MDP": "mdp", "Policy": "policy", "Solution": "solution", "Evaluation": "evaluation"}


# --------------------------------------------------------------------------------- readers
def read_mdp(grp, path):
    from . import problems
    shape = h5.attr(grp, "P_shape", path, "ints")
    if shape.shape != (2,) or np.any(shape < 1):
        raise h5.file_error(path, "attribute P_shape of /mdp", f"must be two positive integers, got "
                                                               f"{shape.tolist()}")
    n_rows, nS = int(shape[0]), int(shape[1])
    C = h5.read(grp, "C", path, kind="f", ndim=2)
    nA = C.shape[1]
    if C.shape[0] != nS or n_rows != nS * nA:
        raise h5.file_error(path, "dataset /mdp/C", f"has shape {C.shape}, but P_shape {tuple(shape)} "
                                                    f"needs ({nS}, {n_rows // max(nS, 1)})")
    indptr = h5.read(grp, "P_indptr", path, kind="iu", shape=(n_rows + 1,))
    indices = h5.read(grp, "P_indices", path, kind="iu", ndim=1)
    data = h5.read(grp, "P_data", path, kind="f", shape=(indices.size,))
    with h5.reading(path, "datasets /mdp/P_indptr, /mdp/P_indices"):
        validation.csr_structure(indptr, indices, n_rows, nS, "P")
    P = sp.csr_matrix((data, indices, indptr), shape=(n_rows, nS))   # safe: checked above
    states = h5.grid_from_attr(grp, "states", path)
    actions = h5.grid_from_attr(grp, "actions", path)
    prov = h5.attr(grp, "provenance", path, "json")
    if not isinstance(prov, dict):
        raise h5.file_error(path, "attribute provenance of /mdp", "must be a JSON object")
    model = None
    if "problem" in prov and prov["problem"] in problems.names():
        with h5.reading(path, "attribute provenance of /mdp (the problem's parameters)"):
            params = prov.get("params", {})
            if not isinstance(params, dict):
                raise ValidationError("params must be a JSON object")
            model = problems.model(prov["problem"], **params)
            if model is not None and (model.states != states or model.actions != actions):
                raise ValidationError(f"the grids of problem {prov['problem']!r} with these "
                                      "parameters differ from the stored grids")
    elif h5.attr(grp, "model", path, "str", default="tabulated") == "dynamics":
        warnings.warn("this MDP was built from user dynamics, which a file cannot hold: off-grid "
                      "evaluation of the loaded MDP interpolates the tables linearly in the action "
                      "instead of using the drift and cost functions", UserWarning, stacklevel=3)
    with h5.reading(path, "datasets /mdp/P_data, /mdp/C"):
        return MDP(P, C, states, actions, model=model, provenance=prov, copy=False)


def read_policy(grp, path):
    masses = h5.read(grp, "masses", path, kind="f", ndim=2)
    actions = h5.grid_from_attr(grp, "actions", path)
    states = h5.grid_from_attr(grp, "states", path)
    with h5.reading(path, f"dataset {grp.name}/masses"):
        return Policy(masses, actions, states)


def read_objective(grp, path):
    d = h5.attr(grp, "objective", path, "json")
    if not isinstance(d, dict):
        raise h5.file_error(path, f"attribute objective of {grp.name}", "must be a JSON object")
    if "initial" in grp:
        d["initial"] = h5.read(grp, "initial", path, kind="f", ndim=1)
    with h5.reading(path, f"attribute objective of {grp.name}"):
        return objective_from_dict(d)


def read_result(grp, kind, path):
    pol = read_policy(h5.group(grp, "policy", path), path)
    nS, nA = pol.masses.shape
    diag = h5.attr(grp, "diagnostics", path, "json")
    if not isinstance(diag, dict):
        raise h5.file_error(path, f"attribute diagnostics of {grp.name}", "must be a JSON object")
    if "history" in grp:
        diag["history"] = h5.read(grp, "history", path, kind="f", ndim=1)
    V = h5.read(grp, "V", path, kind="f", shape=(nS,))
    Q = h5.read(grp, "Q", path, kind="f", shape=(nS, nA))
    w = h5.read(grp, "weights", path, kind="f", shape=(nS,))
    for name, a in (("V", V), ("Q", Q)):
        with h5.reading(path, f"dataset {grp.name}/{name}"):
            validation.array(a, name)
    with h5.reading(path, f"dataset {grp.name}/weights"):
        validation.array(w, "weights")
        if np.any(w < 0) or abs(float(w.sum()) - 1.0) > WEIGHTS_SUM_TOL:
            raise ValidationError(f"weights must be >= 0 and sum to 1 (within {WEIGHTS_SUM_TOL:g}), "
                                  f"got minimum {w.min():g} and sum {w.sum():.17g}")
    J = h5.attr(grp, "J", path, "float")
    if not np.isfinite(J):
        raise h5.file_error(path, f"attribute J of {grp.name}", f"must be finite, got {J}")
    common = dict(J=J, V=V, Q=Q, weights=w, objective=read_objective(grp, path), diagnostics=diag)
    if kind == "Solution":
        iters = h5.attr(grp, "iterations", path, "int")
        if iters < 0:
            raise h5.file_error(path, f"attribute iterations of {grp.name}", f"must be >= 0, got {iters}")
        residual = h5.attr(grp, "residual", path, "float")
        if not residual >= 0:
            raise h5.file_error(path, f"attribute residual of {grp.name}", f"must be >= 0, got {residual}")
        return Solution(policy=pol, iterations=iters, converged=h5.attr(grp, "converged", path, "bool"),
                        residual=residual, method=h5.attr(grp, "method", path, "str"), **common)
    c_pi = h5.read(grp, "c_pi", path, kind="f", shape=(nS,))
    with h5.reading(path, f"dataset {grp.name}/c_pi"):
        validation.array(c_pi, "c_pi")
    return Evaluation(policy=pol, c_pi=c_pi, **common)
