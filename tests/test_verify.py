"""Tests of wgflow.verify: the numerical checks of the theory pass, can fail, and the CLI."""
import re

import numpy as np
import pytest

import wgflow as wg
import wgflow.verify as V
from wgflow.cli import main

IDENTITIES = ["solve", "gradient", "dissipation", "dissipation (step)", "gibbs", "gibbs (otto rhs)",
              "hessian", "hessian symmetry", "rate", "convexity (continuity vs H)",
              "geodesic (McCann speed)", "geodesic (metric endpoints)", "geodesic (metric length)"]
TOL = {"solve": "solve", "gradient": "gradient", "dissipation": "dissipation", "gibbs": "gibbs",
       "gibbs (otto rhs)": "gibbs_rhs", "hessian": "hessian", "hessian symmetry": "symmetry",
       "rate": "rate", "convexity (continuity vs H)": "convexity_hessian"}


@pytest.fixture(scope="module")
def lqr_small():
    return wg.problems.get("lqr1d", n_states=15, n_actions=11)


@pytest.fixture(scope="module", params=["discounted", "average"])
def report(request, lqr_small):
    obj = (wg.Discounted(0.9, entropy=0.5) if request.param == "discounted"
           else wg.Average(entropy=0.5))
    return V.run(lqr_small, obj, rng=1, progress=False)


def test_run_passes_every_identity(report):
    assert report.passed, report.table()
    names = [r.check for r in report.rows]
    for name in IDENTITIES:
        assert name in names
        row = report.row(name)
        assert row.status == "pass", row
        assert row.error <= row.tolerance
        if name in TOL:
            # the default tolerance plus the rounding floor the row states (and, for the rate,
            # the measurement's resolution): never below the default
            assert row.tolerance >= V.TOLERANCES[TOL[name]]
    for name in ("gradient", "dissipation", "hessian", "convexity (continuity vs H)"):
        # the floor stays far below the truncation tolerance on this small problem
        assert report.row(name).tolerance <= 1.01 * V.TOLERANCES[TOL[name]]
    # identities that hold to rounding are far below their tolerance
    for name in ("solve", "hessian symmetry"):
        assert report.row(name).error < 1e-12
    # the Gibbs rows compare the solver's policy with the Gibbs policy of its exactly evaluated Q:
    # wg.solve (tol 1e-10) guarantees |V - V_pi| <= 1e-10 |V|, and the Gibbs map moves masses by at
    # most |dQ|/tau, so the error is at most 1e-10 |V| / tau
    for name in ("gibbs", "gibbs (otto rhs)"):
        assert report.row(name).error < 1e-10 * 25.0 / 0.5
    for name in ("gradient", "dissipation", "hessian", "convexity (continuity vs H)"):
        assert report.row(name).error < 1e-7
    # the explicit step's Taylor remainder is O(rho^2) with rho = 1e-3
    assert report.row("dissipation (step)").error < 1e-8
    # the rate is measured to ~1e-4 here (the tolerance adds the measurement's resolution)
    assert report.row("rate").error < 1e-3
    assert "chi-square" in report.row("rate").note


def test_table_names_every_check_and_times_it(report):
    text = report.table()
    assert text == str(report)
    for r in report.rows:
        assert re.search(rf"^{re.escape(r.check)}\s", text, flags=re.M), r.check
        assert r.time is not None and r.time >= 0
    for word in ("check", "value", "reference", "error", "tolerance", "status", "time [s]"):
        assert word in text.splitlines()[1]
    assert "ALL PASSED" in text
    # convexity along the McCann and metric geodesics is reported (as information)
    assert report.row("convexity (McCann)").status == "info"
    assert report.row("convexity (metric geodesic)").status == "info"
    # the total of the time column is in the last line
    total = sum(r.time for r in report.rows)
    assert f"{total:.1f} s" in text


