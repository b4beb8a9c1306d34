"""Tests of wgflow.particles: particle policies, conversions, exact particle W2."""
import numpy as np
import ot
import pytest

import wgflow as wg
import wgflow.geometry as G
from wgflow.errors import ValidationError
from wgflow.particles import ParticlePolicy, particle_distance, particle_w2sq


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.fixture(scope="module")
def mdp1():
    return wg.problems.get("lqr1d", n_states=4, n_actions=41)


@pytest.fixture(scope="module")
def mdp2():
    return wg.problems.get("lqr2d", n_states=(2, 2), n_actions=(8, 8))


def test_construction_and_validation(rng):
    p = ParticlePolicy(rng.normal(size=(3, 5)))
    assert p.positions.shape == (3, 5, 1) and p.positions.dtype == np.float64
    assert p.n_states == 3 and p.n_particles == 5 and p.dim == 1
    np.testing.assert_allclose(p.weights, 0.2)
    with pytest.raises(ValueError):
        p.positions[0, 0, 0] = 1.0                       # read-only
    with pytest.raises(ValidationError, match="shape"):
        ParticlePolicy(np.zeros(4))
    x = np.zeros((2, 3, 2)); x[1, 2, 0] = np.nan
    with pytest.raises(ValidationError, match="state 1, particle 2"):
        ParticlePolicy(x)
    with pytest.raises(ValidationError, match="2-D"):
        ParticlePolicy(np.zeros((2, 3, 1)), actions=wg.Grid([(0, 1)] * 2, [3, 3]))


def test_1d_sorting_w2_equals_emd(rng):
    nS, N = 5, 37
    p0 = ParticlePolicy(rng.normal(size=(nS, N)))
    p1 = ParticlePolicy(rng.normal(loc=0.5, scale=2.0, size=(nS, N)))
    d2 = particle_w2sq(p0, p1)
    a = np.full(N, 1.0 / N)
    for s in range(nS):
        M = ot.dist(p0.positions[s], p1.positions[s])
        assert d2[s] == pytest.approx(ot.emd2(a, a, M), abs=1e-12)
        assert d2[s] == pytest.approx(ot.wasserstein_1d(p0.positions[s, :, 0],
                                                        p1.positions[s, :, 0], p=2), abs=1e-12)
    om = rng.random(nS); om /= om.sum()
    assert particle_distance(p0, p1, om) == pytest.approx(np.sqrt(om @ d2), abs=1e-14)
    assert G.distance(p0, p1, om) == particle_distance(p0, p1, om)      # dispatch


def test_2d_particle_distance_vs_emd(rng):
    nS, N = 3, 20
    p0 = ParticlePolicy(rng.normal(size=(nS, N, 2)))
    p1 = ParticlePolicy(rng.normal(size=(nS, N, 2)) + [1.0, -0.5])
    d2 = particle_w2sq(p0, p1)
    a = np.full(N, 1.0 / N)
    for s in range(nS):
        assert d2[s] == pytest.approx(ot.emd2(a, a, ot.dist(p0.positions[s], p1.positions[s])), abs=1e-12)
    # a rigid translation: W2 = |shift| exactly
    q = p0.exp(np.broadcast_to([0.3, 0.4], p0.positions.shape))
    np.testing.assert_allclose(particle_w2sq(p0, q), 0.25, atol=1e-12)


def test_particle_distance_validation(rng):
    p = ParticlePolicy(rng.normal(size=(3, 5)))
    with pytest.raises(ValidationError, match="particles per state"):
        particle_distance(p, ParticlePolicy(rng.normal(size=(3, 6))), np.full(3, 1 / 3))
    with pytest.raises(ValidationError, match="states"):
        particle_distance(p, ParticlePolicy(rng.normal(size=(2, 5))), np.full(3, 1 / 3))
    with pytest.raises(ValidationError, match="sum to 1"):
        particle_distance(p, p, np.ones(3))


def test_exp_moves_particles_exactly(rng):
    x = rng.normal(size=(3, 8, 2))
    v = rng.normal(size=(3, 8, 2))
    p = ParticlePolicy(x)
    q = p.exp(v)
    assert np.array_equal(q.positions, x + v)
    assert np.array_equal(p.positions, x)                   # original untouched
    with pytest.raises(ValidationError, match="shape"):
        p.exp(v[:, :-1])
    bad = v.copy(); bad[0, 1, 1] = np.inf
    with pytest.raises(ValidationError, match="state 0, particle 1"):
        p.exp(bad)


