"""The study solves to the rounding floor by default (``solve.tol = "floor"``), without warnings."""
import warnings

import numpy as np
import pytest

import wgflow as wg
from wgflow import config, problems
from wgflow.errors import AccuracyWarning
from wgflow import study
from wgflow.study import build_objective

# a small pendulum at gamma 0.99 whose soft problem's rounding floor (relative error bound
# 1.2e-12, measured) lies above the former default tol = 1e-12
SMALL = ["objective.gamma=0.99", "problem.params.n_theta=13", "problem.params.n_omega=13",
         "problem.params.n_actions=5"]


def _problem(overrides=()):
    cfg = config.load("pendulum", SMALL + list(overrides))
    return cfg, problems.get(cfg["problem"]["name"], **cfg["problem"]["params"])


def test_default_solve_reaches_the_floor_without_warning():
    cfg, mdp = _problem()
    assert cfg["solve"]["tol"] == "floor"
    obj = build_objective(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AccuracyWarning)
        sol = study.solve_to(mdp, obj, cfg["solve"]["method"], cfg["solve"]["tol"])
        hard = study.solve_to(mdp, build_objective(cfg, entropy=0.0), "auto", cfg["solve"]["tol"])
    assert sol.converged and hard.converged
    # against policy iteration (exact evaluations, independent of the Bellman sweeps): the bound
    # holds, with the rounding of the exact evaluation itself (64 eps kappa |J|, the study's floor)
    kappa = 1.0 / (1.0 - obj.gamma)
    for s, o in ((sol, obj), (hard, build_objective(cfg, entropy=0.0))):
        ref = wg.solve(mdp, o, method="policy_iteration", progress=False)
        bound = s.diagnostics["error_bound"]
        assert 0 < bound < 1e-11 * np.max(np.abs(s.V))
        assert abs(s.J - ref.J) <= bound + 64 * np.finfo(float).eps * kappa * abs(ref.J)


def test_a_tolerance_below_the_floor_still_warns():
    # what the user asks for explicitly and the problem cannot give is reported
    cfg, mdp = _problem(["solve.tol=1e-13"])
    with pytest.warns(AccuracyWarning, match="above tol = 1e-13"):
        sol = study.solve_to(mdp, build_objective(cfg), cfg["solve"]["method"], cfg["solve"]["tol"])
    assert sol.diagnostics["error_bound"] > 1e-13 * np.max(np.abs(sol.V))


def test_study_with_default_tolerance_emits_no_accuracy_warning():
    ov = SMALL + ['flows.schemes=["pmd"]', "output.animation_scheme=pmd", "hessian.enabled=false",
                  "verify.enabled=false"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", AccuracyWarning)
        res = wg.run_study("pendulum", ov, progress=False, write=False)
    assert res.floor > 0 and "pmd" in res.flows


@pytest.mark.parametrize("override, match", [
    (["solve.tol=flor"], "must be a number > 0 or 'floor'"),
    (["solve.method=value_iteration"], "'floor' needs a method"),
    (["solve.tol=0"], "solve.tol"),
])
def test_solve_tol_config_validation(override, match):
    with pytest.raises(config.ConfigError, match=match):
        config.load("pendulum", override)
    assert config.load("pendulum", ["solve.method=value_iteration", "solve.tol=1e-10"])[
        "solve"]["tol"] == 1e-10
