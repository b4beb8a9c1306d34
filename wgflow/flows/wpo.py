r"""The ``wpo`` scheme: Wasserstein Policy Optimization (Pfau, Tracey et al., ICML 2025).

The policy of each state is a diagonal Gaussian ``N(mu(s), diag sigma(s)^2)`` conditioned on the
action box (or, with ``components=K``, a mixture of K such Gaussians). Its grid masses (the
Gaussian probability of each action cell, :meth:`wgflow.Policy.gaussian`) are evaluated exactly,
and the parameters move by the WPO rule

.. math:: \Delta\theta = F^{-1}\,E_{a\sim\pi}\big[\nabla_\theta\nabla_a\log\pi(a|s)\cdot
          \nabla_a\Psi(s,a)\big],\qquad \Psi = Q^\pi + \tau\log\pi,\qquad
          \theta \leftarrow \theta - h\,\Delta\theta,

with the inverse Fisher ``diag(sigma^2, sigma^2/2)`` in ``(mu, sigma)``. For a Gaussian this is

.. math:: \Delta\mu = E[\nabla_a\Psi],\qquad \Delta\sigma = E[(a-\mu)\nabla_a\Psi]/\sigma

(per action axis), i.e. the L2(pi)-projection of the Wasserstein gradient field ``grad_a Psi`` on
the affine fields ``dmu + dsigma (a - mu)/sigma`` that move Gaussians -- the gradient of ``J`` in
``(mu, sigma)``, whose metric is the Wasserstein one (Bures--Wasserstein for diagonal Gaussians).
The derivation, the mixture rule and the numerical choices are in ``docs/wpo_and_baselines.md``.

Expectations are, by default, quadratures on the action grid: ``E[f] = sum_j m_j f(a_j)`` with the
policy's cell masses ``m_j`` and ``grad_a Q`` at the cell centres ``a_j`` from the exact model
(:meth:`wgflow.evaluation.Evaluation.q_at`); ``samples=N`` uses N fixed draws per state and
component instead (common random numbers, like Acme's fixed key).
"""
from __future__ import annotations

import numpy as np
from scipy.special import logsumexp, ndtr, ndtri

from ..errors import ValidationError
from ..policy import Policy, _log_cell_probabilities, _per_state
from .base import FixedPointModel, FlowState, Scheme, frame_logs

__all__ = ["WPO", "gaussian_cell_probabilities"]

_LOG_2PI = float(np.log(2.0 * np.pi))


def gaussian_cell_probabilities(actions, mean, std):
    """Cell probabilities of box-conditioned diagonal Gaussians.

    ``mean``, ``std`` ``(..., da)``; returns ``(p, logZ)`` with ``p`` ``(..., nA)`` (each row sums
    to 1: the Gaussian conditioned on the box, as :meth:`wgflow.Policy.gaussian`, computed in log
    space so both tails are accurate) and ``logZ`` ``(...)`` the log of the Gaussian's probability
    of the box.
    """
    mean = np.asarray(mean, dtype=float)
    std = np.asarray(std, dtype=float)
    lead = mean.shape[:-1]
    p = np.ones(lead + (1,))
    logZ = np.zeros(lead)
    for d in range(actions.ndim):
        edges = actions.bounds[d, 0] + np.arange(actions.shape[d] + 1) * actions.spacing[d]
        logp = _log_cell_probabilities((edges - mean[..., d:d + 1]) / std[..., d:d + 1])
        top = logp.max(axis=-1, keepdims=True)
        if not np.all(np.isfinite(top)):
            idx = np.argwhere(~np.isfinite(top[..., 0]))[0]
            raise ValidationError(f"wpo: the Gaussian {tuple(int(i) for i in idx)} (mean "
                                  f"{mean[tuple(idx)]}, std {std[tuple(idx)]}) puts no "
                                  "(representable) mass in the action box")
        pd = np.exp(logp - top)
        tot = pd.sum(axis=-1, keepdims=True)
        logZ = logZ + top[..., 0] + np.log(tot[..., 0])
        p = (p[..., :, None] * (pd / tot)[..., None, :]).reshape(lead + (-1,))
    return p, logZ


