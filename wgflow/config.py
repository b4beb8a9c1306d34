r"""Study configurations: nested dicts read from TOML, with dotted-key overrides, checked up front.

A configuration is a plain nested dict with the sections below (every key has a default, so a
TOML file gives only what it changes). :func:`load` reads a file (or a built-in config by name),
merges it onto :data:`DEFAULTS`, applies overrides such as ``"objective.gamma=0.95"`` and
:func:`validate`\ s the result: an unknown key or a bad value raises :class:`ConfigError` naming
the key and the allowed values, before any work starts.

=============  =====================================================================================
section        keys (defaults in :data:`DEFAULTS`)
=============  =====================================================================================
``study``      ``name`` (names the output files), ``seed`` (random directions of ``verify``)
``problem``    ``name`` (a built-in problem), ``params`` (its parameters; ``wgflow problems NAME``)
``objective``  ``kind`` (``discounted`` / ``average``), ``gamma``, ``entropy``
``solve``      ``method``, ``tol`` (a number, or ``"floor"``: as accurately as double precision
               allows), ``hard`` (also solve with entropy 0)
``initial``    ``kind`` (``uniform`` / ``gaussian``), ``mean``, ``std``: the policy every flow starts from
``flows``      ``schemes``, ``t_end`` (flow time; default 1e300: none, since the steps of the
               implicit ``otto`` and of ``jko`` grow geometrically), ``max_steps``, ``max_seconds`` (wall budget per run, 0: none),
               ``stop_gap`` (stop when ``(J - J*)/max(1, |J*|)`` is below it, 0: never),
               ``steady_state`` (stop when ``max|dm/dt|`` is below it, 0: never), ``frames``
               (policies saved per run, spaced geometrically in time), ``options.<scheme>``
               (per scheme: ``t_end``, ``dt``, ``max_steps``, ``max_seconds`` and the scheme's
               own options, e.g. ``cfl``)
``hessian``    ``enabled``, ``k`` (eigenvalues), ``mobility``, ``method``
``verify``     ``enabled``, ``checks``, ``rates``, ``geodesics``
``output``     ``dir``, ``figures``, ``dpi``, ``animation``, ``animation_scheme``,
               ``animation_frames``, ``mp4`` (also an MP4 when ffmpeg exists)
=============  =====================================================================================

Examples
--------
>>> from wgflow import config
>>> cfg = config.load("lqr1d", ["objective.gamma=0.8", "flows.schemes=otto,pmd"])
>>> cfg["objective"]["gamma"], cfg["flows"]["schemes"]
(0.8, ['otto', 'pmd'])
>>> config.load("lqr1d", ["flows.schemes=ottto"])
Traceback (most recent call last):
...
wgflow.config.ConfigError: flows.schemes: unknown scheme 'ottto'; allowed: jko, otto, pg, pmd, wpo, wppg
"""
from __future__ import annotations

import copy
import inspect
import math
import re
import sys
from pathlib import Path

from .errors import ValidationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover  (Python 3.10)
    import tomli as tomllib

__all__ = ["DEFAULTS", "ConfigError", "load", "validate", "apply_overrides", "parse_override",
           "set_dotted", "get_dotted", "builtin_configs", "builtin_path", "to_toml", "merge"]

#: every key of a study configuration and its default
DEFAULTS = {
    "study": {"name": "study", "seed": 0},
    "problem": {"name": "pendulum", "params": {}},
    "objective": {"kind": "discounted", "gamma": 0.95, "entropy": 0.5},
    "solve": {"method": "auto", "tol": "floor", "hard": True},
    "initial": {"kind": "uniform", "mean": 0.0, "std": 1.0},
    "flows": {"schemes": ["otto", "jko", "wppg", "wpo", "pmd"], "t_end": 1e300, "max_steps": 5000,
              "max_seconds": 15.0, "stop_gap": 1e-11, "steady_state": 1e-10, "frames": 40,
              "options": {}},
    "hessian": {"enabled": True, "k": 6, "mobility": "sg", "method": "auto"},
    "verify": {"enabled": True, "checks": ["gradient", "dissipation", "gibbs", "hessian", "symmetry",
                                           "rate", "convexity"],   # = wgflow.verify.CHECKS
               "rates": True, "geodesics": False},
    "output": {"dir": "wgflow-study", "figures": True, "dpi": 110, "animation": True,
               "animation_scheme": "otto", "animation_frames": 40, "mp4": True},
}