def test_gradient_and_hessian_identities_hold_exactly_at_value_level(lqr_small):
    obj = wg.Discounted(0.9, entropy=0.5)
    rep = V.run(lqr_small, obj, checks=["gradient", "hessian"], progress=False)
    g, h = rep.row("gradient"), rep.row("hessian")
    assert g.value == pytest.approx(g.reference, rel=1e-7)
    assert h.value == pytest.approx(h.reference, rel=1e-7)
    assert [r.check for r in rep.rows] == ["solve", "gradient", "hessian"]


def test_wrong_hessian_fails_the_check(lqr_small, monkeypatch):
    obj = wg.Discounted(0.9, entropy=0.5)
    original = wg.Hessian.matvec

    def perturbed(self, v):
        v = np.asarray(v, dtype=float)
        return original(self, v) + 1e-3 * np.linalg.norm(original(self, v)) / np.sqrt(v.size) * np.roll(v, 1)

    monkeypatch.setattr(wg.Hessian, "matvec", perturbed)
    rep = V.run(lqr_small, obj, checks=["hessian", "symmetry"], progress=False)
    assert not rep.passed
    assert rep.row("hessian").status == "fail"
    assert rep.row("hessian symmetry").status == "fail"
    assert "FAILED" in rep.table()


def test_wrong_metric_weights_fail_the_gradient_check(lqr_small, monkeypatch):
    """The gradient row compares finite differences of J with kappa G(psi, phi): a Riemannian
    gradient built with the weights that should cancel (w psi instead of psi) fails it."""
    obj = wg.Discounted(0.9, entropy=0.5)
    real = V._psi
    monkeypatch.setattr(V, "_psi", lambda m, Q, tau, vol: real(m, Q, tau, vol) * (1 + 0.01 * np.arange(m.shape[0]))[:, None])
    rep = V.run(lqr_small, obj, checks=["gradient"], progress=False)
    assert rep.row("gradient").status == "fail"


def test_wrong_flux_fails_the_dissipation_checks(lqr_small, monkeypatch):
    """A flux that is not the gradient flow of J (1 % too fast on one axis of every face) fails
    the dissipation row (finite differences of J along it) and the step row."""
    import wgflow.flows.otto as otto
    real = otto.otto_rhs

    def wrong(masses, Q, tau, actions, weights=None, use_numba=True):
        dm, rate, diss = real(masses, Q, tau, actions, weights, use_numba)
        return 1.01 * dm, rate, diss

    monkeypatch.setattr(otto, "otto_rhs", wrong)
    rep = V.run(lqr_small, wg.Discounted(0.9, entropy=0.5), checks=["dissipation"], progress=False)
    assert rep.row("dissipation").status == "fail"


def test_gibbs_rows_evaluate_the_returned_policy(lqr_small):
    """The solver writes its masses as the Gibbs map of the Q it returns: the Gibbs rows must use
    the Q of an exact evaluation of the returned policy, or an unconverged solve passes them."""
    obj = wg.Discounted(0.9, entropy=0.5)
    loose = wg.solve(lqr_small, obj, tol=0.1)
    exact = wg.solve(lqr_small, obj)
    # the loose solve's policy is measurably worse than the optimum
    assert wg.evaluate(lqr_small, loose.policy, obj).J - exact.J > 1e-6
    rep = V.run(lqr_small, obj, checks=["gibbs"], solution=loose, progress=False)
    assert rep.row("gibbs").status == "fail" and rep.row("gibbs").error > 1e-5
    assert rep.row("gibbs (otto rhs)").status == "fail" and rep.row("gibbs (otto rhs)").error > 1e-5
    rep = V.run(lqr_small, obj, checks=["gibbs"], solution=exact, progress=False)
    assert rep.passed, rep.table()


@pytest.mark.parametrize("name, params, obj", [
    ("lqr1d", dict(n_states=15, n_actions=11), wg.Discounted(0.9, entropy=0.5)),
    ("pendulum", dict(n_theta=11, n_omega=11, n_actions=9), wg.Discounted(0.99, entropy=0.1)),
    ("garnet", {}, wg.Average(entropy=0.5))])
