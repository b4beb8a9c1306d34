"""Second order (docs/design.md §5): gradient, Hessian-vector products, split, spectrum, rates.

Every check compares ``wgflow.hessian`` with something computed independently of it:
finite differences of ``wg.evaluate`` (the energy), the closed-form Ornstein--Uhlenbeck spectrum
of a Gaussian Gibbs law, and the decay rate of an actual ``otto`` trajectory.
Conventions (docs/hessian.md): tangent vectors are grid potentials ``phi`` ``(nS, nA)``; the
masses move by ``dm/d eps = L_theta(m) phi`` (``wgflow.hessian.continuity_curve``), and
``H(phi, phi) = d^2 J(m(eps)) / d eps^2`` at ``eps = 0``.
"""
import zlib

import numpy as np
import pytest

import wgflow as wg
from wgflow.hessian import (continuity_curve, energy_gradient, laplacian_apply, measured_rate,
                            mobility, predicted_rate)

MOBILITIES = ("sg", "logmean", "arithmetic")
OBJECTIVES = {"discounted": wg.Discounted(0.8, entropy=1.0), "average": wg.Average(entropy=1.0)}


# ---------------------------------------------------------------------------------------------
# problems and helpers
# ---------------------------------------------------------------------------------------------
def _problem(name):
    if name == "lqr1d":        # small grid, noise >= state spacing (0.75)
        return wg.problems.get("lqr1d", n_states=9, n_actions=7, x_max=3.0, a_max=2.0, noise=1.0)
    if name == "garnet":       # 1-D action grid on [0, 1]
        return wg.problems.get("garnet", n_states=8, n_actions=6, branching=4, seed=3)
    if name == "lqr2d":        # 2-D actions
        return wg.problems.get("lqr2d", n_states=(5, 5), n_actions=(4, 4), a_max=2.0, noise=1.5)
    raise KeyError(name)


_CACHE = {}


def _setup(name, obj_key, which):
    """MDP, objective and a policy: ``which`` = "random" (positive, non-optimal) or "optimal"."""
    key = (name, obj_key, which)
    if key not in _CACHE:
        mdp = _problem(name)
        obj = OBJECTIVES[obj_key]
        if which == "random":
            rng = np.random.default_rng(zlib.crc32(repr(key).encode()))
            m = rng.uniform(0.2, 1.0, (mdp.n_states, mdp.n_actions))
            pol = wg.Policy.from_masses(mdp, m / m.sum(axis=1, keepdims=True))
        else:
            pol = wg.solve(mdp, obj).policy
        _CACHE[key] = (mdp, obj, pol)
    return _CACHE[key]


def _potential(mdp, rng, rough=0.0):
    """A random smooth potential (cubic polynomial per state in the action coordinates) plus
    ``rough`` times white noise. Smooth potentials keep ``|L phi| / m`` bounded in Gibbs tails."""
    A = mdp.actions
    lo = np.array([b[0] for b in A.bounds])
    hi = np.array([b[1] for b in A.bounds])
    u = 2.0 * (A.centers - lo) / (hi - lo) - 1.0
    feats = [u[:, d] ** p for d in range(A.ndim) for p in (1, 2, 3)]
    if A.ndim == 2:
        feats.append(u[:, 0] * u[:, 1])
    F = np.stack(feats, axis=1)
    phi = rng.standard_normal((mdp.n_states, F.shape[1])) @ F.T
    return phi + rough * rng.standard_normal(phi.shape)


def _scaled(mdp, masses, phi, kind, rel=20.0):
    """``phi`` scaled so that ``max |L phi| / m = rel``: the curve keeps masses positive."""
    Lp = laplacian_apply(masses, phi, mdp.actions, kind)
    return phi * (rel / np.max(np.abs(Lp) / masses))


def _second_difference(f, eps):
    """Richardson-extrapolated central second difference of ``f`` at 0 (error O(eps^4))."""
    f0 = f(0.0)

    def D(e):
        return (f(e) - 2.0 * f0 + f(-e)) / e ** 2

    return (4.0 * D(eps / 2) - D(eps)) / 3.0


def _J_along(mdp, obj, pol, phi, kind):
    return lambda e: wg.evaluate(mdp, continuity_curve(mdp, pol, phi, e, kind), obj).J


# ---------------------------------------------------------------------------------------------
# gradient
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tau", [0.4, 0.0], ids=["tau>0", "tau=0"])
@pytest.mark.parametrize("obj_cls", [lambda t: wg.Discounted(0.85, entropy=t), lambda t: wg.Average(entropy=t)],
                         ids=["discounted", "average"])
@pytest.mark.parametrize("name", ["lqr1d", "garnet"])
def test_energy_gradient_matches_central_differences(name, obj_cls, tau, rng):
    mdp = _problem(name)
    obj = obj_cls(tau)
    m = rng.uniform(0.2, 1.0, (mdp.n_states, mdp.n_actions))
    m /= m.sum(axis=1, keepdims=True)
    g = energy_gradient(mdp, obj, wg.Policy.from_masses(mdp, m))
    assert g.shape == m.shape
    for _ in range(3):
        dm = rng.standard_normal(m.shape)
        dm -= dm.mean(axis=1, keepdims=True)           # zero sum per state: stays a policy
        dm *= 0.5 * m.min() / np.abs(dm).max()
        J = lambda e: wg.evaluate(mdp, m + e * dm, obj).J  # noqa: E731

        def D(e):
            return (J(e) - J(-e)) / (2 * e)

        fd = (4 * D(0.01) - D(0.02)) / 3                # Richardson: error O(eps^4)
        exact = float(np.sum(g * dm))
        assert exact == pytest.approx(fd, rel=1e-8, abs=1e-12 * abs(J(0.0)))


