#!/usr/bin/env python
"""Hessian benchmark: one Hessian-vector product and ``spectrum(5)`` in units of one ``wg.evaluate``.

For each problem the soft-optimal policy is computed (``wg.solve``), then timed (best of
``--repeat``) in the same process:

- ``evaluate``   one exact ``wg.evaluate`` of the policy (sparse LU of ``I - gamma P_pi``): the unit;
- ``setup``      ``wg.hessian(mdp, obj, pi)`` (one evaluation + bookkeeping);
- ``matvec``     ``H.matvec(phi)`` for a random potential (two sparse triangular solves with the
                 evaluation's factors + face-mobility work); ``mobility`` is the part of it spent
                 recomputing the face mobilities ``theta(m)`` and their derivatives (six calls per
                 product; they depend only on the policy and could be cached at setup);
- ``spectrum``   ``H.spectrum(5)`` as shipped (``method="auto"``: dense for ``nS*nA <= 2500``,
                 LOBPCG above). The shipped LOBPCG path has a shape bug
                 (``wgflow/hessian.py:370``: ``(n,1) + (n,)`` broadcasts to an ``n x n`` array), so
                 it fails; on large problems the failing call first spends ~2000 products on the
                 shift estimate and then tries to allocate ``8 n^2`` bytes (24 GB for the default
                 pendulum), so it is only attempted when ``8 n^2`` is below ``--max-bytes``;
- ``dense``      ``H.spectrum(5, method="dense")`` when the reduced basis is small enough;
- ``step-lobpcg`` a prototype of the suggested fix (1-D action grids): LOBPCG in the *scaled
                 step-function basis* of the dense path, where the metric is diagonal
                 (``G = diag(w theta_f / h^2)``) so the generalized problem becomes a standard one,
                 restricted by ``min_weight`` like the dense path, and preconditioned by the
                 (tridiagonal in face coordinates) entropic local part ``(LZ)^T diag(x tau/m) (LZ)``.

Usage::

    python benchmarks/hessian.py               # lqr1d (101 x 61) and pendulum (51 x 51 x 21), ~3 min
    python benchmarks/hessian.py --quick       # lqr1d only (~1 min)
    python benchmarks/hessian.py --json out.json
"""
from __future__ import annotations

import argparse
import json
import platform
import time
import warnings

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import wgflow as wg
from wgflow.hessian import mobility

CASES = {
    "lqr1d": dict(problem={}, objective=dict(gamma=0.9, entropy=1.0)),
    "pendulum": dict(problem={}, objective=dict(gamma=0.95, entropy=0.1)),
}


def best_of(f, repeat):
    ts = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = f()
        ts.append(time.perf_counter() - t0)
    return min(ts), out


