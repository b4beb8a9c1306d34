"""Tests of wgflow.geometry: metric, projection, W2 distance, geodesics, exp/log."""
import numpy as np
import ot
import pytest
from scipy.integrate import quad

import wgflow as wg
import wgflow.geometry as G
from wgflow.errors import ValidationError, WgflowError


# ------------------------------------------------------------------------------- helpers
def random_policy(mdp, rng, zero=0.3):
    m = rng.random((mdp.n_states, mdp.n_actions)) ** 3
    m[rng.random(m.shape) < zero] = 0.0
    m[:, rng.integers(mdp.n_actions)] += 1e-3          # keep at least one cell
    m /= m.sum(axis=1, keepdims=True)
    return wg.Policy.from_masses(mdp, m)


def uniform_weights(n):
    return np.full(n, 1.0 / n)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def mdp1():
    return wg.problems.get("lqr1d", n_states=6, n_actions=17)


@pytest.fixture(scope="module")
def mdp2():
    return wg.problems.get("lqr2d", n_states=(5, 5), n_actions=(6, 6))


def pc_quantile(m, edges):
    """Independent quantile function of the piecewise-constant law (np.interp on the CDF)."""
    c = np.concatenate([[0.0], np.cumsum(m)])
    c /= c[-1]
    return lambda u: np.interp(u, c, edges)


# ------------------------------------------------------------------------------- weights
def test_weights_validation(mdp1, rng):
    p = random_policy(mdp1, rng)
    n = mdp1.n_states
    with pytest.raises(ValidationError, match="shape"):
        G.distance(p, p, np.full(n + 1, 1 / (n + 1)))
    with pytest.raises(ValidationError, match="NaN"):
        G.distance(p, p, np.r_[np.nan, np.full(n - 1, 1 / (n - 1))])
    with pytest.raises(ValidationError, match="state 1"):
        w = np.full(n, 1 / (n - 2)); w[1] = -1 / (n - 2); w[0] += 1 / (n - 2) - (w.sum() - 1)
        w[2] -= w.sum() - 1
        G.distance(p, p, w)
    with pytest.raises(ValidationError, match="sum to 1"):
        G.distance(p, p, np.full(n, 0.5))
    with pytest.raises(ValueError):                 # ValidationError is a ValueError
        G.metric(p, np.zeros((n, 17)), np.zeros((n, 17)), None)


def test_weights_from_evaluation(mdp1, rng):
    p = random_policy(mdp1, rng)
    ev = wg.evaluate(mdp1, p, wg.Discounted(gamma=0.9))
    v = rng.normal(size=(mdp1.n_states, mdp1.n_actions))
    assert G.metric(p, v, v, ev) == pytest.approx(G.metric(p, v, v, ev.weights), rel=1e-14)
    q = random_policy(mdp1, rng)
    assert G.distance(p, q, ev) == pytest.approx(G.distance(p, q, ev.weights), rel=1e-14)


# ------------------------------------------------------------------------------- metric
@pytest.mark.parametrize("which", ["mdp1", "mdp2"])
def test_metric_axioms(which, request, rng):
    mdp = request.getfixturevalue(which)
    p = random_policy(mdp, rng, zero=0.0)
    da = mdp.actions.ndim
    shp = (mdp.n_states, mdp.n_actions, da)
    om = rng.random(mdp.n_states); om /= om.sum()
    u, v, w = (rng.normal(size=shp) for _ in range(3))
    a, b = 0.7, -2.3
    assert G.metric(p, v, w, om) == pytest.approx(G.metric(p, w, v, om), rel=1e-13)
    lhs = G.metric(p, a * u + b * v, w, om)
    rhs = a * G.metric(p, u, w, om) + b * G.metric(p, v, w, om)
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-13)
    assert G.metric(p, v, v, om) > 0
    assert G.metric(p, np.zeros(shp), np.zeros(shp), om) == 0.0
    assert G.norm(p, 3 * v, om) == pytest.approx(3 * G.norm(p, v, om), rel=1e-13)
    # explicit formula
    ref = np.sum(om[:, None] * p.masses * np.sum(v * w, axis=2))
    assert G.metric(p, v, w, om) == pytest.approx(ref, rel=1e-13)


def test_metric_1d_shape_and_errors(mdp1, rng):
    p = random_policy(mdp1, rng)
    v = rng.normal(size=(mdp1.n_states, mdp1.n_actions))
    om = uniform_weights(mdp1.n_states)
    assert G.metric(p, v, v, om) == pytest.approx(G.metric(p, v[..., None], v[..., None], om))
    with pytest.raises(ValidationError, match="shape"):
        G.metric(p, v[:, :-1], v[:, :-1], om)
    bad = v.copy(); bad[2, 3] = np.nan
    with pytest.raises(ValidationError, match="state 2, action 3"):
        G.metric(p, bad, v, om)


# ------------------------------------------------------------------------------- gradients
def test_gradient_exact_on_linear_and_quadratic(mdp2):
    A = mdp2.actions
    X = A.centers
    phi = (1.5 * X[:, 0] - 0.5 * X[:, 1] + 2.0)[None, :]
    g = G.gradient(phi, A)
    np.testing.assert_allclose(g[0], np.broadcast_to([1.5, -0.5], g[0].shape), atol=1e-13)
    fg = G.face_gradient(phi, A)
    np.testing.assert_allclose(fg[0], 1.5, atol=1e-13)
    np.testing.assert_allclose(fg[1], -0.5, atol=1e-13)
    # 1-D quadratic: central differences exact inside, one-sided at the edges
    B = wg.Grid([(0, 1)], [8])
    x = B.centers[:, 0]
    q = G.gradient((x ** 2)[None, :], B)[0, :, 0]
    np.testing.assert_allclose(q[1:-1], 2 * x[1:-1], atol=1e-13)
    h = B.spacing[0]
    assert q[0] == pytest.approx((x[1] ** 2 - x[0] ** 2) / h)
    assert q[-1] == pytest.approx((x[-1] ** 2 - x[-2] ** 2) / h)


