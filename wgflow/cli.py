"""The ``wgflow`` command.

Subcommands live in a registry (:data:`COMMANDS`): :func:`register` adds one with a function that
declares its arguments and a function that runs it, so a package can add its own (``train``,
``gym-eval``, ...) without touching the dispatch::

    from wgflow.cli import register

    def setup(p):            # an argparse parser
        p.add_argument("name")

    def run(args) -> int:    # exit status
        ...

    register("hello", setup, run, help="say hello")

Built in: ``run`` (the main job: a whole study from a TOML config), ``sweep`` (many studies,
on dask.distributed or serially), ``flow`` (one flow),
``plot`` (redraw a results file's figures), ``problems``, ``solve``, ``verify``, ``info``, and
``train``, ``gym-eval`` from :mod:`wgflow.nn.cli`.
Progress bars are on unless ``--quiet``.
"""
from __future__ import annotations

import argparse
import ast
import importlib.metadata
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["main", "build_parser", "register", "COMMANDS", "environment"]


@dataclass
class Command:
    """A registered subcommand: ``setup(parser)`` declares its arguments, ``run(args)`` returns the
    exit status."""

    name: str
    setup: Callable
    run: Callable
    help: str = ""
    description: str | None = None


#: the registered subcommands, in the order ``wgflow --help`` lists them
COMMANDS: dict = {}


def register(name: str, setup: Callable, run: Callable, help: str = "", description: str | None = None):
    """Add (or replace) the subcommand ``name``."""
    COMMANDS[name] = Command(name, setup, run, help, description)
    return COMMANDS[name]


def _parse_param(text: str, flag: str = "--param"):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{flag} takes key=value, got {text!r}")
    key, value = text.split("=", 1)
    try:
        val = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        val = value
    return key.strip(), val


