r"""Parameter sweeps: many studies from one base configuration, serially or on dask.distributed.

A sweep is a base study configuration (:mod:`wgflow.config`) and a set of points, each a few
dotted-key overrides. Every point is one run of :func:`wgflow.run_study`; each run writes its own
HDF5 file; a summary table (CSV and HDF5) gathers the figures of every run (``J*``, final gaps,
predicted and measured rates, ...); figures plot them.

A sweep file (TOML) has these sections::

    [sweep]                       # name, base, outdir, metrics, threads
    name = "otto_rates"
    base = "lqr1d"                # a built-in study config, or a TOML file (relative to this one)
    metrics = ["study"]           # summary columns (SWEEP_METRICS): study, action_moments, wppg_bandit

    [set]                         # overrides applied to every run
    "flows.schemes" = ["otto"]

    [[cases]]                     # optional: named variants, each may have its own base
    case = "pendulum"
    base = "pendulum"
    "problem.params.n_theta" = 31

    [grid]                        # Cartesian product of these values
    "objective.entropy" = [0.1, 0.3, 1.0]

    [list]                        # equal-length lists varied together (one run per position)
    "flows.options.wppg.dt" = [0.1, 0.2]
    "flows.t_end" = [100.0, 50.0]

    [[figures]]                   # one PNG per entry (see plot_sweep)
    name = "rates"
    [[figures.panels]]
    x = "objective.entropy"
    measured = ["verify_rate"]
    predicted = ["predicted_rate"]

The runs are ``cases x list x grid`` (each factor is a single empty point when absent), in that
order. Keys may be quoted dotted keys (``"objective.gamma" = ...``) or TOML tables (``objective.gamma
= ...``); both mean the same dotted key.

Determinism
    A run must give the same numbers on any worker. Wall-clock budgets (``flows.max_seconds`` and
    ``flows.options.<scheme>.max_seconds``) make a run stop wherever the machine happened to be,
    so a sweep sets them to 0 in every run (and refuses a sweep that sets them itself); runs stop
    on flow time, step counts, the gap or a steady state. BLAS (threadpoolctl) and numba are
    pinned to ``sweep.threads`` threads (default 1) in every run, serial or on a worker.

Files (``outdir``)
    ``runs/<label>-<hash>.h5`` -- one study file per run (:class:`wgflow.StudyResult`; its
    attribute ``sweep_run`` holds the run's parameters and summary row), written atomically (a
    temporary name, then a rename) by the process that drives the sweep; ``<hash>`` is the
    SHA-256 of the run's configuration, so a rerun skips every run whose file is there (resume)
    and recomputes the others. ``runs/<label>-<hash>.error.txt`` -- the traceback of a failed
    run (it is retried by the next rerun). ``summary.csv`` and ``summary.h5`` (group
    ``summary``: one 1-D dataset per column, attribute ``columns`` giving their order),
    ``sweep.toml`` (the sweep as run), ``sweep.log`` (one line per event: done, failed,
    skipped), ``<figure>.png``.

Execution
    ``executor="dask"`` (the default when ``distributed`` is installed) runs the pending runs on a
    ``distributed.LocalCluster`` (one process per worker, one thread each) or on an existing
    cluster (``scheduler="tcp://host:8786"`` or a ``distributed.Client``). What is sent to a
    worker is a :class:`RunTask` (the run's configuration as a dict, a few kilobytes); what comes
    back is the run's HDF5 file as bytes and its summary row. A worker that dies mid-run is
    replaced and its run restarted elsewhere by the scheduler; a run that raises is recorded with
    its error and the sweep goes on. ``executor="serial"`` runs them one after the other in this
    process (no dask needed).

Examples
--------
>>> import wgflow as wg, tempfile
>>> spec = {"sweep": {"name": "demo", "base": "lqr1d"},
...         "set": {"problem.params.n_states": 9, "problem.params.n_actions": 7,
...                 "flows.schemes": ["pmd"], "flows.max_steps": 40, "hessian.enabled": False,
...                 "verify.enabled": False, "solve.hard": False},
...         "grid": {"objective.entropy": [0.5, 1.0]}}
>>> res = wg.sweep(spec, outdir=tempfile.mkdtemp(), executor="serial", progress=False)
>>> res.counts["computed"], res.column("objective.entropy").tolist()
(2, [0.5, 1.0])
"""
from __future__ import annotations

import copy
import csv
import datetime as _dt
import hashlib
import itertools
import json
import os
import re
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import config as _config
from .config import ConfigError
from .errors import FileFormatError, LookupFailure, ValidationError, WgflowError
from .version import __version__

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover  (Python 3.10)
    import tomli as tomllib

__all__ = ["sweep", "load_spec", "SweepSpec", "RunTask", "SweepResult", "SWEEP_METRICS",
           "register_metric", "plot_sweep", "read_summary", "builtin_sweeps", "builtin_sweep_path",
           "dask_available"]

#: keys of the ``[sweep]`` section and their defaults
SWEEP_DEFAULTS = {"name": "sweep", "base": None, "outdir": None, "metrics": ["study"], "threads": 1}
_SECTIONS = ("sweep", "set", "grid", "list", "cases", "figures")
_FIGURE_KEYS = {"name", "title", "ncols", "labels", "panels", "panel_size", "legend_columns"}
_PANEL_KEYS = {"x", "measured", "predicted", "series", "where", "logx", "logy", "xlabel", "ylabel",
               "title", "kind", "reference", "hlines"}
#: summary columns that depend on the machine (wall time, which worker), not on the run's inputs
MACHINE_COLUMNS = ("wall_s", "worker", "peak_rss_mb")
_SALT = "wgflow-sweep-run-1"


# =============================================================================================
# metrics: summary columns computed from a StudyResult
# =============================================================================================
@dataclass
class Metric:
    """A family of summary columns: ``compute(result) -> {column: scalar}``; ``check(config)``
    raises :class:`ConfigError` when a run's configuration cannot give them (called before any
    work)."""

    name: str
    compute: Callable
    check: Callable | None = None
    description: str = ""


#: the registered metric families (``[sweep] metrics = [...]``)
SWEEP_METRICS: dict = {}


def register_metric(name: str, compute: Callable, check: Callable | None = None, description: str = ""):
    """Add (or replace) a metric family. ``compute(result: StudyResult) -> dict`` of scalars (float,
    int, bool or str); on a dask cluster the function is sent to the workers with the run, so it
    must be importable there or defined in ``__main__``."""
    SWEEP_METRICS[name] = Metric(name, compute, check, description)
    return SWEEP_METRICS[name]


def _f(x) -> float:
    return float("nan") if x is None else float(x)


def _metric_study(res) -> dict:
    """J*, rounding level, Hessian rate, verify's measured rate, and per scheme: final gap, steps,
    flow time, distance to pi*, measured rate, stop reason, error."""
    out = {"J_star": res.J_star, "J_hard": _f(None if res.hard is None else res.hard.J),
           "floor": float(res.floor)}
    sp = res.spectrum
    out["lambda_min"] = _f(None if sp is None else sp.eigenvalues[0])
    out["kappa"] = _f(None if sp is None else sp.kappa)
    out["predicted_rate"] = _f(None if sp is None else sp.predicted_rate)
    out["verify_rate"] = _f(res.rates.get("verify"))
    if res.verify is not None:
        out["verify_passed"] = bool(res.verify.passed)
        out["verify_failed"] = ",".join(r.check for r in res.verify.failed())
    scale = max(1.0, abs(res.J_star))
    for name, run in res.flows.items():
        ok = run.error is None and run.history is not None
        gap = run.gap(res.J_star) if ok else float("nan")
        out[f"{name}.gap"] = gap
        out[f"{name}.rel_gap"] = gap / scale
        out[f"{name}.steps"] = run.steps
        out[f"{name}.flow_time"] = float(run.history.times[-1]) if ok else float("nan")
        out[f"{name}.distance"] = (float(run.distance[-1]) if ok and run.distance is not None
                                   and len(run.distance) else float("nan"))
        out[f"{name}.measured_rate"] = _f(run.measured_rate)
        out[f"{name}.stop_reason"] = run.stop_reason or ""
        out[f"{name}.error"] = run.error or ""
    return out


def _moments(masses, centers, weights):
    """State-weighted mean of the per-state action mean and variance (1-D actions)."""
    m = np.asarray(masses, dtype=float)
    m = m / m.sum(axis=1, keepdims=True)
    x = centers[:, 0]
    mean = m @ x
    var = m @ (x * x) - mean ** 2
    var = np.maximum(var, 0.0)
    w = np.asarray(weights, dtype=float)
    w = w / w.sum()
    return float(w @ mean), float(w @ var)