# ------------------------------------------------------------------------------- projection
@pytest.mark.parametrize("which", ["mdp1", "mdp2"])
def test_tangent_projection(which, request, rng):
    mdp = request.getfixturevalue(which)
    A = mdp.actions
    p = random_policy(mdp, rng, zero=0.4)          # holes: several components per state
    v = rng.normal(size=(mdp.n_states, mdp.n_actions, A.ndim))
    P1 = G.tangent_projection(p, v)
    # idempotent
    P2 = G.tangent_projection(p, P1.faces)
    for a, b in zip(P1.faces, P2.faces):
        np.testing.assert_allclose(a, b, atol=1e-10)
    # residual orthogonal to every face gradient in the face inner product
    for _ in range(3):
        psi = rng.normal(size=(mdp.n_states, mdp.n_actions))
        ip = G.face_metric(p, P1.residual, G.face_gradient(psi, A))
        scale = np.sqrt(G.face_metric(p, P1.residual, P1.residual) *
                        G.face_metric(p, G.face_gradient(psi, A), G.face_gradient(psi, A))) + 1e-300
        assert np.all(np.abs(ip) <= 1e-10 * scale + 1e-14)
    # exact on gradients (on faces of positive mobility)
    psi = rng.normal(size=(mdp.n_states, mdp.n_actions))
    fg = G.face_gradient(psi, A)
    P3 = G.tangent_projection(p, fg)
    th = G._face_mobility(p.masses, A)
    for a, b, t in zip(P3.faces, fg, th):
        np.testing.assert_allclose(a[t > 0], b[t > 0], atol=1e-9)
    # gauge: pi-mean zero (1-D) ; velocity = cell-centred gradient of the potential
    np.testing.assert_allclose(P1.velocity, G.gradient(P1.potential, A), atol=1e-14)
    if A.ndim == 1:
        np.testing.assert_allclose(np.sum(p.masses * P1.potential, axis=1), 0.0, atol=1e-12)
        for r in P1.residual:               # 1-D: every face field is a gradient
            np.testing.assert_allclose(r, 0.0, atol=1e-12)


def test_projection_reduces_norm_2d(mdp2, rng):
    p = random_policy(mdp2, rng, zero=0.0)
    v = rng.normal(size=(mdp2.n_states, mdp2.n_actions, 2))
    P = G.tangent_projection(p, v)
    vf = G.face_average(v, mdp2.actions)
    n_v = G.face_metric(p, vf, vf)
    n_p = G.face_metric(p, P.faces, P.faces)
    n_r = G.face_metric(p, P.residual, P.residual)
    np.testing.assert_allclose(n_v, n_p + n_r, rtol=1e-10)     # Pythagoras
    assert np.all(n_r > 1e-6)                                   # random fields are not gradients


# ------------------------------------------------------------------------------- distance vs POT
def test_distance_1d_atoms_vs_pot(mdp1, rng):
    p0, p1 = random_policy(mdp1, rng), random_policy(mdp1, rng)
    x = mdp1.actions.centers[:, 0]
    M = ot.dist(x[:, None], x[:, None])
    ref_1d = np.array([ot.wasserstein_1d(x, x, p0.masses[s], p1.masses[s], p=2)
                       for s in range(mdp1.n_states)])          # POT returns W_2^2
    ref_emd = np.array([ot.emd2(p0.masses[s], p1.masses[s], M) for s in range(mdp1.n_states)])
    for backend in ("numba", "numpy"):
        d2 = G.w2sq(p0, p1, atoms=True, backend=backend)
        np.testing.assert_allclose(d2, ref_1d, rtol=0, atol=1e-9)
        np.testing.assert_allclose(d2, ref_emd, rtol=0, atol=1e-9)
    om = rng.random(mdp1.n_states); om /= om.sum()
    assert G.distance(p0, p1, om, atoms=True) == pytest.approx(np.sqrt(om @ ref_emd), abs=1e-9)


def test_distance_2d_atoms_vs_pot(mdp2, rng):
    p0, p1 = random_policy(mdp2, rng), random_policy(mdp2, rng)
    X = mdp2.actions.centers
    M = ot.dist(X, X)                       # squared Euclidean
    ref = np.array([ot.emd2(p0.masses[s], p1.masses[s], M) for s in range(mdp2.n_states)])
    np.testing.assert_allclose(G.w2sq(p0, p1, atoms=True), ref, rtol=0, atol=1e-9)
    om = uniform_weights(mdp2.n_states)
    assert G.distance(p0, p1, om, atoms=True) == pytest.approx(np.sqrt(om @ ref), abs=1e-9)
    # default mode in multi-D with refine=1 is the atoms value (documented)
    assert G.distance(p0, p1, om) == pytest.approx(G.distance(p0, p1, om, atoms=True), abs=1e-12)


