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
        jko.JKO(mdp, obj, eps=0.1)                 # 1-D steps are exact: no eps
    with pytest.raises(ValidationError, match="on_stall"):
        jko.JKO(mdp, obj, on_stall="ignore")
    mdp2 = wg.problems.get("lqr2d", n_states=(3, 3), n_actions=(3, 3))
    assert jko.JKO(mdp2, obj).entropic                  # multi-D: entropic JKO
    with pytest.raises(ValidationError, match="eps"):
        jko.JKO(mdp2, obj, eps=-1.0)
    with pytest.raises(ValidationError, match="eps_tol"):
        jko.JKO(mdp2, obj, eps_tol=0.0)


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


# ----------------------------------------------------------------------------- multi-D: entropic JKO
@pytest.fixture(scope="module")
def lqr2d():
    mdp = wg.problems.get("lqr2d", n_states=(5, 5), n_actions=(7, 7), noise=0.3)
    return mdp, wg.Discounted(0.9, entropy=0.5)


def test_separable_log_kernel_equals_dense_product(rng):
    from scipy.special import logsumexp
    for A in (wg.Grid([(-1.0, 2.0), (0.0, 1.0)], [3, 4]), wg.Grid([(-1, 1), (-2, 2), (0, 1)], [3, 2, 4])):
        h, eps = 0.7, 0.05
        lw = 3.0 * rng.standard_normal((3, A.size))
        lw[1, :3] = -np.inf                            # empty cells (log 0)
        X = A.centers
        logK = -np.sum((X[:, None, :] - X[None, :, :]) ** 2, axis=2) / (2 * h * eps)
        dense = logsumexp(logK[None, :, :] + lw[:, None, :], axis=2)
        sep = jko.apply_log_kernel(lw, A.shape, jko.entropic_log_kernels(A, h, eps))
        assert np.allclose(sep, dense, rtol=1e-12, atol=1e-12)
        # the linear-domain product with K itself (moderate values: no underflow)
        w = np.exp(lw)
        assert np.allclose(np.exp(sep), w @ np.exp(logK).T, rtol=1e-12, atol=0)
    # the compiled 1-D log-sum-exp kernel equals the numpy reference, -inf rows included
    a = 4.0 * rng.standard_normal((7, 5))
    a[2] = -np.inf
    a[4, 1] = -np.inf
    L = -np.subtract.outer(np.arange(5.0), np.arange(5.0)) ** 2 / 0.3
    r1, r2 = jko._lse_axis(a, L), jko._lse_axis_numpy(a, L)
    assert np.all(np.isneginf(r1[2])) and np.all(np.isneginf(r2[2]))
    fin = np.isfinite(r2)
    assert np.array_equal(fin, np.isfinite(r1)) and np.allclose(r1[fin], r2[fin], rtol=1e-14, atol=1e-13)


def test_entropic_step_mass_positivity_and_optimality(lqr2d):
    mdp, obj = lqr2d
    sch = jko.JKO(mdp, obj)
    for pol in (wg.Policy.uniform(mdp), wg.Policy.deterministic(mdp, (1.0, -1.0))):
        st = sch.init(pol)
        for h in (0.3, 3.0):
            new = sch.step(st, h)
            assert np.all(new.masses > 0)
            assert np.max(np.abs(new.masses.sum(axis=1) - 1.0)) < 1e-12
            assert new.info["eps"] == pytest.approx(jko.entropic_default_eps(mdp.actions, h))
            assert new.info["residual"] <= 1e-10
    # the log-domain, separable, over-relaxed iteration solves the same problem as a plain dense
    # (linear-domain) Sinkhorn iteration u = p/(Kv), q = K^T u, m = prox(q), v = m/q
    st = sch.init(wg.Policy.gaussian(mdp, mean=(0.5, -0.5), std=1.0))
    h, eps, tau = 1.0, 0.2, obj.entropy
    m, info = jko.jko_prox_entropic(st.masses, st.evaluation.Q, tau, h, eps, mdp.actions, tol=1e-12)
    X = mdp.actions.centers
    C = np.sum((X[:, None] - X[None]) ** 2, axis=2)
    K = np.exp(-C / (2 * h * eps))
    s = 3
    p, Q = st.masses[s], st.evaluation.Q[s]
    v = np.ones_like(p)
    for _ in range(3000):
        u = p / (K @ v)
        q = K.T @ u
        z = (eps * np.log(q) - Q) / (eps + tau)
        mm = np.exp(z - z.max())
        mm /= mm.sum()
        v = mm / q
    assert np.max(np.abs(mm - m[s])) < 1e-9                 # dense (non-log) Sinkhorn agrees


