#!/usr/bin/env python
"""Hessian benchmark: ``H.spectrum(k)`` in units of one ``wg.evaluate``, and ``wgflow verify`` times.

Rows (``run(quick)`` returns them as dicts; ``python benchmarks/hessian.py`` prints them):

- ``spectrum`` -- ``H.spectrum(k)`` for ``k = 1, 5, 10`` at the soft optimum, on a fresh
  ``wg.hessian`` (the spectrum cache would hide the cost; the Hessian's setup, one evaluation
  plus bookkeeping, is a row of its own). The peer is one exact ``wg.evaluate`` of the same
  policy (sparse LU of ``I - gamma P_pi``): the ratio is the cost in evaluations. Cases: the
  default lqr1d (101 x 61) at ``Discounted(0.9, entropy=0.5)`` and the default pendulum
  (51 x 51 x 21) at ``Discounted(0.99, entropy=0.1)``, whose Gibbs tails underflow. The values
  are checked against the smallest per-state Fokker--Planck gap (the exact slowest rate of the
  linearized ``otto`` flow at a critical point, computed from the flux kernel's coefficients).
- ``verify`` -- ``wgflow verify PROBLEM`` (all checks, the CLI's defaults
  ``Discounted(0.95, entropy=0.5)``) on every built-in problem at its default size; the peer is
  the 15 s budget.

Timings are best of ``--repeat`` runs interleaved with the unit in the same process (the machine
is shared: read ratios, not seconds); peak memory is Python's traced peak (``tracemalloc``) of a
separate, untimed run.

Usage::

    python benchmarks/hessian.py            # lqr1d and pendulum spectra, verify on every default
    python benchmarks/hessian.py --quick    # lqr1d spectra, verify lqr1d
    python benchmarks/hessian.py --json out.json
"""
from __future__ import annotations

import argparse
import json
import platform
import time
import tracemalloc
import warnings

import numpy as np

import wgflow as wg
from wgflow.hessian import MASS_FLOOR

SPECTRUM_CASES = {
    "lqr1d": dict(problem="lqr1d", params={}, objective=dict(gamma=0.9, entropy=0.5)),
    "pendulum": dict(problem="pendulum", params={}, objective=dict(gamma=0.99, entropy=0.1)),
}
KS = (1, 5, 10)
VERIFY_BUDGET_S = 15.0


def _best(f, repeat):
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _peak_mib(f):
    tracemalloc.start()
    try:
        f()
        return tracemalloc.get_traced_memory()[1] / 2 ** 20
    finally:
        tracemalloc.stop()


def _fp_gap(mdp, Q, tau, masses):
    """Smallest per-state decay rate of the frozen-Q Scharfetter--Gummel generator (1-D)."""
    from wgflow.hessian import MASS_FLOOR
    from wgflow.kernels.fluxes import sg_face_coefficients
    h2inv = 1.0 / mdp.actions.spacing[0] ** 2
    best = np.inf
    for s in range(mdp.n_states):
        idx = np.nonzero(masses[s] >= MASS_FLOOR)[0]
        n = idx.size
        K = np.zeros((n, n))
        for k in range(n - 1):
            i, j = idx[k], idx[k + 1]
            if j != i + 1:
                continue
            cf, cb = sg_face_coefficients(Q[s, j] - Q[s, i], tau, h2inv)
            K[k, k] -= cf
            K[k, k + 1] += cf
            K[k + 1, k + 1] -= cb
            K[k + 1, k] += cb
        best = min(best, np.sort(-np.linalg.eigvals(K).real)[1])
    return best