def _log_density_and_score(logw, mu, sd, logZ, pts):
    """Log-density of the box-conditioned mixture and its action gradient at points.

    ``logw`` ``(nS, K)`` (log weights, ``-inf`` for a component off the support), ``mu, sd``
    ``(nS, K, da)``, ``logZ`` ``(nS, K)``, ``pts`` ``(nS, M, da)``.
    Returns ``logpi`` ``(nS, M)`` and ``score`` ``(nS, M, da)``; inside the box the conditioning
    only shifts ``log pi`` by a constant, so the score is the Gaussian one,
    ``sum_k r_k(a) (-(a - mu_k)/sigma_k^2)`` with responsibilities ``r_k``.
    """
    z = (pts[:, None, :, :] - mu[:, :, None, :]) / sd[:, :, None, :]          # (nS, K, M, da)
    logc = (logw - logZ - np.sum(np.log(sd), axis=-1) - 0.5 * mu.shape[-1] * _LOG_2PI)   # (nS, K)
    lk = logc[:, :, None] - 0.5 * np.sum(z * z, axis=-1)                      # (nS, K, M)
    logpi = logsumexp(lk, axis=1)                                             # (nS, M)
    r = np.exp(lk - logpi[:, None, :])
    score = -np.einsum("skm,skmd->smd", r, z / sd[:, :, None, :])
    return logpi, score


