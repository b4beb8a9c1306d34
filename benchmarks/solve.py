#!/usr/bin/env python
"""Exact-solver benchmark: wgflow policy iteration against QuantEcon and pymdptoolbox.

Every (problem, solver) measurement runs in its own subprocess, so peak memory is separable and
one solver's allocations never pollute another's. In each subprocess the solver is first run on a
tiny problem of the same kind (numba compilation and import costs excluded), then the problem is
built, the peer's input converted (timed separately as "setup"), the peak-RSS counter is reset
(``/proc/self/clear_refs``) and the solve is timed (best of ``--repeat`` runs when a run is short).

Solvers (all exact or to ``1e-8``; peers maximize reward ``R = -C``):

- ``wgflow``      ``wg.solve(mdp, wg.Discounted(gamma))``  (policy iteration, sparse LU)
- ``qe_pi``       QuantEcon ``DiscreteDP`` in sparse state-action form (``mdp.to_quantecon``),
                  ``solve(method="policy_iteration")``
- ``qe_mpi``      same, ``method="modified_policy_iteration", epsilon=1e-8`` (k = 20)
- ``mdptoolbox``  ``mdptoolbox.mdp.PolicyIteration`` with ``P`` a list of sparse ``(S, S)``
                  (``mdp.to_mdptoolbox(sparse=True)``), ``R = -C``; its policy evaluation builds
                  a dense ``S x S`` matrix and calls ``np.linalg.solve``, so it is skipped when the
                  estimated time or memory is over budget.

For each problem the script checks that the values agree (``max|V_wg + V_peer| / max|V_wg|``) and
that the greedy actions agree (disagreements are reported as ties when wgflow's own Q says both
actions are optimal to 1e-9), and reports one exact ``wg.evaluate`` of the optimal policy in units
of one sparse mat-vec ``P @ v`` (``P`` the ``(S*A, S)`` transition matrix).

Usage::

    python benchmarks/solve.py --quick                 # small sizes only (< 1 min)
    python benchmarks/solve.py --repeat 5 --threads 1 --json data/bench_solve.json
                                                       # the run in docs/benchmarks.md (~7 min, 2 cores)

``--threads 1`` makes every solver single-threaded (SuperLU is anyway), so CPU time equals what
the code takes on an idle core even when the machine is shared; the table reports wall and CPU
ratios.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

SOLVERS = ("wgflow", "qe_pi", "qe_mpi", "mdptoolbox")
LABELS = {"wgflow": "wgflow PI", "qe_pi": "QuantEcon PI", "qe_mpi": "QuantEcon MPI",
          "mdptoolbox": "pymdptoolbox PI"}
MPI_EPSILON = 1e-8

FULL_CASES = [
    {"problem": "pendulum", "n": 11, "na": 11, "gamma": 0.99},
    {"problem": "pendulum", "n": 21, "na": 15, "gamma": 0.99},
    {"problem": "pendulum", "n": 41, "na": 21, "gamma": 0.99},
    {"problem": "pendulum", "n": 71, "na": 31, "gamma": 0.99},
    {"problem": "pendulum", "n": 101, "na": 41, "gamma": 0.99},
    {"problem": "pendulum", "n": 150, "na": 51, "gamma": 0.99},
    {"problem": "garnet", "nS": 500, "nA": 10, "branching": 5, "gamma": 0.95},
    {"problem": "garnet", "nS": 2000, "nA": 20, "branching": 5, "gamma": 0.95},
]
QUICK_CASES = [
    {"problem": "pendulum", "n": 11, "na": 11, "gamma": 0.99},
    {"problem": "pendulum", "n": 21, "na": 15, "gamma": 0.99},
    {"problem": "garnet", "nS": 200, "nA": 5, "branching": 5, "gamma": 0.95},
]
TINY = {"pendulum": {"problem": "pendulum", "n": 7, "na": 5, "gamma": 0.99},
        "garnet": {"problem": "garnet", "nS": 20, "nA": 4, "branching": 3, "gamma": 0.95}}


def case_name(case: dict) -> str:
    if case["problem"] == "pendulum":
        return f"pendulum {case['n']}x{case['n']}x{case['na']}"
    return f"garnet {case['nS']}x{case['nA']} (b={case['branching']})"


def build(case: dict):
    import wgflow as wg
    if case["problem"] == "pendulum":
        return wg.problems.get("pendulum", n_theta=case["n"], n_omega=case["n"], n_actions=case["na"])
    return wg.problems.get("garnet", n_states=case["nS"], n_actions=case["nA"],
                           branching=case["branching"], seed=0)


def case_sizes(case: dict):
    if case["problem"] == "pendulum":
        return case["n"] ** 2, case["na"]
    return case["nS"], case["nA"]


# ----------------------------------------------------------------------------- memory helpers
def _proc_status() -> dict:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmHWM", "VmRSS")):
                k, v = line.split(":")
                out[k] = int(v.split()[0]) * 1024  # bytes
    return out


def reset_peak() -> bool:
    """Reset the process's peak-RSS counter (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------- solvers
