"""Tests of the ``jko`` scheme (minimizing movements with the exact 1-D W_2 of the grid densities)."""
import numpy as np
import pytest

import wgflow as wg
import wgflow.flows.jko as jko
from wgflow.errors import ConvergenceError, ValidationError
from wgflow.flows.otto import otto_rhs
from wgflow.policy import gibbs_masses


def _random_masses(rng, nS, n, zeros=False):
    m = rng.random((nS, n)) + 0.05
    if zeros:
        m[0, 2:5] = 0.0                   # a gap: the quantile function jumps
        m[1] = 0.0
        m[1, n // 2] = 1.0                # a single cell
    return m / m.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def lqr():
    mdp = wg.problems.get("lqr1d", n_states=11, n_actions=21)
    obj = wg.Discounted(0.9, entropy=0.5)
    return mdp, obj, wg.solve(mdp, obj, tol=1e-13)


@pytest.fixture(scope="module")
def garnet():
    mdp = wg.problems.get("garnet", n_states=12, n_actions=6)
    obj = wg.Discounted(0.9, entropy=0.1)
    return mdp, obj, wg.solve(mdp, obj, tol=1e-13)


# ----------------------------------------------------------------------------- W_2 and derivatives
def test_w2_matches_geometry(rng):
    import wgflow.geometry as geo
    n, delta = 13, 0.3
    A = wg.Grid([(0.0, n * delta)], [n])
    m, p = _random_masses(rng, 3, n), _random_masses(rng, 3, n, zeros=True)
    ref = geo.w2sq(wg.Policy(m, A), wg.Policy(p, A))
    assert np.allclose(jko.w2sq_pc(m, p, delta), ref, rtol=1e-12, atol=1e-15)
    assert np.allclose(jko.w2sq_pc(p, p, delta), 0.0, atol=1e-15)


def test_w2_gradient_matches_finite_differences(rng):
    n, delta = 11, 0.2
    m, p = _random_masses(rng, 3, n), _random_masses(rng, 3, n, zeros=True)
    g = jko.w2sq_pc_grad(m, p, delta)
    eps = 1e-6
    for i, j in [(0, 5), (3, 4), (10, 2), (7, 9)]:       # mass-preserving directions e_i - e_j
        v = np.zeros(n)
        v[i], v[j] = 1.0, -1.0
        fd = (jko.w2sq_pc(m + eps * v, p, delta) - jko.w2sq_pc(m - eps * v, p, delta)) / (2 * eps)
        assert np.allclose(fd, g @ v, rtol=1e-7, atol=1e-9)


def test_w2_hessian_in_knot_coordinates_matches_finite_differences(rng):
    n, delta = 9, 0.25
    m, p = _random_masses(rng, 3, n), _random_masses(rng, 3, n, zeros=True)
    _, gF, hd, ho = jko._w2_terms(m, p, delta)
    F = jko._cumulative(m)
    eps = 1e-7
    H = np.zeros((3, n - 1, n - 1))
    for j in range(1, n):
        Fp, Fm = F.copy(), F.copy()
        Fp[:, j] += eps
        Fm[:, j] -= eps
        H[:, :, j - 1] = (jko._w2_terms(np.diff(Fp, axis=1), p, delta, False)[1]
                          - jko._w2_terms(np.diff(Fm, axis=1), p, delta, False)[1]) / (2 * eps)
        # the gradient itself: d W^2 / d F_j
        fd = (jko.w2sq_pc(np.diff(Fp, axis=1), p, delta) - jko.w2sq_pc(np.diff(Fm, axis=1), p, delta)) / (2 * eps)
        assert np.allclose(fd, gF[:, j - 1], atol=1e-8)
    for s in range(3):
        Ha = np.diag(hd[s]) + np.diag(ho[s], 1) + np.diag(ho[s], -1)
        assert np.allclose(H[s], Ha, atol=1e-6 * np.abs(Ha).max())
        assert np.linalg.eigvalsh(Ha).min() > -1e-12 * np.abs(Ha).max()   # W_2^2 is convex


def test_newton_kernel_solves_the_tridiagonal_system(rng):
    nS, n, tau = 2, 8, 0.3
    m = _random_masses(rng, nS, n)
    b = rng.standard_normal((nS, n - 1))
    k = rng.random((nS, n - 1))
    kap = 0.1 * rng.random((nS, n - 2))
    dF, dth = np.empty((nS, n - 1)), np.empty((nS, n))
    jko._newton_kernel(m, b, k, kap, np.full(nS, tau), dF, dth)
    for s in range(nS):
        lam = tau / m[s]
        H = (np.diag(lam[:-1] + lam[1:] + k[s]) + np.diag(kap[s] - lam[1:-1], 1)
             + np.diag(kap[s] - lam[1:-1], -1))
        x = np.linalg.solve(H, b[s])
        assert np.allclose(dF[s], x, rtol=1e-12, atol=1e-14)
        assert np.allclose(dth[s] * m[s], np.diff(np.concatenate([[0.0], x, [0.0]])), atol=1e-13)


# ----------------------------------------------------------------------------- the proximal step
def test_frozen_gibbs_is_a_fixed_point(rng):
    n, delta, tau = 41, 0.2, 0.3
    x = (np.arange(n) + 0.5) * delta
    Q = np.stack([(x - 2) ** 2, 2 * np.sin(3 * x), 0.5 * (x - 6) ** 2, 3 * rng.random(n)])
    g = gibbs_masses(Q, tau)
    for h in (1e-3, 0.1, 10.0):
        m, info = jko.jko_prox_1d(g, Q, tau, h, delta)
        assert np.max(np.abs(m - g)) < 1e-12
        assert info["iterations"] <= 3


def test_prox_optimality_and_invariants(rng):
    n, delta, tau = 25, 0.2, 0.2
    x = (np.arange(n) + 0.5) * delta
    Q = np.stack([(x - 1) ** 2, np.cos(2 * x), 2 * rng.random(n)])
    p = _random_masses(rng, 3, n, zeros=True)
    for h in (1e-3, 0.1, 10.0):
        # a gap in p (row 0) is a jump of its quantile function: where tiny cells of m sit at the
        # jump, W_2^2 is non-smooth at floating-point resolution and Newton may stall (h = 1e-3)
        m, info = jko.jko_prox_1d(p, Q, tau, h, delta, max_iter=60, on_stall="accept")
        assert set(info["stalled"].tolist()) <= {0}
        assert info["residual_per_state"][2] < 1e-9
        assert np.all(m > 0) and np.allclose(m.sum(axis=1), 1.0, atol=1e-14)
        # first-order condition on the simplex: Q + tau log m + grad W^2 / (2h) constant (row 2:
        # p > 0; rows 0, 1 have gaps in p, where the gradient of W_2^2 has kinks)
        pot = Q[2] + tau * np.log(m[2] / delta) + jko.w2sq_pc_grad(m[2:], p[2:], delta)[0] / (2 * h)
        assert np.ptp(pot) < 1e-9
        # the minimizer beats nearby feasible points
        f0 = jko._objective(m, p, Q, tau, h, delta, delta)[0]
        for scale in (1e-2, 1e-4, 1e-6):
            for _ in range(5):
                pert = m * np.exp(scale * rng.standard_normal(m.shape))
                pert /= pert.sum(axis=1, keepdims=True)
                assert np.all(jko._objective(pert, p, Q, tau, h, delta, delta)[0] >= f0 - 1e-13)
    with pytest.raises(ConvergenceError, match="non-smooth"):
        jko.jko_prox_1d(p, Q, tau, 1e-3, delta, max_iter=3)


# ----------------------------------------------------------------------------- the scheme
def test_registered_and_options(lqr):
    mdp, obj, _ = lqr
    assert "jko" in wg.flows.scheme_names()
    with pytest.raises(ValidationError, match="entropy > 0"):
        jko.JKO(mdp, wg.Discounted(0.9))
    with pytest.raises(ValidationError, match="unknown option"):
        jko.JKO(mdp, obj, cfl=0.5)
    with pytest.raises(ValidationError):
        jko.JKO(mdp, obj, tol=-1.0)
    with pytest.raises(ValidationError, match="eps"):
        jko.JKO(mdp, obj, eps=0.1)
    with pytest.raises(ValidationError, match="on_stall"):
        jko.JKO(mdp, obj, on_stall="ignore")
    mdp2 = wg.problems.get("lqr2d", n_states=(3, 3), n_actions=(3, 3))
    with pytest.raises(NotImplementedError, match="multi-D"):
        jko.JKO(mdp2, obj)


def test_mass_and_positivity_from_a_deterministic_policy(lqr):
    mdp, obj, _ = lqr
    sch = jko.JKO(mdp, obj)
    st = sch.init(wg.Policy.deterministic(mdp, 2.0))
    for h in (0.05, 1.0):
        st = sch.step(st, h)
        assert np.all(st.masses > 0)
        assert np.max(np.abs(st.masses.sum(axis=1) - 1.0)) < 1e-14
        assert st.info["inner_iterations"] >= 1 and st.info["residual"] < 1e-10


def test_large_step_is_one_soft_policy_iteration_step(lqr, garnet):
    for mdp, obj, _ in (lqr, garnet):
        sch = jko.JKO(mdp, obj)
        st = sch.init(wg.Policy.uniform(mdp))
        st = sch.step(sch.step(st, 0.3), 1e9)    # from a non-trivial policy
        prev = sch.step(sch.init(wg.Policy.uniform(mdp)), 0.3)
        assert np.max(np.abs(st.masses - gibbs_masses(prev.evaluation.Q, obj.entropy))) < 1e-6


def test_limit_is_the_solution_lqr(lqr):
    mdp, obj, sol = lqr
    traj = wg.flow(mdp, obj, wg.Policy.uniform(mdp), scheme="jko", dt=1.0, t_end=12.0,
                   save_every=1.0)
    assert np.max(np.abs(traj.final.masses - sol.policy.masses)) < 1e-6
    assert abs(traj.J[-1] - sol.J) < 1e-9
    assert np.all(np.diff(traj.J) <= 1e-12 * abs(sol.J))


def test_limit_is_the_solution_garnet(garnet):
    mdp, obj, sol = garnet
    traj = wg.flow(mdp, obj, wg.Policy.uniform(mdp), scheme="jko", dt=1e3, t_end=1.5e4,
                   save_every=1e3)
    assert np.max(np.abs(traj.final.masses - sol.policy.masses)) < 1e-6
    assert np.all(np.diff(traj.J) <= 1e-12 * abs(sol.J))


@pytest.mark.parametrize("h", [0.02, 0.3, 5.0])
def test_J_is_monotone_for_any_step(lqr, garnet, h):
    for mdp, obj, sol in (lqr, garnet):
        traj = wg.flow(mdp, obj, wg.Policy.deterministic(mdp, mdp.actions.centers[1]), scheme="jko",
                       dt=h, t_end=8 * h, save_every=h)
        assert np.all(np.diff(traj.J) <= 1e-12 * abs(sol.J))
        assert traj.J[-1] < traj.J[0]
    # average cost as well
    mdp, _, _ = garnet
    avg = wg.Average(entropy=0.1)
    traj = wg.flow(mdp, avg, wg.Policy.uniform(mdp), scheme="jko", dt=h, t_end=6 * h, save_every=h)
    assert np.all(np.diff(traj.J) <= 1e-12)


def test_small_steps_follow_the_semidiscrete_flow(lqr):
    """jko(h) = p + h v_jko + O(h^2), v_jko the tridiagonal-mobility finite-volume velocity, which
    agrees with otto's Scharfetter--Gummel velocity up to O(delta^2); one jko step differs from
    the otto flow over [0, h] by h |v_jko - v_otto| + O(h^2)."""
    mdp, obj, _ = lqr
    pi = wg.Policy.gaussian(mdp, mean=0.5, std=1.0)
    ev = wg.evaluate(mdp, pi, obj)
    delta, tau = mdp.actions.spacing[0], obj.entropy
    v = jko.jko_velocity_1d(pi.masses, ev.Q, tau, delta)
    errs = []
    for h in (4e-3, 2e-3, 1e-3):
        m, _ = jko.jko_prox_1d(pi.masses, ev.Q, tau, h, delta)
        errs.append(np.max(np.abs(m - pi.masses - h * v)))
    assert errs[0] / errs[1] > 3.5 and errs[1] / errs[2] > 3.5       # second order
    # v_jko -> v_otto under grid refinement, O(delta^2), for a law that does not touch the box
    # edges (at an edge with non-zero flux both schemes impose no-flux differently: a boundary layer)
    diffs = []
    for n in (21, 41, 81):
        A = wg.Grid([(-7.0, 7.0)], [n])
        x = A.centers[:, 0]
        m = np.exp(-(x - 0.5) ** 2 / 2)[None]
        m /= m.sum()
        Q = (x ** 2 + np.sin(2 * x))[None]
        vj = jko.jko_velocity_1d(m, Q, tau, A.spacing[0])
        vo = otto_rhs(m, Q, tau, A)[0]
        diffs.append(np.max(np.abs(vj - vo)) / np.max(np.abs(vo)))
    assert diffs[0] > 3.5 * diffs[1] > 3.5 ** 2 * diffs[2]
    # one jko step vs the otto flow over the same time: h |v_jko - v_otto| + O(h^2)
    vo = otto_rhs(pi.masses, ev.Q, tau, mdp.actions)[0]
    h = 2e-3
    sch = jko.JKO(mdp, obj)
    one = sch.step(sch.init(pi), h)
    ot = wg.flow(mdp, obj, pi, scheme="otto", dt=h / 20, t_end=h, save_every=h)
    gap = np.max(np.abs(one.masses - ot.final.masses))
    assert abs(gap - h * np.max(np.abs(v - vo))) < 0.2 * gap


def test_implicit_step(lqr):
    mdp, obj, sol = lqr
    sch = jko.JKO(mdp, obj, implicit=True)
    st0 = sch.init(wg.Policy.uniform(mdp))
    st = sch.step(st0, 1.0)
    assert st.info["implicit_iterations"] >= 2
    # fixed point: pi+ = prox_h(pi_k; Q(pi+))
    m, _ = jko.jko_prox_1d(st0.masses, st.evaluation.Q, obj.entropy, 1.0, mdp.actions.spacing[0])
    assert np.max(np.abs(m - st.masses)) < 1e-9
    assert st.J < st0.J
    traj = wg.flow(mdp, obj, wg.Policy.uniform(mdp), scheme="jko", dt=2.0, t_end=16.0,
                   save_every=2.0, implicit=True)
    assert np.max(np.abs(traj.final.masses - sol.policy.masses)) < 1e-6
    with pytest.raises(ConvergenceError, match="fixed point"):
        jko.JKO(mdp, obj, implicit=True, max_implicit=1).step(st0, 1.0)


def test_default_step_and_diagnostics(lqr):
    mdp, obj, _ = lqr
    traj = wg.flow(mdp, obj, wg.Policy.uniform(mdp), scheme="jko", t_end=3.0, save_every=1.0)
    assert traj.diagnostics["steps"] == 3                  # default_dt = 1
    assert traj.diagnostics["inner_iterations"] > 0
    assert traj.diagnostics["max_residual"] < 1e-10
    # grad_norm2 is otto's dissipation
    sch = jko.JKO(mdp, obj)
    st = sch.init(wg.Policy.uniform(mdp))
    ref = otto_rhs(st.masses, st.evaluation.Q, obj.entropy, mdp.actions, st.evaluation.weights)[2]
    assert sch.grad_norm2(st) == pytest.approx(ref)
