#!/usr/bin/env python
"""Exact-solver benchmark: ``wg.solve`` against QuantEcon, pymdptoolbox and the machine's mat-vec.

Each case runs in its own subprocess (so the peak-memory counters of different cases never mix).
In it, every solver runs once on a tiny problem of the same kind (imports, numba compilation),
the problem is built and each peer's input converted (not timed), then:

1. **accuracy** -- the reference is wgflow's exact policy iteration (``method="policy_iteration"``,
   exact to rounding, itself checked against QuantEcon PI). QuantEcon's MPI and VI are run with the
   *largest* ``epsilon`` of 1e-4, 1e-5, ..., 1e-12 (MPI) or ``2e-10 max|V|`` (VI) whose value
   function is within ``1e-10 max|V|`` of the reference (the goal's "equal accuracy"); every
   solver's relative error ``max|V - V_ref| / max|V_ref|`` is reported.
2. **peak memory** -- one run of each solver with the kernel's peak-RSS counter reset
   (``/proc/self/clear_refs``): high-water RSS minus RSS before, in MiB.
3. **time** -- ``--rounds`` rounds in which every solver runs once in turn (interleaved); the best
   CPU and wall seconds of each are kept. Ratios are ``peer / wgflow`` (above 1: wgflow faster) in
   CPU seconds (the machine is shared; CPU time is what an idle core would take).

Cases (``--quick``: the small ones):

- ``pendulum NxNxA``: Pendulum-v1 physics, deterministic, ``Discounted(0.99)``; peers QuantEcon
  ``DiscreteDP`` in sparse state-action form (PI, MPI, VI), pymdptoolbox PI (dense evaluation,
  small sizes only), wgflow's exact option, and one sparse mat-vec ``P @ v``.
- ``garnet SxA``: random MDP, 5 successors per pair, ``Discounted(0.95)``.
- ``soft pendulum``: ``Discounted(0.99, entropy=0.1)`` against the hard solve of the same MDP
  (goal: soft at most 2x hard; ratio = hard / soft, goal >= 0.5), and against wgflow's soft
  policy iteration (exact evaluations); on 101^2 and 150^2 also entropies 1e-3 (Gibbs tails
  underflow) and 1, against the hard solve only.
- ``average mountain car``: ``Average()`` on ``mountain_car(goal="reset")`` against
  ``Discounted(0.99)`` on the same MDP (goal: ratio = discounted / average >= 0.5).

Usage::

    python benchmarks/solve.py --quick            # < 2 min
    python benchmarks/solve.py                    # the run in docs/benchmarks.md
    python benchmarks/solve.py --only "pendulum 101"

``run(quick)`` returns the rows (the convention of ``benchmarks/run.py``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _measure import interleaved, loadavg, peak_mib  # noqa: E402

ACC = 1e-10          # the accuracy every solver is held to: max|V - V*| <= ACC max|V*|
HERE = "benchmarks/solve.py"

QUICK = [
    {"kind": "hard", "problem": "pendulum", "n": 25, "na": 21, "gamma": 0.99},
    {"kind": "hard", "problem": "pendulum", "n": 41, "na": 21, "gamma": 0.99},
    {"kind": "hard", "problem": "garnet", "nS": 500, "nA": 10, "gamma": 0.95},
    {"kind": "soft", "problem": "pendulum", "n": 41, "na": 21, "gamma": 0.99, "tau": 0.1},
    {"kind": "average", "problem": "mountain_car", "n": 41, "na": 21},
]
FULL = [
    {"kind": "hard", "problem": "pendulum", "n": 25, "na": 21, "gamma": 0.99},
    {"kind": "hard", "problem": "pendulum", "n": 41, "na": 21, "gamma": 0.99},
    {"kind": "hard", "problem": "pendulum", "n": 71, "na": 31, "gamma": 0.99},
    {"kind": "hard", "problem": "pendulum", "n": 101, "na": 41, "gamma": 0.99},
    {"kind": "hard", "problem": "pendulum", "n": 150, "na": 51, "gamma": 0.99},
    {"kind": "hard", "problem": "pendulum", "n": 200, "na": 51, "gamma": 0.99},
    {"kind": "hard", "problem": "garnet", "nS": 500, "nA": 10, "gamma": 0.95},
    {"kind": "hard", "problem": "garnet", "nS": 2000, "nA": 20, "gamma": 0.95},
    {"kind": "soft", "problem": "pendulum", "n": 25, "na": 21, "gamma": 0.99, "tau": 0.1},
    {"kind": "soft", "problem": "pendulum", "n": 41, "na": 21, "gamma": 0.99, "tau": 0.1},
    {"kind": "soft", "problem": "pendulum", "n": 71, "na": 31, "gamma": 0.99, "tau": 0.1},
    {"kind": "soft", "problem": "pendulum", "n": 101, "na": 41, "gamma": 0.99, "tau": 0.1},
    {"kind": "soft", "problem": "pendulum", "n": 150, "na": 51, "gamma": 0.99, "tau": 0.1,
     "exact_peer": False},
    # small entropies (Gibbs tails underflow) and large ones on the large grids
    {"kind": "soft", "problem": "pendulum", "n": 101, "na": 41, "gamma": 0.99, "tau": 0.001,
     "exact_peer": False},
    {"kind": "soft", "problem": "pendulum", "n": 101, "na": 41, "gamma": 0.99, "tau": 1.0,
     "exact_peer": False},
    {"kind": "soft", "problem": "pendulum", "n": 150, "na": 51, "gamma": 0.99, "tau": 0.001,
     "exact_peer": False},
    {"kind": "soft", "problem": "pendulum", "n": 150, "na": 51, "gamma": 0.99, "tau": 1.0,
     "exact_peer": False},
    {"kind": "average", "problem": "mountain_car", "n": 121, "na": 21},
]


def case_name(case: dict) -> str:
    p = case["problem"]
    if p == "pendulum":
        base = f"pendulum {case['n']}x{case['n']}x{case['na']}"
    elif p == "garnet":
        base = f"garnet {case['nS']}x{case['nA']}"
    else:
        base = f"mountain car {case['n']}x{case['n']}x{case['na']} (reset)"
    if case["kind"] == "soft":
        return f"{base}, entropy {case['tau']}"
    if case["kind"] == "average":
        return f"{base}, average cost"
    return base


def build(case: dict):
    import wgflow as wg
    p = case["problem"]
    if p == "pendulum":
        return wg.problems.get("pendulum", n_theta=case["n"], n_omega=case["n"], n_actions=case["na"])
    if p == "garnet":
        return wg.problems.get("garnet", n_states=case["nS"], n_actions=case["nA"], branching=5, seed=0)
    return wg.problems.get("mountain_car", n_position=case["n"], n_velocity=case["n"],
                           n_actions=case["na"], goal="reset")


def _rel(V, ref):
    return float(np.max(np.abs(V - ref)) / max(np.max(np.abs(ref)), 1e-300))


# ------------------------------------------------------------------------------ workers
def _warm_up(case):
    import wgflow as wg
    tiny = dict(case, n=7, na=5, nS=20, nA=4)
    mdp = build(tiny)
    objs = {"hard": [wg.Discounted(0.99)], "soft": [wg.Discounted(0.99), wg.Discounted(0.99, entropy=0.1)],
            "average": [wg.Discounted(0.99), wg.Average()]}[case["kind"]]
    for obj in objs:
        wg.solve(mdp, obj, progress=False)
        wg.solve(mdp, obj, method="policy_iteration", progress=False)
    if case["kind"] == "hard":
        ddp = mdp.to_quantecon(0.99)
        ddp.solve(method="policy_iteration")
        ddp.solve(method="modified_policy_iteration", epsilon=1e-8)


def _hard(case, rounds):
    import wgflow as wg
    mdp = build(case)
    g = case["gamma"]
    obj = wg.Discounted(g)
    nS, nA = mdp.n_states, mdp.n_actions
    pairs = nS * nA
    ref = wg.solve(mdp, obj, method="policy_iteration", progress=False).V
    scale = np.max(np.abs(ref))
    fns, acc, notes = {}, {}, {}
    fns["wgflow"] = lambda: wg.solve(mdp, obj, progress=False).V
    fns["wgflow exact PI"] = lambda: wg.solve(mdp, obj, method="policy_iteration", progress=False).V
    ddp = mdp.to_quantecon(g)
    fns["QuantEcon PI"] = lambda: -np.asarray(ddp.solve(method="policy_iteration").v)
    # MPI: the largest epsilon meeting the accuracy (its returned v is a midpoint estimate)
    for e in [10.0 ** -k for k in range(4, 13)]:
        v = -np.asarray(ddp.solve(method="modified_policy_iteration", epsilon=e).v)
        if _rel(v, ref) <= ACC:
            fns["QuantEcon MPI"] = (lambda e=e: -np.asarray(
                ddp.solve(method="modified_policy_iteration", epsilon=e).v))
            notes["QuantEcon MPI"] = f"epsilon={e:.0e}"
            break
    if pairs <= 200_000:
        # VI: the largest epsilon (from 2 ACC max|V| down by tens) meeting the accuracy
        for k in range(5):
            e_vi = 2 * ACC * scale * 10.0 ** -k
            v = -np.asarray(ddp.solve(method="value_iteration", epsilon=e_vi).v)
            if _rel(v, ref) <= ACC:
                fns["QuantEcon VI"] = (lambda e_vi=e_vi: -np.asarray(
                    ddp.solve(method="value_iteration", epsilon=e_vi).v))
                notes["QuantEcon VI"] = f"epsilon={e_vi:.1e}"
                break
    if nS <= 1000:
        import mdptoolbox.mdp
        Pm, Rm = mdp.to_mdptoolbox(sparse=True)

        def tb():
            pi = mdptoolbox.mdp.PolicyIteration(Pm, Rm, g, eval_type=0)
            pi.run()
            return -np.asarray(pi.V)
        fns["pymdptoolbox PI"] = tb
    peaks = {}
    for k, fn in fns.items():
        V, peaks[k] = peak_mib(fn)
        acc[k] = _rel(V, ref)
    v = np.random.default_rng(0).random(nS)
    P = mdp.P
    fns["sparse mat-vec P @ v"] = lambda: P @ v
    t = interleaved(fns, rounds)
    # the mat-vec is short: time it on its own, best of many
    mv = interleaved({"mv": lambda: P @ v}, 50)["mv"]
    t["sparse mat-vec P @ v"] = mv
    peaks["sparse mat-vec P @ v"] = None
    return {"pairs": pairs, "times": t, "acc": acc, "peaks": peaks, "notes": notes, "nnz": int(P.nnz)}


def _soft(case, rounds):
    import wgflow as wg
    mdp = build(case)
    hard, soft = wg.Discounted(case["gamma"]), wg.Discounted(case["gamma"], entropy=case["tau"])
    fns = {"wgflow": lambda: wg.solve(mdp, soft, progress=False).V,
           "wgflow hard solve, same MDP": lambda: wg.solve(mdp, hard, progress=False).V}
    if case.get("exact_peer", True):
        # soft PI: exact evaluations, stops when the Gibbs policy changes by <= 1e-10 (its value
        # is then exact to second order in that change): the accuracy reference
        fns["wgflow soft PI (exact evaluations)"] = (
            lambda: wg.solve(mdp, soft, method="soft_policy_iteration", progress=False).V)
        ref = fns["wgflow soft PI (exact evaluations)"]()
    else:
        ref = None
    acc, peaks = {}, {}
    for k, fn in fns.items():
        V, peaks[k] = peak_mib(fn)
        if "hard" not in k and ref is not None:
            acc[k] = _rel(V, ref)
    t = interleaved(fns, rounds)
    return {"pairs": mdp.n_states * mdp.n_actions, "times": t, "acc": acc, "peaks": peaks, "notes": {},
            "nnz": int(mdp.P.nnz)}


def _average(case, rounds):
    import wgflow as wg
    mdp = build(case)
    fns = {"wgflow": lambda: wg.solve(mdp, wg.Average(), progress=False).V,
           "wgflow discounted 0.99, same MDP": lambda: wg.solve(mdp, wg.Discounted(0.99), progress=False).V}
    peaks = {}
    for k, fn in fns.items():
        _, peaks[k] = peak_mib(fn)
    t = interleaved(fns, rounds)
    return {"pairs": mdp.n_states * mdp.n_actions, "times": t, "acc": {}, "peaks": peaks, "notes": {},
            "nnz": int(mdp.P.nnz)}


def worker(case: dict, rounds: int) -> dict:
    _warm_up(case)
    load0 = loadavg()
    fn = {"hard": _hard, "soft": _soft, "average": _average}[case["kind"]]
    out = fn(case, rounds)
    out["loadavg"] = [load0, loadavg()]
    return out


# ------------------------------------------------------------------------------ rows
WHAT = {"hard": "discounted solve to relative sup-norm error 1e-10",
        "soft": "entropy-regularized solve vs hard (goal: ratio >= 0.5)",
        "average": "average-cost solve vs discounted (goal: ratio >= 0.5)"}


def rows_for(case: dict, res: dict, command: str) -> list:
    t = res["times"]
    w = t["wgflow"]
    out = []
    for peer, tp in t.items():
        if peer == "wgflow":
            continue
        row = {"benchmark": "solve", "case": case_name(case), "what": WHAT[case["kind"]],
               "wgflow_s": w["cpu"], "peer": peer, "peer_s": tp["cpu"], "ratio": tp["cpu"] / w["cpu"],
               "wall_ratio": tp["wall"] / w["wall"], "wgflow_wall_s": w["wall"], "peer_wall_s": tp["wall"],
               "peak_mib": res["peaks"].get("wgflow"), "peer_peak_mib": res["peaks"].get(peer),
               "pairs": res["pairs"], "nnz": res["nnz"],
               "wgflow_rel_err": res["acc"].get("wgflow"), "peer_rel_err": res["acc"].get(peer),
               "note": res["notes"].get(peer, ""), "loadavg": res["loadavg"], "command": command}
        out.append(row)
    return out


def run(quick: bool = False, rounds: int | None = None, only: str | None = None,
        verbose: bool = True) -> list:
    """Run the cases (each in a subprocess) and return the table rows."""
    cases = QUICK if quick else FULL
    rounds = rounds or 3
    rows = []
    for case in cases:
        name = case_name(case)
        if only and only not in name:
            continue
        command = f'python {HERE} --only "{name}" --rounds {rounds}'
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(case),
               "--rounds", str(rounds)]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            msg = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
            rows.append({"benchmark": "solve", "case": name, "what": WHAT[case["kind"]],
                         "wgflow_s": None, "peer": "-", "peer_s": None, "ratio": None,
                         "peak_mib": None, "command": command, "error": msg})
            if verbose:
                print(f"{name}: FAILED {msg}", flush=True)
            continue
        res = json.loads(p.stdout.strip().splitlines()[-1])
        new = rows_for(case, res, command)
        rows += new
        if verbose:
            print(f"{name} ({time.perf_counter() - t0:.0f} s, load {res['loadavg'][0]:.1f}): wgflow "
                  f"{res['times']['wgflow']['cpu']:.4g} s cpu; " + "; ".join(
                      f"{r['peer']} {r['peer_s']:.4g} s (x{r['ratio']:.2f})" for r in new), flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (best of N)")
    ap.add_argument("--only", help="run the cases whose name contains this text")
    ap.add_argument("--json", help="write the rows to this file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker), args.rounds or 3),
                         default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
        return
    rows = run(args.quick, args.rounds, args.only)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    from run import markdown_table
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