def prepare(solver: str, mdp, gamma: float):
    """Convert the MDP to the solver's input (timed as setup); returns a zero-arg runner."""
    if solver == "wgflow":
        import wgflow as wg
        obj = wg.Discounted(gamma)

        def run():
            sol = wg.solve(mdp, obj, progress=False)
            d = sol.diagnostics
            info = {"iterations": sol.iterations, "linear_solver": d.get("linear_solver", {}),
                    "time_iterations": d.get("time_iterations"),
                    "time_final_evaluation": d.get("time_final_evaluation")}
            return sol.V, sol.policy.masses.argmax(axis=1), info, sol
        return run
    if solver in ("qe_pi", "qe_mpi"):
        ddp = mdp.to_quantecon(gamma)
        if not getattr(ddp, "_sparse", False):
            raise RuntimeError("QuantEcon DiscreteDP is not in sparse form")
        method = "policy_iteration" if solver == "qe_pi" else "modified_policy_iteration"
        kw = {} if solver == "qe_pi" else {"epsilon": MPI_EPSILON}

        def run():
            r = ddp.solve(method=method, **kw)
            return np.asarray(r.v), np.asarray(r.sigma), {"iterations": int(r.num_iter)}, r
        return run
    if solver == "mdptoolbox":
        import mdptoolbox.mdp
        P, R = mdp.to_mdptoolbox(sparse=True)

        def run():
            # the constructor (input checks, initial greedy policy) is timed as setup, not solve
            t, c = time.perf_counter(), time.process_time()
            pi = mdptoolbox.mdp.PolicyIteration(P, R, gamma, eval_type=0)
            t_init, c_init = time.perf_counter() - t, time.process_time() - c
            pi.run()
            return np.asarray(pi.V), np.asarray(pi.policy), {
                "iterations": int(pi.iter), "time_constructor": t_init, "cpu_constructor": c_init}, pi
        return run
    raise ValueError(solver)


