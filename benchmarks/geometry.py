"""Benchmark: wgflow.geometry W2 distances vs POT, side by side in one process.

Run:  python benchmarks/geometry.py [--states 1000 --actions 1000 --repeat 3]

1-D: ``geometry.w2sq(atoms=True)`` (numba two-pointer merge, vectorized over states) against a
per-state Python loop over ``ot.wasserstein_1d`` on the same atoms, POT's own batched call, and
wgflow's plain-numpy twin; the values are checked equal (max |diff| <= 1e-9). The exact
piecewise-constant distance (default mode) is timed too.
2-D: ``geometry.w2sq(atoms=True)`` (per-state network simplex on the supports, marginals and
solver status checked) against a per-state loop over ``ot.emd2`` with a precomputed cost matrix.

Timings are the best of ``--repeat`` runs after one warm-up call (numba compilation excluded).
``run(quick)`` returns the rows of ``benchmarks/run.py``'s table (wall seconds, one process).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import ot

import wgflow as wg
import wgflow.geometry as G
from wgflow.kernels import numba_environment

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _measure import peak_mib  # noqa: E402


def best(fn, repeat):
    out, ts = None, []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return out, min(ts)


def random_masses(rng, nS, nA):
    m = rng.random((nS, nA))
    return m / m.sum(axis=1, keepdims=True)


def measure(nS, nA, n2, k, repeat):
    """The measurements: ``(rows, peaks)``, rows ``(case, method, seconds, ratio, max abs diff)``."""
    rng = np.random.default_rng(0)
    rows = []
    # ------------------------------------------------------------------ 1-D
    A = wg.Grid([(-1.0, 1.0)], [nA])
    x = A.centers[:, 0]
    p0 = wg.Policy(random_masses(rng, nS, nA), A)
    p1 = wg.Policy(random_masses(rng, nS, nA), A)
    G.w2sq(p0, p1, atoms=True)                                  # warm-up (numba compile/cache)
    _, peak1 = peak_mib(lambda: G.w2sq(p0, p1, atoms=True))
    ours, t_ours = best(lambda: G.w2sq(p0, p1, atoms=True), repeat)
    loop, t_loop = best(lambda: np.array([ot.wasserstein_1d(x, x, p0.masses[s], p1.masses[s], p=2)
                                          for s in range(nS)]), repeat)
    X = np.repeat(x[:, None], nS, axis=1)
    batch, t_batch = best(lambda: ot.wasserstein_1d(X, X, p0.masses.T, p1.masses.T, p=2), repeat)
    twin, t_twin = best(lambda: G.w2sq(p0, p1, atoms=True, backend="numpy"), repeat)
    _, t_pc = best(lambda: G.w2sq(p0, p1), repeat)
    err = max(np.abs(ours - loop).max(), np.abs(ours - batch).max(), np.abs(ours - twin).max())
    if err > 1e-9:
        raise SystemExit(f"1-D values differ from POT by {err:.3g}")
    tag = f"1-D, {nS} states x {nA} actions"
    rows += [(tag, "wgflow w2sq(atoms=True) [numba]", t_ours, 1.0, err),
             (tag, "POT wasserstein_1d, per-state loop", t_loop, t_loop / t_ours, None),
             (tag, "POT wasserstein_1d, batched call", t_batch, t_batch / t_ours, None),
             (tag, "wgflow numpy twin (sort-based)", t_twin, t_twin / t_ours, None),
             (tag, "wgflow w2sq() exact piecewise-constant", t_pc, t_pc / t_ours, None)]
    # ------------------------------------------------------------------ 2-D
    B = wg.Grid([(-1.0, 1.0)] * 2, [k, k])
    q0 = wg.Policy(random_masses(rng, n2, B.size), B)
    q1 = wg.Policy(random_masses(rng, n2, B.size), B)
    M = ot.dist(B.centers, B.centers)
    G.w2sq(q0, q1, atoms=True)
    _, peak2 = peak_mib(lambda: G.w2sq(q0, q1, atoms=True))
    ours2, t2 = best(lambda: G.w2sq(q0, q1, atoms=True), repeat)
    loop2, t2loop = best(lambda: np.array([ot.emd2(q0.masses[s], q1.masses[s], M) for s in range(n2)]),
                         repeat)
    err2 = np.abs(ours2 - loop2).max()
    if err2 > 1e-9:
        raise SystemExit(f"2-D values differ from POT by {err2:.3g}")
    tag2 = f"2-D, {n2} states x {k}x{k} actions"
    rows += [(tag2, "wgflow w2sq(atoms=True) [checked emd]", t2, 1.0, err2),
             (tag2, "POT emd2, per-state loop", t2loop, t2loop / t2, None)]
    return rows, {tag: peak1, tag2: peak2}


def run(quick: bool = False) -> list:
    """Rows for ``benchmarks/run.py``: wgflow's W2 against POT (wall seconds, best of 3)."""
    sizes = (200, 200, 20, 10) if quick else (1000, 1000, 50, 20)
    rows, peaks = measure(*sizes, repeat=3)
    cmd = ("python benchmarks/geometry.py --states {} --actions {} --states2d {} --grid2d {}"
           .format(*sizes))
    out = []
    ours = {}
    for tag, name, t, ratio, err in rows:
        if name.startswith("wgflow w2sq(atoms=True)"):
            ours[tag] = (t, err)
            continue
        t_ours, e = ours[tag]
        out.append({"benchmark": "geometry", "case": tag,
                    "what": f"squared W2 between two policies, every state (max diff vs POT {e:.0e})",
                    "wgflow_s": t_ours, "peer": name, "peer_s": t, "ratio": t / t_ours,
                    "peak_mib": peaks[tag], "command": cmd})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--states", type=int, default=1000)
    ap.add_argument("--actions", type=int, default=1000)
    ap.add_argument("--states2d", type=int, default=50)
    ap.add_argument("--grid2d", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    rows, _ = measure(args.states, args.actions, args.states2d, args.grid2d, args.repeat)
    (t_ours, t_loop, t_batch) = (rows[0][2], rows[1][2], rows[2][2])
    t2, t2loop = rows[5][2], rows[6][2]
    # ------------------------------------------------------------------ report
    print(f"python {platform.python_version()}, numpy {np.__version__}, POT {ot.__version__}, "
          f"wgflow {wg.__version__}, numba {numba_environment()['numba']}")
    print(f"best of {args.repeat} runs after a warm-up call\n")
    print("| problem | method | time [s] | time / wgflow | max abs diff vs POT |")
    print("|---|---|---|---|---|")
    for tag_, name, t, ratio, e in rows:
        es = "" if e is None else f"{e:.1e}"
        print(f"| {tag_} | {name} | {t:.4f} | {ratio:.2f} | {es} |")
    print(f"\n1-D speed-up vs the per-state POT loop: {t_loop / t_ours:.1f}x "
          f"(goal >= 10x); vs POT's batched call: {t_batch / t_ours:.1f}x")
    print(f"2-D ratio (POT loop time / wgflow time): {t2loop / t2:.2f}")


if __name__ == "__main__":
    main()