def test_energy_gradient_closed_form(rng):
    """``dJ/dm = kappa w(s) (Q + tau log(m/vol) + tau)`` with ``kappa = 1/(1-gamma)`` (docs/flows.md)."""
    mdp = _problem("lqr1d")
    obj = wg.Discounted(0.7, entropy=0.3)
    pol = wg.Policy.gaussian(mdp, mean=0.2, std=0.9)
    ev = wg.evaluate(mdp, pol, obj)
    psi = ev.Q + 0.3 * (np.log(pol.masses / mdp.actions.cell_volume) + 1.0)
    np.testing.assert_allclose(energy_gradient(mdp, obj, pol), ev.weights[:, None] * psi / 0.3,
                               rtol=1e-12, atol=1e-12 * np.abs(psi).max())


# ---------------------------------------------------------------------------------------------
# Hessian-vector products vs second differences along continuity curves
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", MOBILITIES)
@pytest.mark.parametrize("which", ["random", "optimal"])
@pytest.mark.parametrize("obj_key", ["discounted", "average"])
@pytest.mark.parametrize("name", ["lqr1d", "garnet", "lqr2d"])
def test_hessian_matches_second_differences(name, obj_key, which, kind):
    mdp, obj, pol = _setup(name, obj_key, which)
    rng = np.random.default_rng(7)
    H = wg.hessian(mdp, obj, pol, mobility=kind)
    phi = _potential(mdp, rng, rough=0.3 if which == "random" else 0.0)
    phi = _scaled(mdp, pol.masses, phi, kind)
    fd = _second_difference(_J_along(mdp, obj, pol, phi, kind), 2.5e-3)
    assert H.quadratic_form(phi) == pytest.approx(fd, rel=1e-5)


@pytest.mark.parametrize("obj_key", ["discounted", "average"])
def test_hessian_bilinear_form_by_polarization(obj_key):
    """``H(phi, psi) = [q(phi + psi) - q(phi - psi)] / 4`` with ``q`` the second differences: the
    off-diagonal entries of the operator (not only its quadratic form) are right."""
    mdp, obj, pol = _setup("lqr1d", obj_key, "random")
    rng = np.random.default_rng(3)
    H = wg.hessian(mdp, obj, pol)
    phi = _scaled(mdp, pol.masses, _potential(mdp, rng, 0.3), "sg", 10.0)
    psi = _scaled(mdp, pol.masses, _potential(mdp, rng, 0.3), "sg", 10.0)
    qp = _second_difference(_J_along(mdp, obj, pol, phi + psi, "sg"), 2.5e-3)
    qm = _second_difference(_J_along(mdp, obj, pol, phi - psi, "sg"), 2.5e-3)
    exact = float(psi.ravel() @ H.matvec(phi.ravel()))
    assert exact == pytest.approx((qp - qm) / 4.0, rel=1e-5, abs=1e-6 * (abs(qp) + abs(qm)))


def test_hessian_at_tau_zero_matches_second_differences():
    """Without entropy (positive policy), the Hessian is still the second derivative of J."""
    mdp = _problem("lqr1d")
    obj = wg.Discounted(0.8, entropy=0.0)
    rng = np.random.default_rng(11)
    m = rng.uniform(0.2, 1.0, (mdp.n_states, mdp.n_actions))
    pol = wg.Policy.from_masses(mdp, m / m.sum(axis=1, keepdims=True))
    H = wg.hessian(mdp, obj, pol)
    phi = _scaled(mdp, pol.masses, _potential(mdp, rng, 0.3), "sg")
    fd = _second_difference(_J_along(mdp, obj, pol, phi, "sg"), 2.5e-3)
    assert H.quadratic_form(phi) == pytest.approx(fd, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# local / transport split, symmetry
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["random", "optimal"])
@pytest.mark.parametrize("obj_key", ["discounted", "average"])
@pytest.mark.parametrize("name", ["lqr1d", "lqr2d"])
def test_local_plus_transport_is_hessian_and_local_is_frozen_energy(name, obj_key, which):
    mdp, obj, pol = _setup(name, obj_key, which)
    rng = np.random.default_rng(5)
    H = wg.hessian(mdp, obj, pol)
    phi = _scaled(mdp, pol.masses, _potential(mdp, rng, 0.3 if which == "random" else 0.0), "sg")
    v = phi.ravel()
    full, loc, tr = H.matvec(v), H.local.matvec(v), H.transport.matvec(v)
    np.testing.assert_allclose(loc + tr, full, rtol=0, atol=1e-12 * np.abs(full).max())
    # the local part: second derivative of E_lin(m) = sum_s x(s) sum_a m (Q + tau log(m/vol)) with
    # Q and the unnormalized weights x frozen at the policy
    ev = wg.evaluate(mdp, pol, obj)
    x = ev.weights / (1.0 - obj.gamma) if isinstance(obj, wg.Discounted) else ev.weights
    tau, vol = obj.entropy, mdp.actions.cell_volume

    def E_lin(e):
        m = continuity_curve(mdp, pol, phi, e)
        return float(np.sum(x[:, None] * m * (ev.Q + tau * np.log(m / vol))))

    fd = _second_difference(E_lin, 2.5e-3)
    assert float(v @ loc) == pytest.approx(fd, rel=1e-5, abs=1e-9 * abs(float(v @ full)))
    # the transport part is what the response of Q and of the weights adds
    assert float(v @ tr) == pytest.approx(float(v @ full) - fd, rel=1e-4, abs=1e-6 * abs(float(v @ full)))