def test_distance_1d_pc_exact_vs_quadrature(mdp1, rng):
    p0, p1 = random_policy(mdp1, rng), random_policy(mdp1, rng)
    A = mdp1.actions
    edges = A.bounds[0, 0] + A.spacing[0] * np.arange(A.size + 1)
    d2 = G.w2sq(p0, p1)
    np.testing.assert_allclose(d2, G.w2sq(p0, p1, backend="numpy"), atol=1e-13)
    for s in range(mdp1.n_states):
        Q0, Q1 = pc_quantile(p0.masses[s], edges), pc_quantile(p1.masses[s], edges)
        knots = np.unique(np.concatenate([np.cumsum(p0.masses[s]), np.cumsum(p1.masses[s])]))
        val = quad(lambda u: (Q0(u) - Q1(u)) ** 2, 0, 1, points=knots[(knots > 0) & (knots < 1)],
                   limit=500, epsabs=1e-14, epsrel=1e-13)[0]
        assert d2[s] == pytest.approx(val, abs=1e-11)


def test_distance_1d_pc_vs_pot_subatoms(mdp1, rng):
    """Independent check: POT on r sub-atoms per cell is within 2h/(r sqrt 12) of the exact value."""
    p0, p1 = random_policy(mdp1, rng), random_policy(mdp1, rng)
    A = mdp1.actions
    h = A.spacing[0]
    r = 40
    sub = (A.centers[:, 0][:, None] + ((np.arange(r) + 0.5) / r - 0.5)[None, :] * h).ravel()
    d = np.sqrt(G.w2sq(p0, p1))
    for s in range(mdp1.n_states):
        ref = np.sqrt(ot.wasserstein_1d(sub, sub, np.repeat(p0.masses[s] / r, r),
                                        np.repeat(p1.masses[s] / r, r), p=2))
        assert abs(d[s] - ref) <= 2 * h / (r * np.sqrt(12)) + 1e-12
    # and atoms vs piecewise constant: |W_pc - W_atoms| <= 2 h / sqrt(12) per state
    da = np.sqrt(G.w2sq(p0, p1, atoms=True))
    assert np.all(np.abs(d - da) <= 2 * h / np.sqrt(12) + 1e-12)


def test_distance_2d_refine_bound(rng):
    mdp = wg.problems.get("lqr2d", n_states=(1, 3), n_actions=(4, 4))
    p0, p1 = random_policy(mdp, rng), random_policy(mdp, rng)
    h = mdp.actions.spacing
    s12 = np.sqrt(np.sum(h ** 2) / 12)
    w1 = np.sqrt(G.w2sq(p0, p1, refine=1))
    w3 = np.sqrt(G.w2sq(p0, p1, refine=3))
    assert np.all(np.abs(w1 - w3) <= 2 * s12 * (1 + 1 / 3) + 1e-12)
    assert not np.allclose(w1, w3)


def test_sinkhorn_close_to_exact(mdp2, rng):
    p0, p1 = random_policy(mdp2, rng), random_policy(mdp2, rng)
    mdp = wg.problems.get("lqr2d", n_states=(1, 4), n_actions=(5, 5))
    p0, p1 = random_policy(mdp, rng), random_policy(mdp, rng)
    ex = G.w2sq(p0, p1, atoms=True)
    sk = G.w2sq(p0, p1, method="sinkhorn", reg=0.1)
    assert np.all(sk >= ex * (1 - 1e-6))     # entropic plan cost >= optimal (up to marginal tol)
    np.testing.assert_allclose(sk, ex, rtol=1e-3)
    with pytest.raises(ValidationError, match="reg"):
        G.w2sq(p0, p1, method="sinkhorn")


def test_emd_failure_is_raised(mdp2, rng, monkeypatch):
    p0, p1 = random_policy(mdp2, rng), random_policy(mdp2, rng)

    def fake_emd2(a, b, M, **kw):
        import warnings
        warnings.warn("numItermax reached before optimality. Try to increase numItermax.")
        return 0.0, {"cost": 0.0, "result_code": 3, "warning": "numItermax reached"}

    monkeypatch.setattr(ot, "emd2", fake_emd2)
    with pytest.raises(WgflowError, match="optimal"):
        G.w2sq(p0, p1, atoms=True)


def test_emd_rejects_unbalanced():
    with pytest.raises(ValidationError, match="sum"):
        G._emd_state(np.array([0.5, 0.5]), np.array([0.5, 0.5 + 1e-8]),
                     np.zeros((2, 2)), np.ones((2, 2)), 0)


# ------------------------------------------------------------------------------- metric space
@pytest.mark.parametrize("which,atoms", [("mdp1", False), ("mdp1", True), ("mdp2", True)])
def test_distance_is_a_metric(which, atoms, request, rng):
    mdp = request.getfixturevalue(which)
    om = rng.random(mdp.n_states); om /= om.sum()
    for _ in range(4):
        a, b, c = (random_policy(mdp, rng) for _ in range(3))
        dab = G.distance(a, b, om, atoms=atoms)
        assert dab == pytest.approx(G.distance(b, a, om, atoms=atoms), abs=1e-12)
        assert dab <= G.distance(a, c, om, atoms=atoms) + G.distance(c, b, om, atoms=atoms) + 1e-12
        assert dab > 1e-6
        assert G.distance(a, a, om, atoms=atoms) <= 1e-12


def test_distance_zero_iff_equal_on_states_with_weight(mdp1, rng):
    a, b = random_policy(mdp1, rng), random_policy(mdp1, rng)
    m = a.masses.copy(); m[0] = b.masses[0]
    c = wg.Policy.from_masses(mdp1, m)
    om = np.zeros(mdp1.n_states); om[0] = 1.0
    assert G.distance(b, c, om) <= 1e-12               # equal where omega > 0
    om2 = uniform_weights(mdp1.n_states)
    assert G.distance(b, c, om2) > 1e-3


# ------------------------------------------------------------------------------- Gaussians (1-D)
@pytest.fixture(scope="module")
def fine1():
    # h = 12/241 ~ 0.0498; box +-6 >= 6 std for every std below (std >= 3 cells)
    return wg.problems.get("lqr1d", n_states=2, n_actions=241, a_max=6.0)


