"""Networks: the squashed Gaussian's density against torch.distributions, the state features, the
critic's action gradient against finite differences, the exact cell masses of the projection."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import wgflow as wg  # noqa: E402
from wgflow.nn.networks import ImplicitPolicy, SquashedGaussianPolicy, StateFeatures, TwinQ  # noqa: E402
from wgflow.nn.projection import project_policy, squashed_gaussian_masses  # noqa: E402

BOUNDS = [[-math.pi, math.pi], [-8.0, 8.0]]


def test_squashed_gaussian_log_prob_matches_torch_transformed_distribution():
    D = torch.distributions
    torch.manual_seed(0)
    pi = SquashedGaussianPolicy(BOUNDS, [True, False], [-2.0, -1.0], [2.0, 3.0], hidden=(16,))
    s = torch.randn(50, 2)
    mu, std = pi.dist(s)
    u = mu + std * torch.randn(7, 50, 2)
    u[0, 0] = torch.tensor([9.0, -9.0])                    # deep in the tails: stable formula
    ref = D.TransformedDistribution(D.Independent(D.Normal(mu.double(), std.double()), 1),
                                    [D.TanhTransform(), D.AffineTransform(pi.center.double(), pi.radius.double())])
    a = pi.squash(u.double())
    ours = pi.log_prob(u.double(), mu.double(), std.double())
    theirs = ref.log_prob(a)
    ok = (u.abs() < 5).all(-1)           # torch inverts tanh(u), which loses the far tail
    # float64 throughout: the two formulas agree to rounding of log-terms of size ~10
    assert torch.allclose(ours[ok], theirs[ok], rtol=0, atol=1e-8)
    # the tail point against log(1 - tanh^2 u) = -2 log cosh u evaluated directly
    u0, m0, s0 = u[0, 0].detach().double(), mu[0].detach().double(), std[0].detach().double()
    direct = sum(-0.5 * ((u0[d] - m0[d]) / s0[d]) ** 2 - math.log(s0[d]) - 0.5 * math.log(2 * math.pi)
                 - math.log(float(pi.radius[d])) + 2 * math.log(math.cosh(float(u0[d]))) for d in range(2))
    # terms of size ~3e3 summed in another order: agreement to ~10 ulps of the total
    assert float(ours[0, 0].detach()) == pytest.approx(float(direct), rel=1e-11)
    assert torch.all(pi.deterministic(s) == pi.squash(mu))


def test_state_features_are_periodic_and_normalized():
    f = StateFeatures(BOUNDS, [True, False])
    x = torch.tensor([[-math.pi, -8.0], [math.pi, 8.0], [0.0, 0.0]])
    y = f(x)
    assert f.n_features == 3 and y.shape == (3, 3)
    assert torch.allclose(y[0, [0, 2]], y[1, [0, 2]], atol=1e-6)       # theta = -pi and pi coincide
    assert torch.allclose(y[:, 1], torch.tensor([-1.0, 1.0, 0.0]))      # omega mapped to [-1, 1]
    g = StateFeatures([[-np.inf, np.inf]], [False])
    assert torch.equal(g(torch.tensor([[5.0]])), torch.tensor([[5.0]]))
    with pytest.raises(ValueError):
        StateFeatures([[-np.inf, np.inf]], [True])


def test_action_grad_is_the_gradient_of_the_pessimistic_critic():
    torch.manual_seed(1)
    q = TwinQ(BOUNDS, [True, False], [-2.0], [2.0], hidden=(32, 32)).double()
    s = torch.randn(40, 2, dtype=torch.float64)
    a = 2 * torch.rand(3, 40, 1, dtype=torch.float64) - 1
    g = q.action_grad(s, a)
    h = 1e-6
    fd = (q.pessimistic(s, a + h) - q.pessimistic(s, a - h)) / (2 * h)
    # central differences of a piecewise-linear (ReLU) function: exact away from kinks; the max
    # and the ReLUs switch within h for a negligible fraction of points
    close = torch.isclose(g[..., 0], fd, rtol=1e-6, atol=1e-8)
    assert close.float().mean() > 0.95
    assert all(p.grad is None for p in q.parameters())      # only the action is differentiated


def test_squashed_gaussian_cell_masses_match_sampling(rng):
    A = wg.Grid([(-2.0, 2.0)], [9])
    mu = np.array([[0.3], [-1.5], [4.0]])
    std = np.array([[0.5], [1.2], [0.2]])
    m = squashed_gaussian_masses(mu, std, np.array([0.0]), np.array([2.0]), A)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=0, atol=1e-14)
    n = 400_000
    for i in range(3):
        a = 2.0 * np.tanh(mu[i, 0] + std[i, 0] * rng.standard_normal(n))
        h = np.bincount(A.cell_index(a[:, None]), minlength=9) / n
        # 5 binomial standard errors per cell (plus 1e-12 for empty cells)
        assert np.all(np.abs(h - m[i]) < 5 * np.sqrt(m[i] * (1 - m[i]) / n) + 1e-12)


def test_projections_of_a_network_policy():
    mdp = wg.problems.get("pendulum", n_theta=9, n_omega=7, n_actions=11)
    torch.manual_seed(2)
    pi = SquashedGaussianPolicy(mdp.states.bounds, mdp.states.periodic, [-2.0], [2.0], hidden=(16,))
    det = project_policy(pi, mdp, "deterministic")
    with torch.no_grad():
        act = pi.deterministic(torch.tensor(mdp.states.centers, dtype=torch.float32)).double().numpy()
    inside = (act[:, 0] > mdp.actions.centers[0, 0]) & (act[:, 0] < mdp.actions.centers[-1, 0])
    # linear deposition keeps the mean action (float32 network output, float64 deposition)
    np.testing.assert_allclose(det.mean()[inside], act[inside], rtol=0, atol=1e-12)
    sto = project_policy(pi, mdp, "stochastic")
    np.testing.assert_allclose(sto.masses.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    imp = ImplicitPolicy(mdp.states.bounds, mdp.states.periodic, [-2.0], [2.0], hidden=(16,))
    p1 = project_policy(imp, mdp, "stochastic", samples=64, seed=5)
    p2 = project_policy(imp, mdp, "stochastic", samples=64, seed=5)
    assert p1 == p2                                               # seeded sampling
    np.testing.assert_allclose(p1.masses.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    with pytest.raises(ValueError):
        project_policy(pi, mdp, "median")
