#!/usr/bin/env python
"""Draw docs/figures/readme_overview.png, the figure at the top of README.md.

Left: the soft-optimal policy of the LQR on the grid (``wg.plot.plot_policy``) against the
Riccati closed form. Right: the exact gap J - J* along four schemes from the same start.
Usage: ``python scripts/readme_figure.py`` (about half a minute).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.linalg import solve_discrete_are  # noqa: E402

import wgflow as wg  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "figures" / "readme_overview.png"


def main() -> Path:
    gamma, tau = 0.9, 0.5
    mdp = wg.problems.get("lqr1d", n_states=61, n_actions=61, noise=0.6)
    obj = wg.Discounted(gamma=gamma, entropy=tau)
    # J* exact to rounding (policy iteration): the default solve certifies V to 1e-10 relative,
    # which would show as a false floor of the gaps
    sol = wg.solve(mdp, obj, method="policy_iteration", progress=False)
    p = solve_discrete_are([[np.sqrt(gamma) * 0.9]], [[np.sqrt(gamma)]], [[1.0]], [[1.0]])[0, 0]
    K = gamma * p * 0.9 / (1 + gamma * p)

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.0), layout="constrained")
    wg.plot.plot_policy(sol.policy, ax=ax0)
    x = mdp.states.axes[0]
    ax0.plot(x, -K * x, "--", color="cyan", lw=1.2, label=r"$-Kx$ (Riccati closed form)")
    ax0.set_ylim(mdp.actions.bounds[0])
    ax0.set_xlabel("state $x$")
    ax0.set_ylabel("action $a$")
    ax0.set_title("soft-optimal policy of the grid LQR (exact solve)")
    ax0.legend(loc="upper right", fontsize=8)

    pi0 = wg.Policy.gaussian(mdp, mean=1.5, std=0.4)
    floor = 1e-13 * abs(sol.J)
    for scheme, t_end in [("otto", 5.0), ("jko", 5.0), ("pmd", 40.0), ("wppg", 5.0)]:
        traj = wg.flow(mdp, obj, pi0, scheme=scheme, t_end=t_end, save_every=t_end / 150, progress=False)
        ax1.semilogy(traj.times, np.maximum(traj.J - sol.J, floor), label=scheme)
    ax1.axhline(floor, color="0.6", lw=0.8, ls=":", label="rounding floor")
    ax1.set_xscale("symlog", linthresh=1.0)
    ax1.set_xlim(0, 40)
    ax1.set_xlabel("flow time (pmd: sum of step sizes)")
    ax1.set_ylabel(r"$J - J^*$ (exact at every frame)")
    ax1.set_title("four schemes from the same Gaussian start")
    ax1.legend(fontsize=8)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)
    return OUT


if __name__ == "__main__":
    print(main())