@pytest.mark.parametrize("m0,s0,m1,s1", [(-1.0, 0.15, 0.5, 0.3), (0.0, 0.2, 0.3, 0.6),
                                         (-0.5, 0.5, 0.5, 0.5), (1.0, 0.8, -1.0, 0.4)])
def test_gaussian_closed_form(fine1, m0, s0, m1, s1):
    h = fine1.actions.spacing[0]
    a = wg.Policy.gaussian(fine1, m0, s0)
    b = wg.Policy.gaussian(fine1, m1, s1)
    w2 = G.w2sq(a, b)[0]
    # the discretized laws' own moments (piecewise-constant: variance includes h^2/12):
    # W2^2 >= dmean^2 + dstd^2 holds for any laws, with equality for affine images; the
    # discretized Gaussians are affine images up to O(h^2 (h/sigma)^2)
    ma, mb = a.mean()[0, 0], b.mean()[0, 0]
    sa, sb = np.sqrt(a.variance()[0, 0]), np.sqrt(b.variance()[0, 0])
    lower = (ma - mb) ** 2 + (sa - sb) ** 2
    assert w2 >= lower - 1e-12
    assert w2 - lower <= 1e-5
    # continuum closed form, with the piecewise-constant std sqrt(sigma^2 + h^2/6)
    # (cell masses are exact Gaussian cell probabilities: binning adds h^2/12 to the variance
    # (Sheppard) and spreading uniformly in the cells another h^2/12)
    cont = (m0 - m1) ** 2 + (np.sqrt(s0 ** 2 + h ** 2 / 6) - np.sqrt(s1 ** 2 + h ** 2 / 6)) ** 2
    assert w2 == pytest.approx(cont, abs=2e-5)
    # plain closed form: within the O(h^2) grid error
    assert abs(w2 - ((m0 - m1) ** 2 + (s0 - s1) ** 2)) <= h ** 2


def test_translation_by_whole_cells_is_exact(fine1):
    h = fine1.actions.spacing[0]
    a = wg.Policy.gaussian(fine1, -0.5, 0.4)
    k = 12
    b = wg.Policy.gaussian(fine1, -0.5 + k * h, 0.4)   # an exact translate (no box truncation)
    assert np.sqrt(G.w2sq(a, b)) == pytest.approx([k * h] * 2, abs=1e-9)
    assert G.w2sq(a, b, atoms=True) == pytest.approx([(k * h) ** 2] * 2, abs=1e-9)


@pytest.mark.parametrize("t", [0.0, 0.25, 0.5, 0.8, 1.0])
def test_mccann_gaussian(fine1, t):
    h = fine1.actions.spacing[0]
    s0, s1 = 0.2, 0.6
    a = wg.Policy.gaussian(fine1, -1.0, s0)
    b = wg.Policy.gaussian(fine1, 1.2, s1)
    g = G.geodesic(a, b, t)
    ma, mb = a.mean()[0, 0], b.mean()[0, 0]
    sa, sb = np.sqrt(a.variance()[0, 0]), np.sqrt(b.variance()[0, 0])
    # the true interpolant has exactly these moments; its grid representation (exact cell
    # masses, uniform within cells) adds ~h^2/6 to the variance at intermediate t (binning a
    # smooth law: h^2/12, Sheppard; uniform spreading: h^2/12) and nothing at t = 0, 1
    assert g.mean()[0, 0] == pytest.approx((1 - t) * ma + t * mb, abs=h ** 2 / 10)
    var_t = ((1 - t) * sa + t * sb) ** 2
    excess = g.variance()[0, 0] - var_t
    assert -1e-12 <= excess <= h ** 2 / 5
    if 0 < t < 1:
        assert excess == pytest.approx(h ** 2 / 6, rel=0.2)
    # and the continuum Gaussian interpolation
    assert np.sqrt(g.variance()[0, 0]) == pytest.approx((1 - t) * s0 + t * s1, abs=h ** 2 / s0)


# ------------------------------------------------------------------------------- geodesics
def test_geodesic_endpoints_and_masses(mdp1, rng):
    p0, p1 = random_policy(mdp1, rng), random_policy(mdp1, rng)
    g = G.geodesic(p0, p1, np.array([0.0, 0.3, 1.0]))
    assert isinstance(g, list) and len(g) == 3
    np.testing.assert_allclose(g[0].masses, p0.masses, atol=1e-13)
    np.testing.assert_allclose(g[2].masses, p1.masses, atol=1e-13)
    assert np.all(g[1].masses >= 0)
    np.testing.assert_allclose(g[1].masses.sum(axis=1), 1.0, atol=1e-13)
    assert isinstance(G.geodesic(p0, p1, 0.5), wg.Policy)


def test_geodesic_masses_are_exact_cell_masses_of_interpolant(mdp1, rng):
    """Independent check: the CDF of Q_t at the edges by dense sampling of u."""
    p0, p1 = random_policy(mdp1, rng), random_policy(mdp1, rng)
    A = mdp1.actions
    edges = A.bounds[0, 0] + A.spacing[0] * np.arange(A.size + 1)
    t = 0.37
    g = G.geodesic(p0, p1, t)
    u = (np.arange(400000) + 0.5) / 400000
    for s in range(mdp1.n_states):
        Qt = (1 - t) * pc_quantile(p0.masses[s], edges)(u) + t * pc_quantile(p1.masses[s], edges)(u)
        F = np.searchsorted(np.sort(Qt), edges, side="right") / u.size
        np.testing.assert_allclose(g.masses[s], np.diff(F), atol=2e-5)