@pytest.mark.parametrize("kind", MOBILITIES)
@pytest.mark.parametrize("which", ["random", "optimal"])
@pytest.mark.parametrize("obj_key", ["discounted", "average"])
@pytest.mark.parametrize("name", ["lqr1d", "garnet", "lqr2d"])
def test_hessian_is_symmetric(name, obj_key, which, kind):
    mdp, obj, pol = _setup(name, obj_key, which)
    rng = np.random.default_rng(9)
    H = wg.hessian(mdp, obj, pol, mobility=kind)
    for _ in range(3):
        phi = rng.standard_normal(pol.masses.size)
        psi = rng.standard_normal(pol.masses.size)
        Hphi, Hpsi = H.matvec(phi), H.matvec(psi)
        scale = np.linalg.norm(phi) * np.linalg.norm(Hpsi) + np.linalg.norm(psi) * np.linalg.norm(Hphi)
        assert abs(psi @ Hphi - phi @ Hpsi) <= 1e-12 * scale
        # and the parts separately: both are symmetric bilinear forms
        for part in (H.local, H.transport):
            a, b = psi @ part.matvec(phi), phi @ part.matvec(psi)
            assert abs(a - b) <= 1e-12 * scale


@pytest.mark.parametrize("obj_key", ["discounted", "average"])
def test_operator_attributes(obj_key):
    mdp, obj, pol = _setup("garnet", obj_key, "random")
    H = wg.hessian(mdp, obj, pol)
    ev = wg.evaluate(mdp, pol, obj)
    n = mdp.n_states * mdp.n_actions
    assert isinstance(H, wg.Hessian) and H.shape == (n, n)
    assert H.kappa == pytest.approx(5.0 if obj_key == "discounted" else 1.0, rel=1e-14)
    assert H.evaluation.J == pytest.approx(ev.J, rel=1e-13)
    psi = ev.Q + obj.entropy * np.log(pol.masses / mdp.actions.cell_volume)
    # the gradient potential, up to a constant per state (the code adds tau: dJ/dm / x)
    np.testing.assert_allclose(np.diff(H.gradient, axis=1), np.diff(psi, axis=1), rtol=1e-12, atol=1e-12)
    # G is the weighted face form: G(phi, phi) = sum_s w sum_faces theta |dphi|^2 / h^2 >= 0
    phi = np.random.default_rng(1).standard_normal((mdp.n_states, mdp.n_actions))
    th = mobility(pol.masses[:, :-1], pol.masses[:, 1:], "sg")[0]
    direct = np.sum(ev.weights[:, None] * th * np.diff(phi, axis=1) ** 2) / mdp.actions.spacing[0] ** 2
    assert phi.ravel() @ H.metric.matvec(phi.ravel()) == pytest.approx(direct, rel=1e-12)


def test_constants_per_state_are_the_kernel():
    """Potentials are defined modulo per-state constants: H and G vanish on them."""
    mdp, obj, pol = _setup("lqr1d", "discounted", "random")
    H = wg.hessian(mdp, obj, pol)
    c = np.repeat(np.arange(mdp.n_states, dtype=float)[:, None], mdp.n_actions, axis=1).ravel()
    phi = np.random.default_rng(2).standard_normal(c.size)
    scale = np.abs(H.matvec(phi)).max()
    assert np.abs(H.matvec(c)).max() <= 1e-12 * scale * np.abs(c).max()
    np.testing.assert_allclose(H.matvec(phi + c), H.matvec(phi), atol=1e-11 * scale)
    assert np.abs(H.metric.matvec(c)).max() <= 1e-14 * np.abs(H.metric.matvec(phi)).max() * np.abs(c).max()


# ---------------------------------------------------------------------------------------------
# positivity and spectrum at soft optima
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("obj_key", ["discounted", "average"])
@pytest.mark.parametrize("name", ["lqr1d", "garnet", "lqr2d"])
def test_positive_definite_at_soft_optimum(name, obj_key):
    mdp, obj, pol = _setup(name, obj_key, "optimal")
    H = wg.hessian(mdp, obj, pol)
    lam = H.spectrum(4)
    assert np.all(lam > 0)
    assert np.all(np.diff(lam) >= -1e-10 * lam[-1])
    rng = np.random.default_rng(4)
    for rough in (0.0, 1.0):
        for _ in range(5):
            phi = _potential(mdp, rng, rough).ravel()
            q = phi @ H.matvec(phi)
            g = phi @ H.metric.matvec(phi)
            assert q > 0 and g > 0
            # a Rayleigh quotient is never below the smallest eigenvalue (Courant--Fischer), up
            # to the rounding of the two quadratic forms (1e-10 relative)
            assert q / g >= lam[0] * (1 - 1e-10)


def _bandit(n, curvature=2.0):
    return wg.problems.get("quadratic_bandit", n_actions=n, a_max=5.0, curvature=curvature)


@pytest.mark.parametrize("obj", [wg.Discounted(0.5, entropy=0.5), wg.Average(entropy=0.5)],
                         ids=["discounted", "average"])