#: tables whose keys are free (checked against the problem or the scheme, not against DEFAULTS)
_OPEN = {("problem", "params"), ("flows", "options")}

#: per-scheme keys that control the run rather than the scheme
RUN_KEYS = ("t_end", "dt", "max_steps", "max_seconds")


class ConfigError(ValidationError):
    """A configuration key is unknown or its value is not allowed; ``key`` is the dotted key."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
def _config_dir():
    from importlib import resources
    return resources.files("wgflow") / "configs"


def builtin_configs() -> list:
    """Names of the configurations shipped with the package (``wgflow run NAME``)."""
    return sorted(p.name[:-5] for p in _config_dir().iterdir() if p.name.endswith(".toml"))


def builtin_path(name: str):
    """The packaged TOML file of a built-in configuration."""
    if name not in builtin_configs():
        raise ConfigError("", f"no built-in config {name!r}; built-in configs: {', '.join(builtin_configs())}")
    return _config_dir() / f"{name}.toml"


def _inside_open(path: tuple) -> bool:
    """Whether ``path`` lies below one of the open tables (its keys are free)."""
    return any(path[:len(o)] == o and len(path) > len(o) for o in _OPEN)


def merge(base: dict, extra: dict, _path: tuple = ()) -> dict:
    """``base`` updated recursively by ``extra`` (a new dict); unknown keys raise :class:`ConfigError`."""
    out = copy.deepcopy(base)
    for k, v in extra.items():
        path = _path + (str(k),)
        key = ".".join(path)
        if k not in out and not _inside_open(path):
            where = ".".join(_path) or "the top level"
            raise ConfigError(key, f"unknown key in {where}; allowed keys: {', '.join(sorted(out))}")
        if isinstance(v, dict):
            if k in out and not isinstance(out[k], dict):
                raise ConfigError(key, f"is a value, not a table (got {v!r})")
            out[k] = merge(out.get(k, {}), v, path)
        else:
            if isinstance(out.get(k), dict):
                raise ConfigError(key, f"is a table, not a value (got {v!r})"
                                  + (f"; its keys: {', '.join(sorted(out[k]))}" if out[k] else ""))
            out[k] = copy.deepcopy(v)
    return out


def parse_override(text: str):
    """``"a.b=value"`` -> ``("a.b", value)``; the value is read as a TOML value (numbers, booleans,
    ``"strings"``, ``[lists]``), and as a bare string if it is not one."""
    if "=" not in text:
        raise ConfigError("", f"an override is KEY=VALUE (e.g. objective.gamma=0.95), got {text!r}")
    key, value = text.split("=", 1)
    key, value = key.strip(), value.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*", key):
        raise ConfigError(key, f"not a dotted key (e.g. objective.gamma) in override {text!r}")
    try:
        val = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        val = value
    return key, val


def get_dotted(cfg: dict, key: str):
    """``cfg["a"]["b"]`` for ``key = "a.b"`` (ConfigError if absent)."""
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(key, "no such key")
        node = node[part]
    return node


def set_dotted(cfg: dict, key: str, value) -> dict:
    """Set ``key = "a.b.c"`` in a nested dict (in place; returns it). Unknown keys raise, except
    below the open tables ``problem.params`` and ``flows.options``. A table value (a dict) set on a
    table merges into it key by key."""
    parts = tuple(key.split("."))
    node = cfg
    for i, part in enumerate(parts):
        path = parts[:i + 1]
        last = i == len(parts) - 1
        if part not in node and not _inside_open(path):
            where = ".".join(parts[:i]) or "the top level"
            raise ConfigError(".".join(path), f"unknown key; allowed keys in {where}: {', '.join(sorted(node))}")
        if last:
            if isinstance(node.get(part), dict) and not isinstance(value, dict):
                raise ConfigError(key, "is a table" + (f" with keys {', '.join(sorted(node[part]))}; set one of them"
                                                       if node[part] else "; set a key below it"))
            if isinstance(node.get(part), dict):
                # a table sets the keys it names and keeps the others (as a TOML file merges
                # onto the defaults): objective={gamma=0.9} keeps the file's entropy
                node[part] = merge(node[part], value, parts)
            else:
                node[part] = value
        else:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(".".join(path), "is a value, not a table")
    return cfg


def apply_overrides(cfg: dict, overrides=()) -> dict:
    """A copy of ``cfg`` with ``overrides`` applied: ``"key=value"`` strings, ``(key, value)``
    pairs, or a dict ``{dotted_key: value}``."""
    out = copy.deepcopy(cfg)
    items = overrides.items() if isinstance(overrides, dict) else overrides
    for item in items:
        key, val = parse_override(item) if isinstance(item, str) else item
        set_dotted(out, key, val)
    return out


def load(source=None, overrides=()) -> dict:
    """The validated configuration from a TOML file, a built-in name, a dict, or None (the default).

    Parameters
    ----------
    source : path, str, dict or None
        A TOML file; the name of a built-in config (:func:`builtin_configs`); a (partial) nested
        dict; None for the default study (the built-in ``pendulum``).
    overrides : sequence of "key=value", or dict
        Applied after the file, e.g. ``["objective.gamma=0.95", "flows.max_seconds=5"]``.

    Returns
    -------
    dict -- every key present (defaults filled in), values checked by :func:`validate`.
    """
    if source is None:
        source = "pendulum"
    if isinstance(source, dict):
        user = source
    else:
        p = Path(source)
        # a file, else a built-in name: a directory of that name (an output directory, say)
        # does not hide the built-in config
        if p.is_file() or (p.suffix == ".toml" and not p.is_dir()):
            if not p.exists():
                raise ConfigError("", f"no such config file: {p}")
            text = p.read_text()
        elif str(source) in builtin_configs():
            text = builtin_path(str(source)).read_text()
        elif p.is_dir():
            raise ConfigError("", f"{p} is a directory, not a config file; built-in configs: "
                                  f"{', '.join(builtin_configs())}")
        else:
            raise ConfigError("", f"no config file {str(source)!r} and no built-in config of that name; "
                                  f"built-in configs: {', '.join(builtin_configs())}")
        try:
            user = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("", f"{source} is not valid TOML: {exc}") from exc
    cfg = merge(DEFAULTS, user)
    cfg = apply_overrides(cfg, overrides)
    return validate(cfg)


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------
def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _number(key, v, lo=None, hi=None, lo_open=False, hi_open=False):
    if not _is_number(v) or v != v:
        raise ConfigError(key, f"must be a number, got {v!r}")
    v = float(v)
    if not math.isfinite(v):
        raise ConfigError(key, f"must be a finite number, got {v!r}")
    ok = True
    if lo is not None:
        ok &= v > lo if lo_open else v >= lo
    if hi is not None:
        ok &= v < hi if hi_open else v <= hi
    if not ok:
        lb = "(" if lo_open else "["
        rb = ")" if hi_open else "]"
        low = "-inf" if lo is None else f"{lo:g}"
        high = "inf" if hi is None else f"{hi:g}"
        raise ConfigError(key, f"must be in {lb}{low}, {high}{rb}, got {v:g}")
    return v


def _integer(key, v, lo=None, hi=None):
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(key, f"must be an integer, got {v!r}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ConfigError(key, f"must be an integer in [{lo}, {'inf' if hi is None else hi}], got {v}")
    return v


def _boolean(key, v):
    if not isinstance(v, bool):
        raise ConfigError(key, f"must be true or false, got {v!r}")
    return v


def _choice(key, v, choices, what="value"):
    if not isinstance(v, str) or v not in choices:
        raise ConfigError(key, f"unknown {what} {v!r}; allowed: {', '.join(choices)}")
    return v


def _string(key, v, pattern=None, hint=""):
    if not isinstance(v, str) or not v:
        raise ConfigError(key, f"must be a non-empty string, got {v!r}")
    if pattern and not re.fullmatch(pattern, v):
        raise ConfigError(key, f"{v!r} is not allowed: {hint}")
    return v


def _choice_list(key, v, choices, what):
    if isinstance(v, str):
        v = [s.strip() for s in v.split(",") if s.strip()]
    if not isinstance(v, (list, tuple)):
        raise ConfigError(key, f"must be a list of {what}s (allowed: {', '.join(choices)}), got {v!r}")
    out = []
    for s in v:
        _choice(key, s, choices, what)
        if s in out:
            raise ConfigError(key, f"{what} {s!r} is listed twice")
        out.append(s)
    return out


def _number_or_list(key, v, positive=False):
    vals = v if isinstance(v, (list, tuple)) else [v]
    if not vals:
        raise ConfigError(key, "must be a number or a non-empty list of numbers")
    for x in vals:
        _number(key, x, lo=0.0 if positive else None, lo_open=positive)
    return [float(x) for x in v] if isinstance(v, (list, tuple)) else float(v)


def scheme_option_names(scheme: str) -> list:
    """The options ``flows.options.<scheme>`` accepts: the run keys and the scheme's own keywords."""
    from .flows import get_scheme
    from .flows.base import Scheme
    cls = get_scheme(scheme)
    names = set()
    for klass in (cls, Scheme):
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.name not in ("self", "mdp", "objective") and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                names.add(p.name)
    return list(RUN_KEYS) + sorted(names)


