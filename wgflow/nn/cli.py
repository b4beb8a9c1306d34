"""The ``wgflow train`` and ``wgflow gym-eval`` subcommands.

:func:`register` adds them to the main parser's subparsers; nothing here imports torch until a
command runs, so ``wgflow --help`` stays fast and works without the ``nn`` extra.
"""
from __future__ import annotations

import argparse
import ast

__all__ = ["register", "cmd_train", "cmd_gym_eval"]

_ALGOS = ("wpo", "wppg", "wppg-implicit", "reparam")


def _key_value(text: str):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        val = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        val = value
    return key.strip(), val


def cmd_train(args) -> int:
    from ..errors import ValidationError
    from .trainer import TrainConfig, train
    options = dict(args.set or [])
    unknown = sorted(set(options) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise ValidationError(f"--set: unknown option(s) {unknown}; options are the fields of "
                              "wgflow.nn.TrainConfig")
    for name in ("gamma", "objective", "eval_every", "checkpoint_every", "threads", "device",
                 "final_episodes", "eval_episodes"):
        v = getattr(args, name)
        if v is not None:
            options[name] = v
    if options.get("objective") == "average" and "gamma" in options:
        raise ValidationError("--gamma has no effect with --objective average (the gain is not "
                              "discounted); leave it out")
    res = train(args.env, algo=args.algo, steps=args.steps, seed=args.seed, output=args.output,
                params=dict(args.param or []), resume=not args.no_resume,
                progress=False if args.quiet else None, **options)
    print(res.summary())
    if args.output:
        print(f"saved       {args.output}")
    return 0


def _agent_for(path, env_id):
    """The agent stored in ``path`` (training result or wgflow Solution/Policy) and its env id."""
    import h5py
    from ..errors import FileFormatError, MissingFileError, ValidationError
    from pathlib import Path
    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"no such file: {p}")
    from ..h5 import check_bytes
    check_bytes(p)
    try:
        with h5py.File(p, "r") as f:
            kind = f.attrs.get("wgflow_type")
    except OSError as exc:
        raise FileFormatError(f"{p} is not a readable HDF5 file: {exc}") from exc
    from .results import RESULT_TYPE
    if kind == RESULT_TYPE:
        from .results import load_policy
        pol = load_policy(p)
        env_id = env_id or pol.env.get("gym_id")
        if env_id is None:
            raise ValidationError(f"{p} was not trained on an environment with a gymnasium twin: "
                                  "give --env")
        _check_state_box(pol.env, env_id, p)
        return pol, env_id
    if kind in ("Solution", "Policy", "Evaluation"):
        from ..io import load
        from .envs import GYM_ADAPTERS, SolutionAgent
        if env_id is None:
            raise ValidationError("running a grid solution in gymnasium needs --env")
        agent = SolutionAgent(load(p))
        ad = GYM_ADAPTERS.get(env_id)
        if ad is not None:
            import numpy as np
            b = agent.grid.bounds
            if b.shape != ad.state_bounds.shape or not np.allclose(b, ad.state_bounds, rtol=1e-9):
                raise ValidationError(f"the solution's state grid {b.tolist()} is not the state box "
                                      f"{ad.state_bounds.tolist()} of {env_id} ({ad.problem})")
        return agent, env_id
    raise FileFormatError(f"{p} holds neither a wgflow.nn training result nor a wgflow Solution "
                          f"(wgflow_type={kind!r})")


def _check_state_box(env: dict, env_id: str, path) -> None:
    """Refuse to run a trained policy in an environment whose states are other coordinates.

    The network reads the state of its training environment (``env["state_bounds"]``); the
    environment ``env_id`` hands it its own state (a twin's, or its raw observation), which must
    live in the same box, or the returns would be those of a policy fed another problem's states.
    """
    import numpy as np
    from ..errors import ValidationError
    from .envs import GYM_ADAPTERS, observation_box
    from ._torch import require_gymnasium
    ad = GYM_ADAPTERS.get(env_id)
    if ad is not None:
        box = ad.state_bounds
    else:
        gym = require_gymnasium()
        try:
            e = gym.make(env_id)
        except Exception as exc:        # gymnasium raises its own error types
            raise ValidationError(f"gymnasium cannot make {env_id!r}: {exc}") from exc
        box = observation_box(e.observation_space)
        e.close()
    mine = np.asarray(env.get("state_bounds"), dtype=float)
    if mine.shape != box.shape or not np.allclose(mine, box, rtol=1e-9, atol=0, equal_nan=False):
        raise ValidationError(f"{path} was trained on {env.get('name')!r} (state box {mine.tolist()}); "
                              f"{env_id} gives states in {np.asarray(box).tolist()}"
                              + (f" ({ad.problem})" if ad is not None else "")
                              + ": the policy would read another problem's states")