def worker(spec: dict) -> dict:
    """One (case, solver) measurement; runs in its own process."""
    solver, case = spec["solver"], spec["case"]
    t0 = time.perf_counter()
    # warm-up on a tiny problem of the same kind: imports + numba compilation (or cache load)
    tiny = TINY[case["problem"]]
    prepare(solver, build(tiny), tiny["gamma"])()
    t_warm = time.perf_counter() - t0

    t = time.perf_counter()
    mdp = build(case)
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    run = prepare(solver, mdp, case["gamma"])
    t_setup = time.perf_counter() - t

    gc.collect()
    load0 = os.getloadavg()[0]
    can_reset = reset_peak()
    base = _proc_status()
    t, c = time.perf_counter(), time.process_time()
    V, pol, info, raw = run()
    times, cpus = [time.perf_counter() - t], [time.process_time() - c]
    excluded = [info.get("time_constructor", 0.0)]
    excluded_cpu = [info.get("cpu_constructor", 0.0)]
    peak = _proc_status()
    del raw
    # repeat: best of `repeat` runs (extra runs only while the total stays under ~30 s)
    while len(times) < spec["repeat"] and sum(times) + times[0] < 30.0:
        gc.collect()
        t, c = time.perf_counter(), time.process_time()
        out = run()
        times.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
        excluded.append(out[2].get("time_constructor", 0.0))
        excluded_cpu.append(out[2].get("cpu_constructor", 0.0))
        del out
    times = [t_ - e for t_, e in zip(times, excluded)]
    cpus = [c_ - e for c_, e in zip(cpus, excluded_cpu)]
    if any(excluded):
        t_setup += min(excluded)
    res = {"solver": solver, "case": case, "time": min(times), "times": times,
           "cpu_time": min(cpus), "cpu_times": cpus,
           "loadavg_1min": [load0, os.getloadavg()[0]],
           "time_build": t_build, "time_setup": t_setup, "time_warmup": t_warm,
           "rss_before": base["VmRSS"], "peak_rss": peak["VmHWM"],
           "peak_extra": peak["VmHWM"] - base["VmRSS"] if can_reset else None,
           "peak_reset_ok": can_reset, **info}
    import wgflow
    res["wgflow_sources_sha1"] = _sources_sha1(wgflow)
    arrays = {"V": V, "policy": pol}
    if solver == "wgflow":
        import wgflow as wg
        obj = wg.Discounted(case["gamma"])
        sol = wg.solve(mdp, obj, progress=False)
        arrays["Q"] = sol.Q
        ev_times = []
        for _ in range(3):
            t = time.perf_counter()
            wg.evaluate(mdp, sol.policy, obj)
            ev_times.append(time.perf_counter() - t)
        v = np.random.default_rng(0).random(mdp.n_states)
        P = mdp.P
        P @ v
        n_mv = 0
        t = time.perf_counter()
        while True:
            P @ v
            n_mv += 1
            el = time.perf_counter() - t
            if n_mv >= 10 and el > 0.2:
                break
        res.update({"time_evaluate": min(ev_times), "time_matvec": el / n_mv,
                    "evaluate_in_matvecs": min(ev_times) / (el / n_mv),
                    "nnz_P": int(P.nnz)})
    np.savez(spec["out"], **arrays)
    return res


