"""Tests of wgflow.config: TOML configs, dotted overrides, rejection of bad configs up front."""
import filecmp
import sys
from pathlib import Path

import pytest

import wgflow as wg
from wgflow import config as C
from wgflow.errors import ValidationError, WgflowError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


def test_shipped_configs_load_and_the_repo_copies_match_the_package():
    names = C.builtin_configs()
    assert set(names) >= {"pendulum", "mountain_car", "lqr1d", "lqr2d", "garnet"}
    for name in names:
        cfg = C.load(name)
        assert cfg["problem"]["name"] == name and cfg["study"]["name"] == name
        # the configs/ folder of the repository holds the same files as the package data
        assert filecmp.cmp(REPO / "configs" / f"{name}.toml", Path(str(C.builtin_path(name))), shallow=False)
    assert sorted(p.stem for p in (REPO / "configs").glob("*.toml")) == names


def test_default_is_the_pendulum_study_and_defaults_fill_every_key():
    cfg = C.load()
    assert cfg["problem"]["name"] == "pendulum"
    partial = C.load({"problem": {"name": "lqr1d"}})
    for section, keys in C.DEFAULTS.items():
        assert set(partial[section]) == set(keys)
    assert partial["objective"] == C.DEFAULTS["objective"]


def test_toml_roundtrip(tmp_path):
    cfg = C.load("lqr2d", ["flows.options.otto.cfl=0.3"])
    text = C.to_toml(cfg)
    assert tomllib.loads(text) == cfg
    p = tmp_path / "c.toml"
    p.write_text(text)
    assert C.load(p) == cfg


def test_overrides_are_toml_values_or_bare_strings():
    assert C.parse_override("objective.gamma=0.99") == ("objective.gamma", 0.99)
    assert C.parse_override("flows.max_steps=10") == ("flows.max_steps", 10)
    assert C.parse_override("problem.name=mountain_car") == ("problem.name", "mountain_car")
    assert C.parse_override('flows.schemes=["otto", "pmd"]') == ("flows.schemes", ["otto", "pmd"])
    assert C.parse_override("solve.hard=false") == ("solve.hard", False)
    cfg = C.load("lqr1d", ["flows.schemes=otto, pmd", "problem.params.n_states=21",
                           "flows.options.jko.default_dt=2.0"])
    assert cfg["flows"]["schemes"] == ["otto", "pmd"]
    assert cfg["problem"]["params"]["n_states"] == 21
    assert cfg["flows"]["options"]["jko"]["default_dt"] == 2.0
    assert C.load("lqr1d", {"objective.gamma": 0.5})["objective"]["gamma"] == 0.5
    with pytest.raises(C.ConfigError, match="KEY=VALUE"):
        C.parse_override("objective.gamma")