def test_step_row_sees_the_mass_hessian(name, params, obj, monkeypatch):
    """The second-order term of the explicit step (from the exact mass Hessian) is 1e-6-1e-3 of the
    change; the tolerance, from the Taylor remainder estimated by finite differences, is far below:
    dropping J'' or making it 10 % too large fails the row."""
    from wgflow.hessian import _MassDerivatives
    mdp = wg.problems.get(name, **params)
    pol = V.default_policy(mdp, obj, np.random.default_rng(0))
    honest = V.check_dissipation(mdp, obj, pol.masses)[1]
    assert honest.status == "pass", honest
    real = _MassDerivatives.hvp
    monkeypatch.setattr(_MassDerivatives, "hvp", lambda self, dm: 0.0 * dm)
    assert V.check_dissipation(mdp, obj, pol.masses)[1].status == "fail"
    monkeypatch.setattr(_MassDerivatives, "hvp", lambda self, dm: 1.1 * real(self, dm))
    assert V.check_dissipation(mdp, obj, pol.masses)[1].status == "fail"


def test_wrong_spectrum_fails_the_rate_check(lqr_small, monkeypatch):
    """A predicted rate 5 % off is detected by the measured decay (resolution ~1e-3 here)."""
    real = wg.Hessian.spectrum

    def off(self, *a, **k):
        out = real(self, *a, **k)
        if isinstance(out, tuple):
            return out[0] * 1.05, out[1]
        return out * 1.05

    monkeypatch.setattr(wg.Hessian, "spectrum", off)
    rep = V.run(lqr_small, wg.Average(entropy=0.5), checks=["rate"], progress=False)
    assert rep.row("rate").status == "fail"


def test_wrong_geodesic_fails_the_mccann_speed_check(monkeypatch):
    """Interpolating the masses linearly (a mixture, not a displacement) breaks the constant
    W2 speed beyond the grid bound h (on a grid fine enough for the shift to span cells)."""
    mdp = wg.problems.get("lqr1d", n_states=5, n_actions=61)
    def mixture(p0, p1, t, atoms=False):
        ts = np.atleast_1d(t)
        out = [wg.Policy((1 - x) * p0.masses + x * p1.masses, p0.actions, p0.states) for x in ts]
        return out[0] if np.ndim(t) == 0 else out

    rep = V.run(mdp, wg.Discounted(0.9, entropy=0.5), checks=["convexity"], geodesics=False, progress=False)
    assert rep.row("geodesic (McCann speed)").status == "pass"
    monkeypatch.setattr(wg.geometry, "geodesic", mixture)
    rep = V.run(mdp, wg.Discounted(0.9, entropy=0.5), checks=["convexity"], geodesics=False, progress=False)
    assert rep.row("geodesic (McCann speed)").status == "fail"


def test_rates_flag_and_check_subset(lqr_small):
    obj = wg.Average(entropy=0.5)
    rep = V.run(lqr_small, obj, checks=["gibbs", "rate"], rates=False, progress=False)
    assert [r.check for r in rep.rows] == ["solve", "gibbs", "gibbs (otto rhs)"]
    with pytest.raises(ValueError, match="unknown checks"):
        V.run(lqr_small, obj, checks=["nope"])


def test_zero_entropy_skips_only_what_needs_entropy(lqr_small):
    rep = V.run(lqr_small, wg.Discounted(0.9), progress=False)
    assert rep.passed, rep.table()
    skipped = {r.check for r in rep.rows if r.status == "skip"}
    assert skipped == {"gibbs", "gibbs (otto rhs)", "rate"}