_ACTION_NDIM: dict = {}


def _check_1d_actions(cfg):
    from . import problems
    key = json.dumps([cfg["problem"]["name"], cfg["problem"]["params"]], sort_keys=True, default=str)
    if key not in _ACTION_NDIM:          # building the problem once per distinct problem
        A = problems.get(cfg["problem"]["name"], **cfg["problem"]["params"]).actions
        _ACTION_NDIM[key] = 0 if A is None else A.ndim
    if _ACTION_NDIM[key] != 1:
        raise ConfigError("sweep.metrics", "action_moments needs a 1-D action grid; problem "
                                           f"{cfg['problem']['name']!r} has another")


def _metric_action_moments(res) -> dict:
    """Action mean and variance of pi* (``opt.``) and of each scheme's final policy, averaged over
    the states with the weights of pi* (1-D action grids)."""
    A = res.mdp.actions
    if A is None or A.ndim != 1:
        raise ValidationError("action_moments needs a 1-D action grid")
    c, w = A.centers, res.solution.weights
    out = {}
    out["opt.action_mean"], out["opt.action_var"] = _moments(res.solution.policy.masses, c, w)
    for name, run in res.flows.items():
        if run.trajectory is not None and len(run.trajectory):
            out[f"{name}.action_mean"], out[f"{name}.action_var"] = _moments(run.trajectory.masses[-1], c, w)
        else:
            out[f"{name}.action_mean"] = out[f"{name}.action_var"] = float("nan")
    return out


def _bandit_parameters(cfg) -> dict:
    from . import problems
    p = dict(problems.parameters("quadratic_bandit"))
    p.update(cfg["problem"]["params"])
    return p


def _check_wppg_bandit(cfg):
    if cfg["problem"]["name"] != "quadratic_bandit":
        raise ConfigError("problem.name", "the wppg_bandit metric is the closed form on the quadratic "
                                          f"bandit; this run's problem is {cfg['problem']['name']!r}")
    if "wppg" not in cfg["flows"]["schemes"]:
        raise ConfigError("flows.schemes", "the wppg_bandit metric needs the wppg scheme in flows.schemes")
    if "dt" not in cfg["flows"]["options"].get("wppg", {}):
        raise ConfigError("flows.options.wppg.dt", "the wppg_bandit metric needs a fixed step h "
                                                   "(set flows.options.wppg.dt)")
    if cfg["objective"]["entropy"] <= 0:
        raise ConfigError("objective.entropy", "the wppg_bandit metric needs entropy > 0")
    p = _bandit_parameters(cfg)
    h, k = cfg["flows"]["options"]["wppg"]["dt"], float(p["curvature"])
    if not 0 < h * k < 2:
        raise ConfigError("flows.options.wppg.dt", f"h k = {h * k:g}: wppg on the bandit is stable only "
                                                   "for 0 < h k < 2 (docs/wppg.md)")


def _metric_wppg_bandit(res) -> dict:
    r"""WPPG's stationary law on the quadratic bandit ``Q(a) = k/2 (a - c)^2`` against the closed
    form (docs/wppg.md): the fixed point of transport + heat is ``N(c, s_h^2)`` with
    ``s_h^2 = tau / (k (1 - h k / 2))``; its ``W2`` to the Gibbs law ``N(c, tau/k)`` is
    ``s_h - sqrt(tau/k)``; on a grid of step ``da`` the atom variance exceeds ``s_h^2`` by
    ``D / (h k (2 - h k))`` with ``0 <= D <= da^2 / 4`` (``grid_bound``) when displacements are
    large against ``da``."""
    cfg = res.config
    p = _bandit_parameters(cfg)
    k, c = float(p["curvature"]), float(p["center"])
    tau = float(cfg["objective"]["entropy"])
    h = float(cfg["flows"]["options"]["wppg"]["dt"])
    s2 = tau / (k * (1.0 - h * k / 2.0))
    da = float(res.mdp.actions.spacing[0])
    out = {"wppg.h": h, "wppg.closed_form_var": s2, "wppg.closed_form_w2": np.sqrt(s2) - np.sqrt(tau / k),
           "wppg.gibbs_var": tau / k, "wppg.grid_bound": da ** 2 / (4.0 * h * k * (2.0 - h * k)),
           "wppg.da": da, "wppg.hk_sigma_over_da": h * k * np.sqrt(s2) / da,
           "wppg.wall_distance_sd": (float(p["a_max"]) - abs(c)) / np.sqrt(s2)}
    run = res.flows.get("wppg")
    if run is not None and run.trajectory is not None and len(run.trajectory):
        _, var = _moments(run.trajectory.masses[-1], res.mdp.actions.centers, res.solution.weights)
        out["wppg.var"] = var
        out["wppg.var_excess"] = var - s2
    else:
        out["wppg.var"] = out["wppg.var_excess"] = float("nan")
    return out


register_metric("study", _metric_study, description=_metric_study.__doc__)
register_metric("action_moments", _metric_action_moments, _check_1d_actions, _metric_action_moments.__doc__)
register_metric("wppg_bandit", _metric_wppg_bandit, _check_wppg_bandit, _metric_wppg_bandit.__doc__)


_BUILTIN_METRICS = tuple(SWEEP_METRICS)


def compute_metrics(res, names, extra: dict | None = None) -> dict:
    """The columns of each metric family in ``names`` for one study, ``{family: {column: value}}``
    (``extra``: metric families sent along with a task, looked up before the registry)."""
    return {name: ((extra or {}).get(name) or SWEEP_METRICS[name]).compute(res) for name in names}


def _merge_rows(families: dict, names) -> dict:
    row = {}
    for name in names:
        row.update(families[name])
    return row


# =============================================================================================
# the sweep file
# =============================================================================================
def _sweeps_dir():
    from importlib import resources
    return resources.files("wgflow") / "configs" / "sweeps"


def builtin_sweeps() -> list:
    """Names of the sweeps shipped with the package (``wgflow sweep NAME``)."""
    d = _sweeps_dir()
    return sorted(p.name[:-5] for p in d.iterdir() if p.name.endswith(".toml")) if d.is_dir() else []


def builtin_sweep_path(name: str):
    """The packaged TOML file of a built-in sweep."""
    if name not in builtin_sweeps():
        raise ConfigError("", f"no built-in sweep {name!r}; built-in sweeps: {', '.join(builtin_sweeps())}")
    return _sweeps_dir() / f"{name}.toml"