def test_quadratic_bandit_ornstein_uhlenbeck_spectrum(obj):
    """Gibbs law N(0, tau/k): H relative to G is kappa * tau * A^2 / A with A the OU generator,
    eigenvalues kappa * k * (1, 2, 3, ...) (Hermite eigenfunctions), up to O(h^2)."""
    k = 2.0
    kappa = 1.0 / (1.0 - obj.gamma) if isinstance(obj, wg.Discounted) else 1.0
    exact = kappa * k * np.arange(1, 5)
    errs = []
    for n in (81, 161):
        mdp = _bandit(n, k)
        H = wg.hessian(mdp, obj, wg.solve(mdp, obj).policy)
        assert H.kappa == kappa
        lam, vecs = H.spectrum(4, return_vectors=True)
        errs.append(lam - exact)
        np.testing.assert_allclose(lam / lam[0], np.arange(1, 5), rtol=0.02)
        # the slowest mode is the first Hermite polynomial: a linear potential (a shift of the law)
        a = mdp.actions.centers[:, 0]
        mass = H.masses[0]
        v = vecs[0, 0] - np.sum(mass * vecs[0, 0])
        lin = a - np.sum(mass * a)
        corr = np.sum(mass * v * lin) / np.sqrt(np.sum(mass * v ** 2) * np.sum(mass * lin ** 2))
        assert abs(corr) > 0.999
    np.testing.assert_allclose(errs[1] / exact, 0, atol=0.007)
    # second order: halving h divides the error by ~4
    ratio = errs[0] / errs[1]
    assert np.all((ratio > 3.5) & (ratio < 4.5)), ratio


@pytest.mark.slow
def test_quadratic_bandit_second_order_convergence_on_three_grids():
    obj = wg.Discounted(0.5, entropy=0.5)
    exact = 2.0 * 2.0 * np.arange(1, 4)
    errs = []
    for n in (81, 161, 321):
        mdp = _bandit(n)
        errs.append(wg.hessian(mdp, obj, wg.solve(mdp, obj).policy).spectrum(3) - exact)
    r1, r2 = errs[0] / errs[1], errs[1] / errs[2]
    assert np.all(np.abs(r1 - 4) < 0.5) and np.all(np.abs(r2 - 4) < 0.3)
    assert np.all(np.log2(r2) > 1.9)     # observed order -> 2


def test_spectrum_eigenvectors_are_g_normalized_eigenpairs():
    mdp, obj, pol = _setup("lqr1d", "discounted", "optimal")
    H = wg.hessian(mdp, obj, pol)
    lam, vecs = H.spectrum(4, return_vectors=True, method="dense")
    assert vecs.shape == (4, mdp.n_states, mdp.n_actions)
    np.testing.assert_allclose(vecs.mean(axis=2), 0, atol=1e-12 * np.abs(vecs).max())
    G = np.array([[u.ravel() @ H.metric.matvec(v.ravel()) for v in vecs] for u in vecs])
    np.testing.assert_allclose(G, np.eye(4), atol=1e-9)
    for j in range(4):
        v = vecs[j].ravel()
        Hv, Gv = H.matvec(v), H.metric.matvec(v)
        assert (v @ Hv) == pytest.approx(lam[j], rel=1e-10)
        # every face is a direction (no empty cells here): the residual is at rounding level
        assert H.diagnostics["directions"] == mdp.n_states * (mdp.n_actions - 1)
        assert np.linalg.norm(Hv - lam[j] * Gv) <= 1e-10 * np.linalg.norm(Hv)


# ---------------------------------------------------------------------------------------------
# rates: 2 lambda_min / kappa is the otto rate near the optimum
# ---------------------------------------------------------------------------------------------
_RATE = {}


def _rate_setup():
    if not _RATE:
        mdp = wg.problems.get("lqr1d", n_states=21, n_actions=15, noise=0.7)
        obj = wg.Discounted(0.8, entropy=0.5)
        # exact to rounding: rates are measured down to J - J* = 1e-12, below the default's 1e-10
        sol = wg.solve(mdp, obj, method="soft_policy_iteration", tol=1e-13)
        H = wg.hessian(mdp, obj, sol.policy)
        lam, vecs = H.spectrum(3, return_vectors=True)
        _RATE.update(mdp=mdp, obj=obj, sol=sol, H=H, lam=lam, vecs=vecs)
    return _RATE


def _mode_start(mdp, sol, phi, rel=0.2):
    """A start on the continuity curve along ``phi`` whose largest relative mass change is ``rel``
    (a mode's relative perturbation ``L phi / m`` grows in Gibbs tails)."""
    m = sol.policy.masses
    r = float(np.max(np.abs(laplacian_apply(m, phi, mdp.actions)) / m))
    return continuity_curve(mdp, sol.policy, phi, rel / r)


def test_predicted_rate_value():
    r = _rate_setup()
    H, lam = r["H"], r["lam"]
    assert H.kappa == pytest.approx(5.0)
    assert H.predicted_rate() == pytest.approx(2 * lam[0] / 5.0, rel=1e-12)
    assert predicted_rate(H) == pytest.approx(5.72299, rel=1e-4)
    # the three slowest modes are nearly degenerate (a pair and a third one 0.06 % above)
    np.testing.assert_allclose(lam, [14.30749, 14.30749, 14.31593], rtol=1e-5)


def test_measured_rate_matches_fixed_step_prediction():
    """Start on the slowest eigen-direction (a continuity curve from the optimum) and integrate
    with a fixed step. Explicit Euler multiplies the mode by (1 - dt lambda/kappa) per step, so
    the gap decays at -2 log(1 - dt lambda/kappa)/dt = 2 lambda/kappa + O(dt): the measured rate
    matches this to ~0.1 %, and 2 lambda/kappa to the O(dt) time error (0.7 % at dt = 0.005)."""
    r = _rate_setup()
    mdp, obj, sol, H, lam = r["mdp"], r["obj"], r["sol"], r["H"], r["lam"]
    m0 = _mode_start(mdp, sol, r["vecs"][0])
    dt = 0.005                      # the positivity bound at the optimum is 0.038
    traj = wg.flow(mdp, obj, wg.Policy.from_masses(mdp, m0), t_end=5.0, dt=dt, save_every=0.05,
                   progress=False, method="explicit")
    measured = measured_rate(traj, sol.J)
    mu = lam[0] / H.kappa
    euler = -2.0 * np.log(1.0 - dt * mu) / dt
    assert measured == pytest.approx(euler, rel=2e-3)
    assert measured == pytest.approx(H.predicted_rate(), rel=0.015)


