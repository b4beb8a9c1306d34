"""The ergodic formulation: a neural policy trained on the average cost, judged by its exact gain.

    python scripts/nn_ergodic.py --algo wpo --seed 0 --steps 20000

Trains on one long trajectory of the noisy pendulum's continuous model (noise 0.1 per state
axis, never reset), with relative values and the gain estimated along the trajectory
(``objective="average"``), then evaluates the learned deterministic and stochastic policies
exactly on the 51 x 51 x 21 grid problem with :class:`wgflow.Average` and compares the gains with
the exact optimal gain from ``wg.solve``. Appends a record to ``data/nn_ergodic.json``.
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
PARAMS = dict(n_theta=51, n_omega=51, n_actions=21, noise=0.1)
SETTINGS = dict(hidden=(128, 128), critic_hidden=(128, 128), batch_size=256, learning_starts=1000,
                eval_every=2000, checkpoint_every=5000, objective="average")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", default="wpo", choices=["wpo", "wppg", "wppg-implicit", "reparam"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs")
    p.add_argument("--record", default=str(ROOT / "data" / "nn_ergodic.json"))
    args = p.parse_args(argv)
    import torch
    import wgflow as wg
    import wgflow.nn as wnn
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"pendulum_noise0.1_average_{args.algo}_s{args.seed}"
    w0, c0 = time.perf_counter(), time.process_time()
    res = wnn.train("pendulum", algo=args.algo, steps=args.steps, seed=args.seed, output=out / f"{tag}.h5",
                    params=PARAMS, resume=True, threads=args.threads, progress=None, **SETTINGS)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    print(res.summary())
    mdp = wg.problems.get("pendulum", **PARAMS)
    uniform_gain = wg.evaluate(mdp, wg.Policy.uniform(mdp), wg.Average()).J
    rec = {"algo": args.algo, "seed": args.seed, "steps": args.steps, "problem": "pendulum", "params": PARAMS,
           "objective": "average", "gain_exact_deterministic": res.J_exact,
           "gain_exact_stochastic": res.J_exact_stochastic, "gain_star": res.J_star,
           "gain_uniform_policy": uniform_gain,
           "gain_estimate_from_trajectory": res.diagnostics.get("gain_estimate"),
           "train_wall_s": res.diagnostics["train_wall"], "train_cpu_s": res.diagnostics["train_cpu"],
           "total_wall_s": wall, "total_cpu_s": cpu, "torch_threads": torch.get_num_threads(),
           "torch": torch.__version__, "python": platform.python_version(),
           "options": {k: list(v) if isinstance(v, tuple) else v for k, v in SETTINGS.items()},
           "curve": {k: np.asarray(v).tolist() for k, v in res.curve.items()},
           "command": "python scripts/nn_ergodic.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    rp = Path(args.record)
    data = json.loads(rp.read_text()) if rp.exists() else {}
    data[tag] = rec
    rp.parent.mkdir(parents=True, exist_ok=True)
    rp.write_text(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