def _flatten(d, prefix="", where="") -> dict:
    """``{"a": {"b": 1}, "c.d": 2}`` -> ``{"a.b": 1, "c.d": 2}`` (leaves are non-table values)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            if not v:
                raise ConfigError(f"{where}{key}", "is an empty table")
            out.update(_flatten(v, key, where))
        else:
            if key in out:
                raise ConfigError(f"{where}{key}", "is given twice")
            out[key] = v
    return out


@dataclass
class RunTask:
    """One run of a sweep, as sent to a worker: ``index`` (position in the sweep), ``run_id``
    (``<label>-<hash>``, the file name), ``hash`` (SHA-256 of the configuration), ``params`` (the
    swept values, by column), ``config`` (the full, validated study configuration), ``metrics``,
    ``threads`` (BLAS and numba threads), ``version`` (the driving process's wgflow) and
    ``custom_metrics`` (the :class:`Metric` objects of metric families registered by the user:
    a worker process does not have them in its registry)."""

    index: int
    run_id: str
    hash: str
    params: dict
    config: dict
    metrics: list
    threads: int = 1
    version: str = __version__
    custom_metrics: dict = field(default_factory=dict)

    @property
    def filename(self) -> str:
        return f"{self.run_id}.h5"


@dataclass
class SweepSpec:
    """A parsed sweep file (module docstring); :meth:`tasks` expands it into runs."""

    name: str
    base: object
    outdir: str
    set: dict
    grid: dict
    list: dict
    cases: list
    metrics: list
    figures: list
    threads: int = 1
    source: str | None = None
    raw: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    # ------------------------------------------------------------------ expansion
    def points(self) -> list:
        """``[(params, overrides, base)]`` in sweep order (cases x list x grid)."""
        cases = self.cases or [{"case": None, "base": None, "overrides": {}}]
        n_list = len(next(iter(self.list.values()))) if self.list else 1
        list_points = [{k: v[i] for k, v in self.list.items()} for i in range(n_list)]
        keys = list(self.grid)
        grid_points = [dict(zip(keys, combo)) for combo in itertools.product(*self.grid.values())]
        out = []
        for case in cases:
            for lp in list_points:
                for gp in grid_points:
                    params = {}
                    if case["case"] is not None:
                        params["case"] = case["case"]
                    params.update(lp)
                    params.update(gp)
                    ov = dict(self.set)
                    ov.update(case["overrides"])
                    ov.update(lp)
                    ov.update(gp)
                    out.append((params, ov, case["base"] if case["base"] is not None else self.base))
        return out

    def tasks(self) -> list:
        """Every run as a :class:`RunTask`, configurations loaded and validated (raises
        :class:`ConfigError` naming the run and the key before any work)."""
        tasks, seen = [], {}
        built, last = {}, {}            # outcomes of _check_buildable; the last problem built
        for i, (params, ov, base) in enumerate(self.points()):
            where = _describe(params) or "the run"
            overrides = list(ov.items())
            overrides += [("study.name", f"{self.name}-{i:04d}"), ("flows.max_seconds", 0.0),
                          ("output.figures", False), ("output.animation", False)]
            try:
                cfg = _config.load(_resolve_base(base, self.source), overrides)
                for scheme, opts in cfg["flows"]["options"].items():
                    if "max_seconds" in opts:
                        opts["max_seconds"] = 0.0
                for m in self.metrics:
                    if SWEEP_METRICS[m].check is not None:
                        SWEEP_METRICS[m].check(cfg)
                _check_buildable(cfg, built, last)
            except ConfigError as exc:
                msg = str(exc)
                if exc.key and msg.startswith(f"{exc.key}: "):
                    msg = msg[len(exc.key) + 2:]
                raise ConfigError(exc.key, f"{msg} (in run {i}: {where})") from None
            h = config_hash(cfg)
            if h in seen:
                raise ConfigError("", f"runs {seen[h]} and {i} ({where}) have the same configuration; "
                                      "a swept key changes nothing")
            seen[h] = i
            custom = {m: SWEEP_METRICS[m] for m in self.metrics if m not in _BUILTIN_METRICS}
            tasks.append(RunTask(i, f"{_slug(params, i)}-{h[:12]}", h, params, cfg, list(self.metrics),
                                 self.threads, custom_metrics=custom))
        return tasks

    def to_toml(self) -> str:
        """The sweep as TOML (``sweep.toml`` in the output directory; ``wgflow sweep`` reads it
        back). Bases given as relative paths are written as absolute paths."""
        def base_text(b):
            r = _resolve_base(b, self.source)
            return str(Path(r).resolve()) if isinstance(r, str) and Path(r).exists() else r

        L = ["[sweep]"]
        for k in SWEEP_DEFAULTS:
            v = getattr(self, k)
            if k == "base":
                v = base_text(v)
            if v is not None:
                L.append(f"{k} = {_toml_any(v)}")
        for sec in ("set", "grid", "list"):
            d = getattr(self, sec)
            if d:
                L += ["", f"[{sec}]"] + [f"{_toml_any(k)} = {_toml_any(v)}" for k, v in d.items()]
        for case in self.cases:
            L += ["", "[[cases]]", f"case = {_toml_any(case['case'])}"]
            if case["base"] is not None:
                L.append(f"base = {_toml_any(base_text(case['base']))}")
            L += [f"{_toml_any(k)} = {_toml_any(v)}" for k, v in case["overrides"].items()]
        for fig in self.figures:
            L += ["", "[[figures]]"] + [f"{k} = {_toml_any(v)}" for k, v in fig.items() if k != "panels"]
            for p in fig["panels"]:
                L += ["", "[[figures.panels]]"] + [f"{k} = {_toml_any(v)}" for k, v in p.items()]
        return "\n".join(L) + "\n"


def _check_buildable(cfg: dict, outcomes: dict, last: dict):
    """The checks :func:`wgflow.run_study` makes once the problem is built (the initial policy
    against the action grid, every scheme constructed with its options), made here in the driving
    process: a bad value stops the sweep before any run instead of failing its runs on the workers.
    ``outcomes`` caches the result by what it depends on; ``last`` holds the last problem built
    (runs of one problem are neighbours in sweep order)."""
    from . import problems
    from .study import _preflight, build_initial, build_objective
    key = json.dumps(_plain([cfg["problem"], cfg["objective"], cfg["initial"], cfg["flows"]["schemes"],
                             cfg["flows"]["options"]]), sort_keys=True)
    if key not in outcomes:
        outcomes[key] = None
        pkey = json.dumps(_plain(cfg["problem"]), sort_keys=True)
        try:
            if last.get("key") != pkey:
                last.clear()
                try:
                    mdp = problems.get(cfg["problem"]["name"], **cfg["problem"]["params"])
                except ValidationError as exc:
                    raise ConfigError("problem.params", str(exc)) from None
                last.update(key=pkey, mdp=mdp)
            obj = build_objective(cfg)
            build_initial(cfg, last["mdp"])
            _preflight(cfg, last["mdp"], obj)
        except ConfigError as exc:
            outcomes[key] = exc
    if outcomes[key] is not None:
        raise outcomes[key]


def _toml_any(v) -> str:
    """A TOML value (dicts as inline tables, keys quoted)."""
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_config._toml_value(str(k))} = {_toml_any(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_any(x) for x in v) + "]"
    return _config._toml_value(v)


def _describe(params) -> str:
    return ", ".join(f"{k} = {v}" for k, v in params.items())


def _slug(params, index) -> str:
    parts = []
    for k, v in params.items():
        short = k.rsplit(".", 1)[-1]
        val = f"{v:g}" if isinstance(v, float) else str(v)
        parts.append(val if k == "case" else f"{short}={val}")
    s = re.sub(r"[^A-Za-z0-9_.=+-]+", "_", "_".join(parts)).strip("_")
    return (s[:80] if s else f"run{index:04d}")


def config_hash(cfg: dict) -> str:
    """SHA-256 of what determines a run's results: the configuration without ``study.name`` and
    the ``output`` section."""
    c = copy.deepcopy(cfg)
    c.pop("output", None)
    c.get("study", {}).pop("name", None)
    text = json.dumps([_SALT, _plain(c)], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(obj):
    """Plain Python values for ``json.dumps`` (numpy scalars and arrays converted); NaN and inf
    stay floats, written as ``NaN``/``Infinity`` tokens that ``json.loads`` reads back exactly."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


def _resolve_base(base, source):
    """A base given as a relative TOML path is read relative to the sweep file."""
    if isinstance(base, (dict, type(None))):
        return base
    b = str(base)
    if source is not None and (b.endswith(".toml") or "/" in b):
        p = Path(b)
        if not p.is_absolute():
            cand = Path(source).parent / p
            if cand.exists():
                return str(cand)
    return b


def _as_list(key, v):
    if not isinstance(v, (list, tuple)) or len(v) == 0:
        raise ConfigError(key, f"must be a non-empty list of values, got {v!r}")
    return list(v)


def _check_no_budget(key, value):
    if key.endswith("max_seconds") and (key == "flows.max_seconds" or re.fullmatch(r"flows\.options\.\w+\.max_seconds", key)):
        vals = value if isinstance(value, list) else [value]
        if any(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in vals):
            raise ConfigError(key, "wall-clock budgets make a run's result depend on the speed and load "
                                   "of the machine it runs on, so sweeps do not allow them (every run "
                                   "gets max_seconds = 0); bound runs with flows.t_end, flows.max_steps, "
                                   "flows.stop_gap or flows.steady_state")


def load_spec(source, overrides=(), grid=None) -> SweepSpec:
    """Read a sweep: a TOML file, the name of a built-in sweep, or a dict with the file's sections.

    Parameters
    ----------
    source : path, str or dict
    overrides : sequence of "key=value"
        Extra entries of ``[set]`` (applied to every run), e.g. ``["flows.max_steps=100"]``; they
        also replace a case's own value of the same key.
    grid : dict, optional
        Extra (or replaced) axes of ``[grid]``, ``{dotted_key: [values]}``.

    Raises
    ------
    ConfigError
        An unknown section or key, a value of the wrong type, lists of unequal length in
        ``[list]``, a wall-clock budget, a metric that does not exist or does not apply, a bad
        study key in any run (the run is named).
    """
    src = None
    if isinstance(source, dict):
        raw = copy.deepcopy(source)
    else:
        p = Path(str(source))
        # a file, else a built-in name: a directory of that name (the sweep's output directory,
        # say) does not hide the built-in sweep
        if p.is_file() or (p.suffix == ".toml" and not p.is_dir()):
            if not p.exists():
                raise ConfigError("", f"no such sweep file: {p}")
            text, src = p.read_text(), str(p)
        elif str(source) in builtin_sweeps():
            path = builtin_sweep_path(str(source))
            text, src = path.read_text(), str(path)
        elif p.is_dir():
            raise ConfigError("", f"{p} is a directory, not a sweep file"
                                  + (f" (to rerun the sweep it holds: {p / 'sweep.toml'})"
                                     if (p / "sweep.toml").is_file() else "")
                                  + f"; built-in sweeps: {', '.join(builtin_sweeps()) or 'none'}")
        else:
            raise ConfigError("", f"no sweep file {str(source)!r} and no built-in sweep of that name; "
                                  f"built-in sweeps: {', '.join(builtin_sweeps()) or 'none'}")
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("", f"{source} is not valid TOML: {exc}") from exc
    for k in raw:
        if k not in _SECTIONS:
            raise ConfigError(k, f"unknown section of a sweep; allowed: {', '.join(_SECTIONS)}")
    sw = dict(SWEEP_DEFAULTS)
    sec = raw.get("sweep", {})
    if not isinstance(sec, dict):
        raise ConfigError("sweep", f"must be a table, got {sec!r}")
    for k, v in sec.items():
        if k not in SWEEP_DEFAULTS:
            raise ConfigError(f"sweep.{k}", f"unknown key; allowed: {', '.join(SWEEP_DEFAULTS)}")
        sw[k] = v
    _config._string("sweep.name", sw["name"], r"[A-Za-z0-9_.+-]+", "use letters, digits, '_', '.', '+' or '-'")
    if sw["base"] is not None and not isinstance(sw["base"], (str, dict)):
        raise ConfigError("sweep.base", f"must be a built-in config name or a TOML path, got {sw['base']!r}")
    metrics = sw["metrics"]
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    metrics = _config._choice_list("sweep.metrics", metrics, tuple(SWEEP_METRICS), "metric")
    _config._integer("sweep.threads", sw["threads"], lo=1, hi=1024)
    outdir = sw["outdir"] or f"wgflow-sweep-{sw['name']}"
    _config._string("sweep.outdir", outdir)

    sets = _flatten(raw.get("set", {}), where="set: ")
    cli = {}            # command-line overrides: applied last, over [set] and over every case
    for o in overrides:
        k, v = _config.parse_override(o) if isinstance(o, str) else o
        # a table merges key by key, as in [set]: --set 'problem.params={n_theta=15}' is n_theta
        cli.update(_flatten({k: v}, where="--set: ") if isinstance(v, dict) else {k: v})
    sets.update(cli)
    g = _flatten(raw.get("grid", {}), where="grid: ")
    for k, v in (grid or {}).items():
        g[k] = v
    g = {k: _as_list(f"grid.{k}", v) for k, v in g.items()}
    lst = {k: _as_list(f"list.{k}", v) for k, v in _flatten(raw.get("list", {}), where="list: ").items()}
    if lst and len({len(v) for v in lst.values()}) > 1:
        raise ConfigError("list", "the lists of [list] are varied together and must have equal lengths; got "
                          + ", ".join(f"{k}: {len(v)}" for k, v in lst.items()))
    both = set(g) & set(lst)
    if both:
        raise ConfigError(f"grid.{sorted(both)[0]}", "is swept both in [grid] and in [list]")
    both = set(sets) & (set(g) | set(lst))
    if both:
        raise ConfigError(f"set.{sorted(both)[0]}", "is set for every run ([set] or --set) and swept too")
    cases = []
    raw_cases = raw.get("cases", [])
    if not isinstance(raw_cases, list):
        raise ConfigError("cases", "must be an array of tables ([[cases]])")
    names = set()
    for i, c in enumerate(raw_cases):
        if not isinstance(c, dict):
            raise ConfigError(f"cases[{i}]", f"must be a table, got {c!r}")
        c = dict(c)
        label = c.pop("case", None)
        if not isinstance(label, str) or not re.fullmatch(r"[A-Za-z0-9_.+-]+", label or ""):
            raise ConfigError(f"cases[{i}].case", f"every case needs a name (letters, digits, '_', '.', "
                                                  f"'+', '-'), got {label!r}")
        if label in names:
            raise ConfigError(f"cases[{i}].case", f"case {label!r} is listed twice")
        names.add(label)
        base = c.pop("base", None)
        ov = _flatten(c, where=f"cases[{i}] ({label}): ")
        for k, v in cli.items():      # --set wins over the case's own value of the key
            if k in ov:
                ov[k] = v
        both = (set(ov) & set(g)) | (set(ov) & set(lst))
        if both:
            raise ConfigError(f"cases[{i}].{sorted(both)[0]}", "is set by the case and swept too")
        cases.append({"case": label, "base": base, "overrides": ov})
    for k, v in itertools.chain(sets.items(), g.items(), lst.items(),
                                *(c["overrides"].items() for c in cases)):
        _check_no_budget(k, v)
    figures = raw.get("figures", [])
    if not isinstance(figures, list):
        raise ConfigError("figures", "must be an array of tables ([[figures]])")
    for i, fig in enumerate(figures):
        _check_figure(fig, f"figures[{i}]")
    if sw["base"] is None and not any(c["base"] for c in cases):
        sw["base"] = "pendulum"
    spec = SweepSpec(name=sw["name"], base=sw["base"], outdir=outdir, set=sets, grid=g, list=lst, cases=cases,
                     metrics=metrics, figures=figures, threads=sw["threads"], source=src, raw=raw)
    return spec


def _check_figure(fig, where):
    if not isinstance(fig, dict):
        raise ConfigError(where, f"must be a table, got {fig!r}")
    for k in fig:
        if k not in _FIGURE_KEYS:
            raise ConfigError(f"{where}.{k}", f"unknown key; allowed: {', '.join(sorted(_FIGURE_KEYS))}")
    _config._string(f"{where}.name", fig.get("name"), r"[A-Za-z0-9_.+-]+", "it names the PNG file")
    panels = fig.get("panels")
    if not isinstance(panels, list) or not panels:
        raise ConfigError(f"{where}.panels", "needs at least one panel ([[figures.panels]])")
    for j, p in enumerate(panels):
        pw = f"{where}.panels[{j}]"
        if not isinstance(p, dict):
            raise ConfigError(pw, f"must be a table, got {p!r}")
        for k in p:
            if k not in _PANEL_KEYS:
                raise ConfigError(f"{pw}.{k}", f"unknown key; allowed: {', '.join(sorted(_PANEL_KEYS))}")
        _config._string(f"{pw}.x", p.get("x"))
        if not p.get("measured") and not p.get("predicted"):
            raise ConfigError(pw, "give measured and/or predicted columns")
        kind = p.get("kind", "values")
        _config._choice(f"{pw}.kind", kind, ("values", "relative_error"), "kind")
        if kind == "relative_error" and not (p.get("reference") or p.get("predicted")):
            raise ConfigError(f"{pw}.reference", "a relative_error panel needs a reference column")


# =============================================================================================
# running one task (on a worker or in this process)
# =============================================================================================
def _pin_threads(n: int):
    """Limit BLAS/OpenMP (threadpoolctl) and numba to ``n`` threads; returns an undo function."""
    from threadpoolctl import threadpool_limits
    undo = [threadpool_limits(limits=n).restore_original_limits]
    try:
        import numba
        prev = numba.get_num_threads()
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        undo.append(lambda: numba.set_num_threads(prev))
    except (ImportError, ValueError):  # pragma: no cover
        pass

    def restore():
        for f in reversed(undo):
            f()
    return restore


def _thread_env(n: int) -> dict:
    """Environment of a worker process: every threading library limited to ``n`` threads."""
    v = str(int(n))
    return {"OMP_NUM_THREADS": v, "OPENBLAS_NUM_THREADS": v, "MKL_NUM_THREADS": v,
            "VECLIB_MAXIMUM_THREADS": v, "NUMEXPR_NUM_THREADS": v,
            "MPLBACKEND": "Agg"}


def _peak_rss_mb() -> float:
    try:
        import resource
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return float(r) / (1024.0 ** 2 if sys.platform == "darwin" else 1024.0)
    except (ImportError, OSError):  # pragma: no cover
        return float("nan")


def execute_run(task: RunTask, restore_threads: bool = True) -> dict:
    """Run one task: the study, its summary row, its HDF5 file as bytes. Never raises: a failure
    comes back as ``status = "failed"`` with the error and the traceback.

    Returns a dict with ``index``, ``run_id``, ``hash``, ``status`` (``ok``, ``partial``: some
    stage of the study failed, see ``error``; ``failed``), ``error``, ``traceback``, ``row``,
    ``data`` (bytes or None), ``wall``, ``worker`` (``host:pid``), ``peak_rss_mb``.
    """
    import tempfile
    t0 = time.perf_counter()
    out = {"index": task.index, "run_id": task.run_id, "hash": task.hash, "status": "failed", "error": "",
           "traceback": "", "row": {}, "data": None, "worker": f"{socket.gethostname()}:{os.getpid()}"}
    restore = _pin_threads(task.threads)
    try:
        if task.version != __version__:
            raise WgflowError(f"this worker has wgflow {__version__}, the sweep was started with "
                              f"{task.version}; install the same version on every worker")
        from .study import run_study
        res = run_study(task.config, write=False, progress=False)
        families = compute_metrics(res, task.metrics, task.custom_metrics)
        row = _merge_rows(families, task.metrics)
        wall = time.perf_counter() - t0
        info = {"run_id": task.run_id, "hash": task.hash, "params": task.params, "metrics": task.metrics,
                "metric_rows": families, "status": "partial" if res.errors else "ok",
                "error": "; ".join(f"{k}: {v}" for k, v in res.errors.items()), "wall": wall,
                "worker": out["worker"], "threads": task.threads, "peak_rss_mb": _peak_rss_mb()}
        with tempfile.TemporaryDirectory(prefix="wgflow-sweep-") as d:
            path = Path(d) / task.filename
            res.to_hdf5(path)
            from .h5 import edit_sealed
            with edit_sealed(path) as f:
                f.attrs["sweep_run"] = json.dumps(_plain(info))
            data = path.read_bytes()
        out.update(status=info["status"], error=info["error"], row=row, data=data, wall=wall)
    except Exception as exc:  # a failing run is recorded, whatever it raised
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["traceback"] = traceback.format_exc()
    finally:
        if restore_threads:
            restore()
    out.setdefault("wall", time.perf_counter() - t0)
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def _execute_on_worker(task: RunTask) -> dict:
    # a worker process is dedicated to runs: its thread limits stay in place between runs
    return execute_run(task, restore_threads=False)


# =============================================================================================
# files
# =============================================================================================
def _write_atomic(path: Path, data: bytes):
    """Write ``data`` under a temporary name, fsync, rename over ``path`` (as :class:`wgflow.h5.atomic_h5`)."""
    from .h5 import clean_orphans, fsync_dir, temp_name
    clean_orphans(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _stored_run(path: Path, task: RunTask):
    """The ``sweep_run`` record of a complete result file for ``task``, or None (absent, damaged,
    or another configuration)."""
    import h5py
    from .h5 import check_bytes
    if not path.exists():
        return None
    try:
        check_bytes(path)
        with h5py.File(path, "r") as f:
            if str(f.attrs.get("wgflow_type", "")) != "Study" or "sweep_run" not in f.attrs:
                return None
            info = json.loads(f.attrs["sweep_run"])
    except (OSError, ValueError, KeyError, FileFormatError):
        return None
    if info.get("hash") != task.hash:
        return None
    families = info.get("metric_rows", {})
    missing = [m for m in task.metrics if m not in families]
    if missing:                  # metric families added since the run: computed from the file
        from .study import StudyResult
        try:
            res = StudyResult.from_hdf5(path)
        except WgflowError:
            return None
        families.update(compute_metrics(res, missing, task.custom_metrics))
    info["row"] = _merge_rows(families, task.metrics)
    return info


def _journal(path: Path, *fields):
    stamp = _dt.datetime.now().isoformat(timespec="seconds")
    with open(path, "a") as fh:
        fh.write(" ".join([stamp] + [str(x) for x in fields]) + "\n")


# =============================================================================================
# the result
# =============================================================================================
@dataclass
class SweepResult:
    """What a sweep produced.

    Attributes
    ----------
    spec : SweepSpec
    rows : list of dict
        One per run, in sweep order: ``index``, ``run_id``, the swept values (by dotted key, and
        ``case``), ``status`` (``ok`` / ``partial`` / ``failed`` / ``pending``), ``error``, the
        metric columns, ``wall_s``, ``worker``, ``peak_rss_mb``, ``file``.
    counts : dict
        ``runs``, ``computed`` (run by this call, failed ones included), ``skipped`` (complete
        result files found), ``failed``.
    paths : dict
        ``outdir``, ``runs``, ``summary_csv``, ``summary_h5``, ``journal``, ``figures`` (list).
    diagnostics : dict
        ``executor``, ``workers``, ``scheduler``, ``wall`` (seconds), ``notes`` (what the sweep
        changed in the runs' configurations).
    """

    spec: SweepSpec
    rows: list
    counts: dict
    paths: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)

    @property
    def columns(self) -> list:
        return _columns(self.rows)

    def column(self, name: str) -> np.ndarray:
        """One column of the summary as an array (NaN or "" where a run has no value)."""
        t = _table(self.rows)
        if name not in t:
            raise LookupFailure(f"no column {name!r} in the sweep summary; columns: {', '.join(t)}")
        return t[name]

    def table(self) -> dict:
        """The summary as ``{column: ndarray}`` (what ``summary.h5`` holds)."""
        return _table(self.rows)

    def to_pandas(self):
        """The summary as a ``pandas.DataFrame`` (needs pandas)."""
        import pandas as pd
        t = self.table()
        return pd.DataFrame({k: t[k] for k in self.columns})

    @property
    def failed(self) -> list:
        return [r for r in self.rows if r["status"] == "failed"]

    def summary(self) -> str:
        """A short text report: counts, where the files are, the failed runs."""
        c, d = self.counts, self.diagnostics
        L = [f"wgflow sweep '{self.spec.name}': {c['runs']} runs ({c['computed']} computed, {c['skipped']} "
             f"already complete, {c['failed']} failed), executor {d.get('executor')}"
             + (f" ({d['workers']} worker{'s' if d['workers'] > 1 else ''})" if d.get("workers") else "")
             + f", {d.get('wall', 0.0):.1f} s"]
        for n in d.get("notes", []):
            L.append(f"  note: {n}")
        for r in self.failed:
            L.append(f"  FAILED {r['run_id']}: {r['error']}")
        for r in self.rows:
            if r["status"] == "partial":
                L.append(f"  stage errors in {r['run_id']}: {r['error']}")
        for k in ("summary_csv", "summary_h5", "runs", "journal"):
            if self.paths.get(k):
                L.append(f"  {k:12s} {self.paths[k]}")
        for p in self.paths.get("figures", []):
            L.append(f"  figure       {p}")
        return "\n".join(L)

    def plot(self, outdir=None, dpi: int = 120) -> list:
        """Draw the figures of the sweep file into ``outdir`` (default: the sweep's); returns the paths."""
        outdir = Path(self.paths.get("outdir", self.spec.outdir) if outdir is None else outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        out = []
        import matplotlib.pyplot as plt
        for fig_spec in self.spec.figures:
            fig = plot_sweep(self.table(), fig_spec)
            p = outdir / f"{fig_spec['name']}.png"
            fig.savefig(p, dpi=dpi)
            plt.close(fig)
            out.append(str(p))
        return out

    def __repr__(self):
        c = self.counts
        return (f"<SweepResult '{self.spec.name}': {c['runs']} runs, {c['computed']} computed, "
                f"{c['skipped']} skipped, {c['failed']} failed>")


_FIRST = ("index", "run_id")
_LAST = ("status", "error")
_TAIL = ("wall_s", "worker", "peak_rss_mb", "file")


def _columns(rows) -> list:
    params, metrics = [], []
    for r in rows:
        for k in r.get("_params", ()):
            if k not in params:
                params.append(k)
        for k in r:
            if (k not in _FIRST and k not in _LAST and k not in _TAIL and not k.startswith("_")
                    and k not in params and k not in metrics):
                metrics.append(k)
    return list(_FIRST) + params + list(_LAST) + metrics + list(_TAIL)


def _table(rows) -> dict:
    cols = _columns(rows)
    out = {}
    for c in cols:
        vals = [r.get(c) for r in rows]
        present = [v for v in vals if v is not None]
        if present and all(isinstance(v, (bool, np.bool_)) for v in present) and len(present) == len(vals):
            out[c] = np.array(vals, dtype=bool)
        elif present and all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                             for v in present) and len(present) == len(vals):
            out[c] = np.array(vals, dtype=np.int64)
        elif all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
                 for v in present):
            out[c] = np.array([np.nan if v is None else float(v) for v in vals], dtype=float)
        else:
            out[c] = np.array([_text(v) for v in vals], dtype=object)
    return out