@pytest.mark.slow
def test_measured_rate_adaptive_steps_from_generic_start():
    """Explicit adaptive (cfl = 0.5) steps from a generic smooth perturbation of the optimum:
    the fast modes and the larger Euler steps (mu dt up to ~0.03) leave a few percent."""
    r = _rate_setup()
    mdp, obj, sol, H = r["mdp"], r["obj"], r["sol"], r["H"]
    rng = np.random.default_rng(1)
    a = mdp.actions.centers[:, 0]
    phi = rng.standard_normal((mdp.n_states, 3)) @ np.stack([a, a ** 2, a ** 3])
    m0 = continuity_curve(mdp, sol.policy, 0.01 * phi, 1.0)
    traj = wg.flow(mdp, obj, wg.Policy.from_masses(mdp, m0), t_end=6.0, save_every=0.02, progress=False,
                   method="explicit")
    measured = measured_rate(traj, sol.J, lower=1e-12, upper=1e-7)      # a late window
    assert measured == pytest.approx(H.predicted_rate(), rel=0.03)
    assert measured > H.predicted_rate()       # Euler and faster modes both make it faster


def test_measured_rate_quadratic_bandit():
    mdp = _bandit(81)
    obj = wg.Discounted(0.5, entropy=0.5)
    sol = wg.solve(mdp, obj)
    H = wg.hessian(mdp, obj, sol.policy)
    lam, vecs = H.spectrum(1, return_vectors=True)
    m0 = _mode_start(mdp, sol, vecs[0])
    dt = 2e-3
    traj = wg.flow(mdp, obj, wg.Policy.from_masses(mdp, m0), t_end=5.0, dt=dt, save_every=0.05,
                   progress=False, method="explicit")
    measured = measured_rate(traj, sol.J)
    mu = lam[0] / H.kappa
    assert measured == pytest.approx(-2.0 * np.log(1.0 - dt * mu) / dt, rel=2e-3)
    assert measured == pytest.approx(H.predicted_rate(), rel=0.01)
    assert H.predicted_rate() == pytest.approx(2 * 2.0, rel=0.015)     # 2 k: the OU rate


def test_measured_rate_needs_frames_in_window():
    mdp = _bandit(41)
    obj = wg.Discounted(0.5, entropy=0.5)
    traj = wg.flow(mdp, obj, wg.Policy.uniform(mdp), t_end=0.01, save_every=0.005, progress=False)
    with pytest.raises(wg.ValidationError, match="frames"):
        measured_rate(traj, wg.solve(mdp, obj).J)


# ---------------------------------------------------------------------------------------------
# spectrum: LOBPCG path vs dense path
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_spectrum_lobpcg_agrees_with_dense():
    mdp = wg.problems.get("lqr1d", n_states=25, n_actions=25, noise=0.7)     # n = 625
    obj = wg.Discounted(0.8, entropy=2.0)
    H = wg.hessian(mdp, obj, wg.solve(mdp, obj).policy)
    dense = H.spectrum(4, method="dense")
    lob, vecs = H.spectrum(4, method="lobpcg", return_vectors=True)
    np.testing.assert_allclose(lob, dense, rtol=1e-6)
    for j in range(4):
        v = vecs[j].ravel()
        Hv, Gv = H.matvec(v), H.metric.matvec(v)
        assert v @ Gv == pytest.approx(1.0, rel=1e-10)
        assert np.linalg.norm(Hv - lob[j] * Gv) <= 1e-5 * np.linalg.norm(Hv)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
def test_unknown_mobility_is_rejected():
    mdp, obj, pol = _setup("lqr1d", "discounted", "random")
    with pytest.raises(wg.ValidationError, match="unknown mobility"):
        wg.hessian(mdp, obj, pol, mobility="harmonic")


def test_missing_action_grid_is_rejected():
    P = np.full((3, 2, 3), 1.0 / 3.0)
    mdp = wg.MDP.from_arrays(P, np.arange(6.0).reshape(3, 2))
    pol = wg.Policy.uniform(mdp)
    with pytest.raises(wg.ValidationError, match="action grid"):
        wg.hessian(mdp, wg.Discounted(0.9, entropy=0.1), pol)
    with pytest.raises(wg.ValidationError, match="action grid"):
        continuity_curve(mdp, pol, np.zeros((3, 2)), 0.1)


def test_bad_objective_is_rejected():
    mdp, _, pol = _setup("lqr1d", "discounted", "random")
    with pytest.raises(wg.ValidationError):
        wg.hessian(mdp, 0.9, pol)


def test_continuity_curve_rejects_large_steps():
    mdp, obj, pol = _setup("lqr1d", "discounted", "optimal")
    phi = np.random.default_rng(0).standard_normal(pol.masses.shape)
    with np.errstate(all="ignore"):           # numpy's default for users: no FloatingPointError
        with pytest.raises(wg.ValidationError, match="empties a cell"):
            continuity_curve(mdp, pol, phi, 1.0, "arithmetic")


