"""Parameter sweeps (wgflow.sweep): a LocalCluster with a worker killed mid-sweep gives every run
exactly once, with the numbers of a serial run; a rerun does no work; failing runs are recorded;
bad sweep files are refused before any work."""
import csv
import importlib
import json
import os
import signal

import h5py
import numpy as np
import pytest

import wgflow as wg
from wgflow.config import ConfigError

SW = importlib.import_module("wgflow.sweep")   # the module (wg.sweep is the function)

# tiny runs: 9 states x 7 actions, otto (numba kernels, BLAS through the Hessian) and pmd
TINY = {"problem.params.n_states": 9, "problem.params.n_actions": 7, "flows.schemes": ["otto", "pmd"],
        "flows.max_steps": 150, "hessian.k": 1, "verify.enabled": False, "solve.hard": False}


def tiny_spec(name="tiny", **grid):
    return {"sweep": {"name": name, "base": "lqr1d"}, "set": dict(TINY),
            "grid": grid or {"objective.entropy": [0.5, 1.0, 2.0], "objective.gamma": [0.8, 0.9]}}


def done_lines(journal):
    with open(journal) as fh:
        return [line.split()[2] for line in fh if line.split()[1] == "done"]


def comparable(table):
    """The summary without the columns that depend on the machine (wall time, worker, memory)."""
    return {k: v for k, v in table.items() if k not in SW.MACHINE_COLUMNS}


def assert_same_tables(a, b):
    assert list(a) == list(b)
    for k in a:
        x, y = a[k], b[k]
        if x.dtype.kind == "f":
            # identical, not close: the same inputs through the same deterministic code with the
            # same libraries and one BLAS/numba thread give the same floating-point operations in
            # the same order, whichever process runs them
            np.testing.assert_array_equal(x, y, err_msg=k)
        else:
            assert list(x) == list(y), k


def test_local_cluster_worker_killed_mid_sweep(tmp_path):
    """Two worker processes; the one that delivered the first result is killed (SIGKILL) while it
    runs its next run. Every run completes exactly once, the results equal a serial run's, and a
    rerun does no work."""
    pytest.importorskip("distributed")
    from distributed import default_client
    spec = tiny_spec()
    state = {}

    def kill_after_first(row):
        if state:
            return
        pid = int(row["worker"].rsplit(":", 1)[1])
        client = default_client()                 # the sweep's own client to its LocalCluster
        addr = next(a for a, p in client.run(os.getpid).items() if p == pid)
        state["running"] = [k for k in client.processing()[addr]]
        state["pid"] = pid
        os.kill(pid, signal.SIGKILL)

    res = wg.sweep(spec, outdir=tmp_path / "dask", workers=2, progress=False, callback=kill_after_first)
    n = 6
    assert res.diagnostics["executor"] == "dask LocalCluster" and res.diagnostics["workers"] == 2
    assert res.counts == {"runs": n, "computed": n, "skipped": 0, "failed": 0}
    assert [r["status"] for r in res.rows] == ["ok"] * n
    # the killed worker was running a run; that run was done again by another process
    assert state["running"]
    interrupted = [r for r in res.rows if f"wgflow-run-{r['run_id']}" in state["running"]]
    assert interrupted and all(int(r["worker"].rsplit(":", 1)[1]) != state["pid"] for r in interrupted)
    # exactly once: one "done" per run in the journal, one result file per run
    done = done_lines(res.paths["journal"])
    assert sorted(done) == sorted(r["run_id"] for r in res.rows)
    files = sorted(p.name for p in (tmp_path / "dask" / "runs").iterdir())
    assert files == sorted(f"{r['run_id']}.h5" for r in res.rows)

    # the same sweep, serially in this process: identical numbers
    ser = wg.sweep(spec, outdir=tmp_path / "serial", executor="serial", progress=False)
    assert_same_tables(comparable(res.table()), comparable(ser.table()))
    for r in res.rows:
        with h5py.File(tmp_path / "dask" / r["file"]) as fa, h5py.File(tmp_path / "serial" / r["file"]) as fb:
            for s in ("otto", "pmd"):
                np.testing.assert_array_equal(fa[f"flows/{s}/history/J"][...], fb[f"flows/{s}/history/J"][...])

    # a rerun does no work: nothing computed, no cluster, no file rewritten
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "dask" / "runs").iterdir()}
    again = wg.sweep(spec, outdir=tmp_path / "dask", workers=2, progress=False)
    assert again.counts == {"runs": n, "computed": 0, "skipped": n, "failed": 0}
    assert again.diagnostics["executor"] == "none"
    assert done_lines(res.paths["journal"]) == done
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "dask" / "runs").iterdir()} == mtimes
    assert_same_tables(comparable(again.table()), comparable(res.table()))


