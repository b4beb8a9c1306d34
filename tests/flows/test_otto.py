"""The otto scheme: structure preservation (docs/design.md §3) for both time integrators, their
order in time, limits, and the implicit integrator's adaptive steps."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.linalg import expm

import wgflow as wg
from wgflow.flows import CallbackTracker
from wgflow.flows.otto import Otto, otto_rhs
from wgflow.kernels.sg_implicit import sg_generator_dense
from wgflow.policy import gibbs_masses


def _positive_policy(mdp, rng):
    m = rng.random((mdp.n_states, mdp.n_actions)) + 0.05
    return wg.Policy.from_masses(mdp, m / m.sum(axis=1, keepdims=True))


def _rounding(J):
    # J of an exact evaluation carries a few hundred ulps (condition number ~ (1+g)/(1-g) <= 10)
    return 1e-13 * max(1.0, np.max(np.abs(J)))


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 10**6), tau=st.sampled_from([0.0, 0.1]),
       nA=st.integers(2, 9), nS=st.integers(1, 12))
def test_mass_and_positivity_on_random_mdps(seed, tau, nA, nS):
    rng = np.random.default_rng(seed)
    mdp = wg.problems.get("garnet", n_states=nS, n_actions=nA, branching=min(3, nS), seed=seed)
    pi0 = _positive_policy(mdp, rng)
    for method in ("implicit", "explicit"):
        traj = wg.flow(mdp, wg.Discounted(0.8, entropy=tau), pi0, t_end=0.05, save_every=0.01,
                       progress=False, method=method)
        np.testing.assert_allclose(traj.masses.sum(axis=2), 1.0, atol=1e-13)
        assert traj.masses.min() >= 0.0
        assert np.all(np.diff(traj.J) <= _rounding(traj.J))


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10**6), tau=st.sampled_from([0.0, 0.05, 0.5]),
       log_dt=st.sampled_from([-2, 0, 3, 8]))
def test_implicit_step_keeps_structure_and_decreases_J_for_any_dt(seed, tau, log_dt):
    """One fixed implicit step of any size: mass, positivity, and J(pi_1) <= J(pi_0) (the
    resolvent decreases the per-state free energy of Q_0; performance-difference lemma)."""
    rng = np.random.default_rng(seed)
    mdp = wg.problems.get("garnet", n_states=6, n_actions=7, branching=3, seed=seed % 1000)
    pi0 = _positive_policy(mdp, rng)
    dt = 10.0 ** log_dt
    for obj in (wg.Discounted(0.9, entropy=tau), wg.Average(entropy=tau)):
        traj = wg.flow(mdp, obj, pi0, t_end=dt, dt=dt, progress=False)
        m1 = traj.final.masses
        assert m1.min() >= 0.0
        np.testing.assert_allclose(m1.sum(axis=1), 1.0, atol=1e-14)
        assert traj.J[-1] <= traj.J[0] + _rounding(traj.J)


@pytest.mark.parametrize("shape", [(9,), (5, 6)])
def test_frozen_q_gibbs_is_stationary(shape, rng):
    grid = wg.Grid([(-1, 1)] * len(shape), list(shape))
    Q = 3.0 * rng.standard_normal((4, grid.size))
    for tau in (0.05, 0.7):
        m = gibbs_masses(Q, tau)
        dm, rate, _ = otto_rhs(m, Q, tau, grid)
        assert np.max(np.abs(dm)) <= 1e-13 * np.max(rate * m)
        # and a non-Gibbs policy does move
        dm2, _, _ = otto_rhs(np.full_like(m, 1.0 / grid.size), Q, tau, grid)
        assert np.max(np.abs(dm2)) > 1e-3


@pytest.mark.parametrize("method", ["implicit", "explicit"])
@pytest.mark.parametrize("objective", [wg.Discounted(0.9, entropy=0.3), wg.Average(entropy=0.3)],
                         ids=["discounted", "average"])
def test_dissipation_identity_first_order(objective, method):
    mdp = wg.problems.get("lqr1d", n_states=31, n_actions=25, noise=0.6)
    pi0 = wg.Policy.gaussian(mdp, mean=1.0, std=0.8)
    kappa = 1.0 / (1.0 - objective.gamma) if isinstance(objective, wg.Discounted) else 1.0
    errors = []
    for dt in (2e-3, 1e-3, 5e-4):
        traj = wg.flow(mdp, objective, pi0, t_end=dt, dt=dt, save_every=dt, progress=False,
                       method=method)
        slope = (traj.J[1] - traj.J[0]) / dt
        predicted = -kappa * traj.grad_norm2[0]
        errors.append(abs(slope - predicted) / abs(predicted))
    assert errors[-1] < 2e-2
    # first order: the error halves with dt
    assert errors[0] / errors[1] == pytest.approx(2.0, rel=0.15)
    assert errors[1] / errors[2] == pytest.approx(2.0, rel=0.15)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["lqr1d", "garnet"])
@pytest.mark.parametrize("kind", ["discounted", "average"])
def test_limit_equals_solve(case, kind):
    """Default (implicit, adaptive) steps reach the policy wg.solve returns; J decreases at every
    step."""
    if case == "lqr1d":
        mdp = wg.problems.get("lqr1d", n_states=21, n_actions=15, noise=0.7)
    else:
        mdp = wg.problems.get("garnet", n_states=8, n_actions=6, seed=3)
    tau = 0.5
    obj = wg.Discounted(0.8, entropy=tau) if kind == "discounted" else wg.Average(entropy=tau)
    sol = wg.solve(mdp, obj, tol=1e-12)
    Js = []
    traj = wg.flow(mdp, obj, wg.Policy.uniform(mdp), t_end=1e12, save_every=1e12, progress=False,
                   trackers=[CallbackTracker(lambda s, c: Js.append(s.J), interval=0.0)])
    assert np.max(np.abs(traj.final.masses - sol.policy.masses)) < 1e-8
    assert traj.J[-1] == pytest.approx(sol.J, abs=1e-10 * max(1.0, abs(sol.J)))
    assert np.all(np.diff(Js) <= _rounding(Js))
    assert traj.diagnostics["steps"] < 100


def test_explicit_limit_equals_solve():
    mdp = wg.problems.get("lqr1d", n_states=21, n_actions=15, noise=0.7)
    obj = wg.Discounted(0.8, entropy=0.5)
    sol = wg.solve(mdp, obj)
    traj = wg.flow(mdp, obj, wg.Policy.uniform(mdp), t_end=20.0, trackers=["steady_state"],
                   progress=False, method="explicit")
    assert np.max(np.abs(traj.final.masses - sol.policy.masses)) < 1e-6
    assert np.all(np.diff(traj.J) <= _rounding(traj.J))


def test_first_order_convergence_in_dt():
    """Observed order in time of both integrators against one reference: Richardson-extrapolated
    explicit steps (second-order accurate), so the reference's own error does not bias it."""
    mdp = wg.problems.get("lqr1d", n_states=15, n_actions=13, noise=0.7)
    obj = wg.Discounted(0.8, entropy=0.5)
    pi0 = wg.Policy.gaussian(mdp, mean=-1.0, std=0.5)
    T = 0.1

    def final(n, method):
        return wg.flow(mdp, obj, pi0, t_end=T, dt=T / n, save_every=T, progress=False,
                       method=method).final.masses

    ref = 2.0 * final(640, "explicit") - final(320, "explicit")
    for method in ("implicit", "explicit"):
        errs = [np.abs(final(n, method) - ref).max() for n in (20, 40, 80)]
        orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
        assert np.all(np.abs(orders - 1.0) < 0.1), (method, orders)


