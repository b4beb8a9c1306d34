"""Malformed input, table-driven: every case must raise a ``WgflowError`` that is also the
documented builtin, with a message that names what is wrong and where.

Classes (docs/reliability.md gives the counts): ``file`` -- tampered, unsafe or foreign files
given to the loaders; ``resume`` -- a resume that does not match the stored run; ``argument``
-- malformed arguments of constructors, problems, solvers, ``flow`` and its schemes, ``save``;
``accuracy`` -- results that would be NaN or inaccurate; ``cli`` -- the command line (exit
status 2, one line on stderr, no traceback).
"""
from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

import wgflow as wg
from wgflow import cli, h5
from wgflow.errors import WgflowError
from wgflow.flows.trajectory import _frame_values


@dataclass
class Case:
    cls: str                 # file, resume, argument, accuracy
    id: str
    call: object             # call(ctx) must raise
    builtin: type            # the builtin the exception must also be
    words: tuple             # substrings of the message; "{file}" stands for the file's name


CASES: list = []


def case(cls, id, builtin, *words):
    def deco(f):
        CASES.append(Case(cls, id, f, builtin, words))
        return f
    return deco


def add(cls, id, call, builtin, *words):
    CASES.append(Case(cls, id, call, builtin, words))


# ------------------------------------------------------------------------------ fixtures
_counter = itertools.count()


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    d = tmp_path_factory.mktemp("malformed")
    lqr = wg.problems.get("lqr1d", n_states=11, n_actions=7, noise=0.6)
    garnet = wg.problems.get("garnet", n_states=8, n_actions=3)
    obj = wg.Discounted(0.9, entropy=0.3)
    pi = wg.Policy.gaussian(lqr, mean=0.5, std=1.0)
    files = {"mdp": d / "mdp.h5", "lqr": d / "lqr.h5", "solution": d / "sol.h5",
             "policy": d / "pol.h5", "evaluation": d / "ev.h5", "run": d / "run.h5",
             "saved": d / "saved.h5"}
    wg.save(files["mdp"], garnet)
    wg.save(files["lqr"], lqr)
    wg.save(files["solution"], wg.solve(garnet, wg.Discounted(0.9, entropy=0.1)))
    wg.save(files["policy"], pi)
    wg.save(files["evaluation"], wg.evaluate(lqr, pi, wg.Average(entropy=0.2)))
    run = wg.flow(lqr, obj, pi, t_end=0.1, save_every=0.05, progress=False, storage=files["run"])
    run.to_hdf5(files["saved"])
    ext = d / "ext.h5"
    with h5py.File(ext, "w") as f:
        f.create_dataset("C", data=garnet.C)
        f.create_dataset("masses", data=np.asarray(run.masses))
    raw = d / "C.raw"
    raw.write_bytes(np.ascontiguousarray(garnet.C).tobytes())
    return SimpleNamespace(dir=d, lqr=lqr, garnet=garnet, obj=obj, pi=pi, files=files, ext=ext,
                           raw=raw, run=run)


def tampered(ctx, name, edit):
    """A copy of file ``name`` changed by ``edit(h5py.File)``."""
    dst = ctx.dir / f"{name}-{next(_counter)}.h5"
    shutil.copy(ctx.files[name], dst)
    # unsealed: the checks behind the seal (a sealed file refuses any change outright,
    # tests/test_io.py), as for files without one or edits that also rewrote the seal
    wg.h5.unseal(dst)
    with h5py.File(dst, "r+") as f:
        edit(f)
    ctx.last_file = dst
    return dst


def load_tampered(name, edit):
    return lambda ctx: wg.load(tampered(ctx, name, edit))


def setitem(dset, idx, value):
    def edit(f):
        a = f[dset][...]
        a[idx] = value
        f[dset][...] = a
    return edit


def replace(dset, data):
    def edit(f):
        attrs = dict(f[dset].attrs)
        new = data(f) if callable(data) else data
        del f[dset]
        f[dset] = new
        for k, v in attrs.items():
            f[dset].attrs[k] = v
    return edit


def set_attr(obj, name, value):
    def edit(f):
        f[obj].attrs[name] = value
    return edit


def rechecksum(f):
    """Make a tampered trajectory's checksums match its data again (a deliberate forgery)."""
    g = f["trajectory"]
    n = int(g.attrs["n_frames"])
    for i in range(n):
        g["checksum"][i] = h5.checksum(_frame_values(
            g["times"][i], g["J"][i], g["grad_norm2"][i], g["restart"][i], g["masses"][i],
            {k: g["params"][k][i] for k in g["params"]}, {k: g["state"][k][i] for k in g["state"]}))


def forged(edit):
    def both(f):
        edit(f)
        rechecksum(f)
    return both