def test_serial_sweep_summary_failures_and_resume(tmp_path, monkeypatch):
    """Rows carry each run's parameters (J* equals an independent wg.solve with them); a run that
    raises (here: a user-registered metric family, for the runs with step 0.5; what the study
    can check before running is refused before the sweep starts) is recorded with its error and
    the others go on; the summary reads back with csv and h5py; a rerun retries only the failed
    runs."""
    spec = {"sweep": {"name": "step", "base": "lqr1d"},
            "set": dict(TINY, **{"flows.schemes": ["pmd"], "hessian.enabled": False}),
            "grid": {"flows.options.pmd.step": [2.0, 0.5], "objective.entropy": [0.5, 1.0]}}
    spec["sweep"]["metrics"] = ["study", "size"]       # a user-registered metric family

    def size(res):
        if res.config["flows"]["options"]["pmd"]["step"] == 0.5:
            raise RuntimeError("no size at step 0.5")
        return {"n_states": res.mdp.n_states, "n_actions": res.mdp.n_actions}
    monkeypatch.setitem(SW.SWEEP_METRICS, "size", SW.Metric("size", size))
    seen = []
    res = wg.sweep(spec, outdir=tmp_path, executor="serial", progress=False, callback=seen.append)
    assert res.counts == {"runs": 4, "computed": 4, "skipped": 0, "failed": 2}
    assert [r["index"] for r in seen] == [0, 1, 2, 3]
    for r in res.rows:
        if r["flows.options.pmd.step"] == 0.5:
            assert r["status"] == "failed" and "RuntimeError: no size at step 0.5" in r["error"]
            assert (tmp_path / "runs" / f"{r['run_id']}.error.txt").exists() and r["file"] == ""
        else:
            assert r["status"] == "ok" and r["error"] == ""
            assert (r["n_states"], r["n_actions"]) == (9, 7)
            mdp = wg.problems.get("lqr1d", n_states=9, n_actions=7)
            exact = wg.solve(mdp, wg.Discounted(0.9, entropy=r["objective.entropy"]), method="policy_iteration")
            # the study solves to the rounding floor, certified below 1e-12 max|V| at gamma 0.9
            # (hence on J); policy iteration is exact to rounding: a few ulps of |J| times kappa = 10
            bound = 1e-12 * np.max(np.abs(exact.V)) + 64 * np.finfo(float).eps * 10 * abs(exact.J)
            assert abs(r["J_star"] - exact.J) <= bound
            assert r["pmd.gap"] >= -bound

    # the summary, read back without wgflow: csv + h5py agree with the result
    with open(tmp_path / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    t = res.table()
    assert [float(x["J_star"]) if x["J_star"] else np.nan for x in rows] == pytest.approx(list(t["J_star"]),
                                                                                       nan_ok=True, rel=0)
    with h5py.File(tmp_path / "summary.h5") as f:
        g = f["summary"]
        assert json.loads(g.attrs["columns"]) == res.columns
        np.testing.assert_array_equal(g["J_star"][...], t["J_star"])
        assert [s.decode() for s in g["status"][...]] == list(t["status"])
    back = SW.read_summary(tmp_path)
    assert list(back) == res.columns and list(back["run_id"]) == list(t["run_id"])
    try:
        import pandas as pd
    except ImportError:
        pd = None
    if pd is not None:
        df = pd.read_csv(tmp_path / "summary.csv")
        np.testing.assert_array_equal(df["J_star"].to_numpy(), t["J_star"])

    # a run file is a study file; the metrics computed from it (as a rerun does when metric
    # families are added) equal the row computed in memory by the run
    ok = [r for r in res.rows if r["status"] == "ok"][0]
    study = wg.load(tmp_path / ok["file"])
    again = SW.compute_metrics(study, ["study"])["study"]
    assert all(v == ok[k] or (v != v and ok[k] != ok[k]) for k, v in again.items())

    # rerun: the two complete runs are skipped, the two failed runs are tried again (and fail)
    again = wg.sweep(spec, outdir=tmp_path, executor="serial", progress=False)
    assert again.counts == {"runs": 4, "computed": 2, "skipped": 2, "failed": 2}


def test_resume_ignores_a_damaged_file(tmp_path):
    """A truncated result file is not complete: the run is computed again and the file replaced."""
    spec = tiny_spec("dmg", **{"objective.entropy": [0.5]})
    spec["set"].update({"flows.schemes": ["pmd"], "hessian.enabled": False})
    res = wg.sweep(spec, outdir=tmp_path, executor="serial", progress=False)
    path = tmp_path / res.rows[0]["file"]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    again = wg.sweep(spec, outdir=tmp_path, executor="serial", progress=False)
    assert again.counts["computed"] == 1
    assert wg.load(path).J_star == res.rows[0]["J_star"]


def _flip_byte_of(path, dataset):
    """Change one byte of a dataset's stored data (contiguous layout), nothing else."""
    with h5py.File(path, "r") as f:
        offset = f[dataset].id.get_offset()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_damaged_data_is_found_by_the_seal(tmp_path):
    """One changed byte in a result's or the summary's data (HDF5 reads it without complaint):
    the run is computed again, and the summary reader refuses the file."""
    spec = tiny_spec("flip", **{"objective.entropy": [0.5]})
    spec["set"].update({"flows.schemes": ["pmd"], "hessian.enabled": False})
    res = wg.sweep(spec, outdir=tmp_path, executor="serial", progress=False)
    path = tmp_path / res.rows[0]["file"]
    _flip_byte_of(path, "solution/soft/V")
    again = wg.sweep(spec, outdir=tmp_path, executor="serial", progress=False)
    assert again.counts["computed"] == 1
    np.testing.assert_array_equal(wg.load(path).J_star, res.rows[0]["J_star"])
    _flip_byte_of(tmp_path / "summary.h5", "summary/J_star")
    with pytest.raises(wg.FileFormatError, match="does not match its checksum"):
        SW.read_summary(tmp_path)


def test_wall_clock_budgets(tmp_path):
    """A sweep refuses wall-clock budgets it is given and disables those of its base (lqr1d has
    flows.max_seconds = 20), saying so."""
    for key in ("flows.max_seconds", "flows.options.otto.max_seconds"):
        spec = tiny_spec()
        spec["set"][key] = 5.0
        with pytest.raises(ConfigError, match="wall-clock budgets") as e:
            SW.load_spec(spec)
        assert e.value.key == key and isinstance(e.value, ValueError)
    spec = tiny_spec()
    spec["grid"] = {"flows.max_seconds": [0.0, 3.0]}
    with pytest.raises(ConfigError, match="wall-clock"):
        SW.load_spec(spec)
    tasks = SW.load_spec(tiny_spec()).tasks()
    assert wg.config.load("lqr1d")["flows"]["max_seconds"] > 0
    assert all(t.config["flows"]["max_seconds"] == 0 for t in tasks)


@pytest.mark.parametrize("patch, key, match", [
    ({"grid": {"objective.entropy": 0.5}}, "grid.objective.entropy", "non-empty list"),
    ({"list": {"objective.entropy": [0.5, 1.0], "objective.gamma": [0.9]}}, "list", "equal lengths"),
    ({"sweep": {"name": "x", "base": "lqr1d", "metrcs": ["study"]}}, "sweep.metrcs", "unknown key"),
    ({"sweep": {"name": "x", "base": "lqr1d", "metrics": ["rates"]}}, "sweep.metrics", "unknown metric"),
    ({"grids": {}}, "grids", "unknown section"),
    ({"grid": {"objective.gama": [0.9, 0.8]}}, "objective.gama", "unknown key"),
    ({"grid": {"objective.gamma": [0.9, 1.5]}}, "objective.gamma", r"must be in \[0, 1\)"),
    ({"grid": {"objective.entropy": [0.5, 0.5]}}, "", "same configuration"),
    ({"grid": {"flows.max_steps": [10, 20]}}, "set.flows.max_steps", "swept too"),
    ({"cases": [{"case": "a", "objective.entropy": 1.0}]}, "cases[0].objective.entropy", "swept too"),
    ({"cases": [{"objective.gamma": 0.9}]}, "cases[0].case", "needs a name"),
    ({"sweep": {"name": "x", "base": "lqr1d", "metrics": ["wppg_bandit"]}}, "problem.name", "quadratic bandit"),
])
def test_bad_sweeps_are_refused_before_work(tmp_path, patch, key, match):
    spec = tiny_spec()
    spec.update(patch)
    with pytest.raises(ConfigError, match=match) as e:
        wg.sweep(spec, outdir=tmp_path, executor="serial", progress=False)
    assert e.value.key == key
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("kwargs, key", [({"workers": -1}, "workers"), ({"workers": 0}, "workers"),
                                         ({"workers": 1.5}, "workers"), ({"callback": 3}, "callback")])
def test_bad_runtime_arguments_are_refused_before_work(tmp_path, kwargs, key):
    # (workers=-1 used to start a cluster without workers and wait for ever)
    with pytest.raises(ConfigError) as e:
        wg.sweep(tiny_spec(), outdir=tmp_path, executor="serial", progress=False, **kwargs)
    assert e.value.key == key
    assert not (tmp_path / "runs").exists()


def test_bad_run_is_named():
    spec = tiny_spec()
    spec["grid"] = {"objective.gamma": [0.9, 1.5]}
    with pytest.raises(ConfigError, match=r"in run 1: objective.gamma = 1.5"):
        SW.load_spec(spec).tasks()


def test_expansion_order_and_ids():
    """cases x list x grid, in that order; the id hashes the configuration (not the study name)."""
    spec = SW.load_spec({"sweep": {"base": "lqr1d"},
                                "cases": [{"case": "a"}, {"case": "b", "objective.gamma": 0.8}],
                                "list": {"objective.entropy": [0.5, 1.0], "flows.t_end": [10.0, 5.0]},
                                "grid": {"problem.params.n_states": [9, 11]}})
    tasks = spec.tasks()
    assert len(tasks) == 8
    got = [(t.params["case"], t.params["objective.entropy"], t.params["flows.t_end"],
            t.params["problem.params.n_states"]) for t in tasks]
    assert got == [(c, e, te, ns) for c in "ab" for e, te in [(0.5, 10.0), (1.0, 5.0)] for ns in (9, 11)]
    assert all(t.config["objective"]["gamma"] == (0.9 if t.params["case"] == "a" else 0.8) for t in tasks)
    cfg = tasks[0].config
    other = wg.config.load(dict(cfg), ["study.name=renamed", "output.dir=elsewhere"])
    assert SW.config_hash(other) == tasks[0].hash
    assert SW.config_hash(wg.config.load(dict(cfg), ["objective.entropy=0.6"])) != tasks[0].hash


def test_builtin_sweeps_load():
    """The shipped studies expand into valid runs (the runs themselves: docs/sweeps.md)."""
    assert {"otto_rates", "wppg_bias"} <= set(SW.builtin_sweeps())
    otto = SW.load_spec("otto_rates").tasks()
    assert len(otto) == 24 and {t.config["problem"]["name"] for t in otto} == {"lqr1d", "pendulum"}
    wppg = SW.load_spec("wppg_bias").tasks()
    assert len(wppg) == 16 and all(t.config["problem"]["name"] == "quadratic_bandit" for t in wppg)


def test_figure_from_summary(tmp_path):
    """plot_sweep draws measured markers and predicted lines per series; a missing column is named."""
    import matplotlib
    matplotlib.use("Agg")
    t = {"status": np.array(["ok"] * 4, dtype=object), "x": np.array([0.1, 0.2, 0.1, 0.2]),
         "g": np.array([0.9, 0.9, 0.8, 0.8]), "m": np.array([1.0, 2.0, 1.5, 2.5]),
         "p": np.array([1.1, 2.1, 1.4, 2.4])}
    fig = SW.plot_sweep(t, {"name": "f", "labels": {"x": "entropy τ", "g": "γ"},
                                   "panels": [{"x": "x", "series": "g", "measured": ["m"], "predicted": ["p"],
                                               "logx": True}, {"x": "x", "series": "g", "measured": ["m"],
                                                               "kind": "relative_error", "reference": "p"}]})
    a, b = fig.axes
    assert a.get_xlabel() == "entropy τ" and a.get_xscale() == "log"
    assert [t.get_text() for t in fig.legends[0].get_texts()][:2] == ["γ = 0.9", "γ = 0.8"]
    ys = sorted(float(y) for line in b.get_lines() for y in line.get_ydata())
    np.testing.assert_allclose(ys, sorted([0.1 / 1.1, 0.1 / 2.1, 0.1 / 1.4, 0.1 / 2.4]))
    with pytest.raises(ConfigError, match="no column 'q'"):
        SW.plot_sweep(t, {"name": "f", "panels": [{"x": "x", "measured": ["q"]}]})
    fig.savefig(tmp_path / "f.png")


def test_cli_sweep(tmp_path, capsys):
    from wgflow.cli import main
    f = tmp_path / "s.toml"
    sets = dict(TINY, **{"flows.schemes": ["pmd"], "hessian.enabled": False})
    f.write_text('[sweep]\nname = "cli"\nbase = "lqr1d"\n\n[set]\n'
                 + "".join(f'"{k}" = {wg.config._toml_value(v)}\n' for k, v in sets.items())
                 + '\n[grid]\n"objective.entropy" = [0.5, 1.0]\n')
    out = tmp_path / "out"
    assert main(["sweep", str(f), "-o", str(out), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("pending") == 2
    assert main(["sweep", str(f), "-o", str(out), "--serial", "-q", "--grid", "objective.gamma=[0.8,0.9]"]) == 0
    text = capsys.readouterr().out
    assert "4 runs (4 computed" in text and "wall-clock budgets disabled" in text
    assert main(["sweep", str(out / "sweep.toml"), "--serial", "-q"]) == 0     # the saved sweep reruns
    assert "4 runs (0 computed, 4 already complete" in capsys.readouterr().out
    assert main(["sweep", str(f), "--set", "flows.max_seconds=3", "-o", str(out)]) == 2
    assert "wall-clock budgets" in capsys.readouterr().err


def test_command_line_set_wins_over_a_case():
    """--set applies to every run: over [set] and over a case's own value of the same key (the
    pendulum case of otto_rates sets n_actions = 11; --set n_actions = 7 used to be dropped for it
    while it applied to the lqr1d case). The run's configuration equals the base loaded directly
    with the same keys; the saved sweep.toml reproduces the runs (same hashes)."""
    spec = SW.load_spec("otto_rates", ["problem.params.n_actions=7"])
    tasks = spec.tasks()
    for t in tasks:
        assert t.config["problem"]["params"]["n_actions"] == 7, t.params
    pend = next(t for t in tasks if t.params["case"] == "pendulum")
    # the pendulum case: its own n_theta/n_omega, the command line's n_actions, the [set] keys
    ref = wg.config.load("pendulum", [(k, v) for k, v in spec.set.items()]
                         + [("problem.params.n_theta", 31), ("problem.params.n_omega", 31),
                            ("objective.gamma", pend.params["objective.gamma"]),
                            ("objective.entropy", pend.params["objective.entropy"]),
                            ("flows.max_seconds", 0.0)])     # what a sweep sets in every run
    assert ref["problem"]["params"] == pend.config["problem"]["params"]
    assert SW.config_hash(ref) == pend.hash
    # a table merges key by key, as it does in [set] (it used to replace problem.params: lqr1d
    # lost its n_states = 51)
    table = SW.load_spec("otto_rates", ["problem.params={n_actions=7}"]).tasks()
    assert [t.hash for t in table] == [t.hash for t in tasks]
    saved = wg.config.tomllib.loads(spec.to_toml())
    assert saved["cases"][1]["problem.params.n_actions"] == 7        # the pendulum case
    again = SW.load_spec(saved).tasks()
    assert [t.hash for t in again] == [t.hash for t in tasks]


@pytest.mark.parametrize("kwargs, key", [
    ({"executor": "serial", "workers": 2}, "workers"),
    ({"executor": "serial", "memory_limit": "4GiB"}, "memory_limit"),
    ({"executor": "serial", "scheduler": "tcp://127.0.0.1:1"}, "scheduler"),
    ({"scheduler": "tcp://127.0.0.1:1", "workers": 2}, "workers"),
    ({"scheduler": "tcp://127.0.0.1:1", "memory_limit": "4GiB"}, "memory_limit"),
    ({"executor": "dask", "memory_limit": "foo"}, "memory_limit"),
    ({"executor": "dask", "memory_limit": "-1GB"}, "memory_limit"),
])
def test_executor_options_that_would_be_ignored_or_unreadable_are_refused(tmp_path, kwargs, key):
    """Options the chosen executor does not use (the serial executor has no workers, a given
    scheduler has its own) used to be dropped without a word; a memory limit dask cannot read
    raised a ValueError traceback after the output directory was written. Both stop before any
    file is written or process started."""
    if kwargs.get("executor") == "dask" or "scheduler" in kwargs:
        pytest.importorskip("distributed")
    with pytest.raises(ConfigError) as e:
        wg.sweep(tiny_spec(), outdir=tmp_path / "out", progress=False, **kwargs)
    assert e.value.key == key
    assert not (tmp_path / "out").exists()


def test_dry_run_follows_no_resume(tmp_path, capsys):
    """--dry-run --no-resume used to list finished runs as complete although --no-resume computes
    them again; the listing now says what the same command without --dry-run does."""
    from wgflow.cli import main
    spec = tiny_spec(**{"objective.entropy": [0.5, 1.0]})
    spec["set"].update({"flows.schemes": ["pmd"], "hessian.enabled": False})
    f = tmp_path / "s.toml"
    f.write_text(SW.load_spec(spec).to_toml())
    out = tmp_path / "out"
    assert main(["sweep", str(f), "-o", str(out), "--serial", "-q"]) == 0
    capsys.readouterr()
    assert main(["sweep", str(f), "-o", str(out), "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert listed.count("complete") == 2 and "pending" not in listed
    assert main(["sweep", str(f), "-o", str(out), "--dry-run", "--no-resume"]) == 0
    listed = capsys.readouterr().out
    assert listed.count("pending") == 2 and "complete" not in listed
    assert main(["sweep", str(f), "-o", str(out), "--serial", "-q", "--no-resume"]) == 0
    assert "2 runs (2 computed, 0 already complete" in capsys.readouterr().out


def test_a_directory_named_like_a_builtin_sweep_does_not_hide_it(tmp_path, monkeypatch):
    """wg.sweep("otto_rates", outdir="otto_rates") (docs/sweeps.md) leaves a directory otto_rates/;
    resuming with the same call used to fail reading that directory as the sweep file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "otto_rates").mkdir()
    (tmp_path / "otto_rates" / "sweep.toml").write_text("")
    spec = SW.load_spec("otto_rates")
    assert spec.source == str(SW.builtin_sweep_path("otto_rates"))
    assert [t.hash for t in spec.tasks()] == [t.hash for t in SW.load_spec(spec.source).tasks()]
    (tmp_path / "out").mkdir()
    with pytest.raises(ConfigError, match="out is a directory, not a sweep file"):
        SW.load_spec("out")


def test_flag_column_reads_the_same_with_a_failed_run(tmp_path):
    """A boolean column (verify_passed) turns to text when a failed run has no value; its CSV cells
    used to read 'True'/'False' there and 'true'/'false' otherwise. The cells of the runs that have
    a value are now the same either way."""
    ok = [{"index": i, "run_id": f"r{i}", "_params": [], "status": "ok", "error": "",
           "verify_passed": flag} for i, flag in enumerate([True, False])]
    failed = {"index": 2, "run_id": "r2", "_params": [], "status": "failed", "error": "E"}

    def cells(rows, d):
        d.mkdir()
        SW._write_summary(rows, d)
        with open(d / "summary.csv") as fh:
            return [r["verify_passed"] for r in csv.DictReader(fh)]
    assert cells(ok, tmp_path / "a") == ["true", "false"]
    assert cells(ok + [failed], tmp_path / "b") == ["true", "false", ""]
    assert list(SW.read_summary(tmp_path / "b")["verify_passed"]) == ["true", "false", ""]


def test_outdir_that_is_a_file_is_refused(tmp_path):
    """An output directory that is a file used to end in a bare NotADirectoryError."""
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a directory") as e:
        wg.sweep(tiny_spec(), outdir=f, executor="serial", progress=False)
    assert e.value.key == "outdir" and f.read_text() == "x"


@pytest.mark.parametrize("grid, key", [({"flows.options.otto.cfl": [0.3, "abc"]}, "flows.options.otto"),
                                       ({"initial.mean": [0.5, [0.1, 0.2]]}, "initial")])
def test_values_checked_on_the_built_problem_are_refused_before_work(tmp_path, grid, key):
    """A scheme option of the wrong type, or an initial mean that does not fit the action grid, is
    found by run_study only once the problem is built; a sweep used to start, and the run with the
    bad value failed on its worker. Now the sweep stops first, naming the run and the key."""
    spec = tiny_spec(**grid)
    spec["set"]["initial.kind"] = "gaussian"
    with pytest.raises(ConfigError, match=r"\(in run 1: ") as e:
        wg.sweep(spec, outdir=tmp_path, executor="serial", progress=False)
    assert e.value.key == key
    assert not (tmp_path / "runs").exists()
