"""The problem registry."""
from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import validation
from ..errors import LookupFailure, ValidationError

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

    Raises
    ------
    ValidationError
        The builder is not a function, a parameter has no default (the defaults define the
        parameters), or ``name`` is not a non-empty string.
    """
    def wrap(f):
        if not callable(f):
            raise ValidationError(f"register: a problem builder is a function, got "
                                  f"{validation.describe(f)}")
        sig = inspect.signature(f)
        defaults = {k: p.default for k, p in sig.parameters.items()}
        missing = [k for k, v in defaults.items() if v is inspect.Parameter.empty]
        if missing:
            raise ValidationError(f"register: problem builder {f.__name__} needs a default for "
                                  f"every parameter (they define the problem's parameters); "
                                  f"missing for {', '.join(missing)}")
        key = name or f.__name__
        if not isinstance(key, str) or not key:
            raise ValidationError(f"register: a problem name is a non-empty string, got "
                                  f"{validation.describe(key)}")
        _REGISTRY[key] = Problem(key, f, defaults, textwrap.dedent(f.__doc__ or ""))
        return f
    return wrap if func is None else wrap(func)


def names() -> list:
    """Names of the registered problems."""
    return sorted(_REGISTRY)


def _lookup(name: str) -> Problem:
    if not isinstance(name, str):
        raise LookupFailure(f"a problem name is a string, got {validation.describe(name)}; known "
                            f"problems: {', '.join(names())}")
    validation.choice(name, "problem", names())
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
        validation.options({unknown[0]: None}, {f"problem {name!r}": list(p.defaults)},
                           what="parameter")
    full = {**p.defaults, **params}
    for k, v in params.items():
        full[k] = _check_value(name, k, v, p.defaults[k])
    _check_size(name, full)
    return p, full


# ---------------------------------------------------------------------------------------------
# parameter rules: by name, for every problem that has a parameter of that name
# ---------------------------------------------------------------------------------------------
#: parameters that must be > 0 (lengths of boxes, time steps, physical constants, cutoffs)
POSITIVE = frozenset({"dt", "x_max", "v_max", "a_max", "max_speed", "max_torque", "power", "m",
                      "l", "noise_cutoff"})
#: parameters that must be >= 0 (noise levels, cost weights)
NON_NEGATIVE = frozenset({"noise", "q", "r", "q_x", "q_v"})


def _is_size(key: str) -> bool:
    """Cell counts: ``n_*`` and ``branching`` are integers >= 1 (or one per axis)."""
    return key.startswith("n_") or key == "branching"


def _check_value(problem: str, key: str, value, default):
    """A parameter value, checked by its name's rule and its default's type and shape.

    Sizes (``n_*``, ``branching``) are integers >= 1, or one per axis when the default is a
    sequence; ``seed`` is an integer >= 0; names in :data:`POSITIVE` are > 0 and in
    :data:`NON_NEGATIVE` >= 0; every other number is finite; sequences keep the shape of their
    default (``noise`` may also be one value per state axis); strings and booleans keep their
    type.
    """
    where = f"problem {problem!r}"
    name = f"parameter {key}"
    if isinstance(default, bool):
        return validation.boolean(value, name, where)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ValidationError(f"{where}: parameter {key} must be a string, got "
                                  f"{validation.describe(value)}")
        return value
    if key == "seed":
        return validation.integer(value, name, where, low=0)
    low, low_open = (0.0, True) if key in POSITIVE else (0.0, False) if key in NON_NEGATIVE else (None, False)
    if _is_size(key):
        if isinstance(default, (tuple, list)):
            if isinstance(value, (tuple, list, np.ndarray)):
                shape = np.shape(value)
                if shape != np.shape(default):
                    raise ValidationError(f"{where}: parameter {key} must be one integer or "
                                          f"{len(default)} (one per axis), got {value!r}")
                return tuple(validation.integer(v, f"{name}[{i}]", where, low=1)
                             for i, v in enumerate(value))
        return validation.integer(value, name, where, low=1)
    if isinstance(default, (tuple, list)) or (key == "noise" and isinstance(value, (tuple, list, np.ndarray))):
        a = validation.array(value, name, where)
        if isinstance(default, (tuple, list)) and a.shape != np.shape(default):
            raise ValidationError(f"{where}: parameter {key} must have shape {np.shape(default)}, "
                                  f"got {a.shape}")
        if low is not None and np.any(a < low if not low_open else a <= low):
            raise ValidationError(f"{where}: parameter {key} must be {'>' if low_open else '>='} "
                                  f"{low:g} everywhere, got {value!r}")
        return a.tolist() if key == "noise" else tuple(map(tuple, a)) if a.ndim == 2 else tuple(a)
    if isinstance(default, (int, float, np.integer, np.floating)):
        if isinstance(default, (int, np.integer)) and not isinstance(default, bool) and \
                key not in POSITIVE | NON_NEGATIVE:
            return validation.integer(value, name, where)
        return validation.real(value, name, where, low=low, low_open=low_open)
    return value


def _check_size(problem: str, params: dict) -> None:
    """Refuse sizes whose ``P`` cannot fit in memory (estimated before anything is built)."""
    pairs = 1.0
    for k, v in params.items():
        if k.startswith("n_"):
            pairs *= float(np.prod(np.asarray(v, dtype=float)))
    per_row = 12.0 * float(params.get("branching", 2)) + 8.0
    validation.memory(pairs * per_row, f"problem {problem!r} with {pairs:.3g} state-action pairs")


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