def test_continuity_curve_never_returns_nan():
    mdp, obj, pol = _setup("lqr1d", "discounted", "optimal")
    phi = np.random.default_rng(0).standard_normal(pol.masses.shape)
    with np.errstate(all="ignore"):           # numpy's default for users: warn, do not raise
        with pytest.raises(wg.ValidationError):
            continuity_curve(mdp, pol, phi, 1.0, "sg")
    # and under the suite's strict floating-point state: a ValidationError, not a FloatingPointError
    with pytest.raises(wg.ValidationError):
        continuity_curve(mdp, pol, phi, 0.1, "logmean")


# ---------------------------------------------------------------------------------------------
# the spectrum is the linearized otto flow's, on every built-in problem
# ---------------------------------------------------------------------------------------------
def _otto_jacobian_slowest_rate(mdp, obj, sol, eps=1e-3):
    """Slowest decay rate of ``dm/dt = otto_rhs(m, Q(m))`` linearized at ``sol.policy``.

    Independent of wgflow.hessian: central differences of the flux kernel with ``Q`` re-evaluated
    by ``wg.evaluate``, in relative coordinates ``dm = m (e_a - m_s) eps`` (zero sum, positive,
    accurate in Gibbs tails), Richardson-extrapolated over ``eps`` and ``eps/2`` (truncation
    ``O(eps^4)``, so ``eps`` can be large enough for the rounding of ``Q`` not to matter), then
    the eigenvalues of the dense Jacobian. Also returns the largest outflow rate, which sets the
    rounding of the differences.
    """
    from wgflow.flows.otto import otto_rhs
    from wgflow.hessian import MASS_FLOOR
    m, tau, A = sol.policy.masses, obj.entropy, mdp.actions
    sup = m >= MASS_FLOOR
    pin = np.argmax(m, axis=1)
    dirs = [(s, a) for s in range(m.shape[0]) for a in range(m.shape[1]) if sup[s, a] and a != pin[s]]

    def F(mm):
        return otto_rhs(mm, wg.evaluate(mdp, mm, obj).Q, tau, A)[0]

    def coords(y):
        f = np.where(sup, y / np.where(sup, m, 1.0), 0.0)
        return np.array([f[s, a] - f[s, pin[s]] for s, a in dirs])

    def jacobian(e):
        J = np.empty((len(dirs), len(dirs)))
        for j, (s, a) in enumerate(dirs):
            d = np.zeros_like(m)
            d[s] = -m[s, a] * m[s]
            d[s, a] += m[s, a]
            J[:, j] = coords((F(m + e * d) - F(m - e * d)) / (2 * e))
        return J

    J = (4.0 * jacobian(eps / 2) - jacobian(eps)) / 3.0
    rate = float(otto_rhs(m, sol.Q, tau, A)[1][sup].max())
    return float(np.min(-np.linalg.eigvals(J).real)), rate


_TINY = {"lqr1d": dict(n_states=7, n_actions=6), "garnet": dict(n_states=6, n_actions=5),
         "pendulum": dict(n_theta=5, n_omega=5, n_actions=5),
         "mountain_car": dict(n_position=5, n_velocity=5, n_actions=4, goal="reset"),
         "double_integrator": dict(n_states=[5, 5], n_actions=5),
         "lqr2d": dict(n_states=[3, 3], n_actions=[3, 3]), "quadratic_bandit": dict(n_actions=15)}


@pytest.mark.parametrize("name, obj", [(name, obj) for name in sorted(_TINY) for obj in
                                       (wg.Discounted(0.9, entropy=0.5), wg.Average(entropy=0.5))]
                         + [("pendulum", wg.Average(entropy=0.05)), ("mountain_car", wg.Discounted(0.99, entropy=0.05))],
                         ids=lambda x: x if isinstance(x, str) else repr(x).split("(")[0][:3] + str(x.entropy))
def test_predicted_rate_is_the_slowest_rate_of_the_linearized_otto_flow(name, obj):
    """``predicted_rate / 2 = lambda_min / kappa`` is the slowest decay rate of the ``otto`` flow
    linearized at the soft optimum, computed independently from the flux kernel and exact
    evaluations (zero-weight states and underflowed cells included: pendulum and mountain car
    have both)."""
    mdp = wg.problems.get(name, **_TINY[name])
    sol = wg.solve(mdp, obj)
    H = wg.hessian(mdp, obj, sol.policy)
    slowest, rate = _otto_jacobian_slowest_rate(mdp, obj, sol)
    # Richardson-extrapolated central differences with relative steps 1e-3 and 5e-4: truncation
    # ~1e-12; rounding of the flux, eps_mach * rate / (1e-3 * slowest) relative to the slowest
    # rate (times 3 for the extrapolation's weights), and of Q (the evaluations' solves, up to
    # ~1e-12 relative in each difference: a few 1e-9 after the division by the step; a step
    # of 1e-5 without extrapolation left ~1e-6 here, which depended on the last bits of Q)
    tol = 1e-8 + 300 * np.finfo(float).eps * rate / (1e-3 * slowest)
    assert H.predicted_rate() / 2 == pytest.approx(slowest, rel=tol)


def _fokker_planck_gaps(mdp, Q, tau, masses):
    """Per state, the smallest nonzero decay rate of the frozen-Q SG generator on the support
    (dense eigenvalues of the backward generator built from the flux kernel's coefficients)."""
    from wgflow.hessian import MASS_FLOOR
    from wgflow.kernels.fluxes import sg_face_coefficients
    h2inv = 1.0 / mdp.actions.spacing[0] ** 2
    gaps = []
    for s in range(mdp.n_states):
        idx = np.nonzero(masses[s] >= MASS_FLOOR)[0]
        n = idx.size
        K = np.zeros((n, n))
        for k in range(n - 1):
            i, j = idx[k], idx[k + 1]
            if j != i + 1:
                continue
            cf, cb = sg_face_coefficients(Q[s, j] - Q[s, i], tau, h2inv)
            K[k, k] -= cf
            K[k, k + 1] += cf
            K[k + 1, k + 1] -= cb
            K[k + 1, k] += cb
        ev = np.sort(-np.linalg.eigvals(K).real)
        gaps.append(ev[1])          # ev[0] = 0: the constants
    return np.array(gaps)


