"""Run `wgflow verify` on every built-in problem at small size x objective x entropy; print the matrix.

Usage: python scripts/verify_matrix.py [--markdown] [--json FILE] [--problems a,b] [--timeout S]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
import traceback

SMALL = {
    "lqr1d": {"n_states": 15, "n_actions": 11},
    "lqr2d": {"n_states": [5, 5], "n_actions": [3, 3]},
    "pendulum": {"n_theta": 11, "n_omega": 11, "n_actions": 9},
    "mountain_car": {"n_position": 15, "n_velocity": 15, "n_actions": 9},
    "mountain_car(reset)": {"n_position": 15, "n_velocity": 15, "n_actions": 9, "goal": "reset"},
    "double_integrator": {"n_states": [11, 11], "n_actions": 9},
    "garnet": {"n_states": 8, "n_actions": 6},
    "quadratic_bandit": {"n_actions": 41},
}
SETTINGS = [("D0.9", "discounted", 0.9), ("D0.99", "discounted", 0.99), ("Avg", "average", None)]
ENTROPIES = [0.5, 0.05, 0.0]


def _one(problem, params, kind, gamma, tau, q):
    import wgflow as wg
    from wgflow import verify
    name = problem.split("(")[0]
    t0 = time.perf_counter()
    try:
        mdp = wg.problems.get(name, **params)
        obj = wg.Average(entropy=tau) if kind == "average" else wg.Discounted(gamma, entropy=tau)
        rep = verify.run(mdp, obj, progress=False)
        rows = [(r.check, r.status, r.error, r.note[:200]) for r in rep.rows]
        q.put({"ok": True, "passed": rep.passed, "rows": rows, "time": time.perf_counter() - t0})
    except Exception as exc:  # noqa: BLE001
        q.put({"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300], "time": time.perf_counter() - t0,
               "tb": traceback.format_exc()[-800:]})


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", default=None)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    probs = list(SMALL) if args.problems is None else args.problems.split(",")
    out = []
    for p in probs:
        for label, kind, gamma in SETTINGS:
            for tau in ENTROPIES:
                q = mp.Queue()
                proc = mp.Process(target=_one, args=(p, SMALL[p], kind, gamma, tau, q))
                proc.start()
                proc.join(args.timeout)
                if proc.is_alive():
                    proc.terminate()
                    res = {"ok": False, "error": "timeout", "time": args.timeout}
                else:
                    res = q.get() if not q.empty() else {"ok": False, "error": "crashed", "time": float("nan")}
                res.update(problem=p, setting=label, entropy=tau)
                out.append(res)
                if res["ok"]:
                    fails = [r[0] for r in res["rows"] if r[1] == "fail"]
                    skips = [r[0] for r in res["rows"] if r[1] == "skip"]
                    rate = [r for r in res["rows"] if r[0] == "rate"]
                    print(f"{p:20s} {label:6s} tau={tau:<5} {'PASS' if res['passed'] else 'FAIL'} "
                          f"{res['time']:6.1f}s fail={fails} skip={skips} "
                          f"rate={rate[0][1] if rate else '-'}", flush=True)
                else:
                    print(f"{p:20s} {label:6s} tau={tau:<5} ERROR {res['time']:6.1f}s {res['error']}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