def test_constant_speed_exact_for_translations(fine1):
    h = fine1.actions.spacing[0]
    a = wg.Policy.gaussian(fine1, -0.5, 0.4)
    b = wg.Policy.gaussian(fine1, -0.5 + 8 * h, 0.4)
    om = np.array([0.5, 0.5])
    d = G.distance(a, b, om)
    ts = np.array([0.0, 0.25, 0.5, 0.75, 1.0])        # shifts by whole cells: grid-exact
    g = G.geodesic(a, b, ts)
    for i in range(5):
        for j in range(5):
            assert G.distance(g[i], g[j], om) == pytest.approx(abs(ts[i] - ts[j]) * d, abs=1e-9)


def test_constant_speed_general(mdp1, rng):
    """At intermediate t the grid representation is within W2 <= h of the true interpolant,
    so |d(g_s, g_t) - |t - s| d| <= 2h (with the true interpolant it would be exact)."""
    h = mdp1.actions.spacing[0]
    p0, p1 = random_policy(mdp1, rng), random_policy(mdp1, rng)
    om = uniform_weights(mdp1.n_states)
    d = G.distance(p0, p1, om)
    ts = np.linspace(0, 1, 6)
    g = G.geodesic(p0, p1, ts)
    err = max(abs(G.distance(g[i], g[j], om) - abs(ts[i] - ts[j]) * d)
              for i in range(6) for j in range(6))
    assert err <= 2 * h
    # and endpoints-to-path exactly additive up to the same grid error
    for k in range(6):
        tot = G.distance(p0, g[k], om) + G.distance(g[k], p1, om)
        assert abs(tot - d) <= 2 * h


def test_geodesic_atoms_and_2d_mean_is_linear(mdp1, mdp2, rng):
    """Deposition keeps the first moment of points in the hull of the centres: the mean
    along an atoms geodesic is exactly (1-t) mean0 + t mean1."""
    for mdp, atoms in ((mdp1, True), (mdp2, False)):
        p0, p1 = random_policy(mdp, rng), random_policy(mdp, rng)
        ts = np.array([0.0, 0.2, 0.65, 1.0])
        g = G.geodesic(p0, p1, ts, atoms=atoms)
        for t, q in zip(ts, g):
            np.testing.assert_allclose(q.mean(), (1 - t) * p0.mean() + t * p1.mean(), atol=1e-12)
            np.testing.assert_allclose(q.masses.sum(axis=1), 1.0, atol=1e-13)
        np.testing.assert_allclose(g[0].masses, p0.masses, atol=1e-13)
        np.testing.assert_allclose(g[-1].masses, p1.masses, atol=1e-13)


def test_geodesic_bad_t(mdp1, rng):
    p = random_policy(mdp1, rng)
    with pytest.raises(ValidationError, match=r"\[0, 1\]"):
        G.geodesic(p, p, 1.5)


# ------------------------------------------------------------------------------- exp / log
def test_exp_shift_and_conservation(mdp1, mdp2, rng):
    for mdp in (mdp1, mdp2):
        A = mdp.actions
        p = random_policy(mdp, rng)
        assert G.exp(p, np.zeros((mdp.n_states, mdp.n_actions, A.ndim))) == p
        v = rng.normal(scale=0.7, size=(mdp.n_states, mdp.n_actions, A.ndim))
        q = G.exp(p, v)
        np.testing.assert_allclose(q.masses.sum(axis=1), 1.0, atol=1e-13)
        assert np.all(q.masses >= 0)
    # a point mass moved by exactly one cell lands on the next cell
    A = mdp1.actions
    p = wg.Policy.deterministic(mdp1, np.zeros(mdp1.n_states, dtype=int), rule="index")
    q = G.exp(p, np.full((mdp1.n_states, A.size), 2 * A.spacing[0]))
    assert np.all(q.greedy() == 2) and np.allclose(q.masses.max(axis=1), 1.0)
    # mass pushed out of the box is clamped onto the outermost cell
    q = G.exp(p, np.full((mdp1.n_states, A.size), 100.0))
    np.testing.assert_allclose(q.masses[:, -1], 1.0)


def test_log_of_self_is_zero_and_exp_log(fine1, mdp2, rng):
    a = wg.Policy.gaussian(fine1, -1.0, 0.3)
    b = wg.Policy.gaussian(fine1, 0.8, 0.7)
    om = np.array([0.5, 0.5])
    h = fine1.actions.spacing[0]
    # log(a, a) = 0 on every cell carrying mass (even 1e-60: levels are resolved from both ends)
    pos = a.masses > 0
    assert a.masses[pos].min() < 1e-50
    np.testing.assert_allclose(G.log(a, a)[..., 0][pos], 0.0, atol=1e-11)
    v = G.log(a, b)
    # log of Gaussians: the affine map T(x) = mb + (sb/sa)(x - ma) at the centres (grid error O(h))
    x = fine1.actions.centers[:, 0]
    ma, mb = a.mean()[0, 0], b.mean()[0, 0]
    sa, sb = np.sqrt(a.variance()[0, 0]), np.sqrt(b.variance()[0, 0])
    bulk = a.masses[0] > 1e-8
    np.testing.assert_allclose(v[0, bulk, 0], (mb + sb / sa * (x - ma) - x)[bulk], atol=2 * h)
    e = G.exp(a, v)
    assert G.distance(e, b, om) <= h                 # exp o log = id within the grid error
    assert G.distance(a, b, om) > 1.0
    # 2-D: barycentric projection of the atoms plan
    g0 = wg.Policy.gaussian(mdp2, [-0.5, 0.3], [0.9, 0.7])
    g1 = wg.Policy.gaussian(mdp2, [0.6, -0.4], [0.7, 1.0])
    om2 = uniform_weights(mdp2.n_states)
    e2 = G.exp(g0, G.log(g0, g1))
    assert G.distance(e2, g1, om2, atoms=True) <= mdp2.actions.spacing.max()
    assert G.distance(e2, g1, om2, atoms=True) < 0.5 * G.distance(g0, g1, om2, atoms=True)


