"""Built-in problems: ``get(name, **params)`` builds an :class:`~wgflow.MDP`; ``names()`` lists them.

Every problem documents its parameters and defaults (``describe(name)``, or ``wgflow problems``
on the command line). Problems built from dynamics keep their continuous model, so costs and
transitions can be evaluated at off-grid actions; the MDP's ``provenance`` records the name and
parameters, which is what :func:`wgflow.save` stores to rebuild the model on load.
"""
from __future__ import annotations

from .registry import describe, get, model, names, parameters, register, Problem
from . import lqr, classic, finite  # noqa: F401  (registration)

__all__ = ["get", "names", "describe", "parameters", "register", "model", "Problem"]
