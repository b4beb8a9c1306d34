"""The actor updates against closed forms: WPO = score-function gradient in expectation (Stein's
identity) and zero variance for linear Q; WPPG's target = transport by -h grad Q plus heat noise of
variance 2 tau h; the plug-in mixture entropy against the entropy of a Gaussian convolution; the
average-cost critic target's fixed point against wgflow's exact relative values and gain."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from wgflow.nn.algorithms import (average_cost_target, mixture_entropy, precondition, wpo_loss,  # noqa: E402
                                  wppg_loss, wppg_target)


def _wpo_grads(mu0, std0, u, G, preconditioner=True):
    mu = torch.tensor([[mu0]], dtype=torch.float64, requires_grad=True)
    std = torch.tensor([[std0]], dtype=torch.float64, requires_grad=True)
    loss = wpo_loss(mu, std, u, G, preconditioner=preconditioner)
    loss.backward()
    return float(mu.grad), float(std.grad)


def test_precondition_scales_only_the_gradient():
    x = torch.tensor([1.5, -2.0], requires_grad=True)
    y = precondition(x, torch.tensor([4.0, 0.5]))
    assert torch.equal(y, x.detach())
    (y * torch.tensor([1.0, 3.0])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([4.0, 1.5]))


def test_wpo_expected_update_is_score_function_gradient():
    # Q(u) = sin(u) + u^2/2 under u ~ N(mu, s^2): E[Q] = sin(mu) exp(-s^2/2) + (mu^2 + s^2)/2, so
    # d/dmu E[Q] = cos(mu) exp(-s^2/2) + mu and d/ds E[Q] = -s sin(mu) exp(-s^2/2) + s (closed form).
    mu0, s0, n = 0.7, 0.8, 400_000
    gen = torch.Generator().manual_seed(0)
    eps = torch.randn((n, 1, 1), generator=gen, dtype=torch.float64)
    u = mu0 + s0 * eps
    G = torch.cos(u) + u                                    # grad_u Q
    Q = torch.sin(u) + u ** 2 / 2
    g_mu, g_s = _wpo_grads(mu0, s0, u, G)
    exact_mu = math.cos(mu0) * math.exp(-s0 ** 2 / 2) + mu0
    exact_s = -s0 * math.sin(mu0) * math.exp(-s0 ** 2 / 2) + s0
    # vanilla score-function estimator: Q grad log N = Q (u-mu)/s^2, Q ((u-mu)^2/s^3 - 1/s)
    z = eps.numpy().ravel()
    q = Q.numpy().ravel()
    sf_mu = q * z / s0
    sf_s = q * (z ** 2 - 1) / s0
    wpo_mu = G.numpy().ravel()
    wpo_s = G.numpy().ravel() * z
    # tolerance: 5 Monte Carlo standard errors of each estimator (computed from the samples)
    for est, sample, exact in ((g_mu, wpo_mu, exact_mu), (g_s, wpo_s, exact_s)):
        assert est == pytest.approx(sample.mean(), rel=1e-12)     # autograd = the sample formula
        assert abs(est - exact) < 5 * sample.std() / math.sqrt(n)
    for sample, exact in ((sf_mu, exact_mu), (sf_s, exact_s)):
        assert abs(sample.mean() - exact) < 5 * sample.std() / math.sqrt(n)
    # the WPO estimator has a far smaller variance than the score-function one here
    assert wpo_mu.var() < 0.2 * sf_mu.var() and wpo_s.var() < 0.5 * sf_s.var()


def test_wpo_without_preconditioner_is_the_raw_numerator():
    # without the inverse Fisher diag(s^2, s^2/2) the gradients are E[G]/s^2 and 2 E[(u-mu) G]/s^3
    mu0, s0 = -0.3, 0.5
    u = torch.tensor([[[0.1]], [[-0.9]], [[0.4]]], dtype=torch.float64)
    G = torch.tensor([[[2.0]], [[-1.0]], [[0.5]]], dtype=torch.float64)
    g_mu, g_s = _wpo_grads(mu0, s0, u, G, preconditioner=False)
    Gn, un = G.numpy().ravel(), u.numpy().ravel()
    assert g_mu == pytest.approx(Gn.mean() / s0 ** 2, rel=1e-12)
    assert g_s == pytest.approx(2 * ((un - mu0) * Gn).mean() / s0 ** 3, rel=1e-12)
    p_mu, p_s = _wpo_grads(mu0, s0, u, G, preconditioner=True)
    assert p_mu == pytest.approx(g_mu * s0 ** 2, rel=1e-12)
    assert p_s == pytest.approx(g_s * s0 ** 2 / 2, rel=1e-12)


def test_wpo_mean_update_has_zero_variance_for_linear_q():
    # Q(u) = b u: every single-sample WPO mean update is exactly b; the score-function one is not
    b, mu0, s0 = 1.7, 0.2, 0.6
    gen = torch.Generator().manual_seed(1)
    wpo, sf = [], []
    for _ in range(20):
        u = mu0 + s0 * torch.randn((1, 1, 1), generator=gen, dtype=torch.float64)
        G = torch.full_like(u, b)
        wpo.append(_wpo_grads(mu0, s0, u, G)[0])
        sf.append(float(b * u * (u - mu0) / s0 ** 2))
    assert np.all(np.array(wpo) == b)
    assert np.std(sf) > 0.1


def test_wppg_target_moves_by_minus_h_grad_q_and_adds_variance_2_tau_h():
    n, eta, tau = 400_000, 0.1, 0.3
    gen = torch.Generator().manual_seed(2)
    a0 = torch.randn((n, 1, 2), generator=gen, dtype=torch.float64)
    G = torch.stack([2.0 * a0[..., 0], -a0[..., 1] + 1.0], dim=-1)     # grad of a quadratic cost
    noise = torch.randn(a0.shape, generator=gen, dtype=torch.float64)
    target = wppg_target(a0, G, eta, tau, noise)
    step = (target - a0 + eta * G).numpy().reshape(n, 2)
    var = 2 * tau * eta
    # the residual after the transport is the heat noise: mean 0, covariance 2 tau eta I;
    # tolerances: 5 standard errors (mean: sqrt(var/n); variance: var sqrt(2/n); covariance: var/sqrt(n))
    assert np.all(np.abs(step.mean(0)) < 5 * math.sqrt(var / n))
    assert np.all(np.abs(step.var(0) - var) < 5 * var * math.sqrt(2 / n))
    assert abs(np.mean(step[:, 0] * step[:, 1])) < 5 * var / math.sqrt(n)
    # with tau = 0 the target is the pure transport a0 - eta G, exactly
    t0 = wppg_target(a0[:10], G[:10], eta, 0.0, noise[:10])
    assert torch.equal(t0, a0[:10] - eta * G[:10])
    with pytest.raises(ValueError):
        wppg_target(a0, G, 0.0, tau, noise)


def test_wppg_loss_gradient_is_a_transport_step():
    # d/da mean|a - target|^2 = 2 (a - target)/K: one gradient step of size K/2 on free samples
    # lands on the target exactly (what the generator regression aims at)
    a = torch.tensor([[[0.5]], [[-1.0]], [[2.0]]], dtype=torch.float64, requires_grad=True)
    G = torch.tensor([[[1.0]], [[-2.0]], [[0.5]]], dtype=torch.float64)
    target = wppg_target(a, G, 0.25, 0.0, torch.zeros_like(G))
    wppg_loss(a, target).backward()
    moved = a.detach() - 1.5 * a.grad
    assert torch.allclose(moved, a.detach() - 0.25 * G, rtol=0, atol=1e-15)


def test_mixture_entropy_of_a_gaussian():
    # identity generator g(z) = z: pi = N(0, 1), pi * N(0, s^2) = N(0, 1 + s^2) with entropy
    # 0.5 log(2 pi e (1 + s^2)). The plug-in estimate with M centres is biased by O(1/M) (the log
    # of a mean); tolerance: 5 Monte Carlo standard errors of the L samples + 2/M for that bias.
    M, L, s = 4000, 4000, 0.3
    gen = torch.Generator().manual_seed(3)
    centers = torch.randn((M, 2, 1), generator=gen, dtype=torch.float64)
    samples = torch.randn((L, 2, 1), generator=gen, dtype=torch.float64)
    samples = samples + s * torch.randn(samples.shape, generator=gen, dtype=torch.float64)
    H = mixture_entropy(centers, samples, s).numpy()
    exact = 0.5 * math.log(2 * math.pi * math.e * (1 + s ** 2))
    se = math.sqrt(0.5) / math.sqrt(L)        # sd of -log N(x; 0, 1 + s^2) is sqrt(1/2)
    assert H.shape == (2,)
    assert np.all(np.abs(H - exact) < 5 * se + 2.0 / M)
    with pytest.raises(ValueError):
        mixture_entropy(centers, samples, 0.0)


@pytest.mark.parametrize("rho", [0.0, 0.3, 5.0])
def test_average_cost_target_fixed_point_is_the_relative_q(rho):
    """Iterating the trainer's target in expectation over the stationary state-action law ``d``
    (``centre = d . Q``) on a small garnet MDP under a stochastic policy converges, for any gain
    estimate ``rho``, to wgflow's exact relative Q of the average cost plus a constant, and the
    constant makes ``d . Q = g - rho`` with ``g`` the exact gain."""
    import wgflow as wg
    mdp = wg.problems.get("garnet", n_states=6, n_actions=3, branching=3, seed=1)
    nS, nA = mdp.C.shape
    pi = np.random.default_rng(2).dirichlet(np.ones(nA), size=nS)
    ev = wg.evaluate(mdp, wg.Policy(pi), wg.Average())
    P = mdp.P.toarray()                                   # (nS * nA, nS)
    d = (np.asarray(ev.weights)[:, None] * pi).reshape(-1)  # stationary law of (s, a)
    c = torch.tensor(mdp.C.reshape(-1), dtype=torch.float64)
    Q = torch.zeros(nS * nA, dtype=torch.float64)
    for _ in range(400):
        q_next = torch.tensor(P @ (pi * Q.numpy().reshape(nS, nA)).sum(1), dtype=torch.float64)
        centre = torch.tensor(d @ Q.numpy(), dtype=torch.float64)
        Q = average_cost_target(c, rho, q_next, centre)
    Q = Q.numpy().reshape(nS, nA)
    shift = Q - np.asarray(ev.Q)
    # the iteration contracts like the second eigenvalue of P_pi (modulus 0.43 here), so 400 steps
    # leave ~1e-140 of the start; 1e-10 is far above the rounding of values of size ~1
    np.testing.assert_allclose(shift, shift.mean(), atol=1e-10)
    assert abs(d @ Q.reshape(-1) - (ev.J - rho)) < 1e-10
    assert abs(d @ mdp.C.reshape(-1) - ev.J) < 1e-12


def test_average_cost_target_without_centring_drifts():
    """Dropping the centre (m = 0) with a wrong gain estimate makes the values drift by g - rho a
    step: the centring is what keeps the undiscounted target bounded."""
    import wgflow as wg
    mdp = wg.problems.get("garnet", n_states=6, n_actions=3, branching=3, seed=1)
    nS, nA = mdp.C.shape
    pi = np.full((nS, nA), 1.0 / nA)
    g = wg.evaluate(mdp, wg.Policy(pi), wg.Average()).J
    P = mdp.P.toarray()
    c = torch.tensor(mdp.C.reshape(-1), dtype=torch.float64)
    Q = torch.zeros(nS * nA, dtype=torch.float64)
    rho = g - 0.5
    for _ in range(200):
        q_next = torch.tensor(P @ (pi * Q.numpy().reshape(nS, nA)).sum(1), dtype=torch.float64)
        Q = average_cost_target(c, rho, q_next, torch.tensor(0.0, dtype=torch.float64))
    # after the transient, Q grows by (g - rho) = 0.5 per iteration
    assert float(Q.mean()) == pytest.approx(200 * 0.5, rel=0.05)
