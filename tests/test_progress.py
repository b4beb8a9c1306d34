"""Tests of wgflow._progress: bars on by default in a terminal or a notebook, text bars in a
notebook without ipywidgets (no "IProgress not found" warning)."""
import importlib.util
import warnings

import wgflow._progress as P


def test_explicit_setting_wins_and_default_follows_the_terminal(monkeypatch, capsys):
    assert P.enabled(True) and not P.enabled(False)
    # pytest's captured stderr is not a terminal and there is no kernel here
    assert not P.in_notebook() and not P.enabled(None)
    monkeypatch.setattr(P, "in_notebook", lambda: True)
    assert P.enabled(None)


def test_notebook_without_ipywidgets_gets_the_text_bar(monkeypatch):
    from tqdm.std import tqdm as text_tqdm
    monkeypatch.setattr(P, "in_notebook", lambda: True)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ipywidgets" else real(name, *a))
    assert P.tqdm_class() is text_tqdm
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # no IProgress warning
        with P.bar(total=3, desc="x", enabled=True) as b:
            b.update(3)


def test_disabled_bar_is_a_silent_object(capsys):
    with P.bar(total=5, enabled=False) as b:
        b.update(2)
        b.set_postfix_str("ignored")
    assert capsys.readouterr().err == ""
