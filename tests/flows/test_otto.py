"""The otto scheme: structure preservation (docs/design.md §3), limits and order of accuracy."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import wgflow as wg
from wgflow.flows.otto import otto_rhs
from wgflow.policy import gibbs_masses


def _positive_policy(mdp, rng):
    m = rng.random((mdp.n_states, mdp.n_actions)) + 0.05
    return wg.Policy.from_masses(mdp, m / m.sum(axis=1, keepdims=True))


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10**6), tau=st.sampled_from([0.0, 0.1]),
       nA=st.integers(2, 9), nS=st.integers(1, 12))
def test_mass_and_positivity_on_random_mdps(seed, tau, nA, nS):
    rng = np.random.default_rng(seed)
    mdp = wg.problems.get("garnet", n_states=nS, n_actions=nA, branching=min(3, nS), seed=seed)
    pi0 = _positive_policy(mdp, rng)
    traj = wg.flow(mdp, wg.Discounted(0.8, entropy=tau), pi0, t_end=0.05, save_every=0.01, progress=False)
    np.testing.assert_allclose(traj.masses.sum(axis=2), 1.0, atol=1e-13)
    assert traj.masses.min() >= 0.0
    assert np.all(np.diff(traj.J) <= 1e-12 * np.abs(traj.J[:-1]).max())


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


@pytest.mark.parametrize("objective", [wg.Discounted(0.9, entropy=0.3), wg.Average(entropy=0.3)],
                         ids=["discounted", "average"])
def test_dissipation_identity_first_order(objective):
    mdp = wg.problems.get("lqr1d", n_states=31, n_actions=25, noise=0.6)
    pi0 = wg.Policy.gaussian(mdp, mean=1.0, std=0.8)
    kappa = 1.0 / (1.0 - objective.gamma) if isinstance(objective, wg.Discounted) else 1.0
    errors = []
    for dt in (2e-3, 1e-3, 5e-4):
        traj = wg.flow(mdp, objective, pi0, t_end=dt, dt=dt, save_every=dt, progress=False)
        slope = (traj.J[1] - traj.J[0]) / dt
        predicted = -kappa * traj.grad_norm2[0]
        errors.append(abs(slope - predicted) / abs(predicted))
    assert errors[-1] < 1e-2
    # first order: the error halves with dt
    assert errors[0] / errors[1] == pytest.approx(2.0, rel=0.15)
    assert errors[1] / errors[2] == pytest.approx(2.0, rel=0.15)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["lqr1d", "garnet"])
@pytest.mark.parametrize("kind", ["discounted", "average"])
def test_limit_equals_solve(case, kind):
    if case == "lqr1d":
        mdp = wg.problems.get("lqr1d", n_states=21, n_actions=15, noise=0.7)
        tau, t_end = 0.5, 20.0
    else:
        # tau large enough that the Gibbs law has no deep valleys between its modes: the
        # Wasserstein flow crosses such valleys at a rate exponentially small in 1/tau (metastability)
        mdp = wg.problems.get("garnet", n_states=8, n_actions=6, seed=3)
        tau, t_end = 0.5, 20.0
    obj = wg.Discounted(0.8, entropy=tau) if kind == "discounted" else wg.Average(entropy=tau)
    sol = wg.solve(mdp, obj)
    traj = wg.flow(mdp, obj, wg.Policy.uniform(mdp), t_end=t_end, trackers=["steady_state"],
                   progress=False)
    assert np.max(np.abs(traj.final.masses - sol.policy.masses)) < 1e-6
    assert traj.J[-1] == pytest.approx(sol.J, abs=1e-9 * max(1.0, abs(sol.J)))
    assert np.all(np.diff(traj.J) <= 1e-12 * max(1.0, abs(sol.J)))


def test_first_order_convergence_in_dt():
    mdp = wg.problems.get("lqr1d", n_states=21, n_actions=15, noise=0.7)
    obj = wg.Discounted(0.8, entropy=0.5)
    pi0 = wg.Policy.gaussian(mdp, mean=-1.0, std=0.5)
    T = 0.2
    ref = wg.flow(mdp, obj, pi0, t_end=T, dt=T / 1600, save_every=T, progress=False).final.masses
    errs = [np.abs(wg.flow(mdp, obj, pi0, t_end=T, dt=T / n, save_every=T, progress=False).final.masses
                   - ref).max() for n in (50, 100, 200)]
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(np.abs(orders - 1.0) < 0.2), orders


def test_fixed_dt_beyond_cfl_raises():
    mdp = wg.problems.get("quadratic_bandit", n_actions=41)
    with pytest.raises(wg.ValidationError, match="CFL"):
        wg.flow(mdp, wg.Discounted(0.5, entropy=0.5), wg.Policy.uniform(mdp), t_end=1.0, dt=0.5,
                progress=False)
