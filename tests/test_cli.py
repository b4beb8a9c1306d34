"""Tests of the ``wgflow`` command line (wgflow.cli.main)."""
import re
import subprocess
import sys

import numba
import numpy as np
import pytest

import wgflow as wg
from wgflow.cli import main


def parse_J(out):
    m = re.search(r"^J\s+(\S+)$", out, flags=re.M)
    assert m, out
    return float(m.group(1))


def test_problems_lists_every_registry_name(capsys):
    assert main(["problems"]) == 0
    out = capsys.readouterr().out
    listed = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert listed == wg.problems.names()
    for name in wg.problems.names():
        for k in wg.problems.parameters(name):
            assert f"{k}=" in out


def test_problems_name_shows_parameters(capsys):
    assert main(["problems", "lqr1d"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("lqr1d:")
    for k, v in wg.problems.parameters("lqr1d").items():
        assert f"  {k} = {v!r}" in out


def test_solve_garnet_prints_J_of_solve(capsys):
    assert main(["solve", "garnet", "--param", "n_states=20", "-q"]) == 0
    out = capsys.readouterr().out
    sol = wg.solve(wg.problems.get("garnet", n_states=20), wg.Discounted(gamma=0.95))
    assert parse_J(out) == pytest.approx(sol.J, rel=1e-11)
    assert re.search(r"^MDP\s+20 states x 10 actions", out, flags=re.M)
    assert re.search(rf"^iterations\s+{sol.iterations}$", out, flags=re.M)


def test_solve_average_entropy_writes_loadable_solution(capsys, tmp_path):
    path = tmp_path / "sol.h5"
    argv = ["solve", "lqr1d", "--param", "n_states=31", "--param", "n_actions=15",
            "--objective", "average", "--entropy", "0.5", "-q", "-o", str(path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    sol = wg.load(path)
    assert isinstance(sol, wg.Solution)
    assert sol.objective == wg.Average(entropy=0.5)
    assert sol.method == "soft_policy_iteration"
    assert parse_J(out) == pytest.approx(sol.J, rel=1e-11)
    ref = wg.solve(wg.problems.get("lqr1d", n_states=31, n_actions=15), wg.Average(entropy=0.5))
    assert sol.J == pytest.approx(ref.J, rel=1e-10)
    np.testing.assert_allclose(sol.policy.masses, ref.policy.masses, rtol=1e-8, atol=1e-14)
    assert f"saved       {path}" in out


def test_info_prints_versions(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^numpy\s+{re.escape(np.__version__)}$", out, flags=re.M)
    assert re.search(rf"^numba\s+{re.escape(numba.__version__)}$", out, flags=re.M)
    assert re.search(rf"^wgflow\s+{re.escape(wg.__version__)}$", out, flags=re.M)


def test_unknown_param_exits_2_with_message(capsys):
    assert main(["solve", "garnet", "--param", "foo=1", "-q"]) == 2
    err = capsys.readouterr().err
    assert "wgflow: error:" in err and "'foo'" in err and "n_states" in err


def test_unknown_problem_exits_2(capsys):
    assert main(["solve", "no_such_problem", "-q"]) == 2
    err = capsys.readouterr().err
    assert "unknown problem" in err and "garnet" in err


def test_malformed_param_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["solve", "garnet", "--param", "n_states", "-q"])
    assert info.value.code == 2
    assert "key=value" in capsys.readouterr().err


@pytest.mark.parametrize("param", ["branching=0", "n_states=abc"])
def test_bad_param_value_exits_2(capsys, param):
    assert main(["solve", "garnet", "--param", param, "-q"]) == 2
    assert "wgflow: error:" in capsys.readouterr().err


def test_subprocess_module_entry_point():
    proc = subprocess.run([sys.executable, "-m", "wgflow.cli", "solve", "garnet", "-q"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    sol = wg.solve(wg.problems.get("garnet"), wg.Discounted(gamma=0.95))
    assert parse_J(proc.stdout) == pytest.approx(sol.J, rel=1e-11)


@pytest.mark.parametrize("extra, what", [(["--entropy", "-1"], "entropy"), (["--gamma", "1.0"], "gamma")])
def test_bad_objective_exits_2(capsys, extra, what):
    assert main(["solve", "garnet", "--param", "n_states=10", "-q"] + extra) == 2
    err = capsys.readouterr().err
    assert "wgflow: error:" in err and what in err