def test_linear_flow_against_expm():
    """One state: Q = C + gamma V differs from C by a constant, so L(Q) is frozen and the flow is
    linear, m(t) = expm(-t L) m0 (scipy). Both integrators converge to it at first order; the
    implicit steps stay positive far beyond the explicit CFL bound, where they are Gibbs."""
    mdp = wg.problems.get("quadratic_bandit", n_actions=21, curvature=2.0, center=0.5)
    obj = wg.Discounted(0.5, entropy=0.5)
    pi0 = wg.Policy.gaussian(mdp, mean=-2.0, std=0.6)
    L = sg_generator_dense(mdp.C, 0.5, mdp.actions)[0]
    T = 0.5
    exact = expm(-T * L) @ pi0.masses[0]
    for method in ("implicit", "explicit"):
        errs = []
        for n in (40, 80, 160):
            tr = wg.flow(mdp, obj, pi0, t_end=T, dt=T / n, save_every=T, progress=False,
                         method=method)
            errs.append(np.abs(tr.final.masses[0] - exact).max())
        orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
        np.testing.assert_allclose(orders, 1.0, atol=0.05)
    rate = np.diag(L).max()
    big = wg.flow(mdp, obj, pi0, t_end=1e6 / rate, dt=1e6 / rate, progress=False)
    np.testing.assert_allclose(big.final.masses[0], gibbs_masses(mdp.C, 0.5)[0], rtol=0,
                               atol=1e-5)


def test_huge_implicit_step_is_soft_policy_iteration():
    """dt -> inf: (I + dt L(Q_0))^{-1} m_0 -> gibbs(Q_0) (lqr1d: Q_0(s, .) is unimodal, no
    barrier, so dt = 1e12 is already there to ~1e-12 / spectral gap)."""
    mdp = wg.problems.get("lqr1d", n_states=15, n_actions=11, noise=0.7)
    obj = wg.Discounted(0.8, entropy=0.5)
    pi0 = wg.Policy.uniform(mdp)
    Q0 = wg.evaluate(mdp, pi0, obj).Q
    traj = wg.flow(mdp, obj, pi0, t_end=1e12, dt=1e12, progress=False)
    np.testing.assert_allclose(traj.final.masses, gibbs_masses(Q0, 0.5), rtol=0, atol=1e-10)