@pytest.mark.parametrize("overrides, key, words", [
    (["objective.gama=0.9"], "objective.gama", ["unknown key", "entropy, gamma, kind"]),
    (["flows.schemes=otto,ottto"], "flows.schemes", ["'ottto'", "jko, otto, pg, pmd, wpo, wppg"]),
    (["objective.gamma=1.0"], "objective.gamma", ["[0, 1)", "got 1"]),
    (["objective.kind=ergodic"], "objective.kind", ["'ergodic'", "discounted, average"]),
    (["problem.params.n_thetas=5"], "problem.params.n_thetas", ["no parameter", "n_theta"]),
    (["problem.params.n_theta=5.5"], "problem.params.n_theta", ["integer"]),
    (["flows.max_steps=0"], "flows.max_steps", ["[1, inf]"]),
    (["flows.options.otto.cfll=0.3"], "flows.options.otto.cfll", ["unknown option", "cfl", "monotone"]),
    (["hessian.mobility=harmonic"], "hessian.mobility", ["sg, logmean, arithmetic"]),
    (["verify.checks=gradient,rates"], "verify.checks", ["'rates'", "convexity"]),
    (["output.animation_scheme=pg"], "output.animation_scheme", ["one of flows.schemes"]),
    (["objective.entropy=0"], "hessian.enabled", ["entropy > 0"]),
    (["study.name=my study"], "study.name", ["not allowed"]),
    (["solve.method=newton"], "solve.method", ["policy_iteration", "value_iteration"]),
    (["flows=3"], "flows", ["is a table"]),
    # a range without an upper bound (the message used to crash formatting 'inf' as a number)
    (["objective.entropy=-1"], "objective.entropy", ["[0, inf]", "got -1"]),
    (["flows.t_end=0"], "flows.t_end", ["(0, inf]", "got 0"]),
    (["objective.entropy=inf"], "objective.entropy", ["finite"]),
    (["flows.t_end=inf"], "flows.t_end", ["finite"]),
])
def test_bad_values_name_the_key_and_the_allowed_values(overrides, key, words):
    with pytest.raises(C.ConfigError) as ei:
        C.load("pendulum", overrides)
    err = ei.value
    assert isinstance(err, WgflowError) and isinstance(err, ValidationError) and isinstance(err, ValueError)
    assert err.key == key and str(err).startswith(key + ":")
    for w in words:
        assert w in str(err), (w, str(err))


def test_bad_files(tmp_path):
    with pytest.raises(C.ConfigError, match="no such config file"):
        C.load(tmp_path / "missing.toml")
    with pytest.raises(C.ConfigError, match="built-in configs: garnet"):
        C.load("pendulumm")
    bad = tmp_path / "bad.toml"
    bad.write_text("[objective\ngamma = 0.9\n")
    with pytest.raises(C.ConfigError, match="not valid TOML"):
        C.load(bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[objectiv]\ngamma = 0.9\n")
    with pytest.raises(C.ConfigError, match="objectiv: unknown key in the top level"):
        C.load(wrong)


def test_set_and_get_dotted():
    cfg = C.load("lqr1d")
    C.set_dotted(cfg, "output.dpi", 80)
    assert C.get_dotted(cfg, "output.dpi") == 80
    with pytest.raises(C.ConfigError, match="allowed keys in output"):
        C.set_dotted(cfg, "output.dpii", 80)
    with pytest.raises(C.ConfigError, match="is a table"):
        C.set_dotted(cfg, "objective", 3)
    with pytest.raises(C.ConfigError, match="no such key"):
        C.get_dotted(cfg, "objective.tau")


def test_wg_namespace():
    assert wg.config is C


def test_a_directory_named_like_a_builtin_does_not_hide_it(tmp_path, monkeypatch):
    """`wgflow run lqr1d -o lqr1d` leaves a directory lqr1d/; the next `wgflow run lqr1d` used to
    try to read that directory as the config (IsADirectoryError). The built-in config is read, and
    a directory that names no built-in is refused by name."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lqr1d").mkdir()
    (tmp_path / "results").mkdir()
    cfg = C.load("lqr1d")
    assert cfg == C.load(C.builtin_path("lqr1d"))
    with pytest.raises(C.ConfigError, match="results is a directory, not a config file"):
        C.load("results")


def test_a_table_override_merges_key_by_key():
    """--set 'problem.params={n_theta=15}' used to replace the whole table: the file's n_omega and
    n_actions fell back to the problem's defaults. A table now sets the keys it names, as a TOML
    file does over the defaults; unknown keys in it are still refused."""
    base = C.load("pendulum")
    cfg = C.load("pendulum", ["problem.params={n_theta=15}", "objective={gamma=0.99}"])
    assert cfg["problem"]["params"] == dict(base["problem"]["params"], n_theta=15)
    assert cfg["objective"] == dict(base["objective"], gamma=0.99)
    assert cfg == C.load("pendulum", ["problem.params.n_theta=15", "objective.gamma=0.99"])
    with pytest.raises(C.ConfigError) as e:
        C.load("pendulum", ["objective={gama=0.99}"])
    assert e.value.key == "objective.gama"