def cmd_gym_eval(args) -> int:
    from .envs import gym_evaluate
    agent, env_id = _agent_for(args.file, args.env)
    r = gym_evaluate(agent, env_id, episodes=args.episodes, seed=args.seed, gamma=args.gamma,
                     progress=not args.quiet)
    print(r.summary())
    print(f"discounted return (gamma {args.gamma}): {r.discounted.mean():.3f} +- {r.discounted.std():.3f}")
    return 0


def register(subparsers) -> None:
    """Add ``train`` and ``gym-eval`` to the main parser's ``subparsers``."""
    pt = subparsers.add_parser(
        "train", help="train a neural policy (WPO, WPPG, WPPG-implicit or a reparameterized baseline) "
        "on a wgflow problem or gymnasium environment; needs the 'nn' extra")
    pt.add_argument("env", metavar="PROBLEM_OR_ENV",
                    help="a wgflow problem built from dynamics (e.g. pendulum) or a gymnasium id "
                         "(e.g. Pendulum-v1)")
    pt.add_argument("--algo", choices=_ALGOS, default="wpo")
    pt.add_argument("--steps", type=int, default=30000, help="environment steps (default 30000)")
    pt.add_argument("--seed", type=int, default=0)
    pt.add_argument("-o", "--output", help="results file (HDF5); checkpoints go to OUTPUT.ckpt")
    pt.add_argument("--param", "-p", action="append", type=_key_value, metavar="KEY=VALUE",
                    help="problem parameter (repeatable), e.g. --param n_theta=101")
    pt.add_argument("--objective", choices=["discounted", "average"], default=None)
    pt.add_argument("--gamma", type=float, default=None, help="discount (default 0.99)")
    pt.add_argument("--eval-every", dest="eval_every", type=int, default=None,
                    help="steps between learning-curve points (default 2000)")
    pt.add_argument("--checkpoint-every", dest="checkpoint_every", type=int, default=None,
                    help="steps between checkpoints (default 5000; 0 = none)")
    pt.add_argument("--eval-episodes", dest="eval_episodes", type=int, default=None,
                    help="gymnasium episodes per learning-curve point (default 10)")
    pt.add_argument("--final-episodes", dest="final_episodes", type=int, default=None,
                    help="gymnasium episodes of the final evaluation (default 50)")
    pt.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    pt.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    pt.add_argument("--set", action="append", type=_key_value, metavar="KEY=VALUE",
                    help="any wgflow.nn.TrainConfig field, e.g. --set eta=0.1 (repeatable)")
    pt.add_argument("--no-resume", action="store_true",
                    help="start afresh even if OUTPUT.ckpt exists (default: resume from it)")
    pt.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    pt.set_defaults(func=cmd_train)

    pg = subparsers.add_parser(
        "gym-eval", help="run a trained policy or an exact grid solution in a gymnasium environment "
        "and print the mean +- std return; needs the 'gym' extra")
    pg.add_argument("file", metavar="FILE_OR_SOLUTION",
                    help="a results file of 'wgflow train' or a Solution saved by 'wgflow solve -o'")
    pg.add_argument("--env", default=None, help="gymnasium id (default: the training environment's twin)")
    pg.add_argument("--episodes", type=int, default=100)
    pg.add_argument("--seed", type=int, default=0, help="episode i is reset with seed SEED + i")
    pg.add_argument("--gamma", type=float, default=0.99, help="discount of the reported discounted return")
    pg.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    pg.set_defaults(func=cmd_gym_eval)