def test_local_gaps_against_the_dense_generator(lqr_small):
    """local_gaps (symmetrized, batched eigh) against the eigenvalues of each state's backward
    generator assembled face by face (scipy.linalg.eigvals, not symmetrized), and its smallest
    gap against the Hessian's lambda_min / kappa at the optimum (docs/hessian.md section 5)."""
    import scipy.linalg as sla
    from wgflow.kernels.fluxes import sg_face_coefficients
    obj = wg.Discounted(0.9, entropy=0.5)
    sol = wg.solve(lqr_small, obj)
    m = sol.policy.masses
    Q = wg.evaluate(lqr_small, sol.policy, obj).Q
    gaps, res = V.local_gaps(lqr_small, Q, m, obj.entropy)
    h2 = 1.0 / float(lqr_small.actions.spacing[0]) ** 2
    nA = lqr_small.n_actions
    for s in range(lqr_small.n_states):
        K = np.zeros((nA, nA))
        for i in range(nA - 1):
            cf, cb = sg_face_coefficients(Q[s, i + 1] - Q[s, i], obj.entropy, h2)
            K[i, i] -= cf
            K[i, i + 1] += cf
            K[i + 1, i + 1] -= cb
            K[i + 1, i] += cb
        ev = np.sort(np.real(sla.eigvals(-K)))
        # eigenvalues of a 11 x 11 generator: rounding ~1e-13 of its norm
        assert gaps[s] == pytest.approx(ev[1], rel=1e-9)
    H = wg.hessian(lqr_small, obj, sol.policy)
    assert np.min(gaps) == pytest.approx(H.spectrum(1)[0] / H.kappa, rel=1e-9)


def test_rate_row_sees_a_spectrum_that_missed_the_slowest_mode(monkeypatch):
    """The perturbed state is chosen by the flux kernel's local gaps, not by H: a spectrum that
    drops its slowest mode (mountain car, gaps 9.5e-4 and 1.6e-2) predicts a rate 17x too fast
    and fails the row (it passed when the row perturbed the state H named)."""
    mdp = wg.problems.get("mountain_car", n_position=11, n_velocity=11, n_actions=9, goal="reset")
    obj = wg.Average(entropy=0.1)
    sol = wg.solve(mdp, obj)
    assert V.check_rate(mdp, obj, sol)[0].status == "pass"
    real = wg.Hessian.spectrum

    def missed(self, k=5, return_vectors=False, **kw):
        vals, vecs = real(self, k + 1, return_vectors=True, **kw)
        self.diagnostics["mode_states"] = self.diagnostics["mode_states"][1:]
        return (vals[1:], vecs[1:]) if return_vectors else vals[1:]

    monkeypatch.setattr(wg.Hessian, "spectrum", missed)
    row = V.check_rate(mdp, obj, sol)[0]
    assert row.status == "fail", row


@pytest.mark.parametrize("tau", [1e-2, 1e-4])
def test_rate_row_skips_a_decay_it_cannot_measure(tau):
    """Pendulum 21x21x11, Discounted(0.99): at entropy 1e-2 the slowest local gap is ~1e-96 (two
    wells in a state's Q), at 1e-4 ~1e-26: no decay is measurable in 60 steps. The row is
    skipped with the reason -- not NaN, not a pass whose tolerance grew as 1/predicted."""
    import warnings
    mdp = wg.problems.get("pendulum", n_theta=21, n_omega=21, n_actions=11)
    obj = wg.Discounted(0.99, entropy=tau)
    sol = wg.solve(mdp, obj)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        row = V.check_rate(mdp, obj, sol)[0]
    assert row.status == "skip", row
    assert np.isfinite(row.value) and np.isfinite(row.reference)
    assert "no measurable decay" in row.reason


def test_rate_row_on_underflowed_tails_and_tiny_weights():
    """Pendulum, ``Average(entropy=0.05)``: Gibbs tails underflow, and the slowest mode lives in a
    state of stationary weight ~1e-18 (J - J* would not see it). The rate row is computed from
    the chi-square decay of that mode and passes."""
    mdp = wg.problems.get("pendulum", n_theta=11, n_omega=11, n_actions=9)
    rep = V.run(mdp, wg.Average(entropy=0.05), checks=["rate"], progress=False)
    row = rep.row("rate")
    assert row.status == "pass", row
    assert row.error < 1e-3
    assert "weight" in row.note