# ------------------------------------------------------------------------------- bad input
def test_bad_inputs(mdp1, mdp2, rng):
    p = random_policy(mdp1, rng)
    om = uniform_weights(mdp1.n_states)
    other_grid = wg.problems.get("lqr1d", n_states=6, n_actions=19)
    q = random_policy(other_grid, rng)
    with pytest.raises(ValidationError, match="different action grids"):
        G.distance(p, q, om)
    with pytest.raises(ValidationError, match="different action grids"):
        G.geodesic(p, q, 0.5)
    fewer = wg.problems.get("lqr1d", n_states=4, n_actions=17)
    with pytest.raises(ValidationError, match="states"):
        G.distance(p, random_policy(fewer, rng), om)
    m = p.masses.copy(); m[3, 2] = -0.1; m[3, 4] += 0.1
    neg = wg.Policy(m, mdp1.actions, validate=False)
    with pytest.raises(ValidationError, match="negative mass .* state 3, action 2"):
        G.distance(neg, p, om)
    with pytest.raises(ValidationError, match="action grid"):
        G.distance(wg.Policy(p.masses), p, om)
    per = wg.Grid([(-1, 1)], [17], periodic=True)
    with pytest.raises(ValidationError, match="periodic"):
        G.distance(wg.Policy(p.masses, per), wg.Policy(p.masses, per), om)
    with pytest.raises(ValidationError, match="Policy"):
        G.distance(p.masses, p, om)
    with pytest.raises(ValidationError, match="method"):
        G.distance(p, p, om, method="simplex")


def test_projection_periodic_axis(rng):
    """A periodic 1-D axis has a cycle: not every face field is a gradient (graph solve)."""
    A = wg.Grid([(0, 2 * np.pi)], [12], periodic=True)
    m = rng.random((3, 12)); m /= m.sum(axis=1, keepdims=True)
    p = wg.Policy(m, A)
    v = rng.normal(size=(3, 12))
    P = G.tangent_projection(p, v)
    Q = G.tangent_projection(p, P.faces)
    for a, b in zip(P.faces, Q.faces):
        np.testing.assert_allclose(a, b, atol=1e-10)
    psi = rng.normal(size=(3, 12))
    fg = G.face_gradient(psi, A)
    assert fg[0].shape == (3, 12)                      # 12 faces including the wrap-around one
    np.testing.assert_allclose(G.face_metric(p, P.residual, fg), 0.0, atol=1e-12)
    # the constant field has non-zero circulation: it is not a gradient
    P1 = G.tangent_projection(p, np.ones((3, 12)))
    assert np.all(G.face_metric(p, P1.residual, P1.residual) > 1e-6)
    # periodic central differences of a smooth periodic potential
    x = A.centers[:, 0]
    g = G.gradient(np.sin(x)[None, :], A)[0, :, 0]
    np.testing.assert_allclose(g, np.cos(x) * np.sin(A.spacing[0]) / A.spacing[0], atol=1e-12)


def test_geodesic_with_subnormal_masses_is_exact_and_silent():
    """Gibbs tails with subnormal cell masses (1/m overflows): no floating-point warning (the
    suite turns them into errors) and the interpolant keeps constant W2 speed to the grid bound h
    (it used to lose states to NaN)."""
    A = wg.Grid([(-2.0, 2.0)], [21])
    a = A.centers[:, 0]
    m0 = np.exp(-((a + 0.5) ** 2) / 0.02)
    m0[m0 < 1e-300] = 0.0
    m0[np.nonzero(m0)[0][[0, -1]]] = [3e-320, 2e-310]       # subnormal tail cells
    m0 /= m0.sum()
    assert np.any((m0 > 0) & (m0 < np.finfo(float).tiny))         # subnormal masses present
    m1 = np.roll(m0, 5)
    p0, p1 = wg.Policy(m0[None], A), wg.Policy(m1[None], A)
    d01 = np.sqrt(wg.geometry.w2sq(p0, p1))[0]
    assert d01 == pytest.approx(5 * A.spacing[0], rel=1e-9)         # a translation by 5 cells
    for t, g in zip((0.25, 0.5, 0.75), wg.geometry.geodesic(p0, p1, [0.25, 0.5, 0.75])):
        assert np.all(np.isfinite(g.masses))
        assert np.sqrt(wg.geometry.w2sq(p0, g))[0] == pytest.approx(t * d01, abs=A.spacing[0])


# ------------------------------------------------------------------------------- tiny masses
# Soft optima at small entropies have cell masses spanning 1 down to subnormal, with exact
# zeros where exp underflows. Rows of the pendulum's soft optimum (31x31 states, 15 actions,
# gamma 0.99) at entropy 1e-3, and at entropy 0.1 for the same states, rounded to 4 digits:
# a bimodal law (a tiny valley of masses 1e-80 behind 5e-6 of mass at the far end) and a
# one-sided one with zeros and a subnormal cell.
BIMODAL = [1.0, 9.142e-14, 7.238e-27, 4.962e-40, 2.945e-53, 1.514e-66, 6.739e-80, 1.145e-75,
           1.902e-63, 2.741e-51, 3.427e-39, 3.717e-27, 3.496e-15, 3.766e-06, 1.494e-06]
