"""What is optimized: :class:`Discounted` and :class:`Average` cost, optionally entropy-regularized.

With entropy ``tau`` the per-state cost of a policy is
``c_pi(s) = sum_a pi(a|s) [C(s, a) + tau * log pi_density(a|s)]`` where
``pi_density = masses / actions.cell_volume``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import validation
from .errors import LookupFailure

__all__ = ["Discounted", "Average", "Objective"]


class Objective:
    """Base class of objectives."""

    entropy: float = 0.0

    def _check_entropy(self):
        object.__setattr__(self, "entropy", validation.real(self.entropy, "entropy",
                                                            type(self).__name__, low=0.0))

    def to_dict(self) -> dict:
        """Every field of the objective, JSON-ready (:func:`objective_from_dict` inverts it)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Discounted(Objective):
    r"""Discounted cost :math:`J(\pi) = \sum_s \mu_0(s) V^\pi(s)`, :math:`V = c_\pi + \gamma P_\pi V`.

    The metric weights are the normalized discounted occupancy
    :math:`d_\pi = (1-\gamma)\,\mu_0^T (I - \gamma P_\pi)^{-1}`.

    Parameters
    ----------
    gamma : float
        Discount factor in ``[0, 1)``.
    entropy : float
        Entropy weight ``tau >= 0``.
    initial : array ``(nS,)`` or None
        Initial state law ``mu_0`` (default: uniform over state cells).

    Examples
    --------
    >>> Discounted(gamma=0.95, entropy=0.1)
    Discounted(gamma=0.95, entropy=0.1, initial=None)
    """

    gamma: float = 0.95
    entropy: float = 0.0
    initial: object = None

    def __post_init__(self):
        g = validation.real(self.gamma, "gamma", "Discounted", low=0.0, high=1.0, high_open=True)
        object.__setattr__(self, "gamma", g)
        self._check_entropy()
        if self.initial is not None:
            mu = validation.array(self.initial, "initial", "Discounted", ndim=1, copy=True)
            object.__setattr__(self, "initial", validation.prob_vector(mu, mu.size, "initial",
                                                                       "Discounted"))

    def initial_law(self, n_states: int) -> np.ndarray:
        """``mu_0`` as a validated probability vector of length ``n_states``."""
        if self.initial is None:
            return np.full(n_states, 1.0 / n_states)
        return validation.prob_vector(self.initial, n_states, "initial", "Discounted")

    def __repr__(self):
        init = None if self.initial is None else f"array(shape={np.shape(self.initial)})"
        return f"Discounted(gamma={self.gamma}, entropy={self.entropy}, initial={init})"

    def __eq__(self, other):
        if not isinstance(other, Discounted):
            return NotImplemented
        same_init = (self.initial is None and other.initial is None) or (
            self.initial is not None and other.initial is not None
            and np.array_equal(self.initial, other.initial))
        return self.gamma == other.gamma and self.entropy == other.entropy and same_init

    __hash__ = None

    def to_dict(self) -> dict:
        """``{"kind": "discounted", "gamma", "entropy"}``, plus ``"initial"`` (a list of floats)
        when an initial law was given; :func:`objective_from_dict` inverts it exactly."""
        d = {"kind": "discounted", "gamma": float(self.gamma), "entropy": float(self.entropy)}
        if self.initial is not None:
            # (only when given: a dict without it means the uniform law, as in files written
            # before the initial law was stored here; floats survive JSON exactly)
            d["initial"] = [float(x) for x in np.asarray(self.initial, dtype=float)]
        return d


@dataclass(frozen=True)
class Average(Objective):
    r"""Long-run average cost :math:`J(\pi) = \sum_s \rho_\pi(s) c_\pi(s)`.

    ``rho_pi`` is the stationary law of ``P_pi``; the chain must be unichain (one recurrent
    class), otherwise evaluation raises :class:`wgflow.NotUnichainError`. The bias ``h`` solves
    ``h + J = c_pi + P_pi h`` with ``rho_pi . h = 0``; the metric weights are ``rho_pi``.

    Examples
    --------
    >>> Average(entropy=0.1)
    Average(entropy=0.1)
    """

    entropy: float = 0.0

    def __post_init__(self):
        self._check_entropy()

    def to_dict(self) -> dict:
        """``{"kind": "average", "entropy"}`` (:func:`objective_from_dict` inverts it)."""
        return {"kind": "average", "entropy": float(self.entropy)}


#: the keys of each kind's description: (required, optional)
_KEYS = {"discounted": (("gamma", "entropy"), ("initial",)),
         "average": (("entropy",), ())}


def objective_from_dict(d: dict) -> Objective:
    """The objective :meth:`Objective.to_dict` described (validated like constructor input).

    A discounted description without ``"initial"`` (as written by older versions) means the
    uniform initial law. A missing required key or a key the kind does not have raises
    :class:`~wgflow.LookupFailure` naming it; the values are checked by the constructor.
    """
    if not isinstance(d, dict) or "kind" not in d:
        raise LookupFailure(f"an objective is described by a dict with a 'kind', got "
                            f"{validation.describe(d)}")
    kind = validation.choice(d["kind"], "objective kind", ("discounted", "average"))
    required, optional = _KEYS[kind]
    missing = [k for k in required if k not in d]
    if missing:
        raise LookupFailure(f"the {kind} objective's description lacks "
                            + ", ".join(repr(k) for k in missing))
    unknown = sorted(str(k) for k in d if k != "kind" and k not in required + optional)
    if unknown:
        raise LookupFailure(f"the {kind} objective's description has unknown key(s) "
                            + ", ".join(repr(k) for k in unknown) + "; a " + kind
                            + " objective has " + ", ".join(repr(k) for k in required + optional))
    if kind == "discounted":
        return Discounted(gamma=d["gamma"], entropy=d["entropy"], initial=d.get("initial"))
    return Average(entropy=d["entropy"])
