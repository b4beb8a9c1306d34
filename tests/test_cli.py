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


# ------------------------------------------------------------------ version, choices, registry
def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"wgflow {wg.__version__}"


def test_solve_method_lists_its_choices(capsys):
    from wgflow.evaluation import _METHODS
    with pytest.raises(SystemExit):
        main(["solve", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert main(["solve", "garnet", "--method", "newton", "-q"]) == 2
    err = capsys.readouterr().err
    assert "unknown method 'newton'" in err
    for m in ("auto",) + tuple(_METHODS):
        assert m in help_text and m in err
    # and every listed method is one solve accepts (entropy > 0 for the soft method)
    for m in _METHODS:
        assert main(["solve", "garnet", "--param", "n_states=8", "--method", m, "--entropy", "0.1", "-q"]) == 0


def test_registered_subcommand_is_dispatched(capsys):
    from wgflow import cli
    seen = {}

    def setup(p):
        p.add_argument("word")

    def run(args):
        seen["word"] = args.word
        return 7
    cli.register("echo-test", setup, run, help="test command")
    try:
        assert main(["echo-test", "hello"]) == 7
        assert seen == {"word": "hello"}
    finally:
        del cli.COMMANDS["echo-test"]


def test_progress_bar_by_default_not_only_on_a_tty(capsys):
    # capsys's stderr is not a terminal: the bar is there anyway, and --quiet removes it
    assert main(["flow", "lqr1d", "--scheme", "pmd", "--param", "n_states=9", "--t-end", "2"]) == 0
    assert "flow (pmd)" in capsys.readouterr().err
    assert main(["flow", "lqr1d", "--scheme", "pmd", "--param", "n_states=9", "--t-end", "2", "-q"]) == 0
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------ run, plot, flow
TINY = ["--set", "problem.params.n_states=11", "--set", "problem.params.n_actions=9",
        "--set", "flows.schemes=otto,pmd", "--set", "flows.max_steps=80", "--set", "flows.max_seconds=0",
        "--set", "hessian.enabled=false", "--set", "verify.checks=gibbs", "--set", "output.dpi=40",
        "--set", "output.animation_frames=3", "--set", "solve.hard=false"]


def test_run_print_config_is_the_resolved_toml(capsys):
    from wgflow import config
    assert main(["run", "lqr1d", "--set", "objective.gamma=0.7", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert config.validate(config.tomllib.loads(out)) == config.load("lqr1d", ["objective.gamma=0.7"])
    assert main(["run", "--list-configs"]) == 0
    listed = [ln.split()[0] for ln in capsys.readouterr().out.splitlines()]
    assert listed == config.builtin_configs()


def test_run_bad_config_exits_2_before_any_work(capsys, tmp_path):
    out = tmp_path / "o"
    assert main(["run", "lqr1d", "-o", str(out), "--set", "flows.schemes=otto,wpp", "-q"]) == 2
    err = capsys.readouterr().err
    assert "flows.schemes" in err and "'wpp'" in err and "wppg" in err
    assert not out.exists()


def test_run_then_plot(capsys, tmp_path):
    out = tmp_path / "run"
    code = main(["run", "lqr1d", "-o", str(out), "-q"] + TINY)
    text = capsys.readouterr().out
    assert code == 0, text
    res = wg.load(out / "lqr1d.h5")
    assert f"{res.J_star:.12g}" in text
    assert "otto" in text and "pmd" in text and "gibbs" in text
    first = sorted(p.name for p in out.glob("*.png"))
    assert len(first) >= 6 and (out / "flow_otto.gif").exists()
    # a second run into the same directory stops before any work unless told to overwrite, also
    # under another study name (its config.toml and figures would replace these)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for extra in ([], ["--set", "study.name=other"]):
        assert main(["run", "lqr1d", "-o", str(out), "-q"] + TINY + extra) == 2
        err = capsys.readouterr().err
        assert "--overwrite" in err and "earlier study" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    redo = tmp_path / "redo"
    assert main(["plot", str(out / "lqr1d.h5"), "-o", str(redo), "--no-animation", "-q"]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(p.name for p in redo.glob("*.png")) == first
    assert sorted(printed) == sorted(str(redo / n) for n in first)


def test_flow_command_matches_the_library(capsys, tmp_path):
    path = tmp_path / "t.h5"
    argv = ["flow", "lqr1d", "--scheme", "pmd", "--param", "n_states=11", "--param", "n_actions=9",
            "--gamma", "0.8", "--entropy", "0.5", "--t-end", "6", "-o", str(path), "-q"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    mdp = wg.problems.get("lqr1d", n_states=11, n_actions=9)
    obj = wg.Discounted(0.8, entropy=0.5)
    ref = wg.flow(mdp, obj, wg.Policy.uniform(mdp), scheme="pmd", t_end=6.0, save_every=0.06, progress=False)
    traj = wg.load(path)
    np.testing.assert_array_equal(traj.J, ref.J)
    m = re.search(r"^J - J\*\s+(\S+)$", out, flags=re.M)
    # printed with 4 significant digits
    assert float(m.group(1)) == pytest.approx(ref.J[-1] - wg.solve(mdp, obj).J, rel=6e-4)
    figs = tmp_path / "figs"
    assert main(["plot", str(path), "-o", str(figs), "--dpi", "40", "-q"]) == 0
    assert (figs / "t_J.png").exists() and (figs / "t_states.png").exists() and (figs / "t.gif").exists()


def test_plot_rejects_what_it_cannot_draw(capsys, tmp_path):
    p = tmp_path / "mdp.h5"
    wg.save(p, wg.problems.get("garnet", n_states=5, n_actions=2))
    assert main(["plot", str(p)]) == 2
    assert "holds a MDP" in capsys.readouterr().err


def test_summary_reprs_do_not_dump_arrays(tmp_path):
    mdp = wg.problems.get("lqr1d", n_states=41, n_actions=31)
    obj = wg.Discounted(0.9, entropy=0.5)
    sol = wg.solve(mdp, obj)
    wg.save(tmp_path / "s.h5", sol)
    for obj_ in (wg.load(tmp_path / "s.h5"), sol, wg.evaluate(mdp, sol.policy, obj),
                 wg.hessian(mdp, obj, sol.policy), mdp, sol.policy):
        r = repr(obj_)
        assert len(r) < 400 and "array(" not in r and "[[" not in r, r
    assert f"J = {sol.J:.12g}" in repr(sol)


@pytest.mark.parametrize("argv", [["solve", "garnet", "--param", "n_states=5", "-q"],
                                  ["flow", "garnet", "--param", "n_states=5", "--scheme", "pmd",
                                   "--t-end", "0.5", "--frames", "2", "-q"]])
def test_output_file_is_kept_without_overwrite(capsys, tmp_path, argv):
    """solve -o and flow -o used to replace an existing file silently; now they stop before any
    work (the file's bytes unchanged) unless given --overwrite, as wgflow run does."""
    path = tmp_path / "out.h5"
    path.write_bytes(b"earlier results")
    assert main(argv + ["-o", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wgflow: error:") and "--overwrite" in err and str(path) in err
    assert path.read_bytes() == b"earlier results"
    assert main(argv + ["-o", str(path), "--overwrite"]) == 0
    out = capsys.readouterr().out
    obj = wg.load(path)
    # the file now holds this command's result: the J it printed
    J = obj.J if isinstance(obj, wg.Solution) else obj.J[-1]
    printed = parse_J(out) if argv[0] == "solve" else float(re.search(r"-> (\S+)$", out, re.M).group(1))
    assert printed == pytest.approx(J, rel=1e-11)     # printed with 12 significant digits


def test_run_no_figures_does_not_check_the_animation_scheme(capsys, tmp_path):
    """The built-in configs animate otto; --set flows.schemes=pmd --no-figures used to stop on
    output.animation_scheme, a key that only the (disabled) figures use."""
    argv = ["run", "lqr1d", "--set", "flows.schemes=pmd", "--print-config", "-o", str(tmp_path)]
    assert main(argv) == 2
    assert "output.animation_scheme" in capsys.readouterr().err
    assert main(argv + ["--no-figures"]) == 0
    cfg = wg.config.tomllib.loads(capsys.readouterr().out)
    assert cfg["flows"]["schemes"] == ["pmd"]
    assert cfg["output"]["figures"] is False and cfg["output"]["animation"] is False


@pytest.mark.parametrize("argv, flag", [(["plot", "x.h5", "--dpi", "-5"], "--dpi"),
                                        (["plot", "x.h5", "--dpi", "0"], "--dpi"),
                                        (["flow", "garnet", "--scheme", "pmd", "--frames", "0"], "--frames"),
                                        (["flow", "garnet", "--scheme", "pmd", "--frames", "-3"], "--frames"),
                                        (["flow", "garnet", "--scheme", "pmd", "--t-end", "0"], "--t-end")])
def test_bad_counts_are_usage_errors(capsys, argv, flag):
    """plot --dpi -5 used to end in a matplotlib traceback, --dpi 0 / flow --frames <= 0 were
    taken (as a silent single frame), and flow --t-end 0 was refused as 'save_every', an option the
    command does not have; now a one-line usage error naming the flag, exit 2."""
    with pytest.raises(SystemExit) as info:
        main(argv + ["-q"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and "must be" in err and "Traceback" not in err


@pytest.mark.parametrize("argv, words", [
    (["solve", "garnet", "--param", "n_states=5", "--objective", "average", "--gamma", "0.99"],
     ["--gamma 0.99", "average"]),
    (["flow", "garnet", "--param", "n_states=5", "--scheme", "pmd", "--objective", "average",
      "--gamma", "0.5"], ["--gamma 0.5", "average"]),
    (["flow", "garnet", "--param", "n_states=5", "--scheme", "pmd", "--std", "0.3"],
     ["--std", "--init gaussian"]),
    (["flow", "garnet", "--param", "n_states=5", "--scheme", "pmd", "--mean", "1", "--std", "0.3"],
     ["--mean and --std", "--init gaussian"]),
])
def test_options_that_would_be_ignored_are_refused(capsys, argv, words):
    """--gamma with the average cost and --mean/--std with the uniform initial policy used to be
    dropped without a word (the printed J was that of another problem than asked for)."""
    assert main(argv + ["-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wgflow: error:")
    for w in words:
        assert w in err, (w, err)



def test_closed_stdout_is_not_an_error():
    """`wgflow problems | head -1`: the reader closes the pipe; the command used to report
    'wgflow: error: BrokenPipeError' (exit 2). It now ends quietly with 141 (128 + SIGPIPE)."""
    proc = subprocess.Popen([sys.executable, "-m", "wgflow", "problems"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()                # before the command prints: its first write fails
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "error" not in err.lower() and "Traceback" not in err, err


@pytest.mark.parametrize("value", ["", ","])
def test_verify_empty_checks_is_refused(capsys, value):
    """verify --checks '' ran every check and --checks , ran none (only the solve row), both
    reported as passed; a list that names no check is now an error naming the choices."""
    assert main(["verify", "garnet", "--param", "n_states=5", "--checks", value, "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wgflow: error: --checks") and "gradient" in err


def test_run_into_a_file_stops_before_the_study(capsys, tmp_path, monkeypatch):
    """wgflow run -o FILE computed the whole study and then failed creating the directory
    (FileExistsError); now it stops before any work, naming the path."""
    import wgflow.study
    called = []
    monkeypatch.setattr(wgflow.study, "run_study", lambda *a, **k: called.append(1))
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["run", "lqr1d", "-o", str(f), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wgflow: error: output directory") and str(f) in err and "is a file" in err
    assert called == [] and f.read_text() == "x"