def validate(cfg: dict) -> dict:
    """Check every key and value of a full configuration (as :func:`load` returns); returns it
    with numbers normalized (ints given for float keys become floats).

    Raises
    ------
    ConfigError
        Naming the dotted key and the allowed values.
    """
    from . import problems
    from .evaluation import _METHODS
    from .flows import scheme_names
    from .mobility import MOBILITIES
    from .verify import CHECKS
    cfg = merge(DEFAULTS, cfg)
    s = cfg["study"]
    _string("study.name", s["name"], r"[A-Za-z0-9_.+-]+", "use letters, digits, '_', '.', '+' or '-' "
            "(it names the output files)")
    _integer("study.seed", s["seed"], lo=0)

    p = cfg["problem"]
    _choice("problem.name", p["name"], problems.names(), "problem")
    if not isinstance(p["params"], dict):
        raise ConfigError("problem.params", f"must be a table of parameters, got {p['params']!r}")
    allowed = problems.parameters(p["name"])
    for k, v in p["params"].items():
        if k not in allowed:
            raise ConfigError(f"problem.params.{k}", f"problem {p['name']!r} has no parameter {k!r}; "
                                                     f"its parameters: {', '.join(allowed)}")
        try:        # the registry's own checks of one parameter (type, range)
            problems.registry._resolve(p["name"], {k: v})
        except ValidationError as exc:
            raise ConfigError(f"problem.params.{k}", str(exc)) from None
    try:            # and of the combination (e.g. the size of the MDP)
        problems.registry._resolve(p["name"], p["params"])
    except ValidationError as exc:
        raise ConfigError("problem.params", str(exc)) from None

    o = cfg["objective"]
    _choice("objective.kind", o["kind"], ("discounted", "average"), "objective")
    o["gamma"] = _number("objective.gamma", o["gamma"], 0.0, 1.0, hi_open=True)
    o["entropy"] = _number("objective.entropy", o["entropy"], 0.0)

    so = cfg["solve"]
    _choice("solve.method", so["method"], ("auto",) + tuple(_METHODS), "method")
    if isinstance(so["tol"], str):
        # "floor": J* to the rounding floor (wgflow.study.solve_to), which only the methods that
        # evaluate exactly reach; value iteration would run to max_iter
        if so["tol"] != "floor":
            raise ConfigError("solve.tol", f"must be a number > 0 or 'floor', got {so['tol']!r}")
        if so["method"] in ("value_iteration", "relative_value_iteration"):
            raise ConfigError("solve.tol", f"'floor' needs a method that stops at the rounding "
                              f"floor (auto, modified_policy_iteration, policy_iteration, "
                              f"soft_policy_iteration); give a number for {so['method']!r}")
    else:
        so["tol"] = _number("solve.tol", so["tol"], 0.0, lo_open=True)
    _boolean("solve.hard", so["hard"])

    ini = cfg["initial"]
    _choice("initial.kind", ini["kind"], ("uniform", "gaussian"), "initial policy")
    ini["mean"] = _number_or_list("initial.mean", ini["mean"])
    ini["std"] = _number_or_list("initial.std", ini["std"], positive=True)

    f = cfg["flows"]
    f["schemes"] = _choice_list("flows.schemes", f["schemes"], scheme_names(), "scheme")
    f["t_end"] = _number("flows.t_end", f["t_end"], 0.0, lo_open=True)
    _integer("flows.max_steps", f["max_steps"], lo=1)
    f["max_seconds"] = _number("flows.max_seconds", f["max_seconds"], 0.0)
    f["stop_gap"] = _number("flows.stop_gap", f["stop_gap"], 0.0)
    f["steady_state"] = _number("flows.steady_state", f["steady_state"], 0.0)
    _integer("flows.frames", f["frames"], lo=2, hi=10000)
    if not isinstance(f["options"], dict):
        raise ConfigError("flows.options", f"must be a table of per-scheme tables, got {f['options']!r}")
    for sch, opts in f["options"].items():
        key = f"flows.options.{sch}"
        _choice(key, sch, scheme_names(), "scheme")
        if not isinstance(opts, dict):
            raise ConfigError(key, f"must be a table of options, got {opts!r}")
        names = scheme_option_names(sch)
        for k, v in opts.items():
            if k not in names:
                raise ConfigError(f"{key}.{k}", f"unknown option of scheme {sch!r}; allowed: {', '.join(names)}")
            if k in ("t_end", "dt"):
                opts[k] = _number(f"{key}.{k}", v, 0.0, lo_open=True)
            elif k == "max_steps":
                _integer(f"{key}.{k}", v, lo=1)
            elif k == "max_seconds":
                opts[k] = _number(f"{key}.{k}", v, 0.0)

    h = cfg["hessian"]
    _boolean("hessian.enabled", h["enabled"])
    _integer("hessian.k", h["k"], lo=1, hi=50)
    _choice("hessian.mobility", h["mobility"], MOBILITIES, "mobility")
    _choice("hessian.method", h["method"], ("auto", "dense", "lobpcg"), "method")

    v = cfg["verify"]
    _boolean("verify.enabled", v["enabled"])
    v["checks"] = _choice_list("verify.checks", v["checks"], CHECKS, "check")
    _boolean("verify.rates", v["rates"])
    _boolean("verify.geodesics", v["geodesics"])

    out = cfg["output"]
    _string("output.dir", out["dir"])
    _boolean("output.figures", out["figures"])
    _integer("output.dpi", out["dpi"], lo=30, hi=600)
    _boolean("output.animation", out["animation"])
    _integer("output.animation_frames", out["animation_frames"], lo=2, hi=1000)
    _boolean("output.mp4", out["mp4"])
    a = out["animation_scheme"]
    if out["figures"] and out["animation"] and f["schemes"] and (not isinstance(a, str) or a not in f["schemes"]):
        # the animation is one of the figures: without figures or animation the key is unused
        raise ConfigError("output.animation_scheme", f"{a!r} is not one of flows.schemes "
                          f"({', '.join(f['schemes'])}); animate one of them, or set output.animation = false")

    # combinations that would fail later
    if o["entropy"] <= 0 and h["enabled"]:
        raise ConfigError("hessian.enabled", "needs objective.entropy > 0 (the Hessian is taken at the "
                                             "soft optimum, whose masses must be positive); set "
                                             "hessian.enabled = false or objective.entropy > 0")
    if so["method"] == "soft_policy_iteration" and o["entropy"] <= 0:
        raise ConfigError("solve.method", "soft_policy_iteration needs objective.entropy > 0")
    return cfg


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return {True: "nan"}.get(v != v, "inf" if v > 0 else "-inf")
        r = repr(v)
        return r if ("." in r or "e" in r or "n" in r) else r + ".0"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise ConfigError("", f"cannot write {v!r} ({type(v).__name__}) to TOML")


def to_toml(cfg: dict) -> str:
    """The configuration as TOML text (``tomllib.loads(to_toml(cfg)) == cfg``)."""
    lines = []

    def table(d, prefix):
        scalars = [(k, v) for k, v in d.items() if not isinstance(v, dict)]
        subs = [(k, v) for k, v in d.items() if isinstance(v, dict)]
        if prefix and (scalars or not subs):
            lines.append(f"[{prefix}]")
        for k, v in scalars:
            lines.append(f"{k} = {_toml_value(v)}")
        if prefix and (scalars or not subs):
            lines.append("")
        for k, v in subs:
            table(v, f"{prefix}.{k}" if prefix else k)

    table(cfg, "")
    return "\n".join(lines).rstrip() + "\n"