def _text(v) -> str:
    """A cell of a text column; booleans spelled as a boolean column's CSV cells (a column of
    flags becomes text when a run has no value, e.g. a failed run)."""
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def _write_summary(rows, outdir: Path) -> tuple:
    import h5py
    t = _table(rows)
    cols = _columns(rows)
    csv_path, h5_path = outdir / "summary.csv", outdir / "summary.h5"
    tmp = csv_path.with_name(f".summary.csv.tmp-{os.getpid()}")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for i in range(len(rows)):
            w.writerow([_csv_cell(t[c][i]) for c in cols])
    os.replace(tmp, csv_path)
    from .h5 import atomic_h5
    with atomic_h5(h5_path, where="sweep summary") as f:
        f.attrs["wgflow_type"] = "SweepSummary"
        f.attrs["wgflow_version"] = __version__
        g = f.create_group("summary")
        g.attrs["columns"] = json.dumps(cols)
        for c in cols:
            a = t[c]
            if a.dtype == object:
                g.create_dataset(c, data=np.array([str(x) for x in a], dtype=h5py.string_dtype()))
            else:
                g.create_dataset(c, data=a)
    return csv_path, h5_path


def _csv_cell(v):
    if isinstance(v, (float, np.floating)):
        return "" if np.isnan(v) else repr(float(v))      # repr: the float reads back exactly
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    return v


