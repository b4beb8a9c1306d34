"""Neural actor-critic learning judged against the exact optimum: ``wgflow.nn``.

Needs the ``nn`` extra (``pip install "wgflow[nn]"``: torch) and, for the gymnasium
environments, the ``gym`` extra. Importing :mod:`wgflow.nn` itself is cheap: torch is imported
when a name below is first used.

Main names::

    train, TrainConfig, Trainer                    # wgflow.nn.trainer
    TrainResult, load_policy, load_result          # wgflow.nn.results
    SquashedGaussianPolicy, ImplicitPolicy, TwinQ  # wgflow.nn.networks
    wpo_loss, wppg_target, wppg_loss, reparam_loss, mixture_entropy,  # wgflow.nn.algorithms
    average_cost_target
    ModelEnv, GymEnv, make_env, SolutionAgent, gym_evaluate           # wgflow.nn.envs
    project_policy, exact_evaluation                                  # wgflow.nn.projection
    plot_learning_curves                                              # wgflow.nn.plot

Costs are minimized throughout (wgflow's convention): critics estimate discounted (or relative)
*costs*, the clipped double-Q combination is the pessimistic **max** of the twin critics, and
every transport moves actions along ``-grad_a Q``.
"""
from __future__ import annotations

import importlib

_NAMES = {
    "train": "trainer", "TrainConfig": "trainer", "Trainer": "trainer", "TrainResult": "results",
    "load_policy": "results", "load_result": "results", "DeterministicPolicy": "results",
    "SquashedGaussianPolicy": "networks", "ImplicitPolicy": "networks", "TwinQ": "networks",
    "StateFeatures": "networks",
    "wpo_loss": "algorithms", "wppg_target": "algorithms", "wppg_loss": "algorithms",
    "reparam_loss": "algorithms", "mixture_entropy": "algorithms", "ALGORITHMS": "algorithms",
    "average_cost_target": "algorithms",
    "ModelEnv": "envs", "GymEnv": "envs", "make_env": "envs", "SolutionAgent": "envs",
    "gym_evaluate": "envs",
    "project_policy": "projection", "exact_evaluation": "projection",
    "plot_learning_curves": "plot",
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        mod = importlib.import_module(f"{__name__}.{_NAMES[name]}")
        return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_NAMES))