@contextlib.contextmanager
def default_floating_point():
    """numpy's default error handling (warn), as a user has it; the suite raises instead."""
    with np.errstate(all="warn"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


# ------------------------------------------------------------------------------ class: file
F = "file"
add(F, "mdp-index-1e8", load_tampered("mdp", setitem("mdp/P_indices", 0, 10**8)), ValueError,
    "{file}", "/mdp/P_indptr, /mdp/P_indices", "100000000", "[0, 8)")
add(F, "mdp-index-999", load_tampered("mdp", setitem("mdp/P_indices", 5, 999)), ValueError,
    "{file}", "P.indices has 999")
add(F, "mdp-index-negative", load_tampered("mdp", setitem("mdp/P_indices", 3, -1)), ValueError,
    "{file}", "P.indices has -1")
add(F, "mdp-indptr-decreasing", load_tampered("mdp", setitem("mdp/P_indptr", 3, 0)), ValueError,
    "{file}", "P.indptr decreases")
add(F, "mdp-indptr-end", load_tampered("mdp", setitem("mdp/P_indptr", -1, 10**6)), ValueError,
    "{file}", "P.indptr ends at 1000000")
add(F, "mdp-indptr-start", load_tampered("mdp", setitem("mdp/P_indptr", 0, 1)), ValueError,
    "{file}", "P.indptr must start at 0")
add(F, "mdp-indptr-length", load_tampered("mdp", replace("mdp/P_indptr", lambda f: f["mdp/P_indptr"][:-2])),
    ValueError, "{file}", "dataset /mdp/P_indptr", "shape")
add(F, "mdp-indptr-float", load_tampered("mdp", replace("mdp/P_indptr", lambda f: f["mdp/P_indptr"][...] * 1.0)),
    ValueError, "{file}", "dataset /mdp/P_indptr", "expected integer")
add(F, "mdp-indices-float", load_tampered("mdp", replace("mdp/P_indices", lambda f: f["mdp/P_indices"][...] + 0.5)),
    ValueError, "{file}", "dataset /mdp/P_indices", "expected integer")
add(F, "mdp-data-nan", load_tampered("mdp", setitem("mdp/P_data", 2, np.nan)), ValueError,
    "{file}", "/mdp/P_data", "NaN")
add(F, "mdp-data-row-sum", load_tampered("mdp", setitem("mdp/P_data", 0, 0.9)), ValueError,
    "{file}", "/mdp/P_data", "row 0", "sums to")
add(F, "mdp-data-negative", load_tampered("mdp", setitem("mdp/P_data", 1, -0.5)), ValueError,
    "{file}", "/mdp/P_data", "negative probability")
add(F, "mdp-data-length", load_tampered("mdp", replace("mdp/P_data", lambda f: f["mdp/P_data"][:-1])),
    ValueError, "{file}", "dataset /mdp/P_data", "shape")
add(F, "mdp-C-nan", load_tampered("mdp", setitem("mdp/C", (1, 2), np.nan)), ValueError,
    "{file}", "/mdp/C", "NaN or inf at state 1, action 2")
add(F, "mdp-C-shape", load_tampered("mdp", replace("mdp/C", np.zeros((8, 4)))), ValueError,
    "{file}", "dataset /mdp/C", "P_shape")
add(F, "mdp-C-complex", load_tampered("mdp", replace("mdp/C", np.zeros((8, 3), complex))), ValueError,
    "{file}", "dataset /mdp/C", "complex128")
add(F, "mdp-C-1d", load_tampered("mdp", replace("mdp/C", np.zeros(24))), ValueError,
    "{file}", "dataset /mdp/C", "2-D")
add(F, "mdp-P_shape", load_tampered("mdp", set_attr("mdp", "P_shape", np.array([24]))), ValueError,
    "{file}", "P_shape", "two positive integers")
add(F, "mdp-P_shape-float", load_tampered("mdp", set_attr("mdp", "P_shape", np.array([24.0, 8.0]))),
    ValueError, "{file}", "attribute P_shape", "integer array")


@case(F, "mdp-external-link", ValueError, "{file}", "dataset /mdp/C", "ExternalLink")
def _(ctx):
    return wg.load(tampered(ctx, "mdp", replace("mdp/C", h5py.ExternalLink(str(ctx.ext), "/C"))))


@case(F, "mdp-soft-link", ValueError, "{file}", "dataset /mdp/C", "SoftLink")
def _(ctx):
    return wg.load(tampered(ctx, "mdp", replace("mdp/C", h5py.SoftLink("/mdp/P_data"))))


@case(F, "mdp-external-storage", ValueError, "{file}", "dataset /mdp/C", "external files")
def _(ctx):
    def edit(f):
        del f["mdp/C"]
        f["mdp"].create_dataset("C", shape=(8, 3), dtype="f8", external=[(str(ctx.raw), 0, 8 * 24)])
    return wg.load(tampered(ctx, "mdp", edit))


@case(F, "mdp-virtual-dataset", ValueError, "{file}", "dataset /mdp/C", "virtual")
def _(ctx):
    def edit(f):
        del f["mdp/C"]
        layout = h5py.VirtualLayout(shape=(8, 3), dtype="f8")
        layout[...] = h5py.VirtualSource(str(ctx.ext), "C", shape=(8, 3))
        f["mdp"].create_virtual_dataset("C", layout)
    return wg.load(tampered(ctx, "mdp", edit))


add(F, "mdp-group-is-dataset", load_tampered("mdp", lambda f: (f.__delitem__("mdp"), f.create_dataset("mdp", data=[1]))),
    ValueError, "{file}", "group /mdp", "not a group")
add(F, "mdp-provenance-json", load_tampered("mdp", set_attr("mdp", "provenance", "{nope")), ValueError,
    "{file}", "attribute provenance", "JSON")
add(F, "mdp-provenance-list", load_tampered("mdp", set_attr("mdp", "provenance", "[1, 2]")), ValueError,
    "{file}", "attribute provenance", "JSON object")
add(F, "mdp-provenance-grid-mismatch", load_tampered("lqr", set_attr(
    "mdp", "provenance", json.dumps({"problem": "lqr1d", "params": {"n_states": 13, "n_actions": 7}}))),
    ValueError, "{file}", "provenance", "grids")
add(F, "mdp-provenance-bad-param", load_tampered("lqr", set_attr(
    "mdp", "provenance", json.dumps({"problem": "lqr1d", "params": {"n_sates": 11}}))),
    ValueError, "{file}", "provenance", "n_sates")
add(F, "mdp-provenance-bad-value", load_tampered("lqr", set_attr(
    "mdp", "provenance", json.dumps({"problem": "lqr1d", "params": {"noise": -1}}))),
    ValueError, "{file}", "provenance", "noise")
add(F, "mdp-states-json", load_tampered("lqr", set_attr("mdp", "states", "{")), ValueError,
    "{file}", "attribute states", "JSON")
add(F, "mdp-actions-grid", load_tampered("mdp", set_attr("mdp", "actions", json.dumps(
    {"bounds": [[0, 1]], "shape": [0]}))), ValueError, "{file}", "attribute actions", "shape[0]")
add(F, "mdp-actions-size", load_tampered("mdp", set_attr("mdp", "actions", json.dumps(
    {"bounds": [[0, 1]], "shape": [5]}))), ValueError, "{file}", "/mdp", "actions grid has 5 cells")
add(F, "type-not-str", load_tampered("mdp", lambda f: f.attrs.__setitem__("wgflow_type", 3)), ValueError,
    "{file}", "attribute wgflow_type", "string")
add(F, "format-version-str", load_tampered("mdp", lambda f: f.attrs.__setitem__("format_version", "2")),
    ValueError, "{file}", "attribute format_version", "integer")
add(F, "format-version-newer", load_tampered("mdp", lambda f: f.attrs.__setitem__("format_version", 99)),
    ValueError, "{file}", "format version 99", "upgrade")
add(F, "unknown-type", load_tampered("mdp", lambda f: f.attrs.__setitem__("wgflow_type", "Banana")),
    ValueError, "{file}", "unknown wgflow object type 'Banana'")
# results
add(F, "solution-V-nan", load_tampered("solution", setitem("solution/V", 3, np.nan)), ValueError,
    "{file}", "/solution/V", "NaN")
add(F, "solution-Q-shape", load_tampered("solution", replace("solution/Q", np.zeros((8, 2)))), ValueError,
    "{file}", "dataset /solution/Q", "shape")
add(F, "solution-weights-sum", load_tampered("solution", lambda f: f["solution/weights"].__setitem__(
    Ellipsis, 0.7 * f["solution/weights"][...])), ValueError, "{file}", "/solution/weights", "sum to 1")
add(F, "solution-J-nan", load_tampered("solution", set_attr("solution", "J", np.nan)), ValueError,
    "{file}", "attribute J", "finite")
add(F, "solution-iterations", load_tampered("solution", set_attr("solution", "iterations", -1)), ValueError,
    "{file}", "attribute iterations", ">= 0")
add(F, "solution-residual", load_tampered("solution", set_attr("solution", "residual", -1.0)), ValueError,
    "{file}", "attribute residual", ">= 0")
add(F, "solution-converged", load_tampered("solution", set_attr("solution", "converged", "yes")), ValueError,
    "{file}", "attribute converged", "boolean")
add(F, "solution-policy-rows", load_tampered("solution", lambda f: f["solution/policy/masses"].__setitem__(
    Ellipsis, 2 * f["solution/policy/masses"][...])), ValueError, "{file}",
    "/solution/policy/masses", "sum to", "not 1")    # 2 up to the rounding of the Gibbs masses
add(F, "solution-objective", load_tampered("solution", set_attr("solution", "objective", json.dumps(
    {"kind": "discounted", "gamma": 1.5, "entropy": 0.1}))), ValueError, "{file}",
    "attribute objective", "gamma")
add(F, "solution-objective-kind", load_tampered("solution", set_attr("solution", "objective", json.dumps(
    {"kind": "banana"}))), ValueError, "{file}", "attribute objective", "banana")
add(F, "solution-missing-V", load_tampered("solution", lambda f: f["solution"].__delitem__("V")),
    ValueError, "{file}", "dataset /solution/V", "missing")
add(F, "evaluation-c_pi-nan", load_tampered("evaluation", setitem("evaluation/c_pi", 0, np.inf)),
    ValueError, "{file}", "/evaluation/c_pi", "NaN or inf")
add(F, "policy-negative", load_tampered("policy", setitem("policy/masses", (2, 3), -0.1)), ValueError,
    "{file}", "/policy/masses", "negative mass")
add(F, "policy-nan", load_tampered("policy", setitem("policy/masses", (4, 1), np.nan)), ValueError,
    "{file}", "/policy/masses", "NaN or inf at state 4, action 1")
add(F, "policy-1d", load_tampered("policy", replace("policy/masses", np.ones(7) / 7)), ValueError,
    "{file}", "dataset /policy/masses", "2-D")
add(F, "policy-grid-size", load_tampered("policy", set_attr("policy", "actions", json.dumps(
    {"bounds": [[-4, 4]], "shape": [9]}))), ValueError, "{file}", "/policy/masses", "9 cells")
# trajectories
add(F, "traj-middle-frame-damaged", load_tampered("run", setitem("trajectory/masses", (1, 0, 0), 0.5)),
    ValueError, "{file}", "frame 1 of /trajectory", "checksum")
add(F, "traj-forged-rows", load_tampered("run", forged(setitem("trajectory/masses", (1, 2, 0), 3.0))),
    ValueError, "{file}", "dataset /trajectory/masses", "frame 1, state 2")
add(F, "traj-forged-times", load_tampered("run", forged(setitem("trajectory/times", 2, 0.0))),
    ValueError, "{file}", "dataset /trajectory/times", "must increase")
add(F, "traj-forged-J", load_tampered("run", forged(setitem("trajectory/J", 1, np.nan))),
    ValueError, "{file}", "dataset /trajectory/J", "NaN")
add(F, "traj-masses-external-link", load_tampered("run", replace("trajectory/masses", lambda f: h5py.ExternalLink(
    str(f.filename).replace(f.filename.split("/")[-1], "ext.h5"), "/masses"))), ValueError,
    "{file}", "dataset /trajectory/masses", "ExternalLink")
add(F, "traj-n_frames", load_tampered("run", set_attr("trajectory", "n_frames", -1)), ValueError,
    "{file}", "attribute n_frames", ">= 0")
add(F, "traj-scheme-missing", load_tampered("run", lambda f: f["trajectory"].attrs.__delitem__("scheme")),
    ValueError, "{file}", "attribute scheme", "missing")
add(F, "traj-masses-int", load_tampered("saved", replace("trajectory/masses", lambda f: np.zeros(
    f["trajectory/masses"].shape, dtype=np.int64))), ValueError, "{file}", "dataset /trajectory/masses",
    "expected float")
add(F, "traj-grid-mismatch", load_tampered("run", set_attr("trajectory", "actions", json.dumps(
    {"bounds": [[-4, 4]], "shape": [9]}))), ValueError, "{file}", "dataset /trajectory/masses", "(11, 9)")


@case(F, "traj-from-mdp-file", ValueError, "{file}", "holds a MDP, not a Trajectory")
def _(ctx):
    ctx.last_file = ctx.files["mdp"]
    wg.Trajectory.from_hdf5(ctx.files["mdp"])


@case(F, "random-bytes", ValueError, "{file}", "not a readable HDF5 file")
def _(ctx):
    p = ctx.last_file = ctx.dir / "noise.h5"
    p.write_bytes(np.random.default_rng(0).bytes(2048))
    wg.load(p)


@case(F, "foreign-hdf5", ValueError, "{file}", "not written by wgflow")
def _(ctx):
    p = ctx.last_file = ctx.dir / "foreign.h5"
    with h5py.File(p, "w") as f:
        f["x"] = 1
    wg.load(p)


@case(F, "missing-file", FileNotFoundError, "no such file", "{file}")
def _(ctx):
    ctx.last_file = ctx.dir / "nope.h5"
    wg.load(ctx.last_file)


@case(F, "directory", ValueError, "{file}", "directory")
def _(ctx):
    ctx.last_file = ctx.dir
    wg.load(ctx.dir)


add(F, "path-none", lambda ctx: wg.load(None), ValueError, "load", "path must be a file path")


# ------------------------------------------------------------------------------ class: resume
R = "resume"


def resume(**kw):
    def call(ctx):
        args = dict(mdp=ctx.lqr, objective=ctx.obj, t_end=0.2, save_every=0.05, progress=False,
                    storage=ctx.files["run"], resume=True)
        args.update(kw)
        return wg.flow(args.pop("mdp"), args.pop("objective"), None, **args)
    return call


add(R, "gamma", resume(objective=wg.Discounted(0.95, entropy=0.3)), ValueError, "cannot resume",
    "run.h5", "the objective", "'gamma': 0.9", "'gamma': 0.95")
add(R, "entropy", resume(objective=wg.Discounted(0.9, entropy=0.2)), ValueError, "the objective",
    "'entropy': 0.3", "'entropy': 0.2")
add(R, "average", resume(objective=wg.Average(entropy=0.3)), ValueError, "the objective", "average")
add(R, "initial-law", resume(objective=wg.Discounted(0.9, entropy=0.3, initial=np.eye(11)[0])),
    ValueError, "the objective", "initial law")
add(R, "mdp-size", lambda ctx: resume(mdp=wg.problems.get("lqr1d", n_states=13, n_actions=7, noise=0.6))(ctx),
    ValueError, "the MDP", "size", "[11, 7]", "[13, 7]")
add(R, "mdp-costs", lambda ctx: resume(mdp=wg.problems.get("lqr1d", n_states=11, n_actions=7, noise=0.6, q=2.0))(ctx),
    ValueError, "the MDP", "transitions or costs")
add(R, "mdp-grid", lambda ctx: resume(mdp=wg.problems.get("lqr1d", n_states=11, n_actions=7, noise=0.6, a_max=3.0))(ctx),
    ValueError, "the MDP", "action grid")
add(R, "scheme", resume(scheme="pmd"), ValueError, "the scheme", "'otto' in the file", "'pmd' now")
add(R, "option", resume(cfl=0.3), ValueError, "scheme options", "cfl (0.5 in the file, 0.3 now)")
add(R, "option-reuse", resume(reuse_factorization=False), ValueError, "reuse_factorization")
add(R, "dt", resume(dt=0.01), ValueError, "dt (None in the file, 0.01 now)")
add(R, "saved-trajectory", lambda ctx: resume(storage=ctx.files["saved"])(ctx), ValueError,
    "cannot resume", "saved.h5", "no restart data")
add(R, "mdp-file", lambda ctx: resume(storage=ctx.files["mdp"])(ctx), ValueError, "mdp.h5",
    "holds a MDP, not a Trajectory")
add(R, "missing-file", lambda ctx: resume(storage=ctx.dir / "nope.h5")(ctx), FileNotFoundError,
    "flow", "cannot resume", "nope.h5")
add(R, "no-storage", resume(storage=None), ValueError, "flow", "resume=True needs storage")


@case(R, "only-frame-torn", ValueError, "cannot resume", "no complete restart frame", "1 torn")
def _(ctx):
    def tear(f):
        g = f["trajectory"]
        for name in ("times", "J", "grad_norm2", "masses", "restart", "checksum"):
            g[name].resize(1, axis=0)
        for k in g["state"]:
            g["state"][k].resize(1, axis=0)
        g["checksum"][0] = 1
        g.attrs["n_frames"] = 1
    p = tampered(ctx, "run", tear)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resume(storage=p)(ctx)


# ------------------------------------------------------------------------------ class: argument
A = "argument"
for i, g in enumerate(["0.9", None, 0.9 + 0j, np.array([0.9, 0.8]), 1.0, -0.1, np.nan, np.inf, True, 1]):
    add(A, f"gamma-{i}", lambda ctx, g=g: wg.Discounted(gamma=g), ValueError, "Discounted", "gamma")
for i, e in enumerate(["0.1", -1.0, np.nan, None, 1j, [0.1]]):
    add(A, f"entropy-{i}", lambda ctx, e=e: wg.Discounted(0.9, entropy=e), ValueError, "Discounted", "entropy")
for i, e in enumerate(["0.1", -0.5, np.inf]):
    add(A, f"average-entropy-{i}", lambda ctx, e=e: wg.Average(entropy=e), ValueError, "Average", "entropy")
for i, mu in enumerate([[0.5, 1.5], [1.5, -0.5], [np.nan, 1.0], np.array([0.5, 0.5]) + 0j, np.eye(2) / 2, "ab"]):
    add(A, f"initial-{i}", lambda ctx, mu=mu: wg.Discounted(0.9, initial=mu), ValueError, "Discounted", "initial")
add(A, "initial-length", lambda ctx: wg.evaluate(ctx.garnet, wg.Policy.uniform(ctx.garnet),
                                                 wg.Discounted(0.9, initial=[0.5, 0.5])),
    ValueError, "Discounted", "initial must have shape (8,)")
# grids
for i, (b, s, kw, words) in enumerate([
        ([(0, 1j)], [3], {}, ("Grid", "bounds")), ("ab", [3], {}, ("Grid", "bounds")),
        ([(1, 0)], [3], {}, ("Grid", "axis 0", "lo < hi")), ([(0, np.nan)], [3], {}, ("Grid", "finite")),
        ([(0, 1)], [0], {}, ("Grid", "shape[0]")), ([(0, 1)], [2.5], {}, ("Grid", "shape[0]")),
        ([(0, 1)], [True], {}, ("Grid", "shape[0]")), ([(0, 1), (0, 1)], [3], {}, ("Grid", "does not match")),
        ([(0, 1)], [3], {"periodic": "yes"}, ("Grid", "periodic[0]")), (None, [3], {}, ("Grid", "bounds"))]):
    add(A, f"grid-{i}", lambda ctx, b=b, s=s, kw=kw: wg.Grid(b, s, **kw), ValueError, *words)


def _P(ctx):
    P, C = ctx.garnet.to_arrays()
    return P.copy(), C.copy()


def from_arrays(edit):
    def call(ctx):
        P, C = _P(ctx)
        P, C = edit(P, C)
        return wg.MDP.from_arrays(P, C)
    return call


def _set(a, idx, v):
    a = a.astype(np.result_type(a, v)) if np.iscomplexobj(v) else a
    a[idx] = v
    return a


add(A, "P-complex", from_arrays(lambda P, C: (P + 0j, C)), ValueError, "MDP.from_arrays", "P", "complex")
add(A, "C-complex", from_arrays(lambda P, C: (P, C + 1j)), ValueError, "MDP.from_arrays", "C", "complex")
add(A, "P-nan", from_arrays(lambda P, C: (_set(P, (1, 2, 3), np.nan), C)), ValueError, "P contains NaN",
    "row 5 (state 1, action 2), column 3")
add(A, "P-row-sum", from_arrays(lambda P, C: (P * 2, C)), ValueError, "MDP", "P row 0", "sums to 2")
add(A, "P-negative", from_arrays(lambda P, C: (_set(P, (0, 0, np.argmax(P[0, 0])), -0.5), C)), ValueError,
    "MDP", "negative probability", "state 0, action 0")
add(A, "C-1d", from_arrays(lambda P, C: (P, C.ravel())), ValueError, "MDP.from_arrays", "C must have shape (S, A)")
add(A, "P-shape", from_arrays(lambda P, C: (P[:, :2], C)), ValueError, "dense P must have shape (S, A, S)")
add(A, "C-str", from_arrays(lambda P, C: (P, np.full(C.shape, "x"))), ValueError, "MDP.from_arrays", "C",
    "real array")
add(A, "C-nan", from_arrays(lambda P, C: (P, _set(C, (2, 1), np.inf))), ValueError, "MDP", "C",
    "state 2, action 1")


def sparse_P(edit, fmt="csr"):
    def call(ctx):
        P = ctx.garnet.P.copy()
        P = P.asformat(fmt)
        P.data = P.data.copy()
        if fmt in ("csr", "csc"):
            P.indices = P.indices.copy()
            P.indptr = P.indptr.copy()
        edit(P)
        return wg.MDP(P, ctx.garnet.C)
    return call


add(A, "csr-index-1e8", sparse_P(lambda P: P.indices.__setitem__(0, 10**8)), ValueError, "MDP",
    "P.indices has 100000000 at row 0", "[0, 8)")
add(A, "csr-index-negative", sparse_P(lambda P: P.indices.__setitem__(4, -3)), ValueError, "MDP",
    "P.indices has -3")
add(A, "csr-indptr-decreasing", sparse_P(lambda P: P.indptr.__setitem__(2, 0)), ValueError, "MDP",
    "P.indptr decreases at row")
add(A, "csr-indptr-end", sparse_P(lambda P: P.indptr.__setitem__(-1, 10**7)), ValueError, "MDP",
    "P.indptr ends at 10000000")
add(A, "csc-index", sparse_P(lambda P: P.indices.__setitem__(0, 10**6), "csc"), ValueError, "MDP",
    "P (CSC).indices has 1000000")
add(A, "coo-row", sparse_P(lambda P: P.row.__setitem__(0, 10**6), "coo"), ValueError, "MDP",
    "P (COO) row indices")
add(A, "sparse-complex", lambda ctx: wg.MDP(ctx.garnet.P.astype(complex), ctx.garnet.C), ValueError,
    "MDP", "P has complex values")
add(A, "dense-P-to-MDP", lambda ctx: wg.MDP(ctx.garnet.P.toarray(), ctx.garnet.C), ValueError,
    "MDP(P, C) takes a sparse P")
add(A, "states-not-grid", lambda ctx: wg.MDP(ctx.garnet.P, ctx.garnet.C, states=[1, 2]), ValueError,
    "MDP", "states must be a wgflow.Grid")
add(A, "actions-size", lambda ctx: wg.MDP(ctx.garnet.P, ctx.garnet.C, actions=wg.Grid([(0, 1)], [4])),
    ValueError, "actions grid has 4 cells but C has 3 actions")
add(A, "mdptoolbox-P-2d", lambda ctx: wg.MDP.from_mdptoolbox(np.eye(3), np.zeros((3, 1))), ValueError,
    "mdptoolbox P must have shape (A, S, S)")
add(A, "mdptoolbox-R-shape", lambda ctx: wg.MDP.from_mdptoolbox(np.stack([np.eye(3)] * 2), np.zeros((4, 2))),
    ValueError, "mdptoolbox R must be (S, A)")
add(A, "mdptoolbox-R-complex", lambda ctx: wg.MDP.from_mdptoolbox(np.stack([np.eye(3)] * 2), np.zeros((3, 2)) + 1j),
    ValueError, "MDP.from_mdptoolbox", "R has complex values")
add(A, "dynamics-drift", lambda ctx: wg.MDP.from_dynamics(wg.Grid([(0, 1)], [3]), wg.Grid([(0, 1)], [2]),
                                                          drift=3.0, cost=lambda s, a: s[:, 0]),
    ValueError, "MDP.from_dynamics", "drift must be a function")
add(A, "dynamics-cutoff", lambda ctx: wg.MDP.from_dynamics(wg.Grid([(0, 1)], [3]), wg.Grid([(0, 1)], [2]),
                                                           drift=lambda s, a: s, cost=lambda s, a: s[:, 0],
                                                           noise=0.1, noise_cutoff=0),
    ValueError, "MDP.from_dynamics", "noise_cutoff")
add(A, "dynamics-noise-complex", lambda ctx: wg.MDP.from_dynamics(wg.Grid([(0, 1)], [3]), wg.Grid([(0, 1)], [2]),
                                                                  drift=lambda s, a: s, cost=lambda s, a: s[:, 0],
                                                                  noise=0.1j),
    ValueError, "MDP.from_dynamics", "noise has complex values")
add(A, "dynamics-huge", lambda ctx: wg.MDP.from_dynamics(wg.Grid([(0, 1)], [10**7]), wg.Grid([(0, 1)], [10**6]),
                                                         drift=lambda s, a: s, cost=lambda s, a: s[:, 0]),
    ValueError, "MDP.from_dynamics", "needs about", "more than this machine has")
# policies
for i, (m, words) in enumerate([
        (lambda ctx: np.full((8, 3), 2 / 3), ("masses of state 0 sum to 2",)),
        (lambda ctx: _set(np.full((8, 3), 1 / 3), (1, 1), -0.1), ("negative mass", "state 1, action 1")),
        (lambda ctx: _set(np.full((8, 3), 1 / 3), (2, 0), np.nan), ("NaN or inf at state 2, action 0",)),
        (lambda ctx: np.full((8, 4), 1 / 4), ("4 columns but the MDP has 3 actions",)),
        (lambda ctx: None, ("masses must be an array",)),
        (lambda ctx: np.full((8, 3), 1 / 3) + 0j, ("complex",))]):
    add(A, f"policy-{i}", lambda ctx, m=m: wg.Policy.from_masses(ctx.garnet, m(ctx)), ValueError, *words)
# problems
for i, (name, params, words) in enumerate([
        ("lqr2d", dict(n_states=(5, 5, 5)), ("problem 'lqr2d'", "parameter n_states", "one per axis")),
        ("garnet", dict(seed=-1), ("problem 'garnet'", "parameter seed", ">= 0")),
        ("pendulum", dict(dt=-0.05), ("problem 'pendulum'", "parameter dt", "> 0")),
        ("double_integrator", dict(dt=0), ("problem 'double_integrator'", "parameter dt", "> 0")),
        ("lqr1d", dict(n_states=0), ("parameter n_states", ">= 1")),
        ("lqr1d", dict(n_states=2.5), ("parameter n_states", "integer")),
        ("lqr1d", dict(n_actions=True), ("parameter n_actions", "integer")),
        ("lqr1d", dict(noise=np.nan), ("parameter noise",)),
        ("lqr1d", dict(noise=-1.0), ("parameter noise", ">= 0")),
        ("lqr1d", dict(x_max="5"), ("parameter x_max", "strings are not parsed")),
        ("lqr1d", dict(q=1 + 2j), ("parameter q", "complex")),
        ("lqr2d", dict(A=1.0), ("parameter A", "shape (2, 2)")),
        ("lqr2d", dict(n_actions=(3, 0)), ("parameter n_actions[1]", ">= 1")),
        ("garnet", dict(branching=0), ("parameter branching", ">= 1")),
        ("garnet", dict(seed=1.5), ("parameter seed", "integer")),
        ("pendulum", dict(n_theta=10**6, n_omega=10**6), ("problem 'pendulum'", "memory")),
        ("mountain_car", dict(goal=3), ("parameter goal", "string"))]):
    add(A, f"problem-{name}-{i}", lambda ctx, name=name, params=params: wg.problems.get(name, **params),
        ValueError, *words)
add(A, "problem-unknown", lambda ctx: wg.problems.get("lqrd"), KeyError, "unknown problem 'lqrd'",
    "did you mean 'lqr2d'", "pendulum")
add(A, "problem-not-str", lambda ctx: wg.problems.get(3), KeyError, "problem name is a string")
add(A, "problem-param-unknown", lambda ctx: wg.problems.get("lqr1d", n_sates=3), KeyError,
    "unknown parameter 'n_sates'", "did you mean 'n_states'", "problem 'lqr1d' takes")
add(A, "problem-describe-unknown", lambda ctx: wg.problems.describe("nope"), KeyError, "unknown problem 'nope'")
add(A, "problem-parameters-unknown", lambda ctx: wg.problems.parameters("nope"), KeyError, "unknown problem")
# solve / evaluate
for i, (kw, words) in enumerate([
        (dict(tol=-1), ("solve", "tol", "> 0")), (dict(tol=np.nan), ("solve", "tol")),
        (dict(tol=0.0), ("solve", "tol")), (dict(tol="1e-8"), ("solve", "tol", "strings")),
        (dict(max_iter=0), ("solve", "max_iter", ">= 1")), (dict(max_iter=-3), ("solve", "max_iter")),
        (dict(max_iter=2.5), ("solve", "max_iter", "integer")),
        (dict(aperiodicity=1.0), ("solve", "aperiodicity", "[0, 1)")),
        (dict(method="foo"), ("unknown method 'foo'",)),
        (dict(policy0=np.full((8, 3), 2 / 3)), ("sum to 2",))]):
    add(A, f"solve-{i}", lambda ctx, kw=kw: wg.solve(ctx.garnet, wg.Discounted(0.9), **kw), ValueError, *words)
add(A, "solve-soft-without-entropy", lambda ctx: wg.solve(ctx.garnet, wg.Discounted(0.9), method="soft_policy_iteration"),
    ValueError, "soft_policy_iteration needs entropy > 0")
add(A, "solve-mdp-str", lambda ctx: wg.solve("garnet", wg.Discounted(0.9)), ValueError, "solve",
    "mdp must be a wgflow.MDP")
add(A, "solve-objective-str", lambda ctx: wg.solve(ctx.garnet, "discounted"), ValueError,
    "objective must be wgflow.Discounted")
add(A, "evaluate-rows", lambda ctx: wg.evaluate(ctx.garnet, np.full((8, 3), 2 / 3), wg.Discounted(0.9)),
    ValueError, "policy masses of state 0 sum to 2")
add(A, "evaluate-shape", lambda ctx: wg.evaluate(ctx.garnet, wg.Policy.uniform(ctx.lqr), wg.Discounted(0.9)),
    ValueError, "policy is 11 x 7 but the MDP is 8 x 3")
add(A, "evaluate-mdp", lambda ctx: wg.evaluate(None, wg.Policy.uniform(ctx.lqr), wg.Discounted(0.9)),
    ValueError, "evaluate", "mdp must be a wgflow.MDP")
add(A, "evaluate-objective", lambda ctx: wg.evaluate(ctx.garnet, wg.Policy.uniform(ctx.garnet), None),
    ValueError, "objective must be")


# flows
def flow(policy0="pi", **kw):
    def call(ctx):
        pol = ctx.pi if isinstance(policy0, str) and policy0 == "pi" else (
            policy0(ctx) if callable(policy0) else policy0)
        args = dict(t_end=0.05, progress=False)
        args.update(kw)
        mdp = args.pop("mdp", ctx.lqr)
        obj = args.pop("objective", ctx.obj)
        if callable(args.get("storage")):
            args["storage"] = args["storage"](ctx)
        return wg.flow(mdp, obj, pol, **args)
    return call


U = np.full((11, 7), 1 / 7)
TWO = np.zeros((11, 7))
TWO[:, 0] = 2.0       # rows summing to 2 exactly
for i, (p0, words) in enumerate([
        (None, ("flow", "policy0 is required")),
        (TWO, ("initial policy masses of state 0 sum to 2",)),
        (_set(U.copy(), (3, 3), -0.2), ("negative mass", "state 3, action 3")),
        (_set(U.copy(), (0, 6), np.nan), ("NaN or inf at state 0, action 6",)),
        (np.full((11, 5), 0.2), ("5 columns but the MDP has 7 actions",)),
        ("uniform", ("initial policy", "real array"))]):
    add(A, f"flow-policy0-{i}", flow(policy0=p0), ValueError, *words)
for scheme in ("pmd", "pg", "jko", "wppg", "wpo"):
    add(A, f"flow-policy0-rows-{scheme}", flow(policy0=TWO, scheme=scheme), ValueError, "sum to 2")
for i, (kw, words) in enumerate([
        (dict(t_end=-1), ("flow", "t_end", ">= 0")), (dict(t_end=np.nan), ("flow", "t_end")),
        (dict(t_end="10"), ("flow", "t_end", "strings")), (dict(dt=0), ("flow", "dt", "> 0")),
        (dict(dt=-1.0), ("flow", "dt")), (dict(dt="x"), ("flow", "dt")),
        (dict(save_every=0), ("flow", "save_every", "> 0")), (dict(max_steps=0), ("flow", "max_steps", ">= 1")),
        (dict(max_steps=1.5), ("flow", "max_steps", "integer")), (dict(progress="yes"), ("flow", "progress")),
        (dict(resume="yes"), ("flow", "resume", "True or False")),
        (dict(overwrite=True), ("flow", "overwrite=True needs storage")),
        (dict(cfl=2.0), ("cfl must be in (0, 1]",)),
        (dict(cfl="0.5"), ("scheme 'otto'", "option cfl", "strings")),
        (dict(monotone=1), ("scheme 'otto'", "option monotone", "True or False")),
        (dict(reuse_factorization="no"), ("scheme 'otto'", "reuse_factorization"))]):
    add(A, f"flow-arg-{i}", flow(**kw), ValueError, *words)
add(A, "flow-keyword-typo", flow(sav_every=0.01), KeyError, "flow", "unknown keyword argument 'sav_every'",
    "did you mean 'save_every'", "flow() takes", "scheme 'otto' takes", "cfl")
add(A, "flow-option-typo", flow(cfll=0.3), KeyError, "unknown keyword argument 'cfll'", "did you mean 'cfl'",
    "scheme 'otto' takes", "monotone, reuse_factorization")
add(A, "flow-option-of-other-scheme", flow(particles=10), KeyError, "'particles'", "scheme 'otto' takes")
add(A, "flow-scheme-unknown", flow(scheme="ottto"), KeyError, "flow", "unknown scheme 'ottto'",
    "did you mean 'otto'")
add(A, "flow-scheme-type", flow(scheme=3), ValueError, "flow", "scheme must be a name")
add(A, "flow-tracker-unknown", flow(trackers=["steady"]), KeyError, "unknown tracker 'steady'",
    "did you mean 'steady_state'")
add(A, "flow-tracker-type", flow(trackers=[3]), ValueError, "flow", "a tracker is")
add(A, "flow-mdp", flow(mdp="lqr1d"), ValueError, "flow", "mdp must be a wgflow.MDP")
add(A, "flow-objective", flow(objective=0.9), ValueError, "objective must be")
add(A, "flow-storage-exists", flow(storage=lambda ctx: ctx.files["mdp"]), FileExistsError, "flow",
    "mdp.h5 exists", "overwrite=True", "resume=True")
add(A, "flow-storage-directory-missing", flow(storage=lambda ctx: ctx.dir / "no" / "run.h5"),
    FileNotFoundError, "flow", "the directory", "does not exist")
add(A, "flow-storage-is-directory", flow(storage=lambda ctx: ctx.dir), ValueError, "flow",
    "is a directory")
add(A, "flow-storage-type", flow(storage=3.5), ValueError, "flow", "storage must be a file path")
add(A, "jko-without-entropy", flow(scheme="jko", objective=wg.Discounted(0.9)), ValueError,
    "jko needs entropy > 0")
add(A, "jko-tol", flow(scheme="jko", tol=-1.0), ValueError, "jko", "tol")
add(A, "wpo-seed", flow(scheme="wpo", samples=4, seed=-1), ValueError, "scheme 'wpo'", "option seed", ">= 0")
add(A, "wpo-samples", flow(scheme="wpo", samples=2.5), ValueError, "scheme 'wpo'", "option samples", "integer")
add(A, "wppg-particles", flow(scheme="wppg", particles=0), ValueError, "wppg", "particles")
add(A, "wppg-gradient", flow(scheme="wppg", gradient="exact"), ValueError, "wppg", "gradient")
add(A, "wppg-seed", flow(scheme="wppg", seed=-2), ValueError, "scheme 'wppg'", "option seed")
add(A, "pmd-step", flow(scheme="pmd", step=0.0), ValueError, "pmd", "step")
add(A, "pg-cfl", flow(scheme="pg", cfl=-1.0), ValueError, "pg", "cfl")
add(A, "steady-state-atol", lambda ctx: wg.flows.SteadyStateTracker(atol=-1.0), ValueError,
    "SteadyStateTracker", "atol")
add(A, "tracker-interval", lambda ctx: wg.flows.CallbackTracker(print, interval=-1.0), ValueError,
    "CallbackTracker", "interval")
# save
add(A, "save-directory-missing", lambda ctx: wg.save(ctx.dir / "no" / "x.h5", ctx.garnet), FileNotFoundError,
    "save", "the directory", "does not exist")
add(A, "save-unsupported", lambda ctx: wg.save(ctx.dir / "u.h5", {"a": 1}), ValueError,
    "wgflow.save stores MDP, Policy, Evaluation, Solution or Trajectory, not dict")
add(A, "save-no-overwrite", lambda ctx: wg.save(ctx.files["policy"], ctx.pi, overwrite=False), FileExistsError,
    "save", "pol.h5 exists", "overwrite=True")
add(A, "save-path-none", lambda ctx: wg.save(None, ctx.pi), ValueError, "save", "path must be a file path")
add(A, "save-overwrite-type", lambda ctx: wg.save(ctx.dir / "o.h5", ctx.pi, overwrite="yes"), ValueError,
    "save", "overwrite", "True or False")


# ------------------------------------------------------------------------------ class: accuracy
N = "accuracy"


def huge_costs(ctx):
    return wg.MDP(ctx.garnet.P, ctx.garnet.C * 1e307, actions=ctx.garnet.actions)


add(N, "evaluate-overflow", lambda ctx: wg.evaluate(huge_costs(ctx), wg.Policy.uniform(ctx.garnet), wg.Discounted(0.99)),
    RuntimeError, "exact evaluation gave non-finite", "J", "rescale the costs")
add(N, "solve-overflow", lambda ctx: wg.solve(huge_costs(ctx), wg.Discounted(0.99)), RuntimeError,
    "exact evaluation gave non-finite")
add(N, "flow-overflow", lambda ctx: wg.flow(huge_costs(ctx), wg.Discounted(0.99, entropy=0.1),
                                            wg.Policy.uniform(ctx.garnet), t_end=1.0, progress=False),
    RuntimeError, "exact evaluation gave non-finite")
add(N, "evaluate-gamma-1", lambda ctx: wg.evaluate(ctx.garnet, wg.Policy.uniform(ctx.garnet), wg.Discounted(1 - 1e-16)),
    RuntimeError, "exact evaluation lost its accuracy", "estimated relative error", "1/(1 - gamma)")
add(N, "solve-gamma-1", lambda ctx: wg.solve(ctx.garnet, wg.Discounted(1 - 1e-16)), RuntimeError,
    "lost its accuracy")
add(N, "evaluate-gamma-1e-13", lambda ctx: wg.evaluate(ctx.lqr, ctx.pi, wg.Discounted(1 - 1e-13, entropy=0.3)),
    RuntimeError, "lost its accuracy")


# ------------------------------------------------------------------------------ the table
def _words(c, ctx):
    f = getattr(ctx, "last_file", None)
    return [w.replace("{file}", str(f)) for w in c.words]


@pytest.mark.parametrize("c", CASES, ids=[f"{c.cls}:{c.id}" for c in CASES])
def test_malformed_input_raises_a_clear_error(ctx, c):
    ctx.last_file = None
    with default_floating_point():
        with pytest.raises(WgflowError) as info:
            c.call(ctx)
    exc = info.value
    assert isinstance(exc, c.builtin), f"{type(exc).__mro__} is not a {c.builtin.__name__}"
    msg = str(exc)
    for w in _words(c, ctx):
        assert w in msg, f"{w!r} not in {msg!r}"
    assert "\n" not in msg.strip() or c.cls == "file"


def test_the_table_covers_every_class_with_150_cases():
    counts = {k: sum(c.cls == k for c in CASES) for k in ("file", "resume", "argument", "accuracy")}
    assert all(v >= 5 for v in counts.values()), counts
    assert sum(counts.values()) + len(CLI_CASES) >= 150


def test_accuracy_warning_when_the_error_is_above_rounding(ctx):
    """gamma = 1 - 1e-9: the estimated relative error (about eps/(1 - gamma) = 2e-7) is reported."""
    with pytest.warns(wg.errors.AccuracyWarning, match="estimated relative error"):
        ev = wg.evaluate(ctx.garnet, wg.Policy.uniform(ctx.garnet), wg.Discounted(1 - 1e-9))
    # the answer is still right to about that error: J = mu0.V, and V ~ J for a uniform start
    P, C = ctx.garnet.to_arrays()
    Ppi = P.mean(axis=1)
    V = np.linalg.solve(np.eye(8) - (1 - 1e-9) * Ppi, C.mean(axis=1))
    assert ev.J == pytest.approx(V.mean(), rel=1e-5)


def test_no_numba_kernel_receives_a_frozen_mdp_edited_in_place(ctx):
    mdp = wg.problems.get("garnet", n_states=8, n_actions=3)
    for a in (mdp.P.indices, mdp.P.indptr, mdp.P.data, mdp.C):
        with pytest.raises(ValueError, match="read-only"):
            a[0] = 10**6


# ------------------------------------------------------------------------------ class: cli
CLI_CASES = [
    (["solve", "lqr1d", "--gamma", "x"], "argument --gamma: invalid float value"),
    (["solve", "lqr1d", "--gamma", "1.5"], "gamma"),
    (["solve", "lqr1d", "--gamma", "nan"], "gamma"),
    (["solve", "lqr1d", "--entropy", "-1"], "entropy"),
    (["solve", "lqrd"], "unknown problem 'lqrd'"),
    (["solve", "lqr1d", "--param", "n_sates=3"], "unknown parameter 'n_sates'"),
    (["solve", "lqr1d", "--param", "n_states=0"], "parameter n_states"),
    (["solve", "lqr1d", "--param", "n_states=abc"], "parameter n_states"),
    (["solve", "lqr1d", "--param", "n_states"], "--param takes key=value"),
    (["solve", "lqr1d", "--tol", "-1"], "tol"),
    (["solve", "lqr1d", "-o", "/nonexistent-dir/x.h5"], "does not exist"),
    (["solve", "lqr1d", "--method", "foo", "-p", "n_states=11", "-p", "n_actions=5"], "unknown method 'foo'"),
    (["solve", "lqr1d", "--objective", "bogus"], "invalid choice"),
    (["solve", "garnet", "--param", "seed=-1"], "parameter seed"),
    (["solve", "pendulum", "--param", "dt=-0.05"], "parameter dt"),
    (["bogus"], "invalid choice: 'bogus'"),
    (["verify", "nope"], "unknown problem 'nope'"),
    (["problems", "nope"], "unknown problem 'nope'"),
    (["solve", "lqr2d", "--param", "n_states=(5,5,5)"], "parameter n_states"),
    (["solve", "pendulum", "--param", "n_theta=1000000", "--param", "n_omega=1000000"], "memory"),
]


@pytest.mark.parametrize("argv, words", CLI_CASES, ids=[" ".join(a) for a, _ in CLI_CASES])
def test_cli_malformed_input_exits_2_with_one_line(capsys, argv, words):
    try:
        rc = cli.main(argv)
    except SystemExit as exc:        # argparse
        rc = exc.code
    out = capsys.readouterr()
    assert rc == 2
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    assert lines[0].startswith("wgflow") and "error" in lines[0] and words in lines[0]
    assert "Traceback" not in out.err


def test_cli_entry_point_prints_one_line_and_no_traceback():
    out = subprocess.run([sys.executable, "-m", "wgflow.cli", "solve", "garnet", "--param", "seed=-1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert "parameter seed must be an integer >= 0, got -1" in out.stderr
