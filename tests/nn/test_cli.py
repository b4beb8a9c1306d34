"""``wgflow train`` and ``wgflow gym-eval``."""
import re

import pytest

pytest.importorskip("torch")

import wgflow as wg  # noqa: E402
from wgflow.cli import main  # noqa: E402


def test_train_then_gym_eval(tmp_path, capsys):
    pytest.importorskip("gymnasium")
    out = tmp_path / "wpo.h5"
    rc = main(["train", "pendulum", "--algo", "wpo", "--steps", "40", "--seed", "1", "-o", str(out),
               "-p", "n_theta=9", "-p", "n_omega=9", "-p", "n_actions=7", "--eval-every", "20",
               "--eval-episodes", "1", "--final-episodes", "2", "--threads", "1", "-q",
               "--set", "hidden=(16, 16)", "--set", "critic_hidden=(16,16)", "--set", "batch_size=8",
               "--set", "learning_starts=10", "--set", "wpo_samples=2"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "exact J: deterministic" in text and "Pendulum-v1: mean return" in text
    import wgflow.nn as wnn
    res = wnn.load_result(out)
    assert res.config["steps"] == 40 and res.curve["step"].tolist() == [20.0, 40.0]
    assert main(["gym-eval", str(out), "--episodes", "3", "-q"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    m = re.match(r"Pendulum-v1: mean return (\S+) \+- (\S+) over 3 episodes", line)
    ref = wnn.gym_evaluate(wnn.load_policy(out), "Pendulum-v1", episodes=3)
    assert float(m.group(1)) == pytest.approx(ref.mean, abs=0.005)
    # the pendulum policy reads (theta, omega): the mountain car's (x, v) are refused, and so is a
    # discount beyond 1
    assert main(["gym-eval", str(out), "--env", "MountainCarContinuous-v0", "--episodes", "1", "-q"]) == 2
    assert main(["gym-eval", str(out), "--gamma", "1.5", "--episodes", "1", "-q"]) == 2
    err = capsys.readouterr().err
    assert "another problem's states" in err and "gamma must be" in err


def test_gym_eval_of_a_grid_solution(tmp_path, capsys):
    pytest.importorskip("gymnasium")
    path = tmp_path / "sol.h5"
    assert main(["solve", "pendulum", "-p", "n_theta=15", "-p", "n_omega=15", "-p", "n_actions=9",
                 "--gamma", "0.99", "-q", "-o", str(path)]) == 0
    capsys.readouterr()
    assert main(["gym-eval", str(path), "--env", "Pendulum-v1", "--episodes", "2", "-q"]) == 0
    assert "over 2 episodes" in capsys.readouterr().out
    # a solution of another problem is refused for Pendulum-v1, and a missing --env explained
    wg.save(tmp_path / "lqr.h5", wg.solve(wg.problems.get("lqr1d", n_states=11, n_actions=5),
                                          wg.Discounted(gamma=0.9)))
    assert main(["gym-eval", str(tmp_path / "lqr.h5"), "--env", "Pendulum-v1"]) == 2
    assert main(["gym-eval", str(path)]) == 2
    assert main(["gym-eval", str(tmp_path / "nope.h5"), "--env", "Pendulum-v1"]) == 2
    err = capsys.readouterr().err
    assert "not the state box" in err and "needs --env" in err and "no such file" in err


def test_train_rejects_unknown_options(capsys):
    assert main(["train", "pendulum", "--set", "warp=9", "--steps", "5"]) == 2
    assert "unknown option" in capsys.readouterr().err
    # a discount that the average cost would ignore is refused, not dropped
    assert main(["train", "pendulum", "--objective", "average", "--gamma", "0.9", "--steps", "5"]) == 2
    assert "--gamma has no effect" in capsys.readouterr().err
