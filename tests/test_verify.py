"""Tests of wgflow.verify: the numerical checks of the theory pass, can fail, and the CLI."""
import re

import numpy as np
import pytest

import wgflow as wg
import wgflow.verify as V
from wgflow.cli import main

IDENTITIES = ["gradient", "riesz", "dissipation", "dissipation (step)", "gibbs", "gibbs (otto rhs)",
              "hessian", "hessian symmetry", "rate", "convexity (continuity vs H)"]
TOL = {"gradient": "gradient", "riesz": "riesz", "dissipation": "dissipation",
       "dissipation (step)": "dissipation_step", "gibbs": "gibbs", "gibbs (otto rhs)": "gibbs_rhs",
       "hessian": "hessian", "hessian symmetry": "symmetry", "rate": "rate",
       "convexity (continuity vs H)": "convexity_hessian"}


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
        assert row.tolerance == V.TOLERANCES[TOL[name]]
    # identities that hold to rounding are far below their tolerance
    for name in ("riesz", "dissipation", "gibbs", "gibbs (otto rhs)", "hessian symmetry"):
        assert report.row(name).error < 1e-12
    for name in ("gradient", "hessian", "convexity (continuity vs H)"):
        assert report.row(name).error < 1e-7
    # the O(dt) dissipation error halves with dt (first order)
    ratio = float(re.search(r"ratio ([0-9.]+)", report.row("dissipation (step)").note).group(1))
    assert 1.8 < ratio < 2.2
    assert report.row("rate").error < 5e-3


def test_table_names_every_check(report):
    text = report.table()
    assert text == str(report)
    for r in report.rows:
        assert re.search(rf"^{re.escape(r.check)}\s", text, flags=re.M), r.check
    for word in ("check", "value", "reference", "error", "tolerance", "status"):
        assert word in text.splitlines()[1]
    assert "ALL PASSED" in text
    # convexity along the McCann and metric geodesics is reported (as information)
    assert report.row("convexity (McCann)").status == "info"
    assert report.row("convexity (metric geodesic)").status == "info"


def test_gradient_and_hessian_identities_hold_exactly_at_value_level(lqr_small):
    obj = wg.Discounted(0.9, entropy=0.5)
    rep = V.run(lqr_small, obj, checks=["gradient", "hessian"], progress=False)
    g, h = rep.row("gradient"), rep.row("hessian")
    assert g.value == pytest.approx(g.reference, rel=1e-7)
    assert h.value == pytest.approx(h.reference, rel=1e-7)
    assert [r.check for r in rep.rows] == ["gradient", "hessian"]


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


def test_wrong_gradient_formula_fails(lqr_small, monkeypatch):
    # dropping the occupancy factor kappa from grad_m J breaks the first-variation identity
    obj = wg.Discounted(0.9, entropy=0.5)
    real = V.energy_gradient
    monkeypatch.setattr(V, "energy_gradient", lambda *a: real(*a) * (1 - obj.gamma))
    rep = V.run(lqr_small, obj, checks=["gradient", "riesz"], progress=False)
    assert rep.row("gradient").status == "fail"
    assert rep.row("riesz").status == "fail"


def test_rates_flag_and_check_subset(lqr_small):
    obj = wg.Average(entropy=0.5)
    rep = V.run(lqr_small, obj, checks=["gibbs", "rate"], rates=False, progress=False)
    assert [r.check for r in rep.rows] == ["gibbs", "gibbs (otto rhs)"]
    with pytest.raises(ValueError, match="unknown checks"):
        V.run(lqr_small, obj, checks=["nope"])


def test_zero_entropy_skips_gibbs_and_rate(lqr_small):
    rep = V.run(lqr_small, wg.Discounted(0.9), checks=["gradient", "gibbs", "rate", "hessian"],
                progress=False)
    assert rep.passed
    assert rep.row("gibbs").status == "skip" and rep.row("rate").status == "skip"
    assert rep.row("gradient").status == "pass" and rep.row("hessian").status == "pass"


def test_multid_actions():
    mdp = wg.problems.get("lqr2d", n_states=(5, 5), n_actions=(4, 4))
    rep = V.run(mdp, wg.Discounted(0.9, entropy=0.5),
                checks=["gradient", "riesz", "dissipation", "hessian", "symmetry"], progress=False)
    assert rep.passed, rep.table()


def test_cli_verify_prints_table_and_exits_0(capsys):
    argv = ["verify", "lqr1d", "--param", "n_states=15", "--param", "n_actions=11", "--entropy", "0.5",
            "-q"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "ALL PASSED" in out
    for name in IDENTITIES:
        assert re.search(rf"^{re.escape(name)}\s.*\spass$", out, flags=re.M), name


def test_cli_verify_exits_1_on_failure(capsys, monkeypatch):
    original = wg.Hessian.matvec
    monkeypatch.setattr(wg.Hessian, "matvec", lambda self, v: 1.01 * original(self, v))
    argv = ["verify", "lqr1d", "--param", "n_states=9", "--param", "n_actions=9", "--checks", "hessian",
            "-q", "--objective", "average"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert re.search(r"^hessian\s.*FAIL$", out, flags=re.M)


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
