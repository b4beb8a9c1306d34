#!/usr/bin/env python
"""Hessian benchmark: one Hessian-vector product and ``spectrum(5)`` in units of one ``wg.evaluate``.

For each problem the soft-optimal policy is computed (``wg.solve``), then timed in the same
process (the cheap operations best of ``--repeat``; each spectrum once, on a fresh ``wg.hessian``
so that ``Hessian``'s spectrum cache does not hide the cost):

- ``evaluate``   one exact ``wg.evaluate`` of the policy (sparse LU of ``I - gamma P_pi``): the unit;
- ``setup``      ``wg.hessian(mdp, obj, pi)`` (one evaluation, the face mobilities, bookkeeping);
- ``matvec``     ``H.matvec(phi)`` for a random potential (two sparse triangular solves with the
                 evaluation's factors + a few vectorized passes over the cached face mobilities);
                 also ``H.local`` and the metric ``H.metric``;
- ``auto``       ``H.spectrum(5)`` (``method="auto"``: dense up to 2500 reduced directions, LOBPCG
                 above); the method it chose is printed;
- ``lobpcg``     ``H.spectrum(5, method="lobpcg")`` (1-D action grids). When ``auto`` already
                 chose LOBPCG this is the same computation and is not repeated;
- ``dense``      ``H.spectrum(5, method="dense")`` when the reduced basis has at most
                 ``--dense-limit`` directions (one product per direction plus a dense ``eigh``),
                 for the comparison ``max |lambda_lobpcg - lambda_dense| / lambda_dense``.

For each spectrum the number of Hessian-vector products is counted, and the full-space residual
``|H phi - lambda G phi| / |H phi|`` of the returned eigenvectors is reported next to LOBPCG's own
residual in the reduced space (``H.diagnostics["lobpcg_residuals"]``): the two differ by what
lives in the directions ``min_weight`` leaves out (docs/hessian.md section 4).

Usage::

    python benchmarks/hessian.py               # lqr1d (101 x 61), pendulum (51 x 51 x 21) and
                                               # pendulum 21 x 21 x 11 (dense vs LOBPCG), ~3 min
    python benchmarks/hessian.py --quick       # lqr1d only, no dense comparison (~1 min)
    python benchmarks/hessian.py --json out.json
"""
from __future__ import annotations

import argparse
import json
import platform
import time
import warnings

import numpy as np

import wgflow as wg

CASES = {
    "lqr1d": dict(name="lqr1d", problem={}, objective=dict(gamma=0.9, entropy=1.0)),
    "pendulum": dict(name="pendulum", problem={}, objective=dict(gamma=0.95, entropy=0.1)),
    # a pendulum small enough for "auto" to choose the dense path: the LOBPCG/dense comparison
    "pendulum-21x21x11": dict(name="pendulum", problem=dict(n_theta=21, n_omega=21, n_actions=11),
                              objective=dict(gamma=0.95, entropy=0.1)),
}


def best_of(f, repeat):
    ts = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = f()
        ts.append(time.perf_counter() - t0)
    return min(ts), out


def timed_spectrum(mdp, obj, pol, t_eval, k, method):
    """``spectrum(k, method=...)`` on a fresh Hessian: cost, products, values, residuals."""
    H = wg.hessian(mdp, obj, pol)
    count = [0]
    matvec = H.matvec

    def counting(v):
        count[0] += 1
        return matvec(v)

    H.matvec = counting                      # the spectrum paths call self.matvec per vector
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        vals, vecs = H.spectrum(k, method=method, return_vectors=True)
    t = time.perf_counter() - t0
    H.matvec = matvec
    res = []
    for j in range(len(vals)):
        x = vecs[j].ravel()
        Hx, Gx = H.matvec(x), H.metric.matvec(x)
        res.append(float(np.linalg.norm(Hx - vals[j] * Gx) / np.linalg.norm(Hx)))
    d = H.diagnostics
    out = {"method": d["spectrum_method"], "values": vals.tolist(), "eval": t / t_eval, "seconds": t,
           "products": count[0], "directions": d["directions_in_spectrum"],
           "full_residual": max(res),
           "warnings": [str(w.message)[:120] for w in caught if "LOBPCG" in str(w.message)]}
    if "lobpcg_iterations" in d:
        out["iterations"] = int(d["lobpcg_iterations"])
        out["lobpcg_residual"] = float(np.max(d["lobpcg_residuals"]))
    return out, H


