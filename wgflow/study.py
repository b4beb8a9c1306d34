r"""The main job: one study of a problem, from exact solution to flows, second order and checks.

:func:`run_study` takes a configuration (:mod:`wgflow.config`: a TOML file, a built-in name, a
nested dict, plus dotted overrides) and

1. builds the MDP and the objective, and checks every flow's options on them (before any work);
2. solves the problem exactly, regularized (``J*``) and, if asked, unregularized; with the default
   ``solve.tol = "floor"`` to the accuracy double precision allows (:func:`solve_to`);
3. runs each scheme from the same initial policy, within per-run budgets (flow time, steps, wall
   seconds; a run also stops when ``(J - J*)/max(1, |J*|) < stop_gap`` or at a steady state),
   recording ``J`` and the wall time after every step and the policy at frames spaced
   geometrically in flow time, and the distance ``d(pi, pi*)`` of each frame;
4. computes the smallest eigenvalues of the Hessian at the soft optimum, their eigenvectors and
   the predicted local rate ``2 lambda_min / kappa`` of ``otto``;
5. runs the ``verify`` checks (the ``rate`` row measures that rate on an ``otto`` run started
   along the slowest mode);
6. writes one HDF5 file holding all of it and the configuration, the figures and an animation.

The result is a :class:`StudyResult` (``summary()`` prints the table; ``plot()`` redraws the
figures; ``StudyResult.from_hdf5`` or :func:`wgflow.load` reads a study file back). A stage that
fails (say, a scheme that raises) is recorded in ``result.errors`` and the study goes on.

The rounding level of ``J`` (``result.floor``): the gap ``J - J*`` subtracts two exact
evaluations, each accurate only to rounding, so gaps below
``max(|J_solve - J_eval|, 64 eps kappa max(1, |J*|))`` -- the disagreement of two independent
evaluations of ``pi*`` and a multiple of the unit roundoff scaled by the conditioning ``kappa`` of
``I - gamma P`` -- are not resolved; the figures shade that band instead of plotting noise.
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import config as _config
from .errors import AccuracyWarning, FileFormatError, ValidationError, WgflowError
from .evaluation import Solution, evaluate, solve
from .h5 import FORMAT_VERSION, atomic_h5, open_checked
from .objectives import Average, Discounted
from .policy import Policy
from .records import read_mdp, read_policy, read_result, write_mdp, write_policy, write_result
from .version import __version__

__all__ = ["run_study", "StudyResult", "FlowRun", "FlowHistory", "SpectrumResult", "build_objective",
           "build_initial"]


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
@dataclass
class FlowHistory:
    """``J`` after every step of a flow: ``times`` (flow time), ``J``, ``wall`` (seconds since the
    run started) and ``steps``, each ``(n,)``; the first entry is the initial policy."""

    times: np.ndarray
    J: np.ndarray
    wall: np.ndarray
    steps: np.ndarray

    def __len__(self):
        return int(np.size(self.times))

    def __repr__(self):
        return f"<FlowHistory: {len(self)} points, t <= {self.times[-1]:g}, wall {self.wall[-1]:.3g} s>"


@dataclass
class FlowRun:
    """One scheme's run in a study.

    Attributes
    ----------
    scheme : str
    trajectory : Trajectory or None
        Frames spaced geometrically in flow time (first and last state included).
    history : FlowHistory or None
        ``J`` after every step, with flow and wall time.
    distance : ndarray ``(n_frames,)``
        ``d(pi_frame, pi*)`` with the weights of ``pi*`` (:func:`wgflow.geometry.distance`).
    wall : float
        Wall seconds of the run.
    stop_reason : str
    measured_rate : float or None
        Fit of ``J - J* ~ exp(-r t)`` on the history (:func:`wgflow.hessian.measured_rate`), when
        the run went through the fit's window with steps that resolve the decay (``r dt`` at most
        :data:`RESOLVED` on every step of the window). Large steps (the implicit ``otto``, ``jko``)
        contract at the integrator's own rate, e.g. ``1/(1 + r dt)`` per step for backward Euler,
        not at the flow's; their fit would not be a measurement of ``r`` and is not reported.
    error : str or None
        The exception's message when the run failed.
    """

    scheme: str
    trajectory: object = None
    history: FlowHistory | None = None
    distance: np.ndarray | None = None
    wall: float = 0.0
    stop_reason: str = ""
    measured_rate: float | None = None
    error: str | None = None

    @property
    def steps(self) -> int:
        return int(self.history.steps[-1]) if self.history is not None and len(self.history) else 0

    def gap(self, J_star: float) -> float:
        """Final ``J - J*``."""
        return float(self.history.J[-1] - J_star) if self.history is not None else float("nan")

    def __repr__(self):
        if self.error:
            return f"<FlowRun {self.scheme}: failed: {self.error}>"
        return (f"<FlowRun {self.scheme}: {self.steps} steps, t = {self.history.times[-1]:.4g}, "
                f"{self.wall:.3g} s, stop: {self.stop_reason}>")


@dataclass
class SpectrumResult:
    """The Hessian at the soft optimum: ``eigenvalues`` ``(k,)`` (smallest, relative to the
    metric), ``eigenvectors`` ``(k, nS, nA)`` (potentials), ``kappa``, ``predicted_rate``
    (``2 lambda_min / kappa``) and ``diagnostics`` (method, directions, timings)."""

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    kappa: float
    predicted_rate: float
    diagnostics: dict = field(default_factory=dict)

    def __repr__(self):
        vals = ", ".join(f"{v:.4g}" for v in self.eigenvalues)
        return f"<SpectrumResult: lambda = [{vals}], predicted rate {self.predicted_rate:.4g}>"


@dataclass
class StudyResult:
    """Everything one study computed.

    Attributes
    ----------
    config : dict
        The full configuration used (every key; :func:`wgflow.config.to_toml` writes it back).
    mdp : MDP
    objective : Discounted or Average
    solution : Solution
        The optimum of ``objective`` (``J*``).
    hard : Solution or None
        The optimum without entropy.
    initial : Policy
        The policy every flow starts from (schemes with their own representation, e.g. ``wpo``,
        start from its projection).
    flows : dict scheme -> FlowRun
    spectrum : SpectrumResult or None
    verify : VerifyReport or None
    floor : float
        Rounding level of ``J`` (module docstring).
    timings : dict
        Wall seconds per stage.
    errors : dict
        Stage -> message, for the stages that failed.
    paths : dict
        ``"hdf5"``, ``"config"``, ``"figures"`` (list), ``"animations"`` (list).
    diagnostics : dict
    """

    config: dict
    mdp: object
    objective: object
    solution: Solution
    hard: Solution | None = None
    initial: Policy | None = None
    flows: dict = field(default_factory=dict)
    spectrum: SpectrumResult | None = None
    verify: object = None
    floor: float = float("nan")
    timings: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    paths: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)

    @property
    def J_star(self) -> float:
        return float(self.solution.J)

    @property
    def rates(self) -> dict:
        """``predicted`` (Hessian), ``verify`` (the rate row's measurement along the slowest mode)
        and ``<scheme>`` (fits on each run's history), None where not available."""
        out = {"predicted": None if self.spectrum is None else self.spectrum.predicted_rate,
               "verify": None}
        if self.verify is not None:
            try:
                row = self.verify.row("rate")
                if row.status in ("pass", "fail"):
                    out["verify"] = float(row.value)
            except WgflowError:
                pass
        for name, run in self.flows.items():
            out[name] = run.measured_rate
        return out

    @property
    def passed(self) -> bool:
        """No stage failed and no check failed."""
        return not self.errors and (self.verify is None or self.verify.passed)

    def __repr__(self):
        name = self.config.get("study", {}).get("name", "")
        fl = ", ".join(self.flows)
        return (f"<StudyResult '{name}': {self.mdp.n_states} states x {self.mdp.n_actions} actions, "
                f"{self.objective!r}, J* = {self.J_star:.10g}, flows [{fl}], "
                f"{'' if self.verify is None else ('verify passed' if self.verify.passed else 'verify FAILED')}"
                f"{', errors in ' + ', '.join(self.errors) if self.errors else ''}>")

    # ------------------------------------------------------------------ summary
    def summary(self) -> str:
        """The table printed by ``wgflow run``: ``J*``, each scheme's final gap, steps, wall time,
        predicted vs measured rate, each check's error, the timings and the files written."""
        from .plot._common import fmt_value
        cfg, mdp = self.config, self.mdp
        L = []
        L.append(f"wgflow study '{cfg['study']['name']}': problem {cfg['problem']['name']} "
                 f"{cfg['problem']['params'] or ''}".rstrip())
        L.append(f"  {mdp.n_states} states x {mdp.n_actions} actions, {self.objective!r}")
        L.append("")
        rows = [("optimum", "entropy", "J", "method", "iterations", "Bellman residual")]
        for label, sol_ in (("J* (soft)", self.solution), ("hard", self.hard)):
            if sol_ is not None:
                rows.append((label, f"{sol_.objective.entropy:g}", f"{sol_.J:.12g}", sol_.method,
                             str(sol_.iterations), f"{sol_.residual:.1e}"))
        L += _table(rows)
        L.append(f"rounding level of J   {self.floor:.1e}   (gaps below it are not resolved)")
        if self.flows:
            L.append("")
            head = ("scheme", "steps", "flow time", "wall [s]", "final J - J*", "d(pi, pi*)",
                    "measured rate", "stopped by")
            rows = [head]
            for name, run in self.flows.items():
                if run.error:
                    rows.append((name, "-", "-", f"{run.wall:.2f}", "-", "-", "-", f"FAILED: {run.error}"))
                    continue
                gap = run.gap(self.J_star)
                gap_s = f"{gap:.3e}" if gap > self.floor else f"< {self.floor:.0e} (rounding)"
                d = run.distance[-1] if run.distance is not None and len(run.distance) else float("nan")
                rows.append((name, str(run.steps), fmt_value(run.history.times[-1]), f"{run.wall:.2f}",
                             gap_s, f"{d:.3e}",
                             "-" if run.measured_rate is None else f"{run.measured_rate:.4g}",
                             run.stop_reason or "t_end"))
            L += _table(rows)
            L.append("  (flow time: the time of the PDE for otto, jko, wppg and wpo; the sum of the step "
                     "sizes for pmd and pg)")
        if self.spectrum is not None:
            sp = self.spectrum
            L.append("")
            L.append("Hessian at the soft optimum, smallest eigenvalues relative to the metric: "
                     + ", ".join(f"{v:.5g}" for v in sp.eigenvalues))
            r = self.rates
            line = (f"rate of otto near pi*: predicted 2 lambda_min / kappa = {sp.predicted_rate:.5g} "
                    f"(kappa = {sp.kappa:.4g})")
            L.append(line)
            if r["verify"] is not None:
                err = abs(r["verify"] - sp.predicted_rate) / abs(sp.predicted_rate)
                L.append(f"                      measured {r['verify']:.5g} (verify: otto along the slowest "
                         f"mode), relative error {err:.2e}")
            if r.get("otto") is not None:
                err = abs(r["otto"] - sp.predicted_rate) / abs(sp.predicted_rate)
                L.append(f"                      measured {r['otto']:.5g} (tail of the otto run above), "
                         f"relative error {err:.2e}")
            elif "otto" in self.flows:
                L.append("                      no rate from the otto run above: it did not pass the window "
                         "(relative gaps 1e-10 .. 1e-4)")
                L.append(f"                      with steps that resolve the decay (r dt <= {RESOLVED:g}); the "
                         "implicit default's steps are larger")
        if self.verify is not None:
            L.append("")
            rows = [("check", "error", "tolerance", "status")]
            for row in self.verify.rows:
                err = row.error if isinstance(row.error, (float, int, np.floating)) else float("nan")
                rows.append((row.check, "-" if not np.isfinite(err) else f"{err:.2e}",
                             "-" if not np.isfinite(row.tolerance) else f"{row.tolerance:.0e}",
                             row.status.upper() if row.status == "fail" else row.status))
            L += _table(rows)
            nf = len(self.verify.failed())
            L.append(f"verify: {'all checks passed' if self.verify.passed else f'{nf} check(s) FAILED'} "
                     "(notes: wgflow verify, or result.verify.table())")
        if self.errors:
            L.append("")
            for stage, msg in self.errors.items():
                L.append(f"ERROR in {stage}: {msg}")
        if self.timings:
            L.append("")
            L.append("wall time: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items()))
        if self.paths.get("hdf5"):
            L.append(f"results: {self.paths['hdf5']}")
        if self.paths.get("figures"):
            L.append(f"figures: {len(self.paths['figures'])} PNG in {Path(self.paths['figures'][0]).parent}")
        if self.paths.get("animations"):
            L.append("animations: " + ", ".join(str(p) for p in self.paths["animations"]))
        return "\n".join(L)

    # ------------------------------------------------------------------ storage
    def to_hdf5(self, path) -> Path:
        """Write the whole study to one HDF5 file (atomically)."""
        path = Path(path)
        with atomic_h5(path) as f:
            f.attrs["wgflow_type"] = "Study"
            f.attrs["wgflow_version"] = __version__
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["config"] = json.dumps(_jsonable(self.config))
            f.attrs["config_toml"] = _config.to_toml(self.config)
            f.attrs["floor"] = float(self.floor)
            f.attrs["timings"] = json.dumps(_jsonable(self.timings))
            f.attrs["errors"] = json.dumps(_jsonable(self.errors))
            f.attrs["diagnostics"] = json.dumps(_jsonable(self.diagnostics, max_array=64))
            f.attrs["summary"] = self.summary()
            write_mdp(f.create_group("mdp"), self.mdp)
            sg = f.create_group("solution")
            write_result(sg.create_group("soft"), self.solution, "Solution")
            if self.hard is not None:
                write_result(sg.create_group("hard"), self.hard, "Solution")
            if self.initial is not None:
                write_policy(f.create_group("initial"), self.initial)
            fg = f.create_group("flows")
            fg.attrs["order"] = json.dumps(list(self.flows))
            for name, run in self.flows.items():
                _write_run(fg.create_group(name), run)
            if self.spectrum is not None:
                hg = f.create_group("hessian")
                hg.create_dataset("eigenvalues", data=self.spectrum.eigenvalues)
                hg.create_dataset("eigenvectors", data=self.spectrum.eigenvectors, compression="gzip")
                hg.attrs["kappa"] = self.spectrum.kappa
                hg.attrs["predicted_rate"] = self.spectrum.predicted_rate
                hg.attrs["diagnostics"] = json.dumps(_jsonable(self.spectrum.diagnostics, max_array=64))
            if self.verify is not None:
                _write_verify(f.create_group("verify"), self.verify)
        return path

    @classmethod
    def from_hdf5(cls, path) -> "StudyResult":
        """Read a study file written by :meth:`to_hdf5`."""
        with open_checked(path) as f:
            if str(f.attrs["wgflow_type"]) != "Study":
                raise FileFormatError(f"{path} holds a {f.attrs['wgflow_type']}, not a Study")
            try:
                cfg = json.loads(f.attrs["config"])
                mdp = read_mdp(f["mdp"], path)
                sol = read_result(f["solution/soft"], "Solution", path)
                hard = (read_result(f["solution/hard"], "Solution", path)
                        if "hard" in f["solution"] else None)
                initial = read_policy(f["initial"], path) if "initial" in f else None
                flows = {}
                order = json.loads(f["flows"].attrs.get("order", "[]")) or list(f["flows"])
                for name in order:
                    flows[name] = _read_run(f["flows"][name], mdp, sol.objective)
                spectrum = None
                if "hessian" in f:
                    hg = f["hessian"]
                    spectrum = SpectrumResult(hg["eigenvalues"][...], hg["eigenvectors"][...],
                                              float(hg.attrs["kappa"]), float(hg.attrs["predicted_rate"]),
                                              json.loads(hg.attrs["diagnostics"]))
                report = _read_verify(f["verify"]) if "verify" in f else None
                res = cls(config=cfg, mdp=mdp, objective=sol.objective, solution=sol, hard=hard,
                          initial=initial, flows=flows, spectrum=spectrum, verify=report,
                          floor=float(f.attrs["floor"]), timings=json.loads(f.attrs["timings"]),
                          errors=json.loads(f.attrs["errors"]),
                          diagnostics=json.loads(f.attrs.get("diagnostics", "{}")))
                res.paths = {"hdf5": str(path)}
                return res
            except (KeyError, OSError) as exc:
                raise FileFormatError(f"{path} is a damaged wgflow Study file: {exc}") from exc

    # ------------------------------------------------------------------ figures
    def plot(self, outdir=None, dpi: int | None = None, animation: bool | None = None,
             progress: bool | None = False) -> list:
        """Draw the study's figures as PNG files in ``outdir`` (default: the config's output dir)
        and, if ``animation`` (default: the config's), the animation. Returns the paths written."""
        from ._progress import bar
        outdir = Path(self.config["output"]["dir"] if outdir is None else outdir)
        dpi = int(self.config["output"]["dpi"] if dpi is None else dpi)
        animation = self.config["output"]["animation"] if animation is None else animation
        outdir.mkdir(parents=True, exist_ok=True)
        jobs = _figure_jobs(self)
        written, anims = [], []
        with bar(total=len(jobs) + (1 if animation else 0), desc="figures", enabled=progress) as pb:
            for name, draw in jobs:
                fig = draw()
                p = outdir / f"{name}.png"
                fig.savefig(p, dpi=dpi)
                _close(fig)
                written.append(str(p))
                pb.update(1)
            if animation:
                anims = self._animate(outdir, dpi=min(dpi, 90))
                pb.update(1)
        self.paths["figures"] = written
        if animation:
            self.paths["animations"] = anims
        return written + anims

    def _animate(self, outdir, dpi: int = 90) -> list:
        from .plot import animate_flow, ffmpeg_available
        out = self.config["output"]
        name = out["animation_scheme"]
        run = self.flows.get(name)
        if run is None or run.trajectory is None or len(run.trajectory) < 2:
            return []
        paths = [animate_flow(run.trajectory, Path(outdir) / f"flow_{name}.gif", J_star=self.J_star,
                              max_frames=out["animation_frames"], title=name, dpi=dpi, floor=self.floor)]
        if out["mp4"] and ffmpeg_available():
            paths.append(animate_flow(run.trajectory, Path(outdir) / f"flow_{name}.mp4", J_star=self.J_star,
                                      max_frames=out["animation_frames"], title=name, dpi=dpi,
                                      floor=self.floor))
        return [str(p) for p in paths]


def _jsonable(obj, max_array: int | None = None):
    """JSON-ready copy; arrays become lists (or a placeholder above ``max_array`` elements)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v, max_array) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, max_array) for v in obj]
    if isinstance(obj, np.ndarray):
        return f"<array shape={obj.shape}>" if max_array is not None and obj.size > max_array else obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


def _grid_json(g) -> str:
    return json.dumps(None if g is None else g.to_dict())


def _grid_load(text):
    from .grids import Grid
    d = json.loads(text)
    return None if d is None else Grid.from_dict(d)


def _update_attrs(path, res):
    """Refresh the timings and the summary stored in a study file (after the figures)."""
    from .h5 import edit_sealed
    with edit_sealed(path) as f:
        f.attrs["timings"] = json.dumps(_jsonable(res.timings))
        f.attrs["summary"] = res.summary()


def _close(fig):
    import matplotlib.pyplot as plt
    plt.close(fig)


def _table(rows) -> list:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    out = []
    for k, r in enumerate(rows):
        out.append("  ".join(str(c).ljust(w) if i in (0, len(r) - 1) else str(c).rjust(w)
                             for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


# ---------------------------------------------------------------------------------------------
# HDF5 pieces
# ---------------------------------------------------------------------------------------------
def _write_run(g, run: FlowRun):
    g.attrs["scheme"] = run.scheme
    g.attrs["wall"] = float(run.wall)
    g.attrs["stop_reason"] = run.stop_reason or ""
    g.attrs["error"] = run.error or ""
    g.attrs["measured_rate"] = np.nan if run.measured_rate is None else float(run.measured_rate)
    if run.history is not None:
        hg = g.create_group("history")
        for k in ("times", "J", "wall", "steps"):
            hg.create_dataset(k, data=np.asarray(getattr(run.history, k)))
    if run.distance is not None:
        g.create_dataset("distance", data=np.asarray(run.distance, dtype=float))
    tr = run.trajectory
    if tr is not None:
        tg = g.create_group("trajectory")
        for k in ("times", "J", "grad_norm2"):
            tg.create_dataset(k, data=getattr(tr, k))
        tg.create_dataset("masses", data=tr.masses, compression="gzip", shuffle=True)
        tg.attrs["actions"] = _grid_json(tr.actions)
        tg.attrs["states"] = _grid_json(tr.states)
        tg.attrs["objective"] = json.dumps(_jsonable(tr.objective))
        tg.attrs["provenance"] = json.dumps(_jsonable(tr.provenance))
        tg.attrs["diagnostics"] = json.dumps(_jsonable(tr.diagnostics, max_array=64))


def _read_run(g, mdp, objective) -> FlowRun:
    from .flows import Trajectory
    hist = None
    if "history" in g:
        h = g["history"]
        hist = FlowHistory(h["times"][...], h["J"][...], h["wall"][...], h["steps"][...])
    traj = None
    if "trajectory" in g:
        t = g["trajectory"]
        traj = Trajectory(t["times"][...], t["J"][...], t["grad_norm2"][...], t["masses"][...],
                          _grid_load(t.attrs["actions"]), _grid_load(t.attrs["states"]), {},
                          str(g.attrs["scheme"]), json.loads(t.attrs["objective"]),
                          json.loads(t.attrs["provenance"]), json.loads(t.attrs["diagnostics"]))
    rate = float(g.attrs["measured_rate"])
    return FlowRun(str(g.attrs["scheme"]), traj, hist,
                   g["distance"][...] if "distance" in g else None, float(g.attrs["wall"]),
                   str(g.attrs["stop_reason"]), None if not np.isfinite(rate) else rate,
                   str(g.attrs["error"]) or None)


def _write_verify(g, report):
    import h5py
    rows = report.rows
    str_dt = h5py.string_dtype()
    g.attrs["title"] = report.title
    g.attrs["passed"] = bool(report.passed)
    g.attrs["table"] = report.table()
    for k in ("check", "status", "note", "reason"):
        g.create_dataset(k, data=np.array([str(getattr(r, k)) for r in rows], dtype=object), dtype=str_dt)
    g.create_dataset("reference", data=np.array([r.reference if isinstance(r.reference, str) else repr(float(r.reference))
                                                 if r.reference is not None else "" for r in rows],
                                                dtype=object), dtype=str_dt)
    from .plot.checks import number_or_nan       # (the checks figure reads rows by the same rule)
    for k in ("value", "error", "tolerance"):
        g.create_dataset(k, data=np.array([number_or_nan(getattr(r, k)) for r in rows],
                                          dtype=float))
    g.attrs["diagnostics"] = json.dumps(_jsonable(report.diagnostics, max_array=64))


def _read_verify(g):
    from .verify import CheckRow, VerifyReport
    rows = []
    n = g["check"].shape[0]
    dec = (lambda a: [x.decode() if isinstance(x, bytes) else str(x) for x in a[...]])
    checks, status, notes, refs = dec(g["check"]), dec(g["status"]), dec(g["note"]), dec(g["reference"])
    # (files written before rows had a reason: the summary line falls back to the note)
    reasons = dec(g["reason"]) if "reason" in g else [""] * n
    for i in range(n):
        ref = refs[i]
        try:
            ref = float(ref)
        except ValueError:
            pass
        rows.append(CheckRow(checks[i], float(g["value"][i]), ref, float(g["error"][i]),
                             float(g["tolerance"][i]), status[i], notes[i], reason=reasons[i]))
    return VerifyReport(rows, str(g.attrs["title"]), json.loads(g.attrs.get("diagnostics", "{}")))


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
def _figure_jobs(res: StudyResult) -> list:
    """``(file stem, draw())`` of every figure the study has the data for."""
    from . import plot as P
    jobs = []
    obj = res.objective
    tau = obj.entropy
    pname = res.config["problem"]["name"]
    jobs.append(("solution_soft", lambda: P.plot_solution(
        res.solution, title=f"{pname}: optimum of {_obj_text(obj)} (J* = {res.J_star:.6g})")))
    if res.hard is not None:
        jobs.append(("solution_hard", lambda: P.plot_solution(
            res.hard, fields=("V", "mean", "weights"),
            title=f"{pname}: optimum without entropy (J = {res.hard.J:.6g})")))
    ok = {k: r for k, r in res.flows.items() if r.error is None and r.history is not None}
    if ok:
        dist = {k: (r.trajectory.times, r.distance) for k, r in ok.items()
                if r.distance is not None and r.trajectory is not None}
        labels = {k: f"{k} ({r.steps} steps)" for k, r in ok.items()}
        wall_labels = {}
        for k, r in ok.items():
            comp = (r.trajectory.diagnostics.get("timings") or {}).get("compile", 0.0) if r.trajectory else 0.0
            wall_labels[k] = labels[k][:-1] + (f", {comp:.1f} s numba compilation)" if comp and comp > 0.05 else ")")
        jobs.append(("convergence", lambda: P.plot_convergence(
            {k: r.history for k, r in ok.items()}, res.J_star, x="time", floor=res.floor,
            distance=dist or None, labels=labels,
            title=f"{pname}: every scheme from the same initial policy (exact J at every step)")))
        jobs.append(("convergence_wall", lambda: P.plot_convergence(
            {k: r.history for k, r in ok.items()}, res.J_star, x="wall", floor=res.floor,
            labels=wall_labels, title=f"{pname}: J − J* against wall time")))
    name = res.config["output"]["animation_scheme"]
    run = ok.get(name) or (next(iter(ok.values())) if ok else None)
    if run is not None and run.trajectory is not None and len(run.trajectory) > 1:
        sname = run.scheme
        jobs.append((f"flow_{sname}_states", lambda: P.plot_frames_by_state(
            run.trajectory, n_frames=8, reference=res.solution.policy, reference_label="π* (optimum)",
            time_label="flow time t", title=f"{pname}: {sname} flow, action density at nine states")))
        jobs.append((f"flow_{sname}_snapshots", lambda: P.plot_field_snapshots(
            run.trajectory, "mean", n=5, reference=res.solution.policy, reference_title="π* (optimum)",
            title=f"{pname}: {_action_name(res.mdp)} along the {sname} flow")))
    if res.spectrum is not None:
        sp = res.spectrum

        def spectrum_fig():
            import matplotlib.pyplot as plt
            fig, (a, b) = plt.subplots(1, 2, figsize=(10.0, 3.8), layout="constrained")
            P.plot_spectrum(sp.eigenvalues, kappa=sp.kappa, ax=a,
                            title=f"Hessian at π* (τ = {tau:g}): smallest eigenvalues")
            otto = ok.get("otto")
            r = res.rates
            # no rate from the run: the summary's reason (_resolved_rate), in the legend below
            # the axes (a note inside them crossed the curve or the predicted line)
            tail = r.get("otto")
            if tail is None:
                tail = (f"none (it did not cross relative gaps 1e-10 .. 1e-4\nwith steps that "
                        f"resolve the decay, r dt <= {RESOLVED:g})")
            meas = {"measured (verify, slowest mode)": r.get("verify"),
                    "measured (tail of this run)": tail}
            if otto is not None:
                P.plot_rate(otto.history, res.J_star, predicted=sp.predicted_rate, measured=meas,
                            floor=res.floor, ax=b, title="otto: J − J* and the predicted rate")
            else:
                b.axis("off")
                b.text(0.5, 0.5, f"predicted rate {sp.predicted_rate:.4g}\n(no otto run in this study)",
                       ha="center", va="center", transform=b.transAxes)
            return fig
        jobs.append(("spectrum", spectrum_fig))
        jobs.append(("eigenfields", lambda: P.plot_eigenfields(
            sp.eigenvectors, res.solution.policy, sp.eigenvalues, k=min(4, len(sp.eigenvalues)),
            title=f"{pname}: slowest modes of the Hessian at π*")))
    if res.verify is not None and res.verify.rows:
        jobs.append(("verify", lambda: P.plot_checks(res.verify, title=res.verify.title.split(":")[0]
                                                     + ": numerical checks of the theory").figure))
    return jobs


def _action_name(mdp) -> str:
    A = mdp.actions
    if A is not None and A.names is not None and A.ndim == 1:
        return f"mean {A.names[0]}"
    return "mean action"


def _obj_text(obj) -> str:
    if isinstance(obj, Discounted):
        return f"Discounted(γ = {obj.gamma:g}, τ = {obj.entropy:g})"
    return f"Average(τ = {obj.entropy:g})"


# ---------------------------------------------------------------------------------------------
# the runner
# ---------------------------------------------------------------------------------------------
def build_objective(cfg: dict, entropy: float | None = None):
    """The objective of a configuration (``entropy`` overrides ``objective.entropy``)."""
    o = cfg["objective"]
    tau = o["entropy"] if entropy is None else entropy
    if o["kind"] == "average":
        return Average(entropy=tau)
    return Discounted(gamma=o["gamma"], entropy=tau)


def build_initial(cfg: dict, mdp) -> Policy:
    """The initial policy of a configuration."""
    ini = cfg["initial"]
    if ini["kind"] == "uniform":
        return Policy.uniform(mdp)
    try:
        return Policy.gaussian(mdp, mean=ini["mean"], std=ini["std"])
    except ValidationError as exc:
        raise _config.ConfigError("initial", str(exc)) from None


def _flow_kwargs(cfg: dict, scheme: str) -> tuple:
    """``(run settings, scheme options)`` of one scheme."""
    f = cfg["flows"]
    opts = dict(f["options"].get(scheme, {}))
    run = {"t_end": f["t_end"], "dt": None, "max_steps": f["max_steps"], "max_seconds": f["max_seconds"]}
    for k in _config.RUN_KEYS:
        if k in opts:
            run[k] = opts.pop(k)
    return run, opts


def _preflight(cfg, mdp, obj):
    """Construct every scheme with its options (cheap) so bad options fail before any work."""
    from .flows import get_scheme
    for scheme in cfg["flows"]["schemes"]:
        _, opts = _flow_kwargs(cfg, scheme)
        try:
            get_scheme(scheme)(mdp, obj, **opts)
        except WgflowError as exc:
            raise _config.ConfigError(f"flows.options.{scheme}" if opts else "flows.schemes",
                                      f"scheme {scheme!r} cannot run on this problem: {exc}") from None


class _Recorder:
    """Per-step callback of a study flow: history, geometric frames, budgets."""

    def __init__(self, J_star, scale, stop_gap, max_seconds, frames, bar=None):
        self.J_star, self.scale = J_star, scale
        self.stop_gap, self.max_seconds = stop_gap, max_seconds
        self.n_frames = frames
        self.t, self.J, self.wall, self.steps = [], [], [], []
        self.frames = []            # (t, J, masses)
        self.q = None               # ratio of successive frame times
        self.next_t = None
        self.t0 = time.perf_counter()
        self.bar = bar
        self._last_bar = 0.0

    def __call__(self, state, context):
        now = time.perf_counter() - self.t0
        self.t.append(state.t)
        self.J.append(state.J)
        self.wall.append(now)
        self.steps.append(len(self.steps) + 1)
        if self.next_t is None:
            self.q = 1.02
            self.next_t = state.t
        if state.t >= self.next_t:
            self.frames.append((state.t, state.J, state.masses.copy()))
            self.next_t = state.t * self.q
            if len(self.frames) > 2 * self.n_frames:       # thin: every other frame, double the ratio
                self.frames = self.frames[::2]
                self.q = self.q ** 2
                self.next_t = self.frames[-1][0] * self.q
        gap = (state.J - self.J_star) / self.scale
        if self.bar is not None and now - self._last_bar > 0.25:
            self._last_bar = now
            self.bar.n = min(now, self.bar.total) if self.bar.total else now
            self.bar.set_postfix_str(f"J-J*={state.J - self.J_star:.2e} t={state.t:.3g} steps={len(self.t)}",
                                     refresh=True)
        if self.stop_gap > 0 and gap < self.stop_gap:
            return f"(J - J*)/max(1, |J*|) < {self.stop_gap:g}"
        if self.max_seconds > 0 and now > self.max_seconds:
            return f"wall budget {self.max_seconds:g} s"
        return None


def _run_flow(cfg, mdp, obj, pi0, sol, scheme, progress, floor) -> FlowRun:
    from .flows import CallbackTracker, SteadyStateTracker, Trajectory, flow
    from .geometry import distance
    from ._progress import bar
    run_kw, opts = _flow_kwargs(cfg, scheme)
    f = cfg["flows"]
    scale = max(1.0, abs(sol.J))
    t_start = time.perf_counter()
    with bar(total=run_kw["max_seconds"] or None, desc=f"flow {scheme}", unit="s", enabled=progress,
             leave=False, bar_format="{l_bar}{bar}| {elapsed} {postfix}") as pb:
        rec = _Recorder(sol.J, scale, f["stop_gap"], run_kw["max_seconds"], f["frames"], pb if progress else None)
        trackers = [CallbackTracker(rec, interval=0)]
        if f["steady_state"] > 0:
            trackers.append(SteadyStateTracker(atol=f["steady_state"]))
        traj = flow(mdp, obj, pi0, scheme=scheme, t_end=run_kw["t_end"], dt=run_kw["dt"],
                    save_every=run_kw["t_end"], trackers=trackers, progress=False,
                    max_steps=run_kw["max_steps"], **opts)
    wall = time.perf_counter() - t_start
    # the initial state is the trajectory's first frame (in the scheme's own representation)
    hist = FlowHistory(np.array([traj.times[0]] + rec.t), np.array([traj.J[0]] + rec.J),
                       np.array([0.0] + rec.wall), np.array([0] + rec.steps))
    fr = [(traj.times[0], traj.J[0], traj.masses[0])] + [x for x in rec.frames if x[0] > traj.times[0]]
    if fr[-1][0] < traj.times[-1]:
        fr.append((traj.times[-1], traj.J[-1], traj.masses[-1]))
    if len(fr) > f["frames"]:        # keep `frames` of them, evenly in log-time (first and last kept)
        keep = np.unique(np.round(np.linspace(0, len(fr) - 1, f["frames"])).astype(int))
        fr = [fr[i] for i in keep]
    g2 = np.full(len(fr), np.nan)
    g2[0], g2[-1] = traj.grad_norm2[0], traj.grad_norm2[-1]
    frames = Trajectory([x[0] for x in fr], [x[1] for x in fr], g2, np.array([x[2] for x in fr]),
                        mdp.actions, mdp.states, {}, traj.scheme, traj.objective, traj.provenance,
                        traj.diagnostics)
    dist = np.array([distance(frames.policy(i), sol.policy, sol.weights) for i in range(len(frames))])
    rate = _resolved_rate(hist, sol.J, lower=max(1e-10, 10 * floor / scale), upper=1e-4)
    return FlowRun(scheme, frames, hist, dist, wall, traj.diagnostics.get("stop_reason") or "t_end", rate)


#: largest ``r dt`` of a step inside the fit window for the fitted rate to count as the flow's
#: (explicit or backward Euler's per-step factor, ``1 - r dt`` or ``1/(1 + r dt)``, then decays at
#: a rate within 15 % of ``r``; the explicit otto at its default ``cfl = 0.5`` takes ``r dt ~ 0.1``
#: near the optimum, where the fit is ~10 % above ``r``)
RESOLVED = 0.25


def _resolved_rate(hist, J_star, lower, upper):
    """:func:`~wgflow.hessian.measured_rate` of a run's history, or None when the run did not go
    two decades into the window (it may be stalling at a biased floor) or its steps there are too
    large to resolve the rate (``r dt > RESOLVED``)."""
    from .hessian import measured_rate
    try:
        rate = measured_rate(hist, J_star, lower=lower, upper=upper)
    except ValidationError:
        return None
    gap = (np.asarray(hist.J) - J_star) / max(1.0, abs(J_star))
    if not gap[-1] < 1e-2 * upper:
        # a run that stalls inside the window (a biased scheme's floor, wpo/wppg) is not
        # decaying to J*: two decades into the window at least
        return None
    inside = np.nonzero((gap > lower) & (gap < upper))[0]
    dts = np.diff(np.asarray(hist.times))[inside[inside > 0] - 1]    # the steps that land in the window
    return rate if dts.size and rate * dts.max() <= RESOLVED else None


#: ``solve.tol = "floor"`` with modified policy iteration: the relative accuracy asked is one unit
#: roundoff, out of reach by design, so the solver runs until exact evaluations no longer lower the
#: Bellman residual -- the rounding floor of the problem -- and reports the bound it reached there
#: (``diagnostics["error_bound"]``; relative 1e-14 .. 1e-12 at gamma 0.95 .. 0.99 on the built-in
#: problems, 1e-11 at 0.999; docs/getting_started.md)
FLOOR_TOL = float(np.finfo(float).eps)
#: ``solve.tol = "floor"`` with (soft) policy iteration, whose evaluations are exact: it stops
#: when the masses change by at most this (its Bellman residual is second order in that change)
PI_FLOOR_TOL = 1e-12


def solve_to(mdp, obj, method: str, tol) -> Solution:
    """:func:`wgflow.solve` as a study asks it: to ``tol`` or, with ``tol = "floor"``, as
    accurately as double precision allows.

    ``"floor"`` (the default of ``solve.tol``): modified policy iteration (``method="auto"`` on a
    discounted objective) is asked for :data:`FLOOR_TOL` and stops at the rounding floor; the
    :class:`~wgflow.AccuracyWarning` by which :func:`wgflow.solve` reports that floor (an accuracy
    below the one asked) is what was asked for here, so it is not shown, and the bound is in
    ``solution.diagnostics["error_bound"]``. Every other warning passes, in particular an exact
    evaluation that lost accuracy. Policy iteration is asked for :data:`PI_FLOOR_TOL`. A number:
    :func:`wgflow.solve` with that ``tol``, which warns where it is below the floor.
    """
    if not (isinstance(tol, str) and tol == "floor"):
        return solve(mdp, obj, method=method, tol=tol, progress=False)
    resolved = method
    if method == "auto":
        resolved = ("modified_policy_iteration" if isinstance(obj, Discounted)
                    else "policy_iteration")
    if resolved != "modified_policy_iteration":
        if resolved not in ("policy_iteration", "soft_policy_iteration"):
            raise ValidationError(f"solve.tol = 'floor' needs modified or (soft) policy iteration, "
                                  f"which stop at the rounding floor; give a number for {method!r}")
        return solve(mdp, obj, method=method, tol=PI_FLOOR_TOL, progress=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="solve: error bound", category=AccuracyWarning)
        return solve(mdp, obj, method=method, tol=FLOOR_TOL, progress=False)


def _rounding_floor(mdp, obj, sol) -> float:
    ev = evaluate(mdp, sol.policy, obj)
    kappa = 1.0 / (1.0 - obj.gamma) if isinstance(obj, Discounted) else 1.0
    return float(max(abs(ev.J - sol.J), 64 * np.finfo(float).eps * kappa * max(1.0, abs(sol.J))))


def run_study(config=None, overrides=(), progress: bool | None = None, write: bool = True,
              outdir=None, figures: bool | None = None, overwrite: bool = False) -> StudyResult:
    r"""Run a study (the ``wgflow run`` command as a function).

    Parameters
    ----------
    config : path, built-in name, dict or None
        As :func:`wgflow.config.load` takes (None: the default pendulum study).
    overrides : sequence of "key=value" or dict
        Dotted-key overrides, e.g. ``["objective.gamma=0.99", "flows.max_seconds=60"]``.
    progress : bool or None
        Progress bars (tqdm.auto); None: on a terminal or in a notebook.
    write : bool
        Write the HDF5 file, the configuration as TOML, the figures and the animation into
        ``output.dir`` (False: compute only).
    outdir : path, optional
        Overrides ``output.dir``.
    figures : bool, optional
        Overrides ``output.figures`` (and the animation with it when False).
    overwrite : bool
        Replace the results of an earlier study in ``output.dir``; without it an existing results
        file (``NAME.h5``) or ``config.toml`` (written by a study of any name, with its figures)
        stops the study before any work.

    Returns
    -------
    StudyResult

    Raises
    ------
    ConfigError
        A bad configuration, before any work starts.

    Examples
    --------
    >>> import wgflow as wg, tempfile
    >>> res = wg.run_study("lqr1d", ["problem.params.n_states=15", "problem.params.n_actions=11",
    ...                              "flows.schemes=otto,pmd", "flows.max_steps=50", "hessian.k=2",
    ...                              "verify.enabled=false"], write=False, progress=False)
    >>> sorted(res.flows)
    ['otto', 'pmd']
    """
    from . import problems
    from ._progress import bar, enabled as _enabled
    if figures is not None and not figures:
        # before validation: keys that only the figures use (output.animation_scheme) are not
        # checked for a study that draws none
        off = {"output.figures": False, "output.animation": False}
        overrides = ({**overrides, **off} if isinstance(overrides, dict)
                     else list(overrides) + [f"{k}=false" for k in off])
    cfg = _config.load(config, overrides)
    if outdir is not None:
        cfg["output"]["dir"] = str(outdir)
    if figures is not None:
        cfg["output"]["figures"] = bool(figures)
        if not figures:
            cfg["output"]["animation"] = False
    progress = _enabled(progress)
    timings, errors = {}, {}
    T0 = time.perf_counter()
    target = Path(cfg["output"]["dir"]) / f"{cfg['study']['name']}.h5"
    # every study writes config.toml and its figures under fixed names beside NAME.h5: a study of
    # another name in the same directory would replace them
    earlier = [p for p in (target, target.with_name("config.toml")) if p.exists()]
    if write and earlier and not overwrite:
        from .errors import ExistingFileError
        raise ExistingFileError(f"{earlier[0]} exists (an earlier study's results in "
                                f"{target.parent}); pass overwrite=True (wgflow run --overwrite) "
                                "to replace them, or choose another output.dir (-o DIR)")

    # 1. problem, objective, initial policy, schemes: everything the config names must work
    t = time.perf_counter()
    try:
        mdp = problems.get(cfg["problem"]["name"], **cfg["problem"]["params"])
    except ValidationError as exc:
        raise _config.ConfigError("problem.params", str(exc)) from None
    obj = build_objective(cfg)
    pi0 = build_initial(cfg, mdp)
    _preflight(cfg, mdp, obj)
    timings["build"] = time.perf_counter() - t

    stages = ["solve"] + [f"flow {s}" for s in cfg["flows"]["schemes"]]
    stages += ["hessian"] if cfg["hessian"]["enabled"] else []
    stages += ["verify"] if cfg["verify"]["enabled"] else []
    with bar(total=len(stages), desc=f"study {cfg['study']['name']}", enabled=progress, unit="stage") as top:
        def stage(name):
            top.set_postfix_str(name, refresh=True)

        # 2. exact solutions
        stage("solve")
        t = time.perf_counter()
        sol = solve_to(mdp, obj, cfg["solve"]["method"], cfg["solve"]["tol"])
        hard = None
        if cfg["solve"]["hard"]:
            hard = solve_to(mdp, build_objective(cfg, entropy=0.0), "auto", cfg["solve"]["tol"])
        floor = _rounding_floor(mdp, obj, sol)
        timings["solve"] = time.perf_counter() - t
        top.update(1)

        # 3. flows
        runs = {}
        t = time.perf_counter()
        for scheme in cfg["flows"]["schemes"]:
            stage(f"flow {scheme}")
            ts = time.perf_counter()
            try:
                runs[scheme] = _run_flow(cfg, mdp, obj, pi0, sol, scheme, progress, floor)
            except WgflowError as exc:
                runs[scheme] = FlowRun(scheme, wall=time.perf_counter() - ts, error=f"{type(exc).__name__}: {exc}")
                errors[f"flow {scheme}"] = str(exc)
            top.update(1)
        if cfg["flows"]["schemes"]:
            timings["flows"] = time.perf_counter() - t

        # 4. second order
        spectrum = None
        if cfg["hessian"]["enabled"]:
            stage("hessian spectrum")
            t = time.perf_counter()
            try:
                from .hessian import hessian
                h = cfg["hessian"]
                H = hessian(mdp, obj, sol.policy, mobility=h["mobility"])
                vals, vecs = H.spectrum(h["k"], return_vectors=True, method=h["method"])
                spectrum = SpectrumResult(np.asarray(vals), np.asarray(vecs), float(H.kappa),
                                          float(2.0 * vals[0] / H.kappa), dict(H.diagnostics))
            except WgflowError as exc:
                errors["hessian"] = f"{type(exc).__name__}: {exc}"
            timings["hessian"] = time.perf_counter() - t
            top.update(1)

        # 5. checks
        report = None
        if cfg["verify"]["enabled"]:
            from . import verify as _verify
            t = time.perf_counter()
            v = cfg["verify"]

            def vprog(name, i, n):
                stage(f"verify {name} ({i + 1}/{n})")
            try:
                title = (f"{cfg['problem']['name']}: {mdp.n_states} states x {mdp.n_actions} actions, "
                         f"{obj!r}")
                report = _verify.run(mdp, obj, checks=v["checks"], rng=cfg["study"]["seed"],
                                     rates=v["rates"], geodesics=v["geodesics"], progress=vprog,
                                     solution=sol, title=title)
            except WgflowError as exc:
                errors["verify"] = f"{type(exc).__name__}: {exc}"
            timings["verify"] = time.perf_counter() - t
            top.update(1)

    res = StudyResult(config=cfg, mdp=mdp, objective=obj, solution=sol, hard=hard, initial=pi0,
                      flows=runs, spectrum=spectrum, verify=report, floor=floor, timings=timings,
                      errors=errors, diagnostics={"wgflow_version": __version__})
    if write:
        out = Path(cfg["output"]["dir"])
        out.mkdir(parents=True, exist_ok=True)
        cpath = out / "config.toml"
        cpath.write_text(_config.to_toml(cfg))
        res.paths["config"] = str(cpath)
        res.paths["hdf5"] = str(out / f"{cfg['study']['name']}.h5")
        timings["total"] = time.perf_counter() - T0
        res.to_hdf5(res.paths["hdf5"])          # the results are safe before any figure is drawn
        if cfg["output"]["figures"]:
            t = time.perf_counter()
            res.plot(out, progress=progress)
            timings["figures"] = time.perf_counter() - t
            timings["total"] = time.perf_counter() - T0
            _update_attrs(res.paths["hdf5"], res)
    else:
        timings["total"] = time.perf_counter() - T0
    return res
