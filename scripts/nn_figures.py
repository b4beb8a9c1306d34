"""Figures of the recorded runs (data/nn_pendulum.json, data/nn_ergodic.json).

    python scripts/nn_figures.py                  # both figures
    python scripts/nn_figures.py --ergodic-only   # only docs/figures/nn_ergodic_gain.png

docs/figures/nn_pendulum_curves.png: exact J of each algorithm's deterministic policy on the
101 x 101 x 41 grid (gamma 0.99) with J* as a horizontal line, and the mean Pendulum-v1 return
over the learning curve's episodes (seeds 0..9) with the exact grid optimum's return on the same
episodes as a horizontal line. docs/figures/nn_ergodic_gain.png: the exact gain of policies
trained on the average cost along training (a few runs), the final exact gain of every recorded
run relative to the exact optimal gain, the optimal gain and the uniform policy's gain.
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
#: the runs whose learning curves the ergodic figure draws (tag endings in data/nn_ergodic.json)
CURVE_RUNS = ("_average_wpo_s0_7000steps", "_average_wpo_s0", "_average_wpo_exploration_std0.6_s0",
              "_average_wpo_exploration_std0.3_n_envs8_s0", "_average_reparam_n_envs8_s0",
              "_average_wppg_exploration_std0.3_s0", "_average_wpo_exploration_std0.6_s0_2core")
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


def _ergodic_config(r):
    o = r["options"]
    e = o.get("exploration_std", 0.1 if r["algo"].startswith("wppg") else 0.0)
    return LABELS[r["algo"]].split(" (")[0], float(e), int(o.get("n_envs", 1))


def _ergodic_label(r, seed=True):
    algo, e, n = _ergodic_config(r)
    text = f"{algo}, expl. {e:g} r, {n} traj."
    return text + (f", seed {r['seed']}, {r['steps'] // 1000}k steps" if seed else "")


def _many_cores(r):
    return "16-core" in r.get("machine", "")


def ergodic():
    """Left: exact gain along training for a few runs; right: final exact gain of every run,
    grouped by configuration."""
    import matplotlib.pyplot as plt
    path = ROOT / "data" / "nn_ergodic.json"
    if not path.exists():
        return
    data = json.loads(path.read_text())
    recs = {t: r for t, r in data.items() if r["problem"] == "pendulum"}
    if not recs:
        return
    r0 = next(iter(recs.values()))
    p, g_star, g_unif = r0["params"], r0["gain_star"], r0["gain_uniform_policy"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13.5, 5.6), layout="constrained",
                                 gridspec_kw=dict(width_ratios=[1.0, 1.0]))
    shown = [t for t in recs if t.endswith(CURVE_RUNS)]
    for i, t in enumerate(shown):
        c, r = recs[t]["curve"], recs[t]
        ax.plot(c["step"], c["J_exact"], "-o" if _many_cores(r) else "--s", ms=2.5, color=f"C{i}",
                label=_ergodic_label(r) + ("" if _many_cores(r) else " (2-core machine)"))
    ax.axhline(g_unif, color="0.4", ls=":", lw=1.2, label=f"uniform policy: {g_unif:.3g}")
    ax.axhline(g_star, color="k", ls="--", lw=1.2, label=f"exact optimal gain g* = {g_star:.4g}")
    ax.axhline(1.1 * g_star, color="k", ls=":", lw=0.8, label="1.1 g*")
    ax.set_yscale("log")
    ticks = [1.0, 1.2, 1.5, 2, 3, 4, 6, 8]
    ax.set_yticks(ticks, [f"{v:g}" for v in ticks])
    ax.minorticks_off()
    ax.set_xlabel("environment steps (per trajectory)")
    ax.set_ylabel("exact gain of the learned deterministic policy (cost per step)")
    ax.set_title("learning curves (lower is better)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    groups = {}
    for t, r in recs.items():
        groups.setdefault(_ergodic_config(r), []).append(r)
    order = sorted(groups, key=lambda k: np.median([r["gain_exact_deterministic"] for r in groups[k]]),
                   reverse=True)
    for y, key in enumerate(order):
        for r in groups[key]:
            gap = 100 * (r["gain_exact_deterministic"] / g_star - 1)
            many = _many_cores(r)
            bx.scatter(gap, y, s=12 + r["steps"] / 800, marker="o" if many else "s",
                       facecolors="C0" if many else "none", edgecolors="C0" if many else "C3", zorder=3)
    labels = []
    for key in order:
        steps = sorted({r["steps"] // 1000 for r in groups[key]})
        rng = f"{steps[0]}k" if len(steps) == 1 else f"{steps[0]}-{steps[-1]}k"
        n = len(groups[key])
        labels.append(f"{key[0]}, expl. {key[1]:g} r, {key[2]} traj. ({n} run{'s' if n > 1 else ''}, {rng} steps)")
    bx.set_yticks(np.arange(len(order)), labels, fontsize=7)
    bx.set_xscale("log")
    bx.axvline(10, color="k", ls=":", lw=0.8)
    bx.scatter([], [], marker="o", color="C0", label="16-core machine (area grows with steps)")
    bx.scatter([], [], marker="s", facecolors="none", edgecolors="C3", label="2-core machine")
    bx.plot([], [], "k:", lw=0.8, label="10 % above g*")
    bx.set_xlabel("final exact gain of the deterministic policy above g* (%)")
    bx.set_title("every recorded run, one marker per seed")
    bx.grid(alpha=0.3, which="both", axis="x")
    bx.legend(fontsize=7, loc="upper right")
    fig.suptitle(f"ergodic formulation: pendulum, noise {p['noise']}, "
                 f"{p['n_theta']}x{p['n_omega']}x{p['n_actions']} grid, average cost\n"
                 "(expl. e r: Gaussian action noise of standard deviation e times the torque bound r = 2; "
                 "traj.: parallel never-reset trajectories)", fontsize=10)
    fig.savefig(FIG / "nn_ergodic_gain.png", dpi=150)
    print("wrote", FIG / "nn_ergodic_gain.png")


if __name__ == "__main__":
    FIG.mkdir(parents=True, exist_ok=True)
    if "--ergodic-only" not in sys.argv:
        pendulum()
    ergodic()
    sys.exit(0)
