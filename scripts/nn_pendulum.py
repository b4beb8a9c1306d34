"""Train one algorithm on the pendulum and record exact J and Pendulum-v1 returns.

    python scripts/nn_pendulum.py --algo wpo --seed 0 --steps 20000 --out runs/

Trains on the continuous model of the wgflow ``pendulum`` problem (gymnasium's Pendulum-v1
physics; uniform initial states on the box, 200-step episodes), evaluates the learned
deterministic policy exactly on the 101 x 101 x 41 grid problem at gamma 0.99 (J* from
``wg.solve``) and over 50 Pendulum-v1 episodes (seeds 0..49), and appends a record with wall
and CPU time to ``data/nn_pendulum.json`` (keyed by algorithm and seed).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GRID = dict(n_theta=101, n_omega=101, n_actions=41)
#: hyperparameters used for the recorded runs (the rest are TrainConfig's defaults)
SETTINGS = dict(hidden=(128, 128), critic_hidden=(128, 128), batch_size=256, learning_starts=1000,
                eval_every=2000, eval_episodes=10, final_episodes=50, checkpoint_every=5000)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", required=True, choices=["wpo", "wppg", "wppg-implicit", "reparam"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--env", default="pendulum", help="'pendulum' (the model) or 'Pendulum-v1'")
    p.add_argument("--out", default="runs", help="folder of the results files")
    p.add_argument("--record", default=str(ROOT / "data" / "nn_pendulum.json"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a TrainConfig field (repeatable)")
    args = p.parse_args(argv)
    import ast
    import torch
    import wgflow.nn as wnn
    opts = dict(SETTINGS)
    for kv in args.set:
        k, v = kv.split("=", 1)
        try:
            opts[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            opts[k] = v
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"{args.env}_{args.algo}_s{args.seed}"
    path = out / f"{tag}.h5"
    w0, c0 = time.perf_counter(), time.process_time()
    res = wnn.train(args.env, algo=args.algo, steps=args.steps, seed=args.seed, output=path, params=GRID,
                    resume=True, threads=args.threads, progress=None, **opts)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    print(res.summary())
    rec = {"algo": args.algo, "seed": args.seed, "steps": args.steps, "env": args.env, "grid": GRID,
           "gamma": res.config.gamma, "options": {k: list(v) if isinstance(v, tuple) else v for k, v in opts.items()},
           "J_exact": res.J_exact, "J_exact_stochastic": res.J_exact_stochastic, "J_star": res.J_star,
           "gap_percent": 100 * (res.J_exact - res.J_star) / res.J_star,
           "return_mean": res.final_return_mean, "return_std": res.final_return_std,
           "episodes": res.config.final_episodes,
           "train_wall_s": res.diagnostics["train_wall"], "train_cpu_s": res.diagnostics["train_cpu"],
           "eval_wall_s": res.diagnostics["eval_wall"], "eval_cpu_s": res.diagnostics["eval_cpu"],
           "total_wall_s": wall, "total_cpu_s": cpu, "torch_threads": torch.get_num_threads(),
           "torch": torch.__version__, "python": platform.python_version(),
           "curve": {k: np.asarray(v).tolist() for k, v in res.curve.items()},
           "command": "python scripts/nn_pendulum.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    rp = Path(args.record)
    data = json.loads(rp.read_text()) if rp.exists() else {}
    data[tag] = rec
    rp.parent.mkdir(parents=True, exist_ok=True)
    rp.write_text(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