def test_report_is_never_lost(lqr_small, monkeypatch):
    """A check that cannot be computed is skipped with its reason; one that raises an unexpected
    error fails with it; every other row is still there."""
    def broken(*a, **k):
        raise RuntimeError("boom")

    def impossible(*a, **k):
        raise wg.ConvergenceError("no convergence")

    monkeypatch.setattr(V, "check_gradient", broken)
    monkeypatch.setattr(V, "check_rate", impossible)
    rep = V.run(lqr_small, wg.Discounted(0.9, entropy=0.5), checks=["gradient", "gibbs", "rate"],
                progress=False)
    assert rep.row("gradient").status == "fail" and "boom" in rep.row("gradient").note
    assert rep.row("rate").status == "skip" and "no convergence" in rep.row("rate").note
    assert rep.row("gibbs").status == "pass"


def test_a_group_that_raises_reports_every_row(lqr_small, monkeypatch):
    """The Gibbs and dissipation groups have two rows each: when the group raises, both are in the
    table (skipped or failed, with the reason), and the summary line does not say ALL PASSED."""
    def impossible(*a, **k):
        raise wg.ConvergenceError("no convergence")

    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(V, "check_gibbs", impossible)
    monkeypatch.setattr(V, "check_dissipation", broken)
    rep = V.run(lqr_small, wg.Discounted(0.9, entropy=0.5), checks=["dissipation", "gibbs"],
                progress=False)
    assert [r.check for r in rep.rows] == ["solve", "dissipation", "dissipation (step)", "gibbs",
                                           "gibbs (otto rhs)"]
    for name in ("gibbs", "gibbs (otto rhs)"):
        assert rep.row(name).status == "skip" and "no convergence" in rep.row(name).note
    for name in ("dissipation", "dissipation (step)"):
        assert rep.row(name).status == "fail" and "boom" in rep.row(name).note


def test_summary_names_skipped_rows_and_their_reason(lqr_small, monkeypatch):
    """A skipped identity has not been checked: no ALL PASSED, the count and the reason instead
    (the exit status stays 0: nothing failed)."""
    def impossible(*a, **k):
        raise wg.ConvergenceError("no convergence")

    monkeypatch.setattr(V, "check_rate", impossible)
    rep = V.run(lqr_small, wg.Discounted(0.9, entropy=0.5), checks=["gibbs", "rate"], progress=False)
    assert rep.passed
    last = rep.table(notes=False).splitlines()[-1]
    assert last == rep.summary()
    assert last.startswith("PASSED, 1 SKIPPED: 3 passed, 0 failed, 1 skipped")
    assert "rate (ConvergenceError raised)" in last
    rep = V.run(lqr_small, wg.Discounted(0.9), checks=["gibbs"], progress=False)
    assert "ALL PASSED" not in rep.summary()
    assert "gibbs (needs entropy > 0)" in rep.summary()