def read_summary(path) -> dict:
    """The summary table of a sweep (``summary.h5``, or an output directory) as ``{column: array}``
    in column order, read with h5py (strings as ``str``)."""
    import h5py
    p = Path(path)
    if p.is_dir():
        p = p / "summary.h5"
    if not p.exists():
        from .errors import MissingFileError
        raise MissingFileError(f"no sweep summary at {p}")
    from .h5 import check_bytes
    check_bytes(p)
    try:
        with h5py.File(p, "r") as f:
            g = f["summary"]
            cols = json.loads(g.attrs["columns"])
            out = {}
            for c in cols:
                a = g[c][...]
                if a.dtype.kind in ("O", "S"):
                    a = np.array([x.decode() if isinstance(x, bytes) else str(x) for x in a], dtype=object)
                out[c] = a
            return out
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise FileFormatError(f"{p} is not a wgflow sweep summary: {exc}") from exc


# =============================================================================================
# the driver
# =============================================================================================
def dask_available() -> bool:
    """Whether ``distributed`` can be imported (``pip install wgflow[sweep]``)."""
    import importlib.util
    return importlib.util.find_spec("distributed") is not None


def sweep(config, overrides=(), *, grid=None, outdir=None, executor: str = "auto", scheduler=None,
          workers: int | None = None, memory_limit="auto", resume: bool = True, figures: bool = True,
          progress: bool | None = None, callback: Callable | None = None, dpi: int = 120) -> SweepResult:
    r"""Run a parameter sweep (the ``wgflow sweep`` command as a function).

    Every run is :func:`wgflow.run_study` on the base configuration with the run's overrides;
    wall-clock budgets are set to 0 and BLAS/numba pinned to ``sweep.threads`` threads so that a
    run gives the same numbers wherever it runs. The sweep file, the output files and running on
    a cluster: docs/sweeps.md and the docstring of the module ``wgflow.sweep``.

    Parameters
    ----------
    config : path, str or dict
        A sweep file, the name of a built-in sweep (:func:`builtin_sweeps`), or a dict with the
        file's sections.
    overrides : sequence of "key=value"
        Added to ``[set]``: applied to every run (over a case's own value of the key).
    grid : dict, optional
        Extra or replaced ``[grid]`` axes, ``{dotted_key: [values]}``.
    outdir : path, optional
        Overrides ``sweep.outdir``.
    executor : {"auto", "dask", "serial"}
        ``auto``: dask when ``distributed`` is installed or a ``scheduler`` is given, else serial.
    scheduler : str or distributed.Client, optional
        Address of a running dask scheduler (``tcp://host:8786``) or a client; default: a
        ``LocalCluster`` started for the sweep and closed after it.
    workers : int, optional
        LocalCluster size (default: the CPU count, at most the number of pending runs); refused
        with the serial executor or a ``scheduler``, which do not use it.
    memory_limit : str or float
        Per-worker memory limit of the LocalCluster (dask's syntax: ``"auto"``, ``"4GiB"``, a
        fraction <= 1 of the machine's memory, 0 for none); checked before any work, and refused
        like ``workers`` where no LocalCluster is started.
    resume : bool
        Skip runs whose result file is complete (False: recompute and overwrite every run).
    figures : bool
        Draw the sweep's figures.
    progress : bool or None
        A progress bar over runs (tqdm.auto); None: on a terminal or in a notebook.
    callback : callable, optional
        Called in this process as ``callback(row)`` after each run finishes (or fails).

    Returns
    -------
    SweepResult

    Raises
    ------
    ConfigError
        A bad sweep or run configuration, before any run starts.

    Examples
    --------
    >>> import wgflow as wg, tempfile
    >>> spec = {"sweep": {"name": "demo", "base": "lqr1d"},
    ...         "set": {"problem.params.n_states": 9, "problem.params.n_actions": 7,
    ...                 "flows.schemes": ["pmd"], "flows.max_steps": 40, "hessian.enabled": False,
    ...                 "verify.enabled": False, "solve.hard": False},
    ...         "grid": {"objective.entropy": [0.5, 1.0]}}
    >>> res = wg.sweep(spec, outdir=tempfile.mkdtemp(), executor="serial", progress=False)
    >>> res.counts
    {'runs': 2, 'computed': 2, 'skipped': 0, 'failed': 0}
    >>> [str(s) for s in res.column("status")]
    ['ok', 'ok']
    """
    from ._progress import bar, enabled as _enabled
    T0 = time.perf_counter()
    spec = load_spec(config, overrides, grid)
    if outdir is not None:
        spec.outdir = str(outdir)
    tasks = spec.tasks()
    if not tasks:
        raise ConfigError("", "the sweep has no runs")
    notes = []
    budgets = _base_budgets(spec)
    if budgets:
        notes.append("wall-clock budgets disabled in every run (" + ", ".join(budgets) + " -> 0): results "
                     "must not depend on the machine's speed; runs stop on flow time, steps, gap or steady state")
    notes.append(f"BLAS and numba threads per run: {spec.threads}")
    _config._choice("executor", executor, ("auto", "dask", "serial"), "executor")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError("workers", f"must be a whole number >= 1 (or None: one per CPU), got {workers!r}")
    if callback is not None and not callable(callback):
        raise ConfigError("callback", f"must be callable (or None), got {callback!r}")
    kind = executor
    if kind == "auto":
        kind = "dask" if (scheduler is not None or dask_available()) else "serial"
    if kind == "dask" and not dask_available():
        raise ConfigError("executor", "the dask executor needs dask.distributed: pip install 'wgflow[sweep]'")
    _check_executor_options(kind, scheduler, workers, memory_limit)
    out = Path(spec.outdir)
    runs_dir = out / "runs"
    for d in (out, runs_dir):
        if d.exists() and not d.is_dir():
            raise ConfigError("outdir", f"{d} is a file, not a directory; give another output directory")
    runs_dir.mkdir(parents=True, exist_ok=True)
    (out / "sweep.toml").write_text(spec.to_toml())
    journal = out / "sweep.log"

    rows = {}
    pending, skipped = [], []
    for t in tasks:
        info = _stored_run(runs_dir / t.filename, t) if resume else None
        if info is not None:
            rows[t.index] = _row(t, info["status"], info.get("error", ""), info["row"], info.get("wall"),
                                 info.get("worker"), info.get("peak_rss_mb"), t.filename)
            skipped.append(t.run_id)
        else:
            pending.append(t)
            rows[t.index] = _row(t, "pending", "", {}, None, None, None, None)
    counts = {"runs": len(tasks), "computed": 0, "skipped": len(tasks) - len(pending), "failed": 0}
    by_index = {t.index: t for t in tasks}

    def done(res: dict):
        t = by_index[res["index"]]
        path = runs_dir / t.filename
        err_path = runs_dir / f"{t.run_id}.error.txt"
        if res["data"] is not None:
            _write_atomic(path, res["data"])
            if err_path.exists():
                err_path.unlink()
            _journal(journal, "done", t.run_id, f"status={res['status']}", f"worker={res['worker']}",
                     f"wall={res['wall']:.2f}s")
        else:
            err_path.write_text(f"run {t.index} ({_describe(t.params)}), worker {res['worker']}\n\n"
                                f"{res.get('traceback') or res['error']}\n")
            _journal(journal, "failed", t.run_id, f"worker={res['worker']}", f"error={res['error']!r}")
            counts["failed"] += 1
        counts["computed"] += 1
        rows[t.index] = _row(t, res["status"], res["error"], res["row"], res["wall"], res["worker"],
                             res.get("peak_rss_mb"), t.filename if res["data"] is not None else None)
        pb.update(1)
        pb.set_postfix_str(f"failed {counts['failed']}" if counts["failed"] else "", refresh=True)
        if callback is not None:
            callback(dict(rows[t.index]))

    diag = {"executor": "none", "workers": 0, "scheduler": None, "notes": notes}
    _journal(journal, "start", spec.name, f"runs={len(tasks)}", f"pending={len(pending)}",
             f"executor={kind if pending else 'none'}")
    for run_id in skipped:
        _journal(journal, "skip", run_id, "(complete result file)")
    interrupted = None
    with bar(total=len(tasks), desc=f"sweep {spec.name}", unit="run", enabled=_enabled(progress),
             initial=len(tasks) - len(pending)) as pb:
        try:
            if pending and kind == "serial":
                diag.update(executor="serial", workers=1)
                for t in pending:
                    done(execute_run(t))
            elif pending:
                _run_dask(pending, done, scheduler, workers, memory_limit, spec.threads, diag)
        except KeyboardInterrupt as exc:       # keep what is done: the summary says which are pending
            interrupted = exc
    table_rows = [rows[i] for i in sorted(rows)]
    result = SweepResult(spec, table_rows, counts, diagnostics=diag)
    result.paths = {"outdir": str(out), "runs": str(runs_dir), "journal": str(journal)}
    csv_path, h5_path = _write_summary(table_rows, out)
    result.paths.update(summary_csv=str(csv_path), summary_h5=str(h5_path))
    if interrupted is not None:
        raise interrupted
    if figures and spec.figures:
        result.paths["figures"] = result.plot(out, dpi=dpi)
    diag["wall"] = time.perf_counter() - T0
    return result