def compile_times(threads: int | None = None) -> dict:
    """First-call minus warm-call time of a tiny solve with an empty numba cache (fresh process)."""
    code = r"""
import json, time, sys
sys.path.insert(0, %r)
from solve import TINY, build, prepare
out = {}
for solver in ("wgflow", "qe_pi"):
    mdp = build(TINY["pendulum"])
    t = time.perf_counter(); prepare(solver, mdp, 0.99)(); t1 = time.perf_counter() - t
    t = time.perf_counter(); prepare(solver, mdp, 0.99)(); t2 = time.perf_counter() - t
    out[solver] = {"first_call": t1, "warm_call": t2, "compile": t1 - t2}
print(json.dumps(out))
""" % os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as cache:
        env = dict(_worker_env(threads), NUMBA_CACHE_DIR=cache)
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                           timeout=600)
    if p.returncode != 0:
        return {"error": p.stderr[-2000:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- estimates
_FLOPS = None
_FLOPS_CODE = """
import time, numpy as np
n = 2000
rng = np.random.default_rng(0)
A = rng.random((n, n)) + n * np.eye(n)
b = rng.random(n)
np.linalg.solve(A, b)
best = np.inf
for _ in range(3):
    t = time.perf_counter()
    np.linalg.solve(A, b)
    best = min(best, time.perf_counter() - t)
print((2.0 / 3.0) * n ** 3 / best)
"""


def dense_flop_rate(threads: int | None = None) -> float:
    """Flop rate of np.linalg.solve (2/3 n^3 flops, n = 2000) in a worker-like process."""
    global _FLOPS
    if _FLOPS is None:
        p = subprocess.run([sys.executable, "-c", _FLOPS_CODE], capture_output=True, text=True,
                           env=_worker_env(threads), timeout=300)
        _FLOPS = float(p.stdout.strip().splitlines()[-1])
    return _FLOPS


def _worker_env(threads: int | None) -> dict:
    env = dict(os.environ)
    if threads:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            env[var] = str(threads)
    return env


def estimate_dense(nS: int, iterations: int, threads: int | None = None) -> tuple:
    """(seconds, bytes) for pymdptoolbox's dense policy evaluation: ~3 dense S x S arrays."""
    per_iter = (2.0 / 3.0) * nS ** 3 / dense_flop_rate(threads) + 3 * 8 * nS ** 2 / 2e9
    return iterations * per_iter, 3 * 8 * nS ** 2


# ----------------------------------------------------------------------------- comparison
def compare(wg_arr, peer_arr) -> dict:
    Vw, Vp = wg_arr["V"], peer_arr["V"]
    rel = float(np.max(np.abs(Vw + Vp)) / max(np.max(np.abs(Vw)), 1e-300))
    pw, pp = wg_arr["policy"].astype(int), peer_arr["policy"].astype(int)
    diff = np.nonzero(pw != pp)[0]
    Q = wg_arr["Q"]
    if diff.size:
        gap = Q[diff, pp[diff]] - Q[diff, pw[diff]]
        ties = int(np.sum(np.abs(gap) <= 1e-9 * (1.0 + np.abs(Q[diff, pw[diff]]))))
    else:
        ties = 0
    return {"value_rel_diff": rel, "policy_mismatch": int(diff.size), "policy_mismatch_ties": ties}


def policy_text(c: dict) -> str:
    if c["policy_mismatch"] == 0:
        return "same"
    if c["policy_mismatch_ties"] == c["policy_mismatch"]:
        return f"same up to {c['policy_mismatch']} ties"
    return f"DIFFER at {c['policy_mismatch'] - c['policy_mismatch_ties']} states"


# ----------------------------------------------------------------------------- driver
def run_worker_process(spec: dict, timeout: float, threads: int | None = None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           env=_worker_env(threads))
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "note": f"timeout after {timeout:.0f} s"}
    if p.returncode != 0:
        return {"status": "error", "note": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else
                f"exit code {p.returncode}", "stderr": p.stderr[-3000:]}
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["status"] = "ok"
    return res


def fmt_t(t):
    return f"{t:.3g}" if t < 100 else f"{t:.0f}"


def mib(b):
    return f"{b / 2**20:.0f}" if b is not None else "?"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes only (< 1 min)")
    ap.add_argument("--json", metavar="PATH", help="write raw results to PATH")
    ap.add_argument("--repeat", type=int, default=3, help="best of N timed runs for short solves")
    ap.add_argument("--max-seconds", type=float, default=120.0, help="skip a peer estimated slower")
    ap.add_argument("--max-gib", type=float, default=8.0, help="skip a peer estimated larger")
    ap.add_argument("--solvers", default=",".join(SOLVERS), help="comma-separated subset")
    ap.add_argument("--no-compile", action="store_true", help="skip the compile-time measurement")
    ap.add_argument("--threads", type=int, default=None,
                    help="BLAS/OpenMP/numba threads in the workers (default: library defaults)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    import quantecon
    import scipy
    import numba
    import wgflow
    solvers = [s for s in args.solvers.split(",") if s]
    if "wgflow" not in solvers:
        solvers.insert(0, "wgflow")
    cases = QUICK_CASES if args.quick else FULL_CASES
    meta = {"date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "command": "python benchmarks/solve.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "python": platform.python_version(), "machine": platform.machine(),
            "cpu": _cpu_name(), "cores": os.cpu_count(), "numpy": np.__version__,
            "scipy": scipy.__version__, "numba": numba.__version__,
            "quantecon": quantecon.__version__, "pymdptoolbox": _version("pymdptoolbox"),
            "wgflow": wgflow.__version__, "mpi_epsilon": MPI_EPSILON,
            "max_seconds": args.max_seconds, "max_gib": args.max_gib, "threads": args.threads,
            "loadavg_start": os.getloadavg(), "wgflow_sources_sha1": _sources_sha1(wgflow)}
    print(f"# exact-solve benchmark  {meta['date_utc']} UTC  {meta['cpu']} x{meta['cores']}  "
          f"python {meta['python']} numpy {meta['numpy']} scipy {meta['scipy']} numba {meta['numba']} "
          f"quantecon {meta['quantecon']} pymdptoolbox {meta['pymdptoolbox']} wgflow {meta['wgflow']}")
    load = os.getloadavg()[0]
    if load > 0.75 * (os.cpu_count() or 1):
        print(f"# WARNING: the machine is busy (1-min load {load:.1f} on {os.cpu_count()} cores): "
              "timings are inflated; compare the cpu columns")
    T0 = time.perf_counter()
    comp = {}
    if not args.no_compile:
        comp = compile_times(args.threads)
        if "error" in comp:
            print("compile-time measurement failed:", comp["error"][-300:])
        else:
            print(f"# one-off compile (empty numba cache, tiny pendulum): wgflow "
                  f"{comp['wgflow']['compile']:.2f} s, QuantEcon {comp['qe_pi']['compile']:.2f} s "
                  "(excluded below: every process warms up first)")
    tmp = tempfile.mkdtemp(prefix="wgbench_")
    results = []
    last = {}   # solver -> (pairs, time) of the last successful run, to extrapolate
    for case in cases:
        nS, nA = case_sizes(case)
        pairs = nS * nA
        name = case_name(case)
        print(f"\n## {name}: S = {nS}, A = {nA}, S*A = {pairs}, gamma = {case['gamma']}", flush=True)
        rows = {}
        for solver in solvers:
            spec = {"solver": solver, "case": case, "repeat": args.repeat,
                    "out": os.path.join(tmp, f"{len(results)}_{solver}.npz")}
            skip = None
            if solver == "mdptoolbox":
                iters = rows.get("wgflow", {}).get("iterations") or 10
                est_t, est_b = estimate_dense(nS, iters + 2, args.threads)
                if est_t > args.max_seconds or est_b > args.max_gib * 2**30:
                    skip = (f"skipped (dense {nS} x {nS}: est. {est_t:.0f} s, "
                            f"{est_b / 2**30:.1f} GiB)")
            if skip is None and solver in last:
                p0, t0_ = last[solver]
                est = t0_ * (pairs / p0) ** 1.5
                if est > args.max_seconds:
                    skip = f"skipped (extrapolated {est:.0f} s)"
            if skip is not None:
                res = {"status": "skipped", "note": skip}
            else:
                res = run_worker_process(spec, timeout=3 * args.max_seconds + 120, threads=args.threads)
            res.update({"solver": solver, "case": case, "name": name, "S": nS, "A": nA, "pairs": pairs})
            if res["status"] == "ok":
                last[solver] = (pairs, res["time"])
                res["_arrays"] = dict(np.load(spec["out"]))
                os.remove(spec["out"])
            rows[solver] = res
            results.append(res)
            _print_row(res, rows.get("wgflow"))
        wgr = rows.get("wgflow")
        if wgr and wgr["status"] == "ok":
            for s, r in rows.items():
                if s != "wgflow" and r["status"] == "ok":
                    r["agreement"] = compare(wgr["_arrays"], r["_arrays"])
                    r["ratio"] = r["time"] / wgr["time"]
                    r["cpu_ratio"] = r["cpu_time"] / wgr["cpu_time"]
            print(f"   agreement with wgflow: " + "; ".join(
                f"{LABELS[s]} rel|dV| {r['agreement']['value_rel_diff']:.1e}, policy "
                f"{policy_text(r['agreement'])}" for s, r in rows.items() if "agreement" in r))
            print(f"   one wg.evaluate = {wgr['time_evaluate'] * 1e3:.3g} ms = "
                  f"{wgr['evaluate_in_matvecs']:.1f} x (P @ v = {wgr['time_matvec'] * 1e3:.3g} ms, "
                  f"nnz(P) = {wgr['nnz_P']})", flush=True)
        for r in rows.values():
            r.pop("_arrays", None)
    total = time.perf_counter() - T0
    shas = {json.dumps(r.get("wgflow_sources_sha1"), sort_keys=True) for r in results if r.get("status") == "ok"}
    if len(shas) > 1:
        print("# WARNING: the wgflow sources changed during the run (see wgflow_sources_sha1 per result)")
    meta["sources_changed_during_run"] = len(shas) > 1
    meta["dense_flop_rate_for_estimates"] = _FLOPS
    print("\n" + summary_table(results, solvers))
    print(f"\ntotal wall time {total:.0f} s")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "compile": comp, "results": results, "wall_time": total}, f,
                      indent=1, default=_json_default)
        print(f"raw results written to {args.json}")