def _int_in(lo: int, hi: int | None = None):
    """An argparse type: a whole number in ``[lo, hi]`` (a bad one is a one-line usage error)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be in [{lo}, {'inf' if hi is None else hi}], got {v}")
        return v
    return parse


def _positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (v > 0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return v


def _objective_args(p, entropy=0.0, entropy_help=None):
    p.add_argument("--param", "-p", action="append", type=_parse_param, metavar="KEY=VALUE",
                   help="problem parameter (repeatable), e.g. --param n_theta=101")
    p.add_argument("--objective", choices=["discounted", "average"], default="discounted")
    p.add_argument("--gamma", type=float, default=None,
                   help="discount factor (default 0.95; the discounted objective only)")
    p.add_argument("--entropy", type=float, default=entropy, help=entropy_help or
                   f"entropy weight tau (default {entropy:g})")


def _objective(args):
    from . import Average, Discounted
    from .errors import ValidationError
    if args.objective == "average":
        if args.gamma is not None:     # it would be dropped: the average cost has no discount
            raise ValidationError(f"--gamma {args.gamma:g} is the discount factor of --objective "
                                  "discounted; the average cost has none (leave --gamma out)")
        return Average(entropy=args.entropy)
    return Discounted(gamma=0.95 if args.gamma is None else args.gamma, entropy=args.entropy)


# ---------------------------------------------------------------------------------------------
# problems, solve, verify, info
# ---------------------------------------------------------------------------------------------
def _setup_problems(p):
    p.add_argument("name", nargs="?", help="describe one problem")


def cmd_problems(args) -> int:
    from . import problems
    if args.name:
        print(problems.describe(args.name))
        return 0
    for name in problems.names():
        p = problems.registry._lookup(name)
        params = ", ".join(f"{k}={v!r}" for k, v in p.defaults.items())
        print(f"{name}\n    {p.summary}\n    parameters: {params}")
    return 0


def _setup_solve(p):
    from .evaluation import METHODS
    p.add_argument("problem")
    _objective_args(p)
    p.add_argument("--method", default="auto", metavar="{" + ",".join(METHODS) + "}",
                   help="solver: " + ", ".join(METHODS) + " (default auto: modified policy iteration "
                        "with a certified stopping rule for discounted costs, policy iteration for "
                        "average costs)")
    p.add_argument("--tol", type=float, default=1e-10)
    p.add_argument("-o", "--output", help="save the Solution to this HDF5 file")
    p.add_argument("--overwrite", action="store_true", help="replace the --output file if it exists")
    p.add_argument("--plot", metavar="PNG", help="draw the solution (V, mean action, spread, occupancy)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def cmd_solve(args) -> int:
    from . import problems, save, solve
    params = dict(args.param or [])
    t0 = time.perf_counter()
    mdp = problems.get(args.problem, **params)
    t1 = time.perf_counter()
    obj = _objective(args)
    sol = solve(mdp, obj, method=args.method, tol=args.tol, progress=not args.quiet)
    t2 = time.perf_counter()
    print(f"problem     {args.problem} {params if params else ''}".rstrip())
    print(f"MDP         {mdp.n_states} states x {mdp.n_actions} actions, nnz(P) = {mdp.P.nnz}")
    print(f"objective   {obj!r}")
    print(f"method      {sol.method}")
    print(f"J           {sol.J:.12g}")
    print(f"iterations  {sol.iterations}")
    print(f"residual    {sol.residual:.3e}   (sup-norm of the Bellman residual)")
    print(f"time        build {t1 - t0:.3f} s, solve {t2 - t1:.3f} s")
    if args.output:
        save(args.output, sol, overwrite=args.overwrite)
        print(f"saved       {args.output}")
    if args.plot:
        _savefig(sol.plot(title=f"{args.problem}: {obj!r}"), args.plot)
        print(f"figure      {args.plot}")
    return 0


def _setup_verify(p):
    from .verify import CHECKS
    p.add_argument("problem")
    _objective_args(p, entropy=0.5, entropy_help="entropy weight tau (default 0.5; the Gibbs and rate "
                   "checks need tau > 0)")
    p.add_argument("--checks", help="comma-separated subset of: " + ", ".join(CHECKS))
    p.add_argument("--no-rates", action="store_true", help="skip the rate check (an otto run)")
    p.add_argument("--no-geodesics", action="store_true",
                   help="skip the metric-geodesic convexity row (a path-energy minimization)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random test directions")
    p.add_argument("--no-notes", action="store_true", help="print the table without the notes")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")


def cmd_verify(args) -> int:
    from . import problems
    from . import verify as _verify
    params = dict(args.param or [])
    mdp = problems.get(args.problem, **params)
    obj = _objective(args)
    checks = None
    if args.checks is not None:
        checks = [c.strip() for c in args.checks.split(",") if c.strip()]
        if not checks:             # an empty list would run every check (or none): say so
            from .errors import ValidationError
            from .verify import CHECKS
            raise ValidationError(f"--checks {args.checks!r} names no check; give a comma-separated "
                                  f"subset of: {', '.join(CHECKS)} (or leave --checks out for all)")
    title = (f"wgflow verify {args.problem} {params if params else ''}".rstrip()
             + f": {mdp.n_states} states x {mdp.n_actions} actions, {obj!r}")
    report = _verify.run(mdp, obj, checks=checks, rng=args.seed, rates=not args.no_rates,
                         geodesics=not args.no_geodesics, progress=not args.quiet, title=title)
    print(report.table(notes=not args.no_notes))
    return 0 if report.passed else 1


#: (label, distribution) of the optional and peer packages the report names
_OPTIONAL_DISTRIBUTIONS = (("ot", "POT"), ("tqdm", "tqdm"), ("quantecon", "quantecon"),
                           ("mdptoolbox", "pymdptoolbox"), ("gymnasium", "gymnasium"),
                           ("torch", "torch"), ("dask.distributed", "distributed"),
                           ("sphinx", "sphinx"))


def environment() -> dict:
    """Versions and numerics settings, for bug reports."""
    import numpy, scipy, h5py, matplotlib
    from .kernels import numba_environment
    from .version import __version__
    info = {"wgflow": __version__, "python": sys.version.split()[0],
            "platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor() or "unknown"}
    try:
        import os
        info["cpu_count"] = os.cpu_count()
    except Exception:  # pragma: no cover
        pass
    for mod in (numpy, scipy, h5py, matplotlib):
        info[mod.__name__] = mod.__version__
    # optional packages by their installed metadata: importing them (gymnasium, torch) takes
    # seconds, and a report should not depend on whether they import cleanly
    for label, dist in _OPTIONAL_DISTRIBUTIONS:
        try:
            info[label] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info[label] = "not installed"
    info.update({f"numba.{k}" if k != "numba" else k: v for k, v in numba_environment().items()})
    return info


def cmd_info(args) -> int:
    for k, v in environment().items():
        print(f"{k:24s} {v}")
    return 0


# ---------------------------------------------------------------------------------------------
# run: the main job
# ---------------------------------------------------------------------------------------------
def _setup_run(p):
    p.add_argument("config", nargs="?", default=None,
                   help="a TOML file, or the name of a built-in config (default: pendulum; "
                        "--list-configs shows them)")
    p.add_argument("--set", "-s", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a config key (repeatable), e.g. --set objective.gamma=0.99 "
                        "--set flows.schemes=otto,pmd")
    p.add_argument("-o", "--outdir", help="output directory (default: the config's output.dir)")
    p.add_argument("--no-figures", action="store_true", help="write the HDF5 file only")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results of an earlier run in the output directory")
    p.add_argument("--print-config", action="store_true",
                   help="print the full configuration (TOML) and exit without running")
    p.add_argument("--list-configs", action="store_true", help="list the built-in configs and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def cmd_run(args) -> int:
    from . import config as _config
    from .study import run_study
    if args.list_configs:
        for name in _config.builtin_configs():
            print(f"{name:14s} {_config.builtin_path(name)}")
        return 0
    overrides = list(args.overrides)
    if args.no_figures:        # before validation: keys that only figures use are not checked
        overrides += ["output.figures=false", "output.animation=false"]
    cfg = _config.load(args.config, overrides)              # a bad config stops here, before any work
    if args.outdir:
        cfg["output"]["dir"] = args.outdir
    if args.print_config:
        print(_config.to_toml(cfg), end="")
        return 0
    out = Path(cfg["output"]["dir"])
    if out.exists() and not out.is_dir():      # found before the study runs, not when it writes
        from .errors import ValidationError
        raise ValidationError(f"output directory {out} is a file (-o DIR or output.dir names where the "
                              "results go)")
    res = run_study(cfg, progress=not args.quiet, figures=False if args.no_figures else None,
                    overwrite=args.overwrite)
    print(res.summary())
    return 0 if res.passed else 1


# ---------------------------------------------------------------------------------------------
# flow: one flow
# ---------------------------------------------------------------------------------------------
def _setup_flow(p):
    from .flows import scheme_names
    p.add_argument("problem")
    p.add_argument("--scheme", required=True, choices=scheme_names())
    _objective_args(p, entropy=0.5)
    p.add_argument("--t-end", type=_positive_float, default=10.0, help="flow time (default 10)")
    p.add_argument("--dt", type=float, default=None, help="fixed step (default: the scheme chooses)")
    p.add_argument("--max-steps", type=int, default=10**7)
    p.add_argument("--init", choices=["uniform", "gaussian"], default="uniform",
                   help="initial policy (default uniform)")
    p.add_argument("--mean", type=float, default=None,
                   help="mean of the gaussian initial policy (default 0; with --init gaussian)")
    p.add_argument("--std", type=float, default=None,
                   help="std of the gaussian initial policy (default 1; with --init gaussian)")
    p.add_argument("--option", action="append", type=lambda t: _parse_param(t, "--option"), metavar="KEY=VALUE",
                   help="scheme option (repeatable), e.g. --option cfl=0.3")
    p.add_argument("--frames", type=_int_in(1), default=100, help="saved frames (default 100)")
    p.add_argument("-o", "--output", help="write the trajectory to this HDF5 file")
    p.add_argument("--overwrite", action="store_true", help="replace the --output file if it exists")
    p.add_argument("--figures", metavar="DIR", help="draw J - J*, the action densities at nine states "
                   "and an animation into DIR")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def cmd_flow(args) -> int:
    from . import Policy, flow, problems, solve
    params = dict(args.param or [])
    mdp = problems.get(args.problem, **params)
    obj = _objective(args)
    if args.init == "uniform":
        given = [f for f, v in (("--mean", args.mean), ("--std", args.std)) if v is not None]
        if given:                      # they would be dropped: the uniform policy has neither
            from .errors import ValidationError
            raise ValidationError(f"{' and '.join(given)} shape the gaussian initial policy; "
                                  "add --init gaussian (the default initial policy is uniform)")
        pi0 = Policy.uniform(mdp)
    else:
        pi0 = Policy.gaussian(mdp, 0.0 if args.mean is None else args.mean,
                              1.0 if args.std is None else args.std)
    opts = dict(args.option or [])
    t0 = time.perf_counter()
    traj = flow(mdp, obj, pi0, scheme=args.scheme, t_end=args.t_end, dt=args.dt,
                save_every=args.t_end / max(args.frames, 1), progress=not args.quiet,
                max_steps=args.max_steps, **opts)
    wall = time.perf_counter() - t0
    sol = solve(mdp, obj, progress=False)
    d = traj.diagnostics
    print(f"problem     {args.problem} {params if params else ''}".rstrip())
    print(f"MDP         {mdp.n_states} states x {mdp.n_actions} actions")
    print(f"objective   {obj!r}")
    print(f"scheme      {traj.scheme} {opts if opts else ''}".rstrip())
    print(f"steps       {d.get('steps')} ({d.get('rejected', 0)} rejected), flow time {traj.times[-1]:.6g}")
    print(f"J           {traj.J[0]:.12g} -> {traj.J[-1]:.12g}")
    print(f"J*          {sol.J:.12g}   (wg.solve)")
    print(f"J - J*      {traj.J[-1] - sol.J:.3e}")
    print(f"stopped by  {d.get('stop_reason') or 't_end'}")
    print(f"time        {wall:.3f} s")
    if args.output:
        traj.to_hdf5(args.output, overwrite=args.overwrite)
        print(f"saved       {args.output}")
    if args.figures:
        for path in _trajectory_figures(traj, Path(args.figures), Path(args.output or "flow").stem,
                                        J_star=sol.J, reference=sol.policy):
            print(f"figure      {path}")
    return 0


# ---------------------------------------------------------------------------------------------
# plot: redraw a results file
# ---------------------------------------------------------------------------------------------
def _savefig(fig, path, dpi=110):
    import matplotlib.pyplot as plt
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return str(path)


def _trajectory_figures(traj, outdir: Path, stem: str, J_star=None, reference=None, dpi=110,
                        animation=True) -> list:
    from . import plot
    out = [_savefig(traj.plot(J_star=J_star).figure, outdir / f"{stem}_J.png", dpi)]
    if traj.actions is not None and len(traj) > 1:
        out.append(_savefig(plot.plot_frames_by_state(traj, reference=reference, time_label="flow time t",
                                                      reference_label="π* (optimum)"),
                            outdir / f"{stem}_states.png", dpi))
        if animation:
            out.append(str(plot.animate_flow(traj, outdir / f"{stem}.gif", J_star=J_star, title=traj.scheme,
                                             max_frames=40, dpi=min(dpi, 90))))
    return out


def _setup_plot(p):
    p.add_argument("file", help="an HDF5 file written by wgflow (a study, a Solution or Evaluation, "
                                "a Trajectory)")
    p.add_argument("-o", "--outdir", help="where to write the figures (default: beside the file)")
    p.add_argument("--dpi", type=_int_in(30, 600), default=None,
                   help="resolution of the PNG figures, 30 to 600 (default: the study's output.dpi, "
                        "else 110)")
    p.add_argument("--no-animation", action="store_true", help="PNG figures only")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def cmd_plot(args) -> int:
    from . import load
    from .errors import ValidationError
    from .evaluation import Evaluation, Solution
    from .flows import Trajectory
    from .study import StudyResult
    path = Path(args.file)
    obj = load(path)
    outdir = Path(args.outdir) if args.outdir else path.parent
    dpi = args.dpi or 110
    if isinstance(obj, StudyResult):
        paths = obj.plot(outdir, dpi=args.dpi, animation=False if args.no_animation else None,
                         progress=not args.quiet)
    elif isinstance(obj, (Solution, Evaluation)):
        paths = [_savefig(obj.plot(), outdir / f"{path.stem}.png", dpi)]
    elif isinstance(obj, Trajectory):
        paths = _trajectory_figures(obj, outdir, path.stem, dpi=dpi, animation=not args.no_animation)
    else:
        raise ValidationError(f"{path} holds a {type(obj).__name__}; wgflow plot draws studies "
                              "(wgflow run), solutions, evaluations and trajectories")
    for p in paths:
        print(p)
    return 0


# ---------------------------------------------------------------------------------------------
# the parser and main
# ---------------------------------------------------------------------------------------------
register("run", _setup_run, cmd_run, help="the main job: a whole study from a TOML config (default: "
         "the pendulum) -> one HDF5 file, figures, an animation and a summary table",
         description="Run a study: exact solution (with and without entropy), flows from one initial "
                     "policy, the Hessian spectrum with predicted vs measured rate, and the verify "
                     "checks. Writes OUTDIR/NAME.h5, OUTDIR/config.toml, PNG figures and a GIF. "
                     "Exit status 0 when every stage ran and every check passed, 1 otherwise (the "
                     "summary says which), 2 when it stops on an error (a bad config, an existing "
                     "results file, a problem the solver cannot handle: one line 'wgflow: error: ...').")
register("flow", _setup_flow, cmd_flow, help="run one flow on a built-in problem and print a summary")
register("plot", _setup_plot, cmd_plot, help="redraw the figures of a results file (wgflow run's HDF5, "
         "a Solution, a Trajectory)")
register("problems", _setup_problems, cmd_problems, help="list the built-in problems and their parameters")
register("solve", _setup_solve, cmd_solve, help="solve a built-in problem exactly and print a summary")
register("verify", _setup_verify, cmd_verify, help="run the numerical checks of the theory on a built-in "
         "problem and print the table (exit code 0 if all pass, 1 otherwise)")
register("info", lambda p: None, cmd_info, help="versions, numba threading and CPU, for bug reports")


def _setup_sweep(p):
    from .sweep import setup_cli
    setup_cli(p)


def cmd_sweep(args) -> int:
    from .sweep import run_cli
    return run_cli(args)


register("sweep", _setup_sweep, cmd_sweep, help="a parameter sweep: many studies from one base config "
         "(grid or list of dotted keys), on dask.distributed or serially -> one HDF5 file per run, "
         "a summary table (CSV, HDF5) and figures",
         description="A parameter sweep: many studies from one base config (grid or list of dotted "
                     "keys), on dask.distributed or serially -> one HDF5 file per run, a summary table "
                     "(CSV, HDF5) and figures (docs/sweeps.md). A rerun keeps the runs whose result "
                     "file is complete. Exit status 0 when no run failed, 1 when some failed, 2 when "
                     "it stops on an error before the runs (a bad sweep file or option: one line "
                     "'wgflow: error: ...'), 130 when interrupted (the finished runs are kept).")


class _Parser(argparse.ArgumentParser):
    """argparse with wgflow's error convention: one line on stderr, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from .version import __version__
    p = _Parser(prog="wgflow", description="Wasserstein-geometry policy optimization "
                                "on exactly solved grid MDPs.")
    p.add_argument("--version", action="version", version=f"wgflow {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd in COMMANDS.values():
        sp = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description or cmd.help)
        cmd.setup(sp)
        sp.set_defaults(func=cmd.run)
    from .nn.cli import register as _register_nn   # train, gym-eval (torch imported only when run)
    _register_nn(sub)
    return p


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv=None) -> int:
    """Run the command given by ``argv`` (default: the process's arguments); the exit status.

    Bad input, unreadable files and failed computations print one line ``wgflow: error: ...``
    on stderr and exit with status 2 (no traceback; set the environment variable
    ``WGFLOW_TRACEBACK=1`` to see it); an interruption exits with 130, a closed stdout (the
    output piped into ``head``) with 141.
    """
    import os
    from .errors import WgflowError
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "output", None):   # refuse a bad output path before any work
            from .validation import output_path
            output_path(args.output, "--output", f"wgflow {args.command}")
            # commands with --overwrite keep an existing file unless told to replace it
            if not getattr(args, "overwrite", True) and Path(args.output).exists():
                from .errors import ExistingFileError
                raise ExistingFileError(f"wgflow {args.command}: {args.output} exists; pass --overwrite "
                                        "to replace it, or choose another --output")
        return args.func(args)
    except BrokenPipeError:
        # the reader of stdout has gone (`wgflow ... | head`): not an error of the command; point
        # stdout at /dev/null so that the flush at exit does not raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141                     # 128 + SIGPIPE, as a shell reports a command ended by it
    except (WgflowError, OSError, MemoryError) as exc:
        if os.environ.get("WGFLOW_TRACEBACK", "0") == "1":
            raise
        what = "" if isinstance(exc, WgflowError) else f"{type(exc).__name__}: "
        print(f"wgflow: error: {what}{_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wgflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