def test_entropic_huge_step_is_soft_policy_iteration(lqr2d):
    mdp, obj = lqr2d
    sch = jko.JKO(mdp, obj)
    st = sch.step(sch.init(wg.Policy.uniform(mdp)), 0.5)
    # default eps = delta^2 / (2h) -> 0: the step is one soft PI step at temperature tau
    big = sch.step(st, 1e9)
    assert np.max(np.abs(big.masses - gibbs_masses(st.evaluation.Q, obj.entropy))) < 1e-6
    # a fixed eps: the transport cost vanishes but the entropic term does not; the optimal coupling
    # is the product p x m and the step is the Gibbs policy at the temperature tau + eps, exactly
    eps = 0.1
    big = jko.JKO(mdp, obj, eps=eps).step(st, 1e9)
    assert np.max(np.abs(big.masses - gibbs_masses(st.evaluation.Q, obj.entropy + eps))) < 1e-6
    assert np.max(np.abs(big.masses - gibbs_masses(st.evaluation.Q, obj.entropy))) > 1e-3


@pytest.mark.parametrize("h, eps", [(0.2, 0.1), (1.0, 0.25), (10.0, 0.1)])
def test_entropic_fixed_point_is_the_hotter_gaussian(h, eps):
    """Single state, 2-D actions, cost k|a - c|^2/2: the fixed point of the entropic step is the
    Gaussian N(c, v I) with v from ``entropic_gaussian_variance`` (tau/k < v: effective temperature
    k v between tau + eps/2 and tau + eps), not the Gibbs law N(c, tau/k) of the exact JKO step."""
    k, tau, c = 1.0, 0.5, np.array([0.3, -0.2])
    S = wg.Grid([(-1.0, 1.0)], [1])
    A = wg.Grid([(-4.0, 4.0)] * 2, [31, 31])
    mdp = wg.MDP.from_dynamics(S, A, drift=lambda s, a: s,
                               cost=lambda s, a: 0.5 * k * np.sum((a - c) ** 2, axis=1))
    obj = wg.Discounted(0.5, entropy=tau)
    traj = wg.flow(mdp, obj, wg.Policy.uniform(mdp), scheme="jko", dt=h, t_end=2 * h,
                   save_every=h, eps=eps, eps_tol=1e-12)
    assert traj.J[-1] < traj.J[0]
    sch = jko.JKO(mdp, obj, eps=eps, eps_tol=1e-12)
    m = traj.final.masses
    Q = sch.evaluate(m).Q                        # one state: Q = cost + const, whatever the policy
    for _ in range(400):                         # iterate the step to its fixed point
        m_new = sch.prox(m, Q, h)[0]
        done = np.abs(m_new - m).sum() < 1e-12
        m = m_new
        if done:
            break
    assert done
    pol = wg.Policy(m, A)
    v = jko.entropic_gaussian_variance(k, tau, h, eps)
    var = pol.variance(piecewise_constant=False)[0]
    assert np.allclose(var, v, rtol=1e-4)                  # measured: box truncation ~1e-5
    assert np.allclose(pol.mean()[0], c, atol=1e-4)
    assert tau + eps / 2 - 1e-12 <= k * v <= tau + eps + 1e-12
    assert np.all(var > tau / k * (1 + 0.05))             # clearly not the Gibbs law of tau


def test_entropic_log_domain_is_stable_for_small_eps(lqr2d):
    mdp, obj = lqr2d
    ev = wg.evaluate(mdp, wg.Policy.deterministic(mdp, (1.0, -1.0)), obj)
    # the kernel exp(-|x-y|^2/(2h eps)) underflows in the linear domain
    for eps in (1e-4, 1e-8):
        m, info = jko.jko_prox_entropic(ev.policy.masses, ev.Q, obj.entropy, 0.3, eps, mdp.actions)
        assert np.all(np.isfinite(m)) and np.all(m > 0)
        assert np.max(np.abs(m.sum(axis=1) - 1.0)) < 1e-12
    # from a spread policy small eps converges slowly (contraction tau/(tau+eps)): capped, the
    # iterate stays finite; with on_stall="raise", a ConvergenceError with diagnostics
    ev = wg.evaluate(mdp, wg.Policy.uniform(mdp), obj)
    m, info = jko.jko_prox_entropic(ev.policy.masses, ev.Q, obj.entropy, 0.3, 1e-8, mdp.actions,
                                    max_iter=30, on_stall="accept")
    assert np.all(np.isfinite(m)) and np.max(np.abs(m.sum(axis=1) - 1.0)) < 1e-12
    assert info["stalled"].size > 0
    with pytest.raises(ConvergenceError, match="Sinkhorn") as e:
        sch = jko.JKO(mdp, obj, eps=1e-8, eps_max_iter=30)
        sch.step(wg.flows.FlowState(0.0, ev.policy.masses, ev), 0.3)
    assert "marginal_error" in e.value.diagnostics