def test_from_policy_quantile_1d_is_exact(mdp1, rng):
    pi = wg.Policy.gaussian(mdp1, np.linspace(-1, 1, 4), 0.7)
    N = 50
    p = ParticlePolicy.from_policy(pi, N)
    A = mdp1.actions
    edges = A.bounds[0, 0] + A.spacing[0] * np.arange(A.size + 1)
    u = (np.arange(N) + 0.5) / N
    for s in range(4):
        c = np.concatenate([[0.0], np.cumsum(pi.masses[s])])
        np.testing.assert_allclose(p.positions[s, :, 0], np.interp(u, c / c[-1], edges), atol=1e-12)
    # nearest-cell round trip: counts differ from N m_a by less than one particle
    back = p.to_policy(rule="nearest")
    assert np.all(np.abs(back.masses - pi.masses) <= 1.0 / N + 1e-12)
    # linear round trip: close in W2 (grid error) and conservative
    lin = p.to_policy()
    np.testing.assert_allclose(lin.masses.sum(axis=1), 1.0, atol=1e-13)
    assert G.distance(lin, pi, np.full(4, 0.25)) <= A.spacing[0]
    # particle W2 converges to the exact piecewise-constant W2
    pi2 = wg.Policy.gaussian(mdp1, 0.5, 1.1)
    dn = particle_distance(ParticlePolicy.from_policy(pi, 4000), ParticlePolicy.from_policy(pi2, 4000),
                           np.full(4, 0.25))
    assert dn == pytest.approx(G.distance(pi, pi2, np.full(4, 0.25)), abs=2e-3)


def test_from_policy_2d(mdp2):
    pi = wg.Policy.gaussian(mdp2, [0.3, -0.2], [0.9, 0.6])
    N = 997
    p = ParticlePolicy.from_policy(pi, N)
    A = mdp2.actions
    # systematic sampling of the cells: each cell gets floor or ceil of N m_a particles
    back = p.to_policy(rule="nearest")
    assert np.all(np.abs(back.masses - pi.masses) <= 1.0 / N + 1e-12)
    # particles lie inside their cell
    cells = np.stack([A.cell_index(p.positions[s]) for s in range(p.n_states)])
    np.testing.assert_allclose(back.masses, np.stack([np.bincount(c, minlength=A.size) / N for c in cells]))
    # moments of the piecewise-constant law
    np.testing.assert_allclose(p.mean(), pi.mean(), atol=0.02)
    np.testing.assert_allclose(p.variance(), pi.variance(), rtol=0.05)
    lin = p.to_policy()
    np.testing.assert_allclose(lin.masses.sum(axis=1), 1.0, atol=1e-13)
    assert G.distance(lin, pi, np.full(p.n_states, 1 / p.n_states), atoms=True) <= A.spacing.max()


def test_from_policy_random_seeded(mdp1, mdp2):
    for mdp in (mdp1, mdp2):
        pi = wg.Policy.uniform(mdp)
        a = ParticlePolicy.from_policy(pi, 200, method="random", rng=3)
        b = ParticlePolicy.from_policy(pi, 200, method="random", rng=3)
        assert np.array_equal(a.positions, b.positions)
        lo, hi = mdp.actions.bounds[:, 0], mdp.actions.bounds[:, 1]
        assert np.all((a.positions >= lo) & (a.positions <= hi))
    with pytest.raises(ValidationError, match="method"):
        ParticlePolicy.from_policy(pi, 10, method="sobol")
    with pytest.raises(ValidationError, match="n_particles"):
        ParticlePolicy.from_policy(pi, 0)


def test_to_policy_needs_grid_and_clamps(mdp1):
    p = ParticlePolicy(np.full((4, 3), 100.0))
    with pytest.raises(ValidationError, match="action grid"):
        p.to_policy()
    q = p.to_policy(mdp1.actions)
    np.testing.assert_allclose(q.masses[:, -1], 1.0)
    # linear deposition keeps the mean of particles inside the hull of the centres
    x = np.random.default_rng(0).uniform(-3.5, 3.5, size=(4, 30))
    r = ParticlePolicy(x, mdp1.actions).to_policy()
    np.testing.assert_allclose(r.mean()[:, 0], x.mean(axis=1), atol=1e-12)


def test_import_graph_of_policies_particles_geometry_points_down():
    """transport <- policy <- particles <- geometry: no module imports one above it (the
    geometry/particles/policy cycle is gone)."""
    import ast
    import pathlib
    import wgflow
    root = pathlib.Path(wgflow.__file__).parent
    order = ["transport", "policy", "particles", "geometry"]

    def imported(name):
        tree = ast.parse((root / f"{name}.py").read_text())
        out = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                out.add(node.module.split(".")[0])
        return out

    for i, name in enumerate(order):
        above = set(order[i + 1:])
        assert not (imported(name) & above), (name, imported(name) & above)