def test_spectrum_keeps_states_of_tiny_weight():
    """Pendulum 11x11x9, ``Average(entropy=0.5)``: the slowest modes live in states whose
    stationary weight is ~1e-14; a restriction to heavy states returned 2 of 3 values and a
    predicted rate of 124.8. The spectrum returns 3 values and its smallest is the smallest
    per-state Fokker--Planck gap (at a critical point the transport part vanishes, so the
    linearized flow is per state)."""
    mdp = wg.problems.get("pendulum", n_theta=11, n_omega=11, n_actions=9)
    obj = wg.Average(entropy=0.5)
    sol = wg.solve(mdp, obj)
    H = wg.hessian(mdp, obj, sol.policy)
    lam = H.spectrum(3)
    assert lam.shape == (3,)
    gaps = _fokker_planck_gaps(mdp, sol.Q, 0.5, sol.policy.masses)
    # eigenvalues from two dense eigen-solvers of matrices with entries ~ 60: rounding ~1e-13
    np.testing.assert_allclose(lam[0], np.min(gaps), rtol=1e-9)
    assert sol.weights[H.diagnostics["mode_states"][0]] < 1e-10
    assert H.predicted_rate() == pytest.approx(2 * np.min(gaps), rel=1e-9)


def test_hessian_at_a_soft_optimum_with_underflowed_tails():
    """``Discounted(0.99, entropy=0.05)`` on the pendulum: Gibbs tails underflow to 0. The
    Hessian acts on the support: empty cells stay empty along continuity curves, the quadratic
    form matches second differences of J there, and the spectrum is the per-state FP gap."""
    mdp = wg.problems.get("pendulum", n_theta=11, n_omega=11, n_actions=9)
    obj = wg.Discounted(0.99, entropy=0.05)
    sol = wg.solve(mdp, obj)
    m = sol.policy.masses
    from wgflow.hessian import MASS_FLOOR
    empty = m < MASS_FLOOR
    assert np.any(empty)
    H = wg.hessian(mdp, obj, sol.policy)
    assert H.diagnostics["empty_cells"] == np.count_nonzero(empty)
    rng = np.random.default_rng(3)
    phi = _potential(mdp, rng)
    sup = ~empty
    Lp = laplacian_apply(m, phi, mdp.actions)
    assert np.all(Lp[empty] == 0.0)                    # no face of the support touches them
    # scaled as in the other second-difference tests: max |L phi| / m = 20 on the support
    phi = phi * (20.0 / np.max(np.abs(Lp[sup]) / m[sup]))
    curve = continuity_curve(mdp, sol.policy, phi, 1e-3)
    assert np.all(curve[empty] == m[empty])
    fd = _second_difference(_J_along(mdp, obj, sol.policy, phi, "sg"), 2.5e-3)
    # truncation ~1e-5 relative; rounding: J ~ 265 (gamma = 0.99) is computed to about an ulp,
    # and the extrapolated second difference multiplies an error of d in each J by
    # (64 + 4) / (3 eps^2): allow 4 ulps of |J| (~6e-5 relative here)
    rounding = 68.0 / 3.0 * 4 * np.spacing(abs(sol.J)) / 2.5e-3 ** 2
    assert H.quadratic_form(phi) == pytest.approx(fd, rel=1e-5, abs=rounding)
    gaps = _fokker_planck_gaps(mdp, sol.Q, 0.05, m)
    np.testing.assert_allclose(H.spectrum(1)[0] / H.kappa, np.min(gaps), rtol=1e-8)


def test_spectrum_cost_at_a_soft_optimum():
    """At a critical point the local blocks' eigenvectors are H's: Rayleigh--Ritz on them is
    accepted, with ``max(2k, k + 8)`` products plus 3 power steps for the transport estimate."""
    mdp = wg.problems.get("lqr1d", n_states=21, n_actions=15)
    obj = wg.Discounted(0.9, entropy=0.5)
    H = wg.hessian(mdp, obj, wg.solve(mdp, obj).policy)
    vals = H.spectrum(10)
    assert H.diagnostics["spectrum_method"] == "rayleigh-ritz"
    assert H.diagnostics["spectrum_products"] <= 20 + 3 * 3
    np.testing.assert_allclose(vals, H.spectrum(10, method="dense"), rtol=1e-10)


@pytest.mark.parametrize("name", ["lqr1d", "lqr2d"])
def test_spectrum_away_from_the_optimum_agrees_with_dense(name):
    """A random positive policy: the transport part couples states, Rayleigh--Ritz on the local
    blocks is refined (LOBPCG) and must agree with the dense matrix in the same coordinates."""
    mdp, obj, pol = _setup(name, "discounted", "random")
    H = wg.hessian(mdp, obj, pol)
    auto = H.spectrum(4)
    dense = H.spectrum(4, method="dense")
    # LOBPCG stops at relative residual 1e-8: eigenvalues to ~1e-8 (well separated here)
    np.testing.assert_allclose(auto, dense, rtol=1e-7, atol=1e-9 * np.abs(dense).max())


def test_spectrum_asks_for_more_values_than_directions():
    mdp = wg.problems.get("quadratic_bandit", n_actions=5)
    obj = wg.Discounted(0.5, entropy=0.5)
    H = wg.hessian(mdp, obj, wg.solve(mdp, obj).policy)
    assert H.spectrum(4).shape == (4,)
    with pytest.raises(wg.ValidationError, match="4 directions"):
        H.spectrum(5)