def _check_executor_options(kind, scheduler, workers, memory_limit):
    """Refuse executor options that the chosen executor would not use (``workers`` and
    ``memory_limit`` size the LocalCluster; serial runs use neither, nor a scheduler), and a
    memory limit dask cannot read, before any file is written or a worker started."""
    if kind == "serial":
        for name, value, default in (("scheduler", scheduler, None), ("workers", workers, None),
                                     ("memory_limit", memory_limit, "auto")):
            if value != default:
                raise ConfigError(name, f"the serial executor runs in this process and uses no {name} "
                                        f"(got {value!r}); leave it out or run on dask")
        return
    if scheduler is not None:
        for name, value, default in (("workers", workers, None), ("memory_limit", memory_limit, "auto")):
            if value != default:
                raise ConfigError(name, f"sizes the LocalCluster that a sweep starts without a scheduler; "
                                        f"the cluster at {scheduler!r} has its own workers (got {value!r})")
        return
    if memory_limit is None or memory_limit == "auto":
        return
    # what distributed reads: a number (<= 1: a fraction of the machine's memory, 0: no limit,
    # else bytes) or a size with a unit ("4GiB")
    hint = "give 'auto', a size such as '4GiB' or '500MB', a fraction <= 1 of the memory, or 0 (no limit)"
    if isinstance(memory_limit, bool) or not isinstance(memory_limit, (int, float, str)):
        raise ConfigError("memory_limit", f"cannot read {memory_limit!r} as a memory size; {hint}")
    try:
        value = float(memory_limit)
    except ValueError:
        from dask.utils import parse_bytes
        try:
            value = float(parse_bytes(memory_limit))
        except (ValueError, TypeError):
            raise ConfigError("memory_limit", f"cannot read {memory_limit!r} as a memory size; {hint}") from None
    if not (value >= 0 and np.isfinite(value)):
        raise ConfigError("memory_limit", f"must be a size >= 0, got {memory_limit!r}; {hint}")