def run_case(name, repeat, dense_limit, k=5):
    spec = CASES[name]
    mdp = wg.problems.get(spec["name"], **spec["problem"])
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
    row.update(evaluate_s=t_eval, setup_eval=t_setup / t_eval, matvec_eval=t_mv / t_eval,
               local_matvec_eval=t_loc / t_eval, metric_matvec_eval=t_G / t_eval)

    row["auto"], H = timed_spectrum(mdp, obj, pol, t_eval, k, "auto")
    if mdp.actions.ndim == 1:
        if row["auto"]["method"] == "lobpcg":
            row["lobpcg"] = dict(row["auto"], same_as_auto=True)
        else:
            row["lobpcg"], _ = timed_spectrum(mdp, obj, pol, t_eval, k, "lobpcg")
    nd = row["auto"]["directions"]
    if row["auto"]["method"] == "dense":
        row["dense"] = row["auto"]
    elif nd <= dense_limit:
        row["dense"], _ = timed_spectrum(mdp, obj, pol, t_eval, k, "dense")
    else:
        row["dense"] = {"skipped": f"{nd} directions (> --dense-limit {dense_limit}): {nd} products + "
                                   f"two dense {nd}x{nd} matrices ({2 * 8 * nd * nd / 1e9:.1f} GB)",
                        "directions": nd}
    if "lobpcg" in row and "values" in row["dense"]:
        lo, de = np.array(row["lobpcg"]["values"]), np.array(row["dense"]["values"])
        row["lobpcg"]["rel_diff_vs_dense"] = float(np.max(np.abs(lo - de) / np.abs(de)))
    row["kappa"] = H.kappa
    # H.predicted_rate() would compute spectrum(1) anew (the cache is keyed by k): use lambda_1
    row["predicted_rate"] = 2.0 * row["auto"]["values"][0] / H.kappa
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="lqr1d only, no dense comparison")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dense-limit", type=int, default=4000,
                    help="largest reduced basis for the dense comparison")
    ap.add_argument("--json", help="write the rows to this file")
    args = ap.parse_args(argv)
    np.seterr(all="ignore")
    names = ["lqr1d"] if args.quick else list(CASES)
    dense_limit = 0 if args.quick else args.dense_limit
    rows = []
    print(f"# wgflow {wg.__version__}, numpy {np.__version__}, python {platform.python_version()}, "
          f"{platform.machine()}")
    for name in names:
        r = run_case(name, args.repeat, dense_limit)
        rows.append(r)
        print(f"\n## {name}: nS={r['nS']} nA={r['nA']} n={r['n']} {r['objective']} "
              f"(solve {r['solve_s']:.2f} s, min mass {r['min_mass']:.1e})")
        print(f"evaluate                  {1e3 * r['evaluate_s']:9.2f} ms   = 1")
        print(f"hessian() setup           {r['setup_eval']:9.2f} evaluations")
        print(f"matvec H phi              {r['matvec_eval']:9.2f} evaluations")
        print(f"matvec H.local phi        {r['local_matvec_eval']:9.2f} evaluations")
        print(f"matvec G phi              {r['metric_matvec_eval']:9.2f} evaluations")
        for key, label in (("auto", "spectrum(5) auto"), ("lobpcg", "spectrum(5) lobpcg"),
                           ("dense", "spectrum(5) dense")):
            s = r.get(key)
            if s is None:
                continue
            if "skipped" in s:
                print(f"{label:<26}skipped: {s['skipped']}")
                continue
            if s.get("same_as_auto"):
                extra = (f", max rel diff vs dense {s['rel_diff_vs_dense']:.1e}"
                         if "rel_diff_vs_dense" in s else "")
                print(f"{label:<26}= auto (auto chose LOBPCG{extra})")
                continue
            extra = ""
            if "iterations" in s:
                extra += f", {s['iterations']} iterations, LOBPCG residual {s['lobpcg_residual']:.1e}"
            if "rel_diff_vs_dense" in s:
                extra += f", max rel diff vs dense {s['rel_diff_vs_dense']:.1e}"
            print(f"{label:<26}{s['eval']:9.0f} evaluations ({s['seconds']:.1f} s, {s['method']}, "
                  f"{s['products']} products, {s['directions']} directions{extra}; full-space "
                  f"residual {s['full_residual']:.1e})")
            print(f"{'':<26}lambda = {np.array2string(np.array(s['values']), precision=8)}")
            for w in s["warnings"]:
                print(f"{'':<26}WARNING: {w}")
        print(f"predicted otto rate 2 lambda_min / kappa = {r['predicted_rate']:.6g} (kappa = {r['kappa']:g})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=float)


if __name__ == "__main__":
    main()