# ---------------------------------------------------------------------------------------------
# metastable modes: more eigenvalues at rounding level than the Rayleigh--Ritz subspace holds
# ---------------------------------------------------------------------------------------------
def _log_space_fp_spectrum(mdp, Q, tau, masses):
    """All nonzero decay rates of the per-state frozen-``Q`` SG generators on the support,
    sorted: the exact spectrum of ``H / kappa`` at a critical point (docs/hessian.md §5).

    Built from ``Q`` in log space (no mass underflows), symmetrized by ``sqrt(m)``: with
    ``d = log m_j - log m_i`` on a face, ``theta / m_i = d / (1 - e^-d)``,
    ``theta / m_j = d / (e^d - 1)`` and ``theta / sqrt(m_i m_j) = d / (2 sinh(d / 2))``. One
    zero per connected piece of the support (its constants) is dropped."""
    import scipy.linalg as sla
    from wgflow.hessian import MASS_FLOOR
    h2 = float(mdp.actions.spacing[0]) ** 2
    rates = []
    for s in range(mdp.n_states):
        idx = np.nonzero(masses[s] >= MASS_FLOOR)[0]
        for piece in np.split(idx, np.nonzero(np.diff(idx) > 1)[0] + 1):
            if piece.size < 2:
                continue
            d = -(Q[s, piece[1:]] - Q[s, piece[:-1]]) / tau
            with np.errstate(over="ignore"):
                diag = np.zeros(piece.size)
                diag[:-1] += d / -np.expm1(-d)
                diag[1:] += d / np.expm1(d)
                off = d / (2.0 * np.sinh(d / 2.0))
            ev = sla.eigh_tridiagonal(tau * diag / h2, -tau * off / h2, eigvals_only=True)
            rates.extend(ev[1:])          # ev[0]: the constants (0 to rounding)
    return np.sort(rates)


def test_spectrum_at_a_soft_optimum_with_many_metastable_modes():
    """Pendulum 21x21x11 at ``Discounted(0.99, entropy=1e-3)``: ``Q(s, .)`` has several wells in
    a dozen states, so 14 eigenvalues are ``exp(-barrier / tau)`` (at rounding level) and the
    next is ``1.8e-3``. ``spectrum(k)`` for ``k <= 5`` used to reject the exact Ritz values (a "gap" of
    ``5e-15`` against a transport part at rounding level) and LOBPCG then raised
    ``ConvergenceError``; they are the per-state Fokker--Planck rates, computed independently."""
    import warnings
    mdp = wg.problems.get("pendulum", n_theta=21, n_omega=21, n_actions=11)
    obj = wg.Discounted(0.99, entropy=1e-3)
    sol = wg.solve(mdp, obj)
    H = wg.hessian(mdp, obj, sol.policy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lam = H.spectrum(5)
        rate = H.predicted_rate()
    ref = _log_space_fp_spectrum(mdp, sol.Q, obj.entropy, sol.policy.masses) * H.kappa
    assert np.count_nonzero(np.abs(ref) < 1e-10) > 9      # more than the p = 9 of k = 1
    # eigenvalues far below the operator's norm are resolved only absolutely, to 1000 eps |K|
    # (|K| ~ 535: the norm of the local blocks, docs/hessian.md §4; 1.2e-10 here); the
    # reference's own rounding, eps times the norm of its matrices (at most 2 * 709 kappa tau /
    # h^2 ~ 1100: |d| <= 709 between cells of the support), is far below that
    atol = 1e3 * np.finfo(float).eps * H._coordinates()._local["norm"]
    np.testing.assert_allclose(lam, ref[:5], rtol=0, atol=atol)
    assert abs(rate) <= 2 * atol / H.kappa
    assert H.diagnostics["spectrum_abs_error"] <= atol
    # spectrum(15) reaches past the cluster: the 15th value, 1.8e-3, is resolved too
    lam15 = H.spectrum(15)
    assert ref[14] > 1e6 * atol
    np.testing.assert_allclose(lam15, ref[:15], rtol=0, atol=atol)


@pytest.mark.parametrize("obj", [wg.Average(entropy=1e-2), wg.Discounted(0.99, entropy=1e-2)],
                         ids=["average", "discounted"])
def test_spectrum_with_metastable_modes_agrees_with_dense(obj):
    """Garnet 20x10 at a small entropy: most states' ``Q`` have several wells, so more than
    ``p = max(2k, k + 8)`` eigenvalues are at rounding level. ``auto`` and ``lobpcg`` used to raise
    ``ConvergenceError``; both must agree with the dense matrix in the same coordinates."""
    import warnings
    mdp = wg.problems.get("garnet", n_states=20, n_actions=10)
    sol = wg.solve(mdp, obj)
    H = wg.hessian(mdp, obj, sol.policy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auto = H.spectrum(3)
        lob = H.spectrum(3, method="lobpcg")
    dense = H.spectrum(12, method="dense")
    # the absolute floor of docs/hessian.md §4 (1000 eps |K|); LAPACK's dense eigenvalues are
    # accurate to a small multiple of eps |M|, and |M| ~ |K| at a critical point
    atol = 1e3 * np.finfo(float).eps * H._coordinates()._local["norm"]
    assert np.all(np.abs(dense) < atol)         # 12 values at rounding level: more than p = 11
    np.testing.assert_allclose(auto, dense[:3], rtol=0, atol=atol)
    np.testing.assert_allclose(lob, dense[:3], rtol=0, atol=atol)