class WPO(Scheme):
    r"""Wasserstein Policy Optimization with a per-state (mixture of) diagonal Gaussian policy.

    One step: ``mu <- mu - h dmu``, ``sigma <- sigma - h dsigma`` with
    ``dmu = E[grad_a Psi]``, ``dsigma = E[(a - mu) grad_a Psi] / sigma``, ``Psi = Q + tau log pi``
    (``Q`` the exact soft Q of the current policy); means are then projected on the action box and
    stds on ``[min_std, max_std]``. With ``components=K`` each component moves by the same rule
    with its own expectation ``E_k`` (its own ``diag(sigma_k^2, sigma_k^2/2)`` preconditioner) and
    the weights by the mirror (KL) step ``w_k <- w_k exp(-weight_rate h (E_k[Psi] - E_pi[Psi]))/Z``,
    computed on the log weights, which the state carries: a weight that underflows to 0 keeps its
    finite log and grows back when its component becomes the cheaper one, as in exact arithmetic
    (taking ``log`` of the weights would lose it for good). A weight that starts at 0 stays 0.

    ``state.params``: ``"mean"``, ``"std"`` ``(nS, da)``; with ``components`` ``"mean"``, ``"std"``
    ``(nS, K, da)`` and ``"weights"``, ``"log_weights"``, ``"support"`` ``(nS, K)``: the weights
    ``exp(log_weights)``, their logs (normalized per state; 0 off the support) and the support
    (``uint8``, 1 where the initial weight is > 0); the log weights are the restart data.

    The initial policy is a :class:`~wgflow.Policy` (moment-matched: per-state mean and atom
    variance minus ``h^2/12``; for K components, means ``mean + std * linspace(-1, 1, K)``, stds
    ``std``, equal weights) or a dict of ``"mean"``, ``"std"`` (and ``"weights"``) (broadcastable;
    each may also be a callable of the state centres ``(nS, ds)``, as in
    :meth:`wgflow.Policy.gaussian`).

    Options
    -------
    components : int, optional
        Mixture of this many Gaussians per state (default: a single Gaussian, params without
        ``"weights"``).
    samples : int, optional
        Monte-Carlo expectations with this many draws per state (and component) instead of the
        grid quadrature. The standardized draws are fixed once (common random numbers; a draw is
        the box-conditioned inverse CDF of a fixed uniform, i.e. ``a = mu + sigma xi`` with ``xi``
        fixed when the box is far).
    seed : int
        Seed of the fixed draws (default 0).
    antithetic : bool
        With ``samples`` (even): use the draws in antithetic pairs ``(u, 1 - u)``.
    cfl : float
        Adaptive steps: ``dt = cfl / rate`` with ``rate = max |Cov_k(a, grad Q)| / sigma^2 +
        tau / sigma^2`` (and ``weight_rate * max |E_k Psi - E Psi|`` for mixtures); ``cfl = 1`` is
        Newton's step on ``sigma`` for a quadratic Q (default 0.8). At most doubling per step.
    monotone : bool
        Adaptive steps only: reject (and halve) a step that increases ``J`` (default False: the
        quadrature direction is not the exact gradient of the grid energy, so ``J`` may rise at the
        level of the grid error near the fixed point).
    min_std : float or array ``(da,)``
        Lower bound on the stds (default a quarter of the action spacing, below which the grid
        cannot resolve a Gaussian).
    max_std : float or array ``(da,)``
        Upper bound (default 100 box widths).
    weight_rate : float
        Ratio of the weights' mirror step to ``dt`` (default 1).
    """

    name = "wpo"

    def __init__(self, mdp, objective, components: int | None = None, samples: int | None = None,
                 seed: int = 0, antithetic: bool = False, cfl: float = 0.8, monotone: bool = False,
                 min_std=None, max_std=None, weight_rate: float = 1.0, **options):
        super().__init__(mdp, objective, **options)
        A = mdp.actions
        if any(A.periodic):
            raise ValidationError("wpo: periodic action axes are not supported (the Gaussian "
                                  "policy lives on a box)")
        if components is not None and (int(components) != components or components < 1):
            raise ValidationError(f"wpo: components must be a positive integer, got {components!r}")
        if samples is not None and (int(samples) != samples or samples < 1):
            raise ValidationError(f"wpo: samples must be a positive integer, got {samples!r}")
        if antithetic and (samples is None or samples % 2):
            raise ValidationError("wpo: antithetic=True needs an even number of samples")
        if not (np.isfinite(cfl) and cfl > 0):
            raise ValidationError(f"wpo: cfl must be > 0, got {cfl}")
        if not (np.isfinite(weight_rate) and weight_rate > 0):
            raise ValidationError(f"wpo: weight_rate must be > 0, got {weight_rate}")
        self.mixture = components is not None
        self.K = int(components) if components is not None else 1
        self.samples = None if samples is None else int(samples)
        self.cfl = float(cfl)
        self.monotone = bool(monotone)
        self.weight_rate = float(weight_rate)
        da = A.ndim
        self.lo = A.bounds[:, 0]
        self.hi = A.bounds[:, 1]
        self.min_std = np.broadcast_to(np.asarray(0.25 * A.spacing if min_std is None else min_std,
                                                  dtype=float), (da,)).copy()
        self.max_std = np.broadcast_to(np.asarray(100.0 * (self.hi - self.lo) if max_std is None
                                                  else max_std, dtype=float), (da,)).copy()
        if np.any(self.min_std < 0) or np.any(self.max_std <= self.min_std) or \
                not np.all(np.isfinite(self.max_std)):
            raise ValidationError(f"wpo: need 0 <= min_std < max_std < inf, got {self.min_std}, "
                                  f"{self.max_std}")
        nS, nA = mdp.n_states, mdp.n_actions
        self._dt_prev = None
        # whether the run was resumed from frames stored without the log weights
        self._legacy_frames = False
        if self.samples is None:
            si = np.repeat(np.arange(nS), nA)
            pts = np.tile(A.centers, (nS, 1))
            self._centres = (si, pts, FixedPointModel(mdp.evaluate_model(si, pts)))
        else:
            rng = np.random.default_rng(seed)
            n = self.samples // 2 if antithetic else self.samples
            u = rng.random((nS, self.K, n, da))
            if antithetic:
                u = np.concatenate([u, 1.0 - u], axis=2)
            self._u = np.clip(u, np.nextafter(0.0, 1.0), np.nextafter(1.0, 0.0))

    # ------------------------------------------------------------------ representation
    def _pack(self, lw, w, mu, sd):
        if not self.mixture:
            return {"mean": mu[:, 0, :], "std": sd[:, 0, :]}
        if self._legacy_frames:     # resumed from a file stored without the log weights
            return {"weights": w, "mean": mu, "std": sd}
        # the frame's data are finite: log w on the support, 0 off it (where the weights are 0)
        support = np.isfinite(lw)
        return {"weights": w, "log_weights": np.where(support, lw, 0.0),
                "support": support.astype(np.uint8), "mean": mu, "std": sd}

    def _check_params(self, params):
        nS, da, K = self.mdp.n_states, self.mdp.actions.ndim, self.K
        if not isinstance(params, dict):
            raise ValidationError(f"wpo: initial parameters must be a dict, got {type(params).__name__}")
        need = {"mean", "std"} | ({"weights"} if self.mixture else set())
        extra = set(params) - need - ({"weights"} if not self.mixture else set())
        missing = need - set(params)
        if missing or extra:
            raise ValidationError(f"wpo: parameters must be {sorted(need)}; missing {sorted(missing)}, "
                                  f"unknown {sorted(extra)}")
        centres = (self.mdp.states.centers if self.mdp.states is not None
                   else np.arange(nS, dtype=float)[:, None])
        params = {k: (v(centres) if callable(v) else v) for k, v in params.items()}
        if not self.mixture:
            mu = _per_state(params["mean"], nS, da, "mean")
            sd = _per_state(params["std"], nS, da, "std")
            w = np.ones((nS, 1))
            mu, sd = mu[:, None, :], sd[:, None, :]
        else:
            def comp(x, name):
                a = np.asarray(x, dtype=float)
                if da == 1 and a.shape in ((K,), (nS, K)) and not (a.ndim == 1 and K == 1 and nS > 1):
                    a = a[..., None]
                try:
                    a = np.broadcast_to(a, (nS, K, da)).copy()
                except ValueError:
                    raise ValidationError(f"wpo: {name} must broadcast to (nS, K, da) = "
                                          f"({nS}, {K}, {da}), got shape {np.shape(x)}") from None
                if not np.all(np.isfinite(a)):
                    raise ValidationError(f"wpo: {name} contains NaN or inf")
                return a
            mu, sd = comp(params["mean"], "mean"), comp(params["std"], "std")
            w = np.asarray(params["weights"], dtype=float)
            try:
                w = np.broadcast_to(w, (nS, K)).copy()
            except ValueError:
                raise ValidationError(f"wpo: weights must broadcast to (nS, K) = ({nS}, {K}), got "
                                      f"shape {np.shape(params['weights'])}") from None
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                raise ValidationError("wpo: weights must be finite and >= 0")
            bad = np.nonzero(np.abs(w.sum(axis=1) - 1.0) > 1e-10)[0]
            if bad.size:
                raise ValidationError(f"wpo: the weights of state {int(bad[0])} sum to "
                                      f"{w[bad[0]].sum():.17g}, not 1")
        if np.any(sd <= 0):
            raise ValidationError("wpo: std must be > 0")
        mu = np.clip(mu, self.lo, self.hi)
        sd = np.clip(sd, self.min_std, self.max_std)
        with np.errstate(divide="ignore"):
            lw = np.log(w)          # -inf off the support: zero weights stay zero
        return lw, mu, sd

    def _from_policy(self, policy):
        A = self.mdp.actions
        mean = policy.masses @ A.centers
        # the cell masses of a Gaussian binned on the grid have atom variance sigma^2 + h^2/12
        # (Sheppard): invert that
        var = policy.masses @ (A.centers ** 2) - mean ** 2 - A.spacing ** 2 / 12.0
        std = np.sqrt(np.maximum(var, self.min_std ** 2))
        K = self.K
        z = np.linspace(-1.0, 1.0, K) if K > 1 else np.zeros(1)
        mu = mean[:, None, :] + std[:, None, :] * z[None, :, None]
        sd = np.repeat(std[:, None, :], K, axis=1)
        w = np.full((policy.n_states, K), 1.0 / K)
        return self._check_params({"weights": w, "mean": mu, "std": sd} if self.mixture else
                                  {"mean": mu[:, 0], "std": sd[:, 0]})

    def _state(self, t, lw, mu, sd, info=None):
        """The state of log weights ``lw`` ``(nS, K)`` (``-inf`` off the support), means and stds.

        The weights are ``exp(lw)``: a weight may underflow to 0 while its log stays finite, so
        that the mirror step can bring it back (as in exact arithmetic)."""
        w = np.exp(lw)
        p, logZ = gaussian_cell_probabilities(self.mdp.actions, mu, sd)        # (nS, K, nA)
        masses = np.einsum("sk,ska->sa", w, p)
        ev = self.evaluate(masses)
        st = FlowState(t, masses, ev, self._pack(lw, w, mu, sd), dict(info or {}))
        st.info["_cache"] = (lw, w, mu, sd, p, logZ)
        return st

    def init(self, policy, t0: float = 0.0) -> FlowState:
        self._legacy_frames = False
        if isinstance(policy, (np.ndarray, Policy)):
            policy = Policy(self.initial_masses(policy), self.mdp.actions, self.mdp.states,
                            validate=False)
            lw, mu, sd = self._from_policy(policy)
        else:
            lw, mu, sd = self._check_params(policy)
        return self._state(t0, lw, mu, sd)

    def init_from_frame(self, policy, params: dict, t0: float) -> FlowState:
        """Rebuild a state from a stored frame: ``mean``, ``std`` and, for mixtures, the log
        weights (``log_weights``, ``support``), which are the restart data of the weights.

        A mixture frame stored without them (a file written before the scheme carried the log
        weights) resumes from ``log(weights)``, and the run goes on storing frames in that file's
        layout (a weight that underflowed to 0 in such a file is 0 for good)."""
        if not self.mixture:
            return self.init({k: params[k] for k in ("mean", "std")}, t0=t0)
        if "log_weights" not in params and "support" not in params:
            state = self.init({k: params[k] for k in ("weights", "mean", "std")}, t0=t0)
            self._legacy_frames = True
            state.params = self._pack(*state.info["_cache"][:4])
            return state
        lw = self._frame_log_weights(params)
        _, mu, sd = self._check_params({k: params[k] for k in ("weights", "mean", "std")})
        self._legacy_frames = False
        return self._state(t0, lw, mu, sd)

    def _frame_log_weights(self, params):
        """The validated log weights of a mixture frame (``-inf`` off its support)."""
        nS, K = self.mdp.n_states, self.K
        logw, support, arrays = frame_logs("wpo", "log_weights", params, (nS, K),
                                           extra=("weights",))
        lw = np.where(support, logw, -np.inf)
        # the stored log weights are normalized to rounding after a step; the initial frame
        # holds the user's weights, whose sums are checked to 1e-10 (_check_params)
        lse = logsumexp(lw, axis=1)
        bad = np.flatnonzero(np.abs(lse) > 1e-10)
        if bad.size:
            raise ValidationError(f"wpo: the frame's log_weights of state {int(bad[0])} are not "
                                  f"normalized (log-sum-exp {lse[bad[0]]:.17g}, not 0)")
        # the frame's weights are exp(log_weights): equal to the last ulp (1e-12 relative
        # allows for another machine's exp)
        w = np.asarray(arrays["weights"], dtype=float)
        off = np.argwhere(~np.isclose(w, np.exp(lw), rtol=1e-12, atol=0.0))
        if off.size:
            idx = tuple(int(i) for i in off[0])
            raise ValidationError(f"wpo: the frame's weights {float(w[idx])!r} at {idx} are not "
                                  f"exp(log_weights) = {float(np.exp(lw[idx]))!r}")
        return lw

    def policy(self, state) -> Policy:
        return Policy(state.masses, self.mdp.actions, self.mdp.states, validate=False)

    # ------------------------------------------------------------------ the WPO direction
    def direction(self, state) -> dict:
        """The WPO direction of a state (cached): ``dmu``, ``dstd`` ``(nS, K, da)``, ``A``
        ``(nS, K)`` (``E_k[Psi] - E_pi[Psi]``), ``rate`` (step-size scale) and the raw moments."""
        if "_direction" in state.info:
            return state.info["_direction"]
        lw, w, mu, sd, p, logZ = state.info["_cache"]
        ev = state.evaluation
        tau = self.tau
        nS, K, da = mu.shape
        if self.samples is None:
            si, pts, model = self._centres
            q, g = ev.q_at(model, si, pts, grad=True)
            nA = self.mdp.n_actions
            q, g = q.reshape(nS, nA), g.reshape(nS, nA, da)
            centres = self.mdp.actions.centers
            logpi, score = _log_density_and_score(lw, mu, sd, logZ,
                                                  np.broadcast_to(centres, (nS, nA, da)))
            gpsi = g + tau * score if tau > 0 else g
            psi = q + tau * logpi if tau > 0 else q
            dev = centres[None, None, :, :] - mu[:, :, None, :]                 # (nS, K, nA, da)
            Eg = np.einsum("ska,sad->skd", p, g)
            Egpsi = np.einsum("ska,sad->skd", p, gpsi)
            Edev_gpsi = np.einsum("ska,skad,sad->skd", p, dev, gpsi)
            Edev_g = np.einsum("ska,skad,sad->skd", p, dev, g)
            Edev = np.einsum("ska,skad->skd", p, dev)
            Epsi = np.einsum("ska,sa->sk", p, psi)
        else:
            a = self._sample_points(mu, sd)                                    # (nS, K, N, da)
            N = a.shape[2]
            flat = a.reshape(nS, K * N, da)
            si = np.repeat(np.arange(nS), K * N)
            q, g = ev.q_at(self.mdp, si, flat.reshape(-1, da), grad=True)
            q, g = q.reshape(nS, K, N), g.reshape(nS, K, N, da)
            logpi, score = _log_density_and_score(lw, mu, sd, logZ, flat)
            logpi, score = logpi.reshape(nS, K, N), score.reshape(nS, K, N, da)
            gpsi = g + tau * score if tau > 0 else g
            psi = q + tau * logpi if tau > 0 else q
            dev = a - mu[:, :, None, :]
            Eg = g.mean(axis=2)
            Egpsi = gpsi.mean(axis=2)
            Edev_gpsi = (dev * gpsi).mean(axis=2)
            Edev_g = (dev * g).mean(axis=2)
            Edev = dev.mean(axis=2)
            Epsi = psi.mean(axis=2)
        dmu = Egpsi
        dstd = Edev_gpsi / sd
        A = Epsi - np.sum(w * Epsi, axis=1, keepdims=True) if self.mixture else np.zeros((nS, K))
        cov = Edev_g - Edev * Eg
        rate = float(np.max(np.abs(cov) / sd ** 2 + tau / sd ** 2))
        if self.mixture:
            rate = max(rate, self.weight_rate * float(np.max(np.abs(A))))
        out = {"dmu": dmu, "dstd": dstd, "A": A, "rate": rate, "E_grad_psi": Egpsi,
               "E_dev_grad_psi": Edev_gpsi, "E_psi": Epsi}
        state.info["_direction"] = out
        return out

    def _sample_points(self, mu, sd):
        """Fixed uniforms -> box-conditioned Gaussian draws by the inverse CDF, per axis."""
        u = self._u                                                            # (nS, K, N, da)
        lo = ndtr((self.lo - mu) / sd)[:, :, None, :]
        hi = ndtr((self.hi - mu) / sd)[:, :, None, :]
        pr = np.clip(lo + u * (hi - lo), np.nextafter(0.0, 1.0), np.nextafter(1.0, 0.0))
        a = mu[:, :, None, :] + sd[:, :, None, :] * ndtri(pr)
        return np.clip(a, self.lo, self.hi)

    def _active(self, state, d):
        """Masks of the parameters held at a bound by the projection (the step would leave it)."""
        _, _, mu, sd, _, _ = state.info["_cache"]
        mu_act = ((mu <= self.lo) & (d["dmu"] > 0)) | ((mu >= self.hi) & (d["dmu"] < 0))
        sd_act = ((sd <= self.min_std) & (d["dstd"] > 0)) | ((sd >= self.max_std) & (d["dstd"] < 0))
        return mu_act, sd_act

    def grad_norm2(self, state) -> float:
        r"""``sum_s w(s) [sum_k w_k sum_d (dmu^2 + dsigma^2) + weight_rate sum_k w_k A_k^2]``.

        The squared norm of the direction in the Wasserstein metric restricted to the family:
        moving component k by ``dmu + dsigma (a - mu)/sigma`` costs ``w_k (|dmu|^2 + |dsigma|^2)``
        (Bures--Wasserstein, diagonal), and the weights carry the Fisher--Rao metric scaled by
        ``1/weight_rate``; so ``dJ/dt = -kappa * grad_norm2`` up to the quadrature error.
        Components held at a bound by the projection (std at ``min_std``, mean at the box edge)
        are left out (projected-gradient stationarity measure).
        """
        d = self.direction(state)
        w = state.info["_cache"][1]
        mu_act, sd_act = self._active(state, d)
        sq = np.sum(np.where(mu_act, 0.0, d["dmu"]) ** 2 + np.where(sd_act, 0.0, d["dstd"]) ** 2,
                    axis=-1)
        per_state = np.sum(w * sq, axis=1)
        if self.mixture:
            per_state = per_state + self.weight_rate * np.sum(w * d["A"] ** 2, axis=1)
        return float(np.sum(state.evaluation.weights * per_state))

    # ------------------------------------------------------------------ stepping
    @property
    def adaptive(self) -> bool:
        return True

    def suggest_dt(self, state) -> float:
        rate = self.direction(state)["rate"]
        bound = self.cfl / rate if rate > 0 else np.inf
        if self._dt_prev is not None:
            bound = min(bound, 2.0 * self._dt_prev)
        return bound

    def _update(self, state, dt):
        d = self.direction(state)
        lw, _, mu, sd, _, _ = state.info["_cache"]
        mu_new = np.clip(mu - dt * d["dmu"], self.lo, self.hi)
        sd_new = np.clip(sd - dt * d["dstd"], self.min_std, self.max_std)
        if self.mixture:
            # the mirror step on the carried log weights (-inf stays -inf off the support); a
            # weight that underflows keeps its finite log, and grows back when A_k turns negative
            lw_new = lw - self.weight_rate * dt * d["A"]
            lw_new = lw_new - logsumexp(lw_new, axis=1, keepdims=True)
        else:
            lw_new = lw
        return lw_new, mu_new, sd_new

    def step(self, state: FlowState, dt: float, adaptive: bool = False) -> FlowState:
        def propose(h):
            lw, mu, sd = self._update(state, h)
            return self._state(state.t + h, lw, mu, sd, {"dt": h})

        return self._accept_or_halve(state, dt, adaptive, propose)