def _base_budgets(spec) -> list:
    """The wall-clock budgets the runs' base configurations had (the sweep sets them to 0)."""
    found = set()
    bases = {json.dumps(b, sort_keys=True, default=str): b for _, _, b in spec.points()}
    for base in bases.values():
        try:
            cfg = _config.load(_resolve_base(base, spec.source), [("output.animation", False)])
        except ConfigError:
            continue
        if cfg["flows"]["max_seconds"] > 0:
            found.add(f"flows.max_seconds = {cfg['flows']['max_seconds']:g}")
        for s, o in cfg["flows"]["options"].items():
            if o.get("max_seconds", 0) > 0:
                found.add(f"flows.options.{s}.max_seconds = {o['max_seconds']:g}")
    return sorted(found)


def _row(t: RunTask, status, error, metrics, wall, worker, rss, path) -> dict:
    r = {"index": t.index, "run_id": t.run_id}
    r.update(t.params)
    r["_params"] = list(t.params)
    r["status"] = status
    r["error"] = error or ""
    r.update(metrics or {})
    r["wall_s"] = float("nan") if wall is None else float(wall)
    r["worker"] = worker or ""
    r["peak_rss_mb"] = float("nan") if rss is None else float(rss)
    r["file"] = "" if path is None else f"runs/{path}"
    return r


def _run_dask(pending, done, scheduler, workers, memory_limit, threads, diag):
    import logging
    from distributed import Client, LocalCluster, as_completed
    cluster = None
    own_client = False
    if scheduler is None:
        n = workers or min(os.cpu_count() or 1, len(pending))
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR, memory_limit=memory_limit, env=_thread_env(threads))
        client = Client(cluster)
        own_client = True
        diag.update(executor="dask LocalCluster", workers=n, scheduler=cluster.scheduler_address)
    elif isinstance(scheduler, str):
        client = Client(scheduler)
        own_client = True
    else:
        client = scheduler
    if cluster is None:
        info = client.scheduler_info()
        diag.update(executor="dask", workers=len(info.get("workers", {})), scheduler=client.scheduler.address)
    try:
        futures = [client.submit(_execute_on_worker, t, key=f"wgflow-run-{t.run_id}", pure=False)
                   for t in pending]
        by_key = {f.key: t for f, t in zip(futures, pending)}
        try:
            for fut in as_completed(futures):
                t = by_key[fut.key]
                try:
                    res = fut.result()
                except Exception as exc:  # KilledWorker (died too often), lost scheduler, ...
                    res = {"index": t.index, "run_id": t.run_id, "hash": t.hash, "status": "failed",
                           "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
                           "row": {}, "data": None, "wall": float("nan"), "worker": "", "peak_rss_mb": float("nan")}
                fut.release()
                done(res)
        except BaseException:
            client.cancel(futures)
            raise
    finally:
        if own_client:
            client.close()
        if cluster is not None:
            cluster.close()


# =============================================================================================
# figures
# =============================================================================================
_MARKERS = ("o", "s", "^", "D", "v", "P")
_LINES = ("-", "--", ":", "-.")


def _label_value(v) -> str:
    if isinstance(v, (float, np.floating)):
        from .plot._common import fmt_value
        return fmt_value(v)
    return str(v)


