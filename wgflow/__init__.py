"""wgflow: Wasserstein-geometry policy optimization on exactly solved, grid-discretized MDPs.

Main names::

    Grid, MDP, Policy, Discounted, Average, evaluate, solve, flow, hessian, save, load, problems,
    run_study (the main job, ``wgflow run``), sweep (``wgflow sweep``), plot, verify, config
"""
from .version import __version__
from .errors import (WgflowError, ValidationError, NotUnichainError, ConvergenceError,
                     FileFormatError, MissingFileError, ExistingFileError, LookupFailure,
                     AccuracyWarning)
from .grids import Grid
from .mdp import MDP
from .policy import Policy
from .particles import ParticlePolicy
from .objectives import Discounted, Average
from .evaluation import evaluate, solve, Evaluation, Solution
from .linalg import LinearSolveCache
from . import problems
from .io import save, load
from .flows import flow, Trajectory
from .hessian import hessian, Hessian
from . import geometry, geodesics, plot, verify
from . import config
from .study import run_study, StudyResult
from .sweep import sweep, SweepResult

__all__ = ["__version__", "WgflowError", "ValidationError", "NotUnichainError", "ConvergenceError",
           "FileFormatError", "MissingFileError", "ExistingFileError", "LookupFailure", "AccuracyWarning", "Grid", "MDP", "Policy", "ParticlePolicy", "Discounted", "Average", "evaluate", "solve",
           "Evaluation", "Solution", "LinearSolveCache", "problems", "save", "load", "flow", "Trajectory", "hessian", "Hessian", "geometry", "geodesics", "plot", "verify",
           "config", "run_study", "StudyResult", "sweep", "SweepResult"]