def test_entropic_flow_decreases_J_far_from_equilibrium(lqr2d):
    """Not a theorem for the entropic step (it also diffuses, at temperature ~tau + eps): J can
    increase near the (biased) fixed point. From a uniform start on lqr2d it decreases."""
    mdp, obj = lqr2d
    traj = wg.flow(mdp, obj, wg.Policy.uniform(mdp), scheme="jko", dt=1.0, t_end=8.0, save_every=1.0)
    assert np.all(np.diff(traj.J) < 0)
    assert traj.diagnostics["eps_max"] == pytest.approx(jko.entropic_default_eps(mdp.actions, 1.0))


# ----------------------------------------------------------------------------- growing default step, Anderson
def test_default_steps_grow_and_reach_the_solution(lqr):
    """dt=None: default_dt, then x growth per full step (1-D: J decreases for every step)."""
    mdp, obj, sol = lqr
    Js, dts = [], []
    traj = wg.flow(mdp, obj, wg.Policy.uniform(mdp), scheme="jko", t_end=1e9, save_every=1e9,
                   trackers=[wg.flows.CallbackTracker(
                       lambda s, c: Js.append(s.J) or dts.append(s.info["dt"]), interval=0.0)])
    np.testing.assert_allclose(dts[:4], [1.0, 10.0, 100.0, 1000.0])
    assert np.all(np.diff(Js) <= 1e-13 * abs(sol.J))
    assert traj.J[-1] - sol.J < 1e-9
    # frames shorten steps without growing the next one
    tr = wg.flow(mdp, obj, wg.Policy.uniform(mdp), scheme="jko", t_end=3.0, save_every=0.5,
                 growth=4.0)
    assert tr.diagnostics["steps"] == 6
    with pytest.raises(ValidationError, match="growth"):
        jko.JKO(mdp, obj, growth=0.5)
    a = jko.JKO(mdp, obj)
    st = a.step(a.init(wg.Policy.uniform(mdp)), 1.0, adaptive=True)
    b = jko.JKO(mdp, obj)
    b.load_state_dict(a.state_dict())
    assert b.suggest_dt(st) == a.suggest_dt(st) == 10.0


def test_anderson_mixing_solves_the_same_entropic_problem(lqr2d):
    mdp, obj = lqr2d
    ev = wg.evaluate(mdp, wg.Policy.uniform(mdp), obj)
    for h in (1.0, 1e3):
        eps = jko.entropic_default_eps(mdp.actions, h)
        plain, ip = jko.jko_prox_entropic(ev.policy.masses, ev.Q, obj.entropy, h, eps, mdp.actions,
                                          anderson=0)
        acc, ia = jko.jko_prox_entropic(ev.policy.masses, ev.Q, obj.entropy, h, eps, mdp.actions)
        # both stop at L1 marginal error and L1 mass change <= 1e-10 per state
        assert np.max(np.abs(acc - plain).sum(axis=1)) < 1e-9
        assert ia["residual"] <= 1e-10 and ia["iterations"] <= ip["iterations"]


def test_entropic_default_steps_reach_the_solution(lqr2d):
    """Multi-D: the entropic bias (eps = delta^2/(2h)) shrinks like 1/h as the default steps grow,
    so the flow reaches J* to 1e-8."""
    mdp, obj = lqr2d
    sol = wg.solve(mdp, obj, tol=1e-12)
    traj = wg.flow(mdp, obj, wg.Policy.uniform(mdp), scheme="jko", t_end=1e9, save_every=1e9,
                   trackers=[wg.flows.CallbackTracker(
                       lambda s, c: "done" if s.J - sol.J < 1e-8 else None, interval=0.0)])
    assert traj.diagnostics["stop_reason"] == "done"
    # the policy carries the entropic bias of the last step, O(eps) in L1 (J: O(eps^2)); last eps:
    eps = traj.diagnostics["eps_last"]
    assert eps < 1e-4
    assert np.max(np.abs(traj.final.masses - sol.policy.masses).sum(axis=1)) < 3 * eps
