"""Tests of wgflow.study: the main job on small configs (the full default study is not run here)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import wgflow as wg  # noqa: E402
from wgflow import config as C  # noqa: E402
from wgflow.config import ConfigError  # noqa: E402
from wgflow.errors import ConvergenceError  # noqa: E402

TINY = ["problem.params.n_states=15", "problem.params.n_actions=11", "objective.gamma=0.8",
        "flows.schemes=otto,jko,pmd", "flows.max_steps=600", "flows.t_end=40.0", "flows.frames=12",
        "flows.max_seconds=0", "hessian.k=3", "verify.checks=gradient,gibbs,rate",
        "verify.geodesics=false", "output.dpi=50", "output.animation_frames=4", "initial.mean=1.0"]
#: the study's own otto run is compared with the predicted rate: explicit steps resolve the flow
#: (the implicit default's large steps contract at the integrator's rate: no rate is reported)
EXPLICIT = ["flows.options.otto.method=explicit"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    res = wg.run_study("lqr1d", TINY + EXPLICIT, progress=False, outdir=out)
    plt.close("all")
    return res, out


def test_numbers_are_exact_evaluations(study):
    res, _ = study
    mdp = wg.problems.get("lqr1d", n_states=15, n_actions=11)
    obj = wg.Discounted(0.8, entropy=0.5)
    assert res.mdp.n_states == 15 and res.objective == obj
    # the study solves to the rounding floor (solve.tol = "floor"): its certified bound, below
    # 1e-12 * max|V| at gamma = 0.8, holds on V, hence on J; the reference is the
    # exact-to-rounding policy iteration
    for got, o in ((res.J_star, obj), (res.hard.J, wg.Discounted(0.8))):
        exact = wg.solve(mdp, o, method="policy_iteration")
        assert abs(got - exact.J) <= 1e-12 * np.max(np.abs(exact.V)) + res.floor
    assert res.hard.J < res.J_star + 10      # sanity: same problem, different entropy weight
    for name, run in res.flows.items():
        assert run.error is None
        tr, h = run.trajectory, run.history
        # every recorded J is an exact evaluation: the final frame re-evaluated from scratch agrees to
        # the rounding level of J (the study's floor)
        ev = wg.evaluate(mdp, tr.final, obj)
        assert h.J[-1] == pytest.approx(ev.J, abs=res.floor)
        assert tr.J[-1] == h.J[-1] and tr.times[-1] == h.times[-1]
        assert tr.times[0] == 0 and np.all(np.diff(tr.times) > 0) and len(tr) <= 12
        assert np.all(np.diff(h.wall) >= 0) and h.steps[-1] == run.steps
        assert run.distance.shape == (len(tr),) and run.distance[-1] < run.distance[0]
        # J >= J* for every policy, up to the rounding level
        assert np.all(h.J >= res.J_star - res.floor)
    # otto is monotone (rejected steps would have raised J)
    assert np.all(np.diff(res.flows["otto"].history.J) <= res.floor)
    # runs stop where the config says
    for name in ("otto", "pmd"):
        run = res.flows[name]
        assert run.stop_reason.startswith("(J - J*)/max(1, |J*|) < 1e-11")
        assert run.gap(res.J_star) / max(1, abs(res.J_star)) < 1e-11


def test_predicted_rate_matches_the_otto_runs(study):
    res, _ = study
    sp = res.spectrum
    assert sp.eigenvalues.shape == (3,) and np.all(np.diff(sp.eigenvalues) >= -1e-12)
    assert sp.predicted_rate == pytest.approx(2 * sp.eigenvalues[0] / sp.kappa, rel=1e-14)
    assert sp.eigenvectors.shape == (3, 15, 11)
    # verify's otto run started along the slowest mode decays at the predicted rate (its tolerance);
    # the study's own otto run from far away mixes modes, J - J* ~ sum_i c_i exp(-r_i t) with every
    # r_i >= r_min, so its fitted rate can only be larger (2% for the fit over a finite window)
    assert res.rates["verify"] == pytest.approx(sp.predicted_rate, rel=0.02)
    assert res.rates["otto"] >= 0.98 * sp.predicted_rate
    assert res.verify.passed


def test_animation_shades_the_study_s_rounding_level(study, tmp_path, monkeypatch):
    # the GIF's grey band is the study's measured rounding level of J, not the plot default
    import wgflow.plot as P
    res, _ = study
    seen = {}

    def fake(traj, path, **kw):
        seen.update(kw)
        return path
    monkeypatch.setattr(P, "animate_flow", fake)
    res._animate(tmp_path)
    assert seen["floor"] == res.floor and seen["floor"] != P.rounding_floor(res.J_star)


def test_files_and_reload(study):
    res, out = study
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) >= 6
    for p in pngs:
        with Image.open(p) as im:
            assert im.format == "PNG" and min(im.size) > 100
    gif = out / "flow_otto.gif"
    with Image.open(gif) as im:
        assert im.n_frames == 4
    assert C.load(out / "config.toml") == res.config
    back = wg.load(out / "lqr1d.h5")
    assert isinstance(back, wg.StudyResult)
    assert back.config == res.config and back.J_star == res.J_star and back.floor == res.floor
    np.testing.assert_array_equal(back.solution.policy.masses, res.solution.policy.masses)
    np.testing.assert_array_equal(back.hard.V, res.hard.V)
    for name in res.flows:
        a, b = res.flows[name], back.flows[name]
        for k in ("times", "J", "wall", "steps"):
            np.testing.assert_array_equal(getattr(a.history, k), getattr(b.history, k))
        np.testing.assert_array_equal(a.trajectory.masses, b.trajectory.masses)
        np.testing.assert_array_equal(a.distance, b.distance)
        assert (a.stop_reason, a.measured_rate, a.wall) == (b.stop_reason, b.measured_rate, b.wall)
    np.testing.assert_array_equal(back.spectrum.eigenvectors, res.spectrum.eigenvectors)
    assert [(r.check, r.status, r.error, r.reason) for r in back.verify.rows] == \
        [(r.check, r.status, r.error, r.reason) for r in res.verify.rows]
    assert back.mdp.states.names == ("x",)
    assert back.summary().splitlines()[:12] == res.summary().splitlines()[:12]
    assert len(repr(back)) < 300


def test_verify_rows_keep_their_skip_reason_through_a_file(tmp_path):
    # a skipped row's reason (the summary line names it) is stored and read back
    import h5py
    from wgflow.study import _read_verify, _write_verify
    from wgflow.verify import CheckRow, VerifyReport
    rows = [CheckRow("solve", 1.0, 1.0, 1e-15, 1e-8, "pass", ""),
            CheckRow("rate", np.nan, "predicted", np.nan, 0.02, "skip",
                     "no decay above the resolution of the flow; details", reason="no measurable decay")]
    report = VerifyReport(rows, "t", {})
    with h5py.File(tmp_path / "v.h5", "w") as f:
        _write_verify(f.create_group("verify"), report)
    with h5py.File(tmp_path / "v.h5", "r") as f:
        back = _read_verify(f["verify"])
    assert [r.reason for r in back.rows] == ["", "no measurable decay"]
    assert "rate (no measurable decay)" in back.summary()


def test_summary_table(study):
    res, _ = study
    text = res.summary()
    assert f"{res.J_star:.12g}" in text and f"{res.hard.J:.12g}" in text
    for name, run in res.flows.items():
        line = next(ln for ln in text.splitlines() if ln.startswith(name + " "))
        assert f" {run.steps} " in line
        gap = run.gap(res.J_star)
        assert (f"{gap:.3e}" in line) if gap > res.floor else ("rounding" in line)
    assert f"predicted 2 lambda_min / kappa = {res.spectrum.predicted_rate:.5g}" in text
    for row in res.verify.rows:
        assert row.check in text


def test_bad_options_are_rejected_before_any_work(monkeypatch, tmp_path):
    import wgflow.study as S

    def no_solve(*a, **k):
        raise AssertionError("the study started working on a bad config")
    monkeypatch.setattr(S, "solve", no_solve)
    with pytest.raises(C.ConfigError, match="flows.options.otto: scheme 'otto' cannot run.*cfl"):
        wg.run_study("lqr1d", TINY + ["flows.options.otto.cfl=2.0"], progress=False, outdir=tmp_path)
    with pytest.raises(C.ConfigError, match="initial"):
        wg.run_study("lqr1d", TINY + ["initial.kind=gaussian", "initial.std=[1.0, 2.0, 3.0]"],
                     progress=False, outdir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_failing_stage_is_recorded_and_the_study_goes_on(monkeypatch):
    import wgflow.study as S
    real = S._run_flow

    def flaky(cfg, mdp, obj, pi0, sol, scheme, progress, floor):
        if scheme == "jko":
            raise ConvergenceError("jko: 60 successive step rejections", {})
        return real(cfg, mdp, obj, pi0, sol, scheme, progress, floor)
    monkeypatch.setattr(S, "_run_flow", flaky)
    res = wg.run_study("lqr1d", TINY + ["hessian.enabled=false", "verify.enabled=false"], write=False,
                       progress=False)
    assert res.flows["jko"].error.startswith("ConvergenceError") and "flow jko" in res.errors
    assert res.flows["otto"].error is None and not res.passed
    assert "FAILED: ConvergenceError" in res.summary()


def test_figures_of_a_2d_study_are_readable(assert_readable):
    from wgflow.study import _figure_jobs
    res = wg.run_study("pendulum", ["problem.params.n_theta=9", "problem.params.n_omega=9",
                                    "problem.params.n_actions=7", "flows.schemes=otto,pmd",
                                    "flows.max_steps=40", "flows.max_seconds=0", "hessian.k=2",
                                    "verify.checks=gradient,gibbs", "flows.frames=8"],
                       write=False, progress=False)
    jobs = _figure_jobs(res)
    assert len(jobs) >= 8
    for name, draw in jobs:
        fig = draw()
        assert_readable(fig)
        plt.close(fig)


def test_rates_are_reported_only_for_steps_that_resolve_the_decay():
    """A history decaying like ``exp(-r t)`` sampled with small steps gives ``r``; backward Euler
    with large steps (factor ``1/(1 + r dt)`` per step) decays at ``log(1 + r dt)/dt``, not ``r``:
    no rate is reported for it."""
    from wgflow.study import RESOLVED, FlowHistory, _resolved_rate
    r, J_star = 2.0, 1.0

    def history(t, J):
        n = len(t)
        return FlowHistory(np.asarray(t), np.asarray(J), np.zeros(n), np.arange(n))

    t = np.arange(0, 12, 0.01)                                   # r dt = 0.02
    got = _resolved_rate(history(t, J_star + 0.1 * np.exp(-r * t)), J_star, 1e-10, 1e-4)
    assert got == pytest.approx(r, rel=1e-9)                     # a least-squares fit of exact exponentials
    dt = 2.0                                                     # r dt = 4 > RESOLVED
    k = np.arange(20)
    hist = history(k * dt, J_star + 0.1 * (1 + r * dt) ** (-k.astype(float)))
    assert r * dt > RESOLVED and _resolved_rate(hist, J_star, 1e-10, 1e-4) is None
    # a run that settles at a floor inside the window (a biased scheme) has no rate to J*
    floor = J_star + 1e-5 + 0.1 * np.exp(-r * t)
    assert _resolved_rate(history(t, floor), J_star, 1e-10, 1e-4) is None


@pytest.mark.parametrize("as_dict", [False, True])
def test_a_study_without_figures_does_not_check_the_animation_scheme(as_dict):
    # output.animation_scheme names a scheme to animate; a study that draws nothing ignores it
    keys = {"problem.params.n_states": 11, "problem.params.n_actions": 9, "flows.schemes": ["pmd"],
            "flows.max_steps": 20, "hessian.enabled": False, "verify.enabled": False}
    over = keys if as_dict else [f"{k}={v if not isinstance(v, list) else ','.join(v)}".replace(
        "False", "false") for k, v in keys.items()]
    res = wg.run_study("lqr1d", over, figures=False, write=False, progress=False)
    assert list(res.flows) == ["pmd"] and res.config["output"]["figures"] is False
    with pytest.raises(ConfigError, match="output.animation_scheme"):
        wg.run_study("lqr1d", over, write=False, progress=False)
