"""The ergodic formulation: a neural policy trained on the average cost, judged by its exact gain.

    python scripts/nn_ergodic.py --algo wpo --seed 0 --steps 20000
    python scripts/nn_ergodic.py --algo wpo --steps 20000 --set exploration_std=0.3 --set n_envs=8
    python scripts/nn_ergodic.py --problem lqr2d --algo wpo --steps 6000

Trains on long trajectories of a problem's continuous model, never reset (default: the noisy
pendulum, noise 0.1 per state axis), with relative values and the gain estimated along the
trajectories (``objective="average"``). Then evaluates the learned deterministic and stochastic
policies exactly on the grid problem (default 51 x 51 x 21) with :class:`wgflow.Average` and
compares the gains with the exact optimal gain from ``wg.solve`` and the uniform policy's gain.
Adds (or replaces) a record in ``data/nn_ergodic.json``.

``--set KEY=VALUE`` overrides any :class:`wgflow.nn.TrainConfig` field (values are Python
literals); ``--param KEY=VALUE`` any problem parameter. ``--time-limit S`` stops at the first
multiple of ``eval_every`` reached after ``S`` seconds of wall time and records the steps done:
the record is then the same as a run with ``--steps`` equal to those steps.
"""
from __future__ import annotations

import argparse
import ast
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PROBLEM_PARAMS = {"pendulum": dict(n_theta=51, n_omega=51, n_actions=21, noise=0.1)}
SETTINGS = dict(hidden=(128, 128), critic_hidden=(128, 128), batch_size=256, learning_starts=1000,
                eval_every=2000, checkpoint_every=5000, objective="average")


def _pairs(items, what):
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"{what} takes KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k.strip()] = v
    return out


def _tag(problem, params, algo, seed, overrides):
    base = f"{problem}_noise{params['noise']}" if "noise" in params else problem
    extra = "".join(f"_{k}{v}".replace(" ", "").replace("(", "").replace(")", "").replace(",", "-")
                    for k, v in sorted(overrides.items()))
    return f"{base}_average_{algo}{extra}_s{seed}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--problem", default="pendulum")
    p.add_argument("--algo", default="wpo", choices=["wpo", "wppg", "wppg-implicit", "reparam"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, auto)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--time-limit", type=float, default=0.0)
    p.add_argument("--tag", default=None)
    p.add_argument("--out", default="runs")
    p.add_argument("--record", default=str(ROOT / "data" / "nn_ergodic.json"))
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    import torch
    import wgflow as wg
    from wgflow.nn.results import save_result
    from wgflow.nn.trainer import TrainConfig, Trainer
    overrides = _pairs(args.set, "--set")
    params = dict(PROBLEM_PARAMS.get(args.problem, {}))
    params.update(_pairs(args.param, "--param"))
    settings = dict(SETTINGS)
    settings.update(overrides)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = args.tag or _tag(args.problem, params, args.algo, args.seed, overrides)
    w0, c0 = time.perf_counter(), time.process_time()
    cfg = TrainConfig(algo=args.algo, steps=args.steps, seed=args.seed, threads=args.threads,
                      device=args.device, **settings)
    tr = Trainer(args.problem, cfg, params=params, output=out / f"{tag}.h5",
                 progress=False if args.quiet else None)
    if tr.checkpoint_path.exists():
        tr.load_checkpoint()
    chunk = cfg.eval_every or cfg.steps
    while tr.step < cfg.steps:
        tr.run(until=tr.step + chunk)
        if args.time_limit and time.perf_counter() - w0 > args.time_limit and tr.step < cfg.steps:
            cfg.steps = tr.step                     # same state as a run with --steps tr.step
            break
    res = tr.result()
    save_result(out / f"{tag}.h5", res)
    if tr.checkpoint_path.exists():
        tr.checkpoint_path.unlink()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    print(res.summary())
    mdp = wg.problems.get(args.problem, **params)
    uniform_gain = wg.evaluate(mdp, wg.Policy.uniform(mdp), wg.Average()).J
    command = ["python", "scripts/nn_ergodic.py"]
    if args.problem != "pendulum":
        command += ["--problem", args.problem]
    command += ["--algo", args.algo, "--seed", str(args.seed), "--steps", str(cfg.steps)]
    command += [f"--set {k}={str(v).replace(' ', '')}" for k, v in overrides.items()]
    command += [f"--param {k}={str(v).replace(' ', '')}" for k, v in _pairs(args.param, "--param").items()]
    rec = {"algo": args.algo, "seed": args.seed, "steps": cfg.steps, "problem": args.problem, "params": params,
           "objective": "average", "gain_exact_deterministic": res.J_exact,
           "gain_exact_stochastic": res.J_exact_stochastic, "gain_star": res.J_star,
           "gain_uniform_policy": uniform_gain,
           "gain_estimate_from_trajectory": res.diagnostics.get("gain_estimate"),
           "train_wall_s": res.diagnostics["train_wall"], "train_cpu_s": res.diagnostics["train_cpu"],
           "total_wall_s": wall, "total_cpu_s": cpu, "torch_threads": torch.get_num_threads(),
           "torch": torch.__version__, "python": platform.python_version(),
           "machine": platform.machine() + ", " + (platform.processor() or "cpu"),
           "options": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
           "curve": {k: np.asarray(v).tolist() for k, v in res.curve.items()},
           "command": " ".join(command)}
    rp = Path(args.record)
    data = json.loads(rp.read_text()) if rp.exists() else {}
    data[tag] = rec
    rp.parent.mkdir(parents=True, exist_ok=True)
    rp.write_text(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