BIMODAL_SOFT = [0.1215, 0.09251, 0.07035, 0.05342, 0.0405, 0.03066, 0.02317, 0.02556, 0.03348,
                0.0438, 0.0572, 0.07461, 0.09718, 0.1186, 0.1175]
ONE_SIDED = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.5e-323, 7.571e-214, 6.914e-108, 9.038e-13,
             7.589e-10, 3.516e-07, 8.99e-05, 0.01268, 0.9872]
ONE_SIDED_SOFT = [1.37e-12, 3.216e-11, 6.971e-10, 1.395e-08, 2.579e-07, 4.401e-06, 6.936e-05,
                  0.001009, 0.01356, 0.1401, 0.1508, 0.1608, 0.1701, 0.1783, 0.1853]


def _rows(*rows):
    m = np.array(rows, dtype=float)
    return m / m.sum(axis=1, keepdims=True)      # relative rounding only: tiny masses survive


def _gibbs_double_well(n, tau, shift):
    """Gibbs law exp(-(q - min q)/tau) of a tilted double well on n cells (zeros where exp
    underflows, masses down to subnormal)."""
    x = np.linspace(-1, 1, n)
    q = (x ** 2 - 0.6 ** 2) ** 2 + shift * x
    return np.exp(-(q - q.min()) / tau)


def tiny_mass_policies():
    A = wg.Grid([(-2.0, 2.0)], [15])
    m0 = _rows(BIMODAL, ONE_SIDED, _gibbs_double_well(15, 1e-3, 0.02), ONE_SIDED_SOFT)
    m1 = _rows(BIMODAL_SOFT, ONE_SIDED_SOFT, _gibbs_double_well(15, 2e-3, -0.05)[::-1], ONE_SIDED)
    assert np.any((m0 > 0) & (m0 < 1e-300)) and np.any(m0 == 0)
    return wg.Policy(m0, A), wg.Policy(m1, A)


def exact_cell_masses(m0, m1, t, atoms):
    """Exact rational cell masses of the McCann interpolant of one state (cells [k, k+1] in
    cell units): merged knots from exact cumulative sums, each piece sent affinely."""
    from fractions import Fraction as Fr
    n = len(m0)
    P, Q = [Fr(float(x)) for x in m0], [Fr(float(x)) for x in m1]
    T0, T1 = sum(P), sum(Q)
    P, Q = [x / T0 for x in P], [x / T1 for x in Q]
    c0, c1 = np.cumsum([Fr(0)] + P), np.cumsum([Fr(0)] + Q)
    t = Fr(float(t))
    out = [Fr(0)] * n

    def cell(c, m, u):
        return next(k for k in range(n) if m[k] > 0 and c[k] <= u < c[k + 1])

    us = sorted(set(c0) | set(c1))
    for ua, ub in zip(us[:-1], us[1:]):
        i, j = cell(c0, P, ua), cell(c1, Q, ua)
        if atoms:
            y = (1 - t) * i + t * j
            k = int(y)
            out[k] += (ub - ua) * (1 - (y - k))
            if y > k:
                out[k + 1] += (ub - ua) * (y - k)
            continue
        ya = (1 - t) * (i + (ua - c0[i]) / P[i]) + t * (j + (ua - c1[j]) / Q[j])
        yb = (1 - t) * (i + (ub - c0[i]) / P[i]) + t * (j + (ub - c1[j]) / Q[j])
        for k in range(n):
            ov = min(yb, k + 1) - max(ya, k)
            if ov > 0:
                out[k] += (ub - ua) * ov / (yb - ya)
    return np.array([float(x * ((1 - t) * T0 + t * T1)) for x in out])


def exact_log(m0, m1):
    """Exact rational T(x_a) - x_a in cell units: Q1 at the mid-mass level of each cell of m0."""
    from fractions import Fraction as Fr
    n = len(m0)
    P, Q = [Fr(float(x)) for x in m0], [Fr(float(x)) for x in m1]
    P, Q = [x / sum(P) for x in P], [x / sum(Q) for x in Q]
    c0, c1 = np.cumsum([Fr(0)] + P), np.cumsum([Fr(0)] + Q)
    out = np.full(n, np.nan)
    for a in range(n):
        if P[a] > 0:
            u = c0[a] + P[a] / 2
            j = next(k for k in range(n) if Q[k] > 0 and c1[k] <= u <= c1[k + 1])
            out[a] = float(j + (u - c1[j]) / Q[j] - a - Fr(1, 2))
    return out


# a subnormal mass has absolute precision 2^-1074 only (5e-324): allowed on top of the
# relative tolerances below
SUBNORMAL_ULP = np.finfo(float).smallest_subnormal


@pytest.mark.parametrize("atoms", [False, True])
def test_geodesic_of_a_law_with_itself_is_the_law(atoms):
    p, q = tiny_mass_policies()
    for pol in (p, q):
        m = pol.masses
        for t, g in zip((0.0, 0.3, 0.5, 0.8, 1.0), G.geodesic(pol, pol, [0.0, 0.3, 0.5, 0.8, 1.0], atoms=atoms)):
            assert np.all((g.masses == 0) == (m == 0)), t          # no cell lost, none filled
            # the row is divided by its total and multiplied back, and every cell is one piece
            # that stays put: a few ulps per cell
            np.testing.assert_allclose(g.masses, m, rtol=4 * np.finfo(float).eps, atol=SUBNORMAL_ULP)
    # the endpoints of any geodesic are the given policies
    g0, g1 = G.geodesic(p, q, [0.0, 1.0], atoms=atoms)
    assert np.array_equal(g0.masses, p.masses) and np.array_equal(g1.masses, q.masses)