def plot_sweep(table: dict, spec: dict):
    r"""One figure of a sweep: panels of measured columns (markers) against predicted columns
    (lines) as functions of a swept value.

    Parameters
    ----------
    table : dict column -> array
        :meth:`SweepResult.table` or :func:`read_summary`.
    spec : dict
        ``name``, ``title``, ``ncols``, ``labels`` (column -> legend or axis text), ``panel_size``,
        ``legend_columns`` (of the one legend below the panels, default 4),
        ``panels``: a list of tables with ``x`` (column), ``measured`` and ``predicted`` (lists of
        columns), ``series`` (a column: one colour per value), ``where`` (column -> value: rows
        kept), ``logx``, ``logy``, ``xlabel``, ``ylabel``, ``title``, ``kind`` (``"values"``, or
        ``"relative_error"``: ``|measured - reference| / |reference|`` with ``reference`` (default
        the first predicted column)), ``hlines`` (column -> constant drawn as a horizontal line:
        its first value among the panel's rows).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.lines import Line2D
    from .plot._common import new_figure
    labels = spec.get("labels", {})
    panels = spec["panels"]
    size = tuple(spec.get("panel_size", (4.2, 3.4)))
    fig, axes = new_figure(len(panels), spec.get("ncols"), panel_size=size)
    n = len(next(iter(table.values()))) if table else 0

    def col(name, where):
        if name not in table:
            raise ConfigError(where, f"no column {name!r} in the summary; columns: {', '.join(table)}")
        return table[name]

    ok = col("status", "status") != "failed" if "status" in table else np.ones(n, bool)
    legend = {}
    for j, (ax, p) in enumerate(zip(axes, panels)):
        where = f"figures.{spec.get('name')}.panels[{j}]"
        keep = ok.copy()
        for k, v in p.get("where", {}).items():
            c = col(k, f"{where}.where")
            keep &= np.array([x == v or (isinstance(v, float) and np.isclose(x, v)) for x in c])
        x = np.asarray(col(p["x"], f"{where}.x"), dtype=float)
        series = p.get("series")
        svals = [None]
        if series:
            sc = col(series, f"{where}.series")
            svals = list(dict.fromkeys(sc[keep]))
        colors = ["C%d" % (i % 10) for i in range(len(svals))]
        kind = p.get("kind", "values")
        ref_name = p.get("reference") or (p.get("predicted") or [None])[0]
        handles = []
        for si, sv in enumerate(svals):
            sel = keep.copy()
            if series:
                sel &= np.array([v == sv for v in col(series, where)])
            order = np.argsort(x[sel])
            xs = x[sel][order]
            color = colors[si]
            if kind == "values":
                for li, name in enumerate(p.get("predicted", [])):
                    y = np.asarray(col(name, f"{where}.predicted"), dtype=float)[sel][order]
                    ax.plot(xs, y, _LINES[li % len(_LINES)], color=color, lw=1.4)
            ref = np.asarray(col(ref_name, f"{where}.reference"), dtype=float)[sel][order] if kind != "values" else None
            for mi, name in enumerate(p.get("measured", [])):
                y = np.asarray(col(name, f"{where}.measured"), dtype=float)[sel][order]
                if kind != "values":
                    y = np.abs(y - ref) / np.abs(ref)
                filled = mi == 0
                ax.plot(xs, y, _MARKERS[mi % len(_MARKERS)], color=color, ms=6 if filled else 7,
                        mfc=color if filled else "none", mew=1.3, ls="none" if kind == "values" else ":",
                        lw=0.8)
            if series:
                handles.append(Line2D([], [], color=color, lw=2,
                                      label=f"{labels.get(series, series)} = {_label_value(sv)}"))
        hline_handles = []
        for name, _ in p.get("hlines", {}).items():
            c = np.asarray(col(name, f"{where}.hlines"), dtype=float)[keep]
            if c.size:
                ax.axhline(c[0], color="0.4", lw=1.0, ls=(0, (1, 2)))
                hline_handles.append(Line2D([], [], color="0.4", lw=1.0, ls=(0, (1, 2)),
                                            label=labels.get(name, name)))
        handles += hline_handles
        if kind == "values":
            for li, name in enumerate(p.get("predicted", [])):
                handles.append(Line2D([], [], color="0.2", ls=_LINES[li % len(_LINES)], lw=1.4,
                                      label=labels.get(name, name)))
        for mi, name in enumerate(p.get("measured", [])):
            handles.append(Line2D([], [], color="0.2", marker=_MARKERS[mi % len(_MARKERS)], ls="none",
                                  mfc="0.2" if mi == 0 else "none", mew=1.3,
                                  label=labels.get(name, name)))
        if p.get("logx"):
            ax.set_xscale("log")
            _plain_log_ticks(ax.xaxis, ax.get_xlim())
        if p.get("logy"):
            ax.set_yscale("log")
            _plain_log_ticks(ax.yaxis, ax.get_ylim())
        ax.set_xlabel(p.get("xlabel", labels.get(p["x"], p["x"])))
        ax.set_ylabel(p.get("ylabel", "relative error" if kind != "values" else ""))
        if p.get("title"):
            ax.set_title(p["title"], fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        styles = [h for h in handles if h.get_color() == "0.2" or h in hline_handles]
        for h in handles:
            if h not in styles:
                legend.setdefault(h.get_label(), h)
        if styles:
            ax.legend(handles=styles, fontsize=7.5, frameon=True, framealpha=0.8, edgecolor="none")
    if legend:     # the series (colours): one legend for the figure, below the panels
        fig.legend(handles=list(legend.values()), loc="outside lower center", fontsize=8, frameon=False,
                   ncols=min(len(legend), int(spec.get("legend_columns", 4))))
    if spec.get("title"):
        fig.suptitle(spec["title"], fontsize=11)
    return fig


def _plain_log_ticks(axis, lim):
    """Plain numbers (0.3, 0.4, 0.6) on a log axis spanning less than two decades."""
    from matplotlib.ticker import FuncFormatter
    lo, hi = sorted(lim)
    if lo > 0 and hi / lo < 100:
        decades = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
        minor = [m * 10.0 ** d for d in decades for m in range(2, 10) if lo <= m * 10.0 ** d <= hi]
        keep = ((2.0, 5.0) if hi / lo >= 10 else (2.0, 3.0, 5.0) if len(minor) > 5
                else tuple(float(m) for m in range(2, 10)))

        def some(v, _):           # minor ticks: all of them on a short axis, else 2s, 3s, 5s or 2s, 5s
            m = round(v / 10.0 ** np.floor(np.log10(v)), 6)
            return f"{v:g}" if m in keep else ""
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(FuncFormatter(some))


# =============================================================================================
# command line
# =============================================================================================
def _parse_grid(text: str):
    key, val = _config.parse_override(text)
    if not isinstance(val, list):
        raise ConfigError(key, f"--grid needs a list, e.g. {key}=[0.1,0.2], got {val!r}")
    return key, val


def setup_cli(p):
    """Arguments of ``wgflow sweep``."""
    p.add_argument("config", nargs="?", help="a sweep file (TOML) or the name of a built-in sweep "
                                             "(--list shows them)")
    p.add_argument("--set", "-s", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a study key in every run, over the sweep file's [set] and cases "
                        "(repeatable), e.g. --set flows.max_steps=200")
    p.add_argument("--grid", "-g", action="append", default=[], metavar="KEY=[V1,V2,...]",
                   help="add or replace a grid axis (repeatable), e.g. --grid objective.gamma=[0.9,0.95]")
    p.add_argument("-o", "--outdir", help="output directory (default: the sweep's outdir)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on an existing dask cluster, e.g. "
                   "tcp://10.0.0.5:8786 (default: a LocalCluster on this machine)")
    p.add_argument("--workers", "-j", type=int, help="LocalCluster workers (default: CPU count; not "
                   "with --serial or --scheduler)")
    p.add_argument("--memory-limit", default="auto", help="LocalCluster memory per worker (e.g. 4GiB; "
                   "default auto; not with --serial or --scheduler)")
    p.add_argument("--serial", action="store_true", help="run in this process, one run after the other "
                                                         "(no dask)")
    p.add_argument("--no-resume", action="store_true", help="recompute runs whose result file exists")
    p.add_argument("--no-figures", action="store_true", help="write the summary only")
    p.add_argument("--dry-run", action="store_true", help="list the runs and whether each would be "
                   "computed (pending) or kept (complete), and exit")
    p.add_argument("--list", action="store_true", help="list the built-in sweeps and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run_cli(args) -> int:
    """``wgflow sweep``: exit status 0 when every run succeeded, 1 when some failed."""
    if args.list:
        for name in builtin_sweeps():
            print(f"{name:16s} {builtin_sweep_path(name)}")
        return 0
    if not args.config:
        raise ConfigError("config", "give a sweep file or the name of a built-in sweep (--list)")
    grid = dict(_parse_grid(g) for g in args.grid)
    if args.dry_run:
        spec = load_spec(args.config, args.overrides, grid)
        if args.outdir:
            spec.outdir = args.outdir
        runs_dir = Path(spec.outdir) / "runs"
        tasks = spec.tasks()
        for t in tasks:
            # with --no-resume every run is computed again, whatever file it has
            done = not args.no_resume and _stored_run(runs_dir / t.filename, t) is not None
            state = "complete" if done else "pending"
            print(f"{t.index:4d}  {state:8s}  {t.run_id}")
        print(f"{len(tasks)} runs into {spec.outdir}")
        return 0
    try:
        res = sweep(args.config, args.overrides, grid=grid or None, outdir=args.outdir,
                    executor="serial" if args.serial else "auto", scheduler=args.scheduler,
                    workers=args.workers, memory_limit=args.memory_limit, resume=not args.no_resume,
                    figures=not args.no_figures, progress=not args.quiet)
    except KeyboardInterrupt:
        print("wgflow sweep: interrupted; the finished runs are saved and the summary lists the "
              "pending ones; run the same command again to resume", file=sys.stderr)
        return 130
    print(res.summary())
    return 1 if res.failed else 0
