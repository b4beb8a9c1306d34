"""Figures of the recorded runs (data/nn_pendulum.json, data/nn_ergodic.json).

    python scripts/nn_figures.py

docs/figures/nn_pendulum_curves.png: exact J of each algorithm's deterministic policy on the
101 x 101 x 41 grid (gamma 0.99) with J* as a horizontal line, and the mean Pendulum-v1 return
over the learning curve's episodes (seeds 0..9) with the exact grid optimum's return on the same
episodes as a horizontal line. docs/figures/nn_ergodic_gain.png: the exact gain of the policy
trained on the average cost, the gain estimated along its trajectory, and the optimal gain.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

os.environ.setdefault("MPLBACKEND", "Agg")
ROOT = Path(__file__).resolve().parents[1]
FIG = ROOT / "docs" / "figures"
LABELS = {"wpo": "WPO", "wppg": "WPPG (Gaussian)", "wppg-implicit": "WPPG-I (implicit)",
          "reparam": "reparameterized (SAC)"}


def pendulum():
    import wgflow as wg
    from wgflow.nn import SolutionAgent, gym_evaluate, plot_learning_curves
    data = json.loads((ROOT / "data" / "nn_pendulum.json").read_text())
    recs = [r for r in data.values() if r["env"] == "pendulum"]
    grid = recs[0]["grid"]
    mdp = wg.problems.get("pendulum", **grid)
    sol = wg.solve(mdp, wg.Discounted(gamma=recs[0]["gamma"]), progress=False)
    n_ep = recs[0]["options"].get("eval_episodes", 10)
    ref = gym_evaluate(SolutionAgent(sol), "Pendulum-v1", episodes=n_ep, seed=0).mean
    runs = {}
    for algo in LABELS:
        rs = [SimpleNamespace(curve=r["curve"]) for r in recs if r["algo"] == algo]
        if rs:
            runs[LABELS[algo]] = rs if len(rs) > 1 else rs[0]
    plot_learning_curves(runs, J_star=sol.J, reference_return=ref,
                         reference_label=f"exact {grid['n_theta']}x{grid['n_omega']}x{grid['n_actions']} optimum",
                         env_id="Pendulum-v1", path=FIG / "nn_pendulum_curves.png",
                         title=f"Pendulum, gamma {recs[0]['gamma']}: learned policies against the exact optimum")
    print("wrote", FIG / "nn_pendulum_curves.png", "reference return", ref)


def ergodic():
    import matplotlib.pyplot as plt
    path = ROOT / "data" / "nn_ergodic.json"
    if not path.exists():
        return
    data = json.loads(path.read_text())
    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    for i, (tag, r) in enumerate(data.items()):
        c = r["curve"]
        col = f"C{i}"
        ax.plot(c["step"], c["J_exact"], "-o", ms=3, color=col,
                label=f"{LABELS[r['algo']]}: exact gain of the learned policy")
        ax.plot(c["step"], c["gain_estimate"], ":", color=col, label="gain estimated along the trajectory")
        ax.axhline(r["gain_star"], color="k", ls="--", lw=1.2, label=f"exact optimal gain g* = {r['gain_star']:.4g}")
    ax.set_xlabel("environment steps (one trajectory)")
    ax.set_ylabel("average cost per step")
    ax.set_yscale("log")
    p = next(iter(data.values()))["params"]
    ax.set_title(f"ergodic formulation: pendulum, noise {p['noise']}, "
                 f"{p['n_theta']}x{p['n_omega']}x{p['n_actions']} grid")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.savefig(FIG / "nn_ergodic_gain.png", dpi=150)
    print("wrote", FIG / "nn_ergodic_gain.png")


if __name__ == "__main__":
    FIG.mkdir(parents=True, exist_ok=True)
    pendulum()
    ergodic()
    sys.exit(0)
