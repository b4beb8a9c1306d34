"""The ``wgflow`` command: ``problems``, ``solve``, ``verify``, ``info`` (and ``train``, ``gym-eval`` from :mod:`wgflow.nn.cli`)."""
from __future__ import annotations

import argparse
import ast
import platform
import sys
import time

from .evaluation import METHODS


def _parse_param(text: str):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param takes key=value, got {text!r}")
    key, value = text.split("=", 1)
    try:
        val = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        val = value
    return key.strip(), val


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


def cmd_solve(args) -> int:
    from . import problems, solve, save, Discounted, Average
    params = dict(args.param or [])
    t0 = time.perf_counter()
    mdp = problems.get(args.problem, **params)
    t1 = time.perf_counter()
    if args.objective == "average":
        obj = Average(entropy=args.entropy)
    else:
        obj = Discounted(gamma=args.gamma, entropy=args.entropy)
    sol = solve(mdp, obj, method=args.method, tol=args.tol, progress=False if args.quiet else None)
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
        save(args.output, sol)
        print(f"saved       {args.output}")
    return 0


def cmd_verify(args) -> int:
    from . import problems, Discounted, Average
    from . import verify as _verify
    params = dict(args.param or [])
    mdp = problems.get(args.problem, **params)
    if args.objective == "average":
        obj = Average(entropy=args.entropy)
    else:
        obj = Discounted(gamma=args.gamma, entropy=args.entropy)
    checks = None
    if args.checks:
        checks = [c.strip() for c in args.checks.split(",") if c.strip()]
    title = (f"wgflow verify {args.problem} {params if params else ''}".rstrip()
             + f": {mdp.n_states} states x {mdp.n_actions} actions, {obj!r}")
    report = _verify.run(mdp, obj, checks=checks, rng=args.seed, rates=not args.no_rates,
                         geodesics=not args.no_geodesics, progress=not args.quiet, title=title)
    print(report.table(notes=not args.no_notes))
    return 0 if report.passed else 1


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
    for name in ("ot", "tqdm", "quantecon", "mdptoolbox", "gymnasium"):
        try:
            mod = __import__(name)
            info[name] = getattr(mod, "__version__", "installed")
        except ImportError:
            info[name] = "not installed"
    info.update({f"numba.{k}" if k != "numba" else k: v for k, v in numba_environment().items()})
    return info


def cmd_info(args) -> int:
    for k, v in environment().items():
        print(f"{k:24s} {v}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with wgflow's error convention: one line on stderr, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="wgflow", description="Wasserstein-geometry policy optimization "
                                "on exactly solved grid MDPs.")
    sub = p.add_subparsers(dest="command", required=True)
    pp = sub.add_parser("problems", help="list the built-in problems and their parameters")
    pp.add_argument("name", nargs="?", help="describe one problem")
    pp.set_defaults(func=cmd_problems)
    ps = sub.add_parser("solve", help="solve a built-in problem exactly and print a summary")
    ps.add_argument("problem")
    ps.add_argument("--param", "-p", action="append", type=_parse_param, metavar="KEY=VALUE",
                    help="problem parameter (repeatable), e.g. --param n_theta=101")
    ps.add_argument("--objective", choices=["discounted", "average"], default="discounted")
    ps.add_argument("--gamma", type=float, default=0.95)
    ps.add_argument("--entropy", type=float, default=0.0)
    ps.add_argument("--method", default="auto", help="one of " + ", ".join(METHODS))
    ps.add_argument("--tol", type=float, default=1e-10)
    ps.add_argument("-o", "--output", help="save the Solution to this HDF5 file")
    ps.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ps.set_defaults(func=cmd_solve)
    pv = sub.add_parser("verify", help="run the numerical checks of the theory on a built-in problem "
                        "and print the table (exit code 0 if all pass, 1 otherwise)")
    pv.add_argument("problem")
    pv.add_argument("--param", "-p", action="append", type=_parse_param, metavar="KEY=VALUE",
                    help="problem parameter (repeatable), e.g. --param n_states=15")
    pv.add_argument("--objective", choices=["discounted", "average"], default="discounted")
    pv.add_argument("--gamma", type=float, default=0.95)
    pv.add_argument("--entropy", type=float, default=0.5,
                    help="entropy weight tau (default 0.5; the Gibbs and rate checks need tau > 0)")
    pv.add_argument("--checks", help="comma-separated subset of: gradient, riesz, dissipation, gibbs, "
                    "hessian, symmetry, rate, convexity")
    pv.add_argument("--no-rates", action="store_true", help="skip the rate check (an otto run)")
    pv.add_argument("--no-geodesics", action="store_true",
                    help="skip the metric-geodesic convexity row (a path-energy minimization)")
    pv.add_argument("--seed", type=int, default=0, help="seed of the random test directions")
    pv.add_argument("--no-notes", action="store_true", help="print the table without the notes")
    pv.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    pv.set_defaults(func=cmd_verify)
    pi = sub.add_parser("info", help="versions, numba threading and CPU, for bug reports")
    pi.set_defaults(func=cmd_info)
    from .nn.cli import register as _register_nn   # train, gym-eval (torch imported only when run)
    _register_nn(sub)
    return p


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv=None) -> int:
    """Run the command; bad input, unreadable files and failed computations print one line
    ``wgflow: error: ...`` on stderr and exit with status 2 (no traceback; set the environment
    variable ``WGFLOW_TRACEBACK=1`` to see it); an interruption exits with 130."""
    import os
    from .errors import WgflowError
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "output", None):   # refuse a bad output path before any work
            from .validation import output_path
            output_path(args.output, "--output", f"wgflow {args.command}")
        return args.func(args)
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