def spectrum_rows(name, repeat):
    spec = SPECTRUM_CASES[name]
    mdp = wg.problems.get(spec["problem"], **spec["params"])
    obj = wg.Discounted(**spec["objective"])
    sol = wg.solve(mdp, obj)
    pol = sol.policy
    case = (f"{spec['problem']} {mdp.n_states}x{mdp.n_actions} {obj!r}, soft optimum "
            f"({int(np.count_nonzero(pol.masses < MASS_FLOOR))} empty cells)")
    cmd = f"python benchmarks/hessian.py{'' if name == 'pendulum' else ' --quick'}"
    t_eval, _ = _best(lambda: wg.evaluate(mdp, pol, obj), max(repeat, 5))
    rows = []
    t_setup, _ = _best(lambda: wg.hessian(mdp, obj, pol), repeat)
    rows.append(dict(benchmark="hessian", case=case, what="wg.hessian(mdp, obj, pi) setup",
                     wgflow_s=t_setup, peer="wg.evaluate (the unit)", peer_s=t_eval, ratio=t_setup / t_eval,
                     evaluations=t_setup / t_eval, peak_mib=_peak_mib(lambda: wg.hessian(mdp, obj, pol)),
                     command=cmd))
    gap = _fp_gap(mdp, sol.Q, obj.entropy, pol.masses)
    for k in KS:
        info = {}

        def run():
            H = wg.hessian(mdp, obj, pol)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                t0 = time.perf_counter()
                vals = H.spectrum(k)
                dt = time.perf_counter() - t0
            info.update(H.diagnostics, vals=vals, warnings=[str(w.message)[:100] for w in caught],
                        kappa=H.kappa)
            return dt

        ts = [run() for _ in range(repeat)]
        t = min(ts)
        err = abs(info["vals"][0] / info["kappa"] - gap) / gap
        rows.append(dict(benchmark="hessian", case=case, what=f"H.spectrum({k})", wgflow_s=t,
                         peer="wg.evaluate (the unit)", peer_s=t_eval, ratio=t / t_eval, evaluations=t / t_eval,
                         peak_mib=_peak_mib(lambda: wg.hessian(mdp, obj, pol).spectrum(k)), command=cmd,
                         method=info["spectrum_method"], products=info["spectrum_products"],
                         directions=info["directions"], lambda_1=float(info["vals"][0]),
                         predicted_rate=2 * float(info["vals"][0]) / info["kappa"],
                         rel_error_vs_fokker_planck_gap=float(err), warnings=info["warnings"]))
    return rows


def verify_rows(names, repeat):
    rows = []
    for name in names:
        mdp = wg.problems.get(name)
        obj = wg.Discounted(0.95, entropy=0.5)
        rep = {}

        def run():
            rep["r"] = wg.verify.run(mdp, obj, progress=False)

        t, _ = _best(run, repeat)
        r = rep["r"]
        rows.append(dict(benchmark="hessian", case=f"{name} default {mdp.n_states}x{mdp.n_actions}, {obj!r}",
                         what="wgflow verify (all checks)", wgflow_s=t, peer=f"budget {VERIFY_BUDGET_S:g} s",
                         peer_s=VERIFY_BUDGET_S, ratio=t / VERIFY_BUDGET_S, evaluations=None,
                         peak_mib=None, command=f"wgflow verify {name}", passed=r.passed,
                         rows={x.check: (x.status, round(x.time or 0.0, 3)) for x in r.rows}))
    return rows


def run(quick: bool = False, repeat: int | None = None) -> list:
    """The benchmark rows (dicts with ``benchmark, case, what, wgflow_s, peer, peer_s, ratio,
    evaluations, peak_mib, command`` and details)."""
    np.seterr(all="ignore")
    repeat = (2 if quick else 3) if repeat is None else repeat
    rows = spectrum_rows("lqr1d", repeat)
    if not quick:
        rows += spectrum_rows("pendulum", repeat)
    rows += verify_rows(["lqr1d"] if quick else wg.problems.names(), 1)
    return rows


def _print(rows):
    print(f"# wgflow {wg.__version__}, numpy {np.__version__}, python {platform.python_version()}, "
          f"{platform.machine()}")
    print(f"{'case':<62} {'what':<28} {'wgflow s':>9} {'peer s':>8} {'ratio':>8}  details")
    for r in rows:
        det = ""
        if "method" in r:
            det = (f"{r['method']}, {r['products']} products, {r['directions']} directions, lambda_1 = "
                   f"{r['lambda_1']:.6g}, vs per-state FP gap {r['rel_error_vs_fokker_planck_gap']:.1e}"
                   + (f", WARNINGS {r['warnings']}" if r["warnings"] else ""))
        elif "passed" in r:
            det = "passed" if r["passed"] else "FAILED"
        print(f"{r['case'][:62]:<62} {r['what']:<28} {r['wgflow_s']:9.3f} {r['peer_s']:8.4f} {r['ratio']:8.2f}  {det}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="lqr1d spectra and verify lqr1d only")
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--json", help="write the rows to this file")
    args = ap.parse_args(argv)
    rows = run(args.quick, args.repeat)
    _print(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=float)


if __name__ == "__main__":
    main()