def test_adaptive_steps_grow_without_cfl_bound_and_stay_within_tol():
    mdp = wg.problems.get("lqr1d", n_states=21, n_actions=15, noise=0.7)
    obj = wg.Discounted(0.9, entropy=0.2)
    traj = wg.flow(mdp, obj, wg.Policy.gaussian(mdp, mean=2.0, std=0.5), t_end=1e8,
                   save_every=1e8, progress=False)
    d = traj.diagnostics
    _, rate, _ = otto_rhs(traj.final.masses, wg.solve(mdp, obj).Q, 0.2, mdp.actions)
    assert d["dt_largest"] > 1e3 / rate.max()          # far beyond the explicit bound
    assert d["error_max"] <= 0.05                      # the default tol
    assert traj.J[-1] - wg.solve(mdp, obj).J < 1e-9


def test_small_entropy_with_underflowing_gibbs_tails():
    """tau = 2e-3: Gibbs tails exp(-dQ/tau) underflow to 0. The implicit steps keep positivity
    and mass (no NaN), J decreases, and the flow reaches the optimum (unimodal Q on lqr1d)."""
    mdp = wg.problems.get("lqr1d", n_states=15, n_actions=21, noise=0.7)
    obj = wg.Discounted(0.9, entropy=2e-3)
    sol = wg.solve(mdp, obj)
    assert sol.policy.masses.min() == 0.0              # tails underflow
    Js = []
    traj = wg.flow(mdp, obj, wg.Policy.uniform(mdp), t_end=1e30, progress=False,
                   trackers=[CallbackTracker(lambda s, c: Js.append(s.J), interval=0.0)])
    assert np.all(np.isfinite(traj.masses)) and traj.masses.min() >= 0.0
    np.testing.assert_allclose(traj.masses.sum(axis=2), 1.0, atol=1e-13)
    assert np.all(np.diff(Js) <= _rounding(Js))
    assert traj.J[-1] - sol.J < 1e-8


def test_tau_zero_implicit_moves_mass_downhill_to_a_local_minimum():
    """tau = 0 (upwind generator): huge implicit steps send each state's mass to the local minima
    of Q_0 along the actions it can reach downhill; J decreases."""
    mdp = wg.problems.get("lqr1d", n_states=11, n_actions=9, noise=0.7)
    obj = wg.Discounted(0.8, entropy=0.0)
    pi0 = wg.Policy.uniform(mdp)
    Q0 = wg.evaluate(mdp, pi0, obj).Q
    traj = wg.flow(mdp, obj, pi0, t_end=1e9, dt=1e9, progress=False)
    m1 = traj.final.masses
    assert traj.J[-1] < traj.J[0]
    # lqr1d: Q_0(s, .) is convex in a, so all the mass goes to its argmin (to O(1/dt))
    np.testing.assert_allclose(m1[np.arange(11), Q0.argmin(axis=1)], 1.0, atol=1e-6)


def test_fixed_dt_beyond_cfl_raises_for_the_explicit_step_only():
    mdp = wg.problems.get("quadratic_bandit", n_actions=41)
    obj = wg.Discounted(0.5, entropy=0.5)
    with pytest.raises(wg.ValidationError, match="CFL"):
        wg.flow(mdp, obj, wg.Policy.uniform(mdp), t_end=1.0, dt=0.5, progress=False,
                method="explicit")
    traj = wg.flow(mdp, obj, wg.Policy.uniform(mdp), t_end=1.0, dt=0.5, progress=False)
    assert traj.masses.min() >= 0.0


def test_implicit_step_size_cap():
    mdp = wg.problems.get("quadratic_bandit", n_actions=11)
    with pytest.raises(wg.ValidationError, match="largest implicit step"):
        wg.flow(mdp, wg.Discounted(0.5, entropy=0.5), wg.Policy.uniform(mdp), t_end=1e300,
                dt=1e300, progress=False)


@pytest.mark.parametrize("options, match", [
    ({"method": "rk4"}, "method"), ({"tol": 0.0}, "tol"), ({"tol": np.inf}, "tol"),
    ({"growth": 1.0}, "growth"), ({"dt_max": -1.0}, "dt_max"), ({"cfl": 2.0}, "cfl")])
def test_bad_options_raise(options, match):
    mdp = wg.problems.get("quadratic_bandit", n_actions=11)
    with pytest.raises(wg.ValidationError, match=match) as info:
        Otto(mdp, wg.Discounted(0.5, entropy=0.5), **options)
    assert isinstance(info.value, ValueError)


def test_controller_state_round_trips_through_state_dict():
    mdp = wg.problems.get("quadratic_bandit", n_actions=11)
    obj = wg.Discounted(0.5, entropy=0.5)
    a = Otto(mdp, obj)
    st0 = a.init(wg.Policy.uniform(mdp))
    st1 = a.step(st0, a.suggest_dt(st0), adaptive=True)
    b = Otto(mdp, obj)
    b.load_state_dict(a.state_dict())
    assert b.suggest_dt(st1) == a.suggest_dt(st1) and a.state_dict()["dt_next"] > 0
