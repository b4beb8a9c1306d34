"""The problem registry."""
from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import ValidationError

_REGISTRY: dict = {}


@dataclass
class Problem:
    """A registered problem: ``builder(**params)`` returns an MDP or a ``from_dynamics`` spec."""

    name: str
    builder: Callable
    defaults: dict
    doc: str

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""


def register(func: Callable = None, *, name: str | None = None):
    """Register a problem builder; its keyword defaults are the problem's parameters.

    The builder returns either an :class:`~wgflow.MDP` or a dict of keyword arguments for
    :meth:`~wgflow.MDP.from_dynamics`.
    """
    def wrap(f):
        sig = inspect.signature(f)
        defaults = {k: p.default for k, p in sig.parameters.items()}
        missing = [k for k, v in defaults.items() if v is inspect.Parameter.empty]
        if missing:
            raise TypeError(f"problem builder {f.__name__} needs defaults for {missing}")
        key = name or f.__name__
        _REGISTRY[key] = Problem(key, f, defaults, textwrap.dedent(f.__doc__ or ""))
        return f
    return wrap if func is None else wrap(func)


def names() -> list:
    """Names of the registered problems."""
    return sorted(_REGISTRY)


def _lookup(name: str) -> Problem:
    if name not in _REGISTRY:
        raise ValidationError(f"unknown problem {name!r}; known problems: {', '.join(names())}")
    return _REGISTRY[name]


def parameters(name: str) -> dict:
    """Parameters of a problem and their defaults."""
    return dict(_lookup(name).defaults)


def describe(name: str) -> str:
    """The problem's documentation with its parameters and defaults."""
    p = _lookup(name)
    lines = [f"{name}: {p.doc.strip()}", "", "parameters (defaults):"]
    lines += [f"  {k} = {v!r}" for k, v in p.defaults.items()]
    return "\n".join(lines)


def _resolve(name: str, params: dict):
    p = _lookup(name)
    unknown = sorted(set(params) - set(p.defaults))
    if unknown:
        raise ValidationError(f"problem {name!r} has no parameter(s) {unknown}; its parameters are "
                              f"{list(p.defaults)}")
    for k, v in params.items():
        _check_type(name, k, v, p.defaults[k])
    full = {**p.defaults, **params}
    return p, full


def _check_type(problem, key, value, default):
    """Parameters take the type of their default (ints for sizes, numbers, sequences, strings)."""
    def fail(kind):
        raise ValidationError(f"problem {problem!r}: parameter {key} must be {kind}, got {value!r}")
    if isinstance(default, bool):
        if not isinstance(value, (bool, np.bool_)):
            fail("True or False")
    elif isinstance(default, (int, np.integer)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            fail("an integer")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            fail("a number")
    elif isinstance(default, str):
        if not isinstance(value, str):
            fail("a string")
    elif isinstance(default, (tuple, list)):
        if not isinstance(value, (tuple, list, np.ndarray, int, float)):
            fail("a sequence")


def _jsonable(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, tuple):
        return list(v)
    return v


def get(name: str, **params):
    """Build the MDP of problem ``name`` with ``params`` overriding its defaults.

    Examples
    --------
    >>> import wgflow as wg
    >>> mdp = wg.problems.get("lqr1d", n_states=41, n_actions=21)
    >>> mdp.n_states, mdp.n_actions
    (41, 21)
    """
    from ..mdp import MDP
    p, full = _resolve(name, params)
    out = p.builder(**full)
    prov = {"problem": name, "params": {k: _jsonable(v) for k, v in full.items()}}
    if isinstance(out, MDP):
        out.provenance = prov
        return out
    return MDP.from_dynamics(**out, provenance=prov)


def model(name: str, **params):
    """The continuous model of a dynamics problem without building ``P`` (None for tabular ones)."""
    from ..mdp import DynamicsModel
    p, full = _resolve(name, params)
    out = p.builder(**full) if getattr(p.builder, "is_dynamics", False) else None
    if out is None:
        return None
    return DynamicsModel(out["states"], out["actions"], out["drift"], out["cost"],
                         out.get("noise", 0.0), out.get("noise_cutoff", 6.0), out.get("drift_da"),
                         out.get("cost_da"), out.get("terminal"), out.get("reset"),
                         out.get("entry_cost", 0.0))


def dynamics(f):
    """Mark a builder as returning a ``from_dynamics`` spec (cheap to rebuild the model)."""
    f.is_dynamics = True
    return f