@pytest.mark.parametrize("atoms", [False, True])
def test_geodesic_masses_match_exact_rational_interpolant(atoms):
    """Every cell mass of the interpolant, down to 1e-300, against exact rational arithmetic;
    conservation; and (piecewise-constant) constant speed against POT."""
    p, q = tiny_mass_policies()
    ts = [0.1, 0.5, 0.77]      # the reference takes the binary value of t exactly
    g = G.geodesic(p, q, ts, atoms=atoms)
    for s in range(p.n_states):
        for t, gt in zip(ts, g):
            ref = exact_cell_masses(p.masses[s], q.masses[s], t, atoms)
            got = gt.masses[s]
            assert np.all(got[ref == 0] == 0) and np.all(got[ref >= 4 * SUBNORMAL_ULP] > 0), (s, t)
            # a cell collects a few pieces (or shares of them), each with a few ulps of
            # rounding (positions are summed in double-double); measured <= 1.1e-15
            np.testing.assert_allclose(got, ref, rtol=1e-14, atol=4 * SUBNORMAL_ULP)
    for gt in g:
        np.testing.assert_allclose(gt.masses.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    if atoms:
        return
    # W2(p, g_t) = t W2(p, q) for the true interpolant; the grid representation is within
    # h of it (docs/geometry.md section 4). POT on R sub-atoms per cell is within h/(sqrt(3) R)
    # of the piecewise-constant value.
    h, R = p.actions.spacing[0], 40
    edges = p.actions.bounds[0, 0] + h * np.arange(p.actions.size + 1)
    sub = (edges[:-1, None] + h * (np.arange(R) + 0.5)[None, :] / R).ravel()

    def w_pot(a, b):
        return np.sqrt(ot.wasserstein_1d(sub, sub, np.repeat(a / R, R), np.repeat(b / R, R), p=2))

    for s in range(p.n_states):
        d = w_pot(p.masses[s], q.masses[s])
        for t, gt in zip(ts, g):
            tol = h + 2 * h / (np.sqrt(3) * R)
            assert abs(w_pot(p.masses[s], gt.masses[s]) - t * d) <= tol
            assert abs(w_pot(gt.masses[s], q.masses[s]) - (1 - t) * d) <= tol


def test_transport_plan_1d_marginals_keep_relative_precision():
    p, q = tiny_mass_policies()
    for s in range(p.n_states):
        i, j, P = G.transport_plan(p, q, s)
        assert np.all(np.diff(i) >= 0) and np.all(np.diff(j) >= 0)      # monotone coupling
        assert np.all(P > 0)
        for idx, m in ((i, p.masses[s]), (j, q.masses[s])):
            # row/column sums: a few ulps of each cell (the two laws account the one piece
            # where the merges from both ends meet with a rounding difference: ~1e-16 absolute
            # on a piece of at least 1/(2n) -- relative 3e-15)
            np.testing.assert_allclose(np.bincount(idx, P, minlength=m.size), m / m.sum(),
                                       rtol=1e-14, atol=SUBNORMAL_ULP)
        x = p.actions.centers[:, 0]
        assert np.sum(P * (x[i] - x[j]) ** 2) == pytest.approx(G.w2sq(p, q, atoms=True)[s], rel=1e-12)


def test_log_is_exact_on_laws_with_tiny_valleys():
    p, q = tiny_mass_policies()
    h = p.actions.spacing[0]
    pos = p.masses > 0
    # the middle of a cell of the law itself is the middle of that cell, whatever surrounds it
    np.testing.assert_array_equal(G.log(p, p)[..., 0][pos], 0.0)
    np.testing.assert_array_equal(G.log(q, q)[..., 0][q.masses > 0], 0.0)
    v = G.log(p, q)[..., 0] / h
    for s in range(p.n_states):
        ref = exact_log(p.masses[s], q.masses[s])
        # T is a position in cell units (up to 15) rounded a few times: ~1e-15 absolute
        np.testing.assert_allclose(v[s][pos[s]], ref[pos[s]], rtol=0, atol=1e-13)


def test_exp_of_log_error_is_bounded_by_the_image_width_of_the_cells(mdp1, rng):
    """exp pushes the whole mass m_a of a cell to the one point T(x_a), while pi1 spreads it over
    the image [T(e_a), T(e_{a+1})] of the cell: W2(exp(pi0, log(pi0, pi1)), pi1) is at most
    (sum_a m_a w_a^2)^{1/2}, w_a the image width, plus the deposition on the two nearest
    centres (<= h/2) and the uniform spreading inside cells (h/sqrt(12)). It is O(h) only where
    T stretches cells by O(1); a law concentrated on one cell, sent to a spread one, is not."""
    p, q = tiny_mass_policies()
    for a, b in ((p, q), (q, p), (random_policy(mdp1, rng), random_policy(mdp1, rng))):
        A = a.actions
        h = A.spacing[0]
        edges = A.bounds[0, 0] + h * np.arange(A.size + 1)
        w2 = np.sqrt(G.w2sq(G.exp(a, G.log(a, b)), b))
        for s in range(a.n_states):
            c = np.concatenate([[0.0], np.cumsum(a.masses[s])])
            T = pc_quantile(b.masses[s], edges)(c / c[-1])          # T at the edges
            bound = np.sqrt(np.sum(a.masses[s] * np.diff(T) ** 2)) + (0.5 + 1 / np.sqrt(12)) * h
            assert w2[s] <= bound + 1e-12
    # the bimodal law with 0.99999 of its mass in one cell, sent to the spread law: several h
    assert np.sqrt(G.w2sq(G.exp(p, G.log(p, q)), q))[0] > 3 * p.actions.spacing[0]