def step_basis_lobpcg(H, k=5, tol=1e-7, maxiter=300, min_weight=1e-8, seed=0):
    """Prototype of the fix for 1-D action grids (see the module docstring).

    Returns ``(eigenvalues, potentials (k, nS, nA), iterations, n_directions)``.
    """
    d, m = H._d, H.masses
    nS, nA = m.shape
    A = H.mdp.actions
    if A.ndim != 1:
        raise NotImplementedError("prototype: 1-D action grids only")
    h2 = A.spacing[0] ** 2
    th = mobility(m[:, :-1], m[:, 1:], H.mobility)[0] / h2           # (nS, nA-1) faces
    g = d.w[:, None] * th                                              # metric, diagonal here
    keep = (g >= min_weight * g.max()) & (d.w >= min_weight * d.w.max())[:, None]
    ks = np.flatnonzero(keep.ravel())
    nk = ks.size
    s = 1.0 / np.sqrt(g.ravel()[ks])                                   # G^{-1/2}

    def Z(y):                                   # scaled face coordinates -> potentials
        b = y.shape[1]
        full = np.zeros((nS * (nA - 1), b))
        full[ks] = y * s[:, None]
        phi = np.zeros((nS, nA, b))
        phi[:, 1:] = np.cumsum(full.reshape(nS, nA - 1, b), axis=1)    # step functions 1[a > f]
        return phi.reshape(nS * nA, b)

    def Zt(v):                                  # adjoint: sums over a > f
        b = v.shape[1]
        r = np.cumsum(v.reshape(nS, nA, b)[:, ::-1], axis=1)[:, ::-1][:, 1:]
        return r.reshape(nS * (nA - 1), b)[ks] * s[:, None]

    def apply(Y):
        P = Z(np.asarray(Y).reshape(nk, -1))
        return Zt(np.column_stack([H.matvec(P[:, j]) for j in range(P.shape[1])]))

    # preconditioner: entropic local part in face coordinates, L Z e_f = th_f (e_{f+1} - e_f)
    c = d.x[:, None] * max(d.tau, 1e-300) / m
    diag = th ** 2 * (c[:, :-1] + c[:, 1:])
    off = np.zeros((nS, nA - 1))
    off[:, :-1] = -th[:, :-1] * th[:, 1:] * c[:, 1:-1]
    nF = nS * (nA - 1)
    offd = off.ravel()[:-1]
    K = sp.diags([offd, diag.ravel(), offd], [-1, 0, 1], shape=(nF, nF), format="csr")[ks][:, ks]
    S = sp.diags(s)
    lu = spla.splu((S @ K @ S + sp.identity(nk)).tocsc())
    T = spla.LinearOperator((nk, nk), matvec=lambda v: lu.solve(np.asarray(v).reshape(nk, -1)).reshape(np.shape(v)),
                            matmat=lambda X: lu.solve(np.asarray(X)), dtype=float)
    Aop = spla.LinearOperator((nk, nk), matvec=apply, matmat=apply, dtype=float)
    X = np.random.default_rng(seed).standard_normal((nk, k + 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)       # "not reaching the requested tolerance"
        vals, Y, hist = spla.lobpcg(Aop, X, M=T, largest=False, tol=tol, maxiter=maxiter,
                                    retResidualNormsHistory=True)
    o = np.argsort(vals)[:k]
    return vals[o], Z(Y[:, o]).T.reshape(k, nS, nA), len(hist), nk


def run_case(name, repeat, max_bytes, dense_limit):
    spec = CASES[name]
    mdp = wg.problems.get(name, **spec["problem"])
    obj = wg.Discounted(**spec["objective"])
    t0 = time.perf_counter()
    sol = wg.solve(mdp, obj)
    t_solve = time.perf_counter() - t0
    pol = sol.policy
    n = pol.masses.size
    row = {"problem": name, "nS": mdp.n_states, "nA": mdp.n_actions, "n": n,
           "objective": f"Discounted({obj.gamma}, entropy={obj.entropy})", "solve_s": t_solve,
           "min_mass": float(pol.masses.min())}
    t_eval, _ = best_of(lambda: wg.evaluate(mdp, pol, obj), repeat)
    t_setup, H = best_of(lambda: wg.hessian(mdp, obj, pol), repeat)
    v = np.random.default_rng(0).standard_normal(n)
    H.matvec(v)
    t_mv, _ = best_of(lambda: H.matvec(v), repeat)
    t_loc, _ = best_of(lambda: H.local.matvec(v), repeat)
    t_G, _ = best_of(lambda: H.metric.matvec(v), repeat)
    A = mdp.actions
    m3 = pol.masses.reshape(-1, A.shape[0]) if A.ndim == 1 else None
    t_mob = np.nan
    if m3 is not None:
        t_mob, _ = best_of(lambda: [mobility(m3[:, :-1], m3[:, 1:], "sg") for _ in range(6)], repeat)
    row.update(evaluate_s=t_eval, setup_eval=t_setup / t_eval, matvec_eval=t_mv / t_eval,
               local_matvec_eval=t_loc / t_eval, metric_matvec_eval=t_G / t_eval,
               mobility_share_of_matvec=t_mob / t_mv, matvec_without_mobility_eval=(t_mv - t_mob) / t_eval)

    # shipped spectrum(5)
    if 8.0 * n * n <= max_bytes:
        t0 = time.perf_counter()
        try:
            lam = H.spectrum(5)
            row["spectrum"] = {"ok": True, "values": lam.tolist()}
        except Exception as exc:      # noqa: BLE001 - the failure is what we report
            row["spectrum"] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:90]}"}
        row["spectrum"]["eval"] = (time.perf_counter() - t0) / t_eval
    else:
        row["spectrum"] = {"ok": False, "error": f"skipped: the shipped LOBPCG path would allocate "
                                                 f"8 n^2 = {8.0 * n * n / 1e9:.0f} GB (bug, hessian.py:370)",
                           "eval": np.nan}
    # dense path
    dense = None
    t0 = time.perf_counter()
    Zdirs = H._reduced_basis(H._d.w >= 1e-8 * H._d.w.max(), 1e-8).shape[1]
    if Zdirs <= dense_limit:
        dense = H.spectrum(5, method="dense")
        row["dense"] = {"values": dense.tolist(), "eval": (time.perf_counter() - t0) / t_eval,
                        "directions": Zdirs}
    else:
        row["dense"] = {"skipped": f"{Zdirs} directions (> {dense_limit}): ~{Zdirs} products + "
                                   f"an eigh of that size", "directions": Zdirs}
    # prototype fix
    if A.ndim == 1:
        t0 = time.perf_counter()
        lam, vecs, iters, nk = step_basis_lobpcg(H, 5)
        t_p = time.perf_counter() - t0
        res = []
        for j in range(5):
            x = vecs[j].ravel()
            Hx, Gx = H.matvec(x), H.metric.matvec(x)
            res.append(float(np.linalg.norm(Hx - lam[j] * Gx) / np.linalg.norm(Hx)))
        row["step_lobpcg"] = {"values": lam.tolist(), "eval": t_p / t_eval, "iterations": iters,
                              "directions": nk, "residuals": res}
        if dense is not None:
            row["step_lobpcg"]["rel_diff_vs_dense"] = float(np.max(np.abs(lam - dense) / dense))
    row["predicted_rate"] = 2.0 * (row.get("step_lobpcg", {}).get("values") or row["dense"]["values"])[0] / H.kappa
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="lqr1d only")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--max-bytes", type=float, default=2e9,
                    help="attempt the shipped LOBPCG spectrum only if 8 n^2 is below this")
    ap.add_argument("--dense-limit", type=int, default=4000,
                    help="largest reduced basis for the dense comparison")
    ap.add_argument("--json", help="write the rows to this file")
    args = ap.parse_args(argv)
    np.seterr(all="ignore")
    names = ["lqr1d"] if args.quick else ["lqr1d", "pendulum"]
    rows = []
    print(f"# wgflow {wg.__version__}, numpy {np.__version__}, python {platform.python_version()}, "
          f"{platform.machine()}")
    for name in names:
        r = run_case(name, args.repeat, args.max_bytes, args.dense_limit)
        rows.append(r)
        print(f"\n## {name}: nS={r['nS']} nA={r['nA']} n={r['n']} {r['objective']} "
              f"(solve {r['solve_s']:.2f} s, min mass {r['min_mass']:.1e})")
        print(f"evaluate                  {1e3 * r['evaluate_s']:9.2f} ms   = 1")
        print(f"hessian() setup           {r['setup_eval']:9.2f} evaluations")
        print(f"matvec H phi              {r['matvec_eval']:9.2f} evaluations "
              f"({100 * r['mobility_share_of_matvec']:.0f} % recomputing mobilities; "
              f"{r['matvec_without_mobility_eval']:.2f} without)")
        print(f"matvec H.local phi        {r['local_matvec_eval']:9.2f} evaluations")
        print(f"matvec G phi              {r['metric_matvec_eval']:9.2f} evaluations")
        sp_ = r["spectrum"]
        print(f"spectrum(5) shipped       {sp_['eval']:9.0f} evaluations  "
              + (f"{np.round(sp_['values'], 6)}" if sp_["ok"] else f"FAILED: {sp_['error']}"))
        if "values" in r["dense"]:
            print(f"spectrum(5) dense         {r['dense']['eval']:9.0f} evaluations  "
                  f"{np.round(r['dense']['values'], 6)} ({r['dense']['directions']} directions)")
        else:
            print(f"spectrum(5) dense         skipped: {r['dense']['skipped']}")
        if "step_lobpcg" in r:
            s = r["step_lobpcg"]
            extra = (f", max rel diff vs dense {s['rel_diff_vs_dense']:.1e}" if "rel_diff_vs_dense" in s else "")
            print(f"step-basis LOBPCG (fix)   {s['eval']:9.0f} evaluations  {np.round(s['values'], 6)} "
                  f"({s['iterations']} iterations, {s['directions']} directions{extra}; "
                  f"residuals {max(s['residuals']):.1e})")
        print(f"predicted otto rate 2 lambda_min / kappa = {r['predicted_rate']:.5g}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=float)


if __name__ == "__main__":
    main()