def _print_row(r, wgr):
    label = LABELS[r["solver"]]
    if r["status"] != "ok":
        print(f"   {label:16s} {r['note']}", flush=True)
        return
    ratio = "" if r["solver"] == "wgflow" or not wgr or wgr.get("status") != "ok" else \
        f"  peer/wg {r['time'] / wgr['time']:6.2f}"
    extra = ""
    if r["solver"] == "wgflow":
        ls = r.get("linear_solver", {})
        extra = (f"  [LU {ls.get('factorizations')}, krylov ok {ls.get('krylov_solves')}, "
                 f"final eval {r.get('time_final_evaluation', 0):.3g} s]")
    print(f"   {label:16s} {r['time']:9.4f} s (cpu {r['cpu_time']:.4f} s, {len(r['times'])} runs){ratio}"
          f"  iters {r['iterations']:3d}  peak +{mib(r['peak_extra'])} MiB (process "
          f"{mib(r['peak_rss'])} MiB)  setup {r['time_setup']:.3g} s  load {r['loadavg_1min'][0]:.1f}"
          f"{extra}", flush=True)


def summary_table(results, solvers) -> str:
    by = {}
    for r in results:
        by.setdefault(r["name"], {})[r["solver"]] = r
    head = ["problem", "S*A", "wgflow [s]"] + [f"{LABELS[s]} [s] (x wall / x cpu)" for s in solvers
                                               if s != "wgflow"] + \
        ["wg peak MiB", "eval/matvec", "max rel|dV|", "policies"]
    lines = []
    for name, rows in by.items():
        w = rows["wgflow"]
        cells = [name, str(w["pairs"]), fmt_t(w["time"]) if w["status"] == "ok" else w["note"]]
        rels, pols = [], []
        for s in solvers:
            if s == "wgflow":
                continue
            r = rows.get(s)
            if r is None:
                cells.append("-")
            elif r["status"] != "ok":
                cells.append(r["note"].replace("skipped ", "skip "))
            else:
                cells.append(f"{fmt_t(r['time'])} ({r.get('ratio', float('nan')):.2f} / "
                             f"{r.get('cpu_ratio', float('nan')):.2f})")
                if "agreement" in r:
                    rels.append(r["agreement"]["value_rel_diff"])
                    pols.append(r["agreement"]["policy_mismatch"] - r["agreement"]["policy_mismatch_ties"])
        cells += [mib(w.get("peak_extra")) if w["status"] == "ok" else "-",
                  f"{w['evaluate_in_matvecs']:.0f}" if w["status"] == "ok" else "-",
                  f"{max(rels):.0e}" if rels else "-",
                  ("same" if not any(pols) else f"differ ({max(pols)})") if pols else "-"]
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |" for cells in lines]
    return "\n".join(out)


def _sources_sha1(pkg) -> dict:
    """SHA-1 of the wgflow files the exact solver depends on (to tie numbers to code)."""
    import hashlib
    root = os.path.dirname(pkg.__file__)
    out = {}
    for rel in ("evaluation.py", "linalg.py", "mdp.py", os.path.join("kernels", "assembly.py")):
        try:
            with open(os.path.join(root, rel), "rb") as f:
                out[rel] = hashlib.sha1(f.read()).hexdigest()[:12]
        except OSError:
            pass
    return out


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version
        return version(dist)
    except Exception:
        return "?"


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


if __name__ == "__main__":
    main()