def test_multichain_average_names_the_way_out(capsys):
    """Mountain car's absorbing goal cells are recurrent classes of their own: the average-cost
    report is still printed, the solve row fails and says to use goal='reset'."""
    mdp = wg.problems.get("mountain_car", n_position=9, n_velocity=9, n_actions=5)
    rep = V.run(mdp, wg.Average(entropy=0.5), progress=False)
    assert not rep.passed
    assert rep.row("solve").status == "fail"
    assert "goal='reset'" in rep.row("solve").note
    assert all(r.status == "skip" for r in rep.rows[1:])
    argv = ["verify", "mountain_car", "--param", "n_position=9", "--param", "n_velocity=9",
            "--param", "n_actions=5", "--objective", "average", "-q"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert re.search(r"^solve\s.*FAIL", out, flags=re.M) and "goal='reset'" in out


def test_multid_actions():
    mdp = wg.problems.get("lqr2d", n_states=(5, 5), n_actions=(4, 4))
    rep = V.run(mdp, wg.Discounted(0.9, entropy=0.5),
                checks=["gradient", "dissipation", "hessian", "symmetry", "rate"], progress=False)
    assert rep.passed, rep.table()
    assert rep.row("rate").status == "pass"


def test_cli_verify_prints_table_and_exits_0(capsys):
    argv = ["verify", "lqr1d", "--param", "n_states=15", "--param", "n_actions=11", "--entropy", "0.5",
            "-q"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "ALL PASSED" in out
    for name in IDENTITIES:
        assert re.search(rf"^{re.escape(name)}\s.*\spass\s+[0-9.]+$", out, flags=re.M), name


def test_cli_verify_exits_1_on_failure(capsys, monkeypatch):
    original = wg.Hessian.matvec
    monkeypatch.setattr(wg.Hessian, "matvec", lambda self, v: 1.01 * original(self, v))
    argv = ["verify", "lqr1d", "--param", "n_states=9", "--param", "n_actions=9", "--checks", "hessian",
            "-q", "--objective", "average"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert re.search(r"^hessian\s.*FAIL", out, flags=re.M)


# ---------------------------------------------------------------------------------------------
# convexity along curves
# ---------------------------------------------------------------------------------------------
def test_convexity_quadratic_bandit_mccann_and_metric_geodesic():
    mdp = wg.problems.get("quadratic_bandit", n_actions=61, curvature=2.0)
    obj = wg.Discounted(0.5, entropy=0.2)
    p0, p1 = wg.Policy.gaussian(mdp, -1.0, 0.4), wg.Policy.gaussian(mdp, 1.5, 0.8)
    res = V.convexity_along(mdp, obj, (p0, p1))
    assert res.kind == "mccann"
    assert res.convex and res.min_second_difference > 0
    assert np.all(res.second_differences >= 0)
    assert res.negative_t.size == 0
    assert len(res.t) == len(res.J) == len(res.second_differences) + 2
    assert res.J[0] == pytest.approx(wg.evaluate(mdp, p0, obj).J, rel=1e-12)
    assert res.J[-1] == pytest.approx(wg.evaluate(mdp, p1, obj).J, rel=1e-12)
    # one state, action-independent transitions: the metric geodesic is McCann's
    g = wg.geodesics.metric_geodesic(mdp, obj, p0, p1, n_nodes=7, progress=False)
    rg = V.convexity_along(mdp, obj, g)
    assert rg.kind == "metric_geodesic" and rg.convex


def test_convexity_fails_for_double_well():
    A = wg.Grid([(-2.0, 2.0)], [81])
    a = A.centers[:, 0]
    mdp = wg.MDP.from_arrays(np.ones((1, 81, 1)), ((a ** 2 - 1) ** 2)[None, :], actions=A)
    obj = wg.Discounted(0.5, entropy=0.01)
    p0, p1 = wg.Policy.gaussian(mdp, -1.0, 0.15), wg.Policy.gaussian(mdp, 1.0, 0.15)
    res = V.convexity_along(mdp, obj, (p0, p1), n_points=21)
    assert not res.convex
    assert res.min_second_difference < 0
    # crossing the barrier at a = 0 (t = 1/2) is where J is concave
    assert np.any(np.isclose(res.negative_t, 0.5))
    assert np.all((res.negative_t > 0.2) & (res.negative_t < 0.8))
    assert res.failing_states == [0]
    assert "NOT convex" in res.summary()


def test_convexity_failing_states_are_located():
    # two independent copies of a bandit: state 0 a convex quadratic, state 1 a double well
    A = wg.Grid([(-2.0, 2.0)], [61])
    a = A.centers[:, 0]
    C = np.stack([0.5 * a ** 2, (a ** 2 - 1) ** 2])
    P = np.zeros((2, 61, 2))
    P[0, :, 0] = 1.0
    P[1, :, 1] = 1.0
    mdp = wg.MDP.from_arrays(P, C, actions=A)
    obj = wg.Discounted(0.5, entropy=0.01, initial=[0.5, 0.5])
    p0 = wg.Policy.gaussian(mdp, [-1.0, -1.0], 0.2)
    p1 = wg.Policy.gaussian(mdp, [1.0, 1.0], 0.2)
    res = V.convexity_along(mdp, obj, (p0, p1), n_points=17)
    assert not res.convex
    assert res.failing_states == [1]


def test_convexity_continuity_curve_matches_hessian(lqr_small):
    obj = wg.Average(entropy=0.5)
    rng = np.random.default_rng(3)
    pol = V.default_policy(lqr_small, obj, rng)
    phi = V._scale_potential(lqr_small, pol.masses, V.random_potential(lqr_small, rng))
    res = V.convexity_along(lqr_small, obj, V.ContinuityCurve(pol, phi, 0.1), n_points=7)
    assert res.kind == "continuity"
    h = res.hessian_comparison
    assert h["exact"] and h["rel_error"] < 1e-6
    assert h["hessian"] == pytest.approx(wg.hessian(lqr_small, obj, pol).quadratic_form(phi), rel=1e-12)
    assert res.t[0] == pytest.approx(-0.1) and res.t[-1] == pytest.approx(0.1)


def test_metric_geodesic_row_checks_endpoints(lqr_small, monkeypatch):
    """A metric geodesic whose first node is not pi0 fails the geodesic (metric endpoints) row."""
    import wgflow.geodesics as G
    real = G.metric_geodesic

    def shifted(*a, **k):
        res = real(*a, **k)
        m = res.policies[0].masses
        res.policies[0] = wg.Policy(np.roll(m, 1, axis=1), res.policies[0].actions, res.policies[0].states)
        return res

    monkeypatch.setattr(G, "metric_geodesic", shifted)
    rep = V.run(lqr_small, wg.Discounted(0.9, entropy=0.5), checks=["convexity"], progress=False)
    assert rep.row("geodesic (metric endpoints)").status == "fail"


def test_mccann_initial_curvature_approaches_hessian_at_optimum():
    # at the optimum (a critical point) J''(0+) along McCann approaches H(phi_v, phi_v), O(grid)
    errs = []
    for n in (81, 161):
        mdp = wg.problems.get("quadratic_bandit", n_actions=n)
        obj = wg.Discounted(0.5, entropy=0.3)
        p0 = wg.solve(mdp, obj).policy
        p1 = wg.Policy.gaussian(mdp, 0.8, 0.7)
        res = V.convexity_along(mdp, obj, (p0, p1), per_state=False)
        h = res.hessian_comparison
        assert h is not None and h["resolved"] and h["critical"] and not h["exact"]
        errs.append(h["rel_error"])
    assert errs[1] < 0.1 and errs[1] < 0.6 * errs[0]


def test_convexity_along_nodes_and_callable(lqr_small):
    obj = wg.Discounted(0.9, entropy=0.5)
    p0 = wg.Policy.gaussian(lqr_small, 0.0, 1.0)
    p1 = wg.Policy.gaussian(lqr_small, 1.0, 1.0)
    nodes = wg.geometry.geodesic(p0, p1, np.linspace(0, 1, 5))
    r1 = V.convexity_along(lqr_small, obj, nodes, per_state=False)
    r2 = V.convexity_along(lqr_small, obj, lambda t: wg.geometry.geodesic(p0, p1, t), n_points=5,
                           per_state=False)
    np.testing.assert_allclose(r1.J, r2.J, rtol=1e-13)
    assert r1.kind == "nodes" and r2.kind == "callable"
    with pytest.raises(ValueError):
        V.convexity_along(lqr_small, obj, [p0])


def test_verify_convenience():
    rep = V.verify("quadratic_bandit", n_actions=31, gamma=0.5, entropy=0.3, checks=["gibbs", "hessian"])
    assert rep.passed and "quadratic_bandit" in rep.title


def test_needs_an_action_grid_and_positive_policy(lqr_small):
    P = np.ones((2, 3, 2)) / 2
    mdp = wg.MDP.from_arrays(P, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="action"):
        V.run(mdp, wg.Discounted(0.9, entropy=0.1))
    det = wg.Policy.deterministic(lqr_small, 0.0)
    with pytest.raises(ValueError, match="strictly positive"):
        V.run(lqr_small, wg.Discounted(0.9, entropy=0.1), policy=det, checks=["hessian"])
