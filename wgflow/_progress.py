"""Progress bars: tqdm.auto, on by default in a terminal and in a notebook.

``enabled(None)`` is True when stderr is a terminal or the code runs in a Jupyter kernel.
:func:`bar` returns a tqdm bar (a no-op object when disabled). In a notebook without ipywidgets
the text bar is used instead of the widget (so there is no "IProgress not found" warning).
"""
from __future__ import annotations

import sys


def in_notebook() -> bool:
    """Whether the code runs in a Jupyter (IPython) kernel."""
    ip = sys.modules.get("IPython")
    if ip is None or "ipykernel" not in sys.modules:
        return False
    try:
        shell = ip.get_ipython()
    except Exception:  # pragma: no cover
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def enabled(progress=None) -> bool:
    """``progress`` if given, else: stderr is a terminal, or we are in a notebook."""
    if progress is not None:
        return bool(progress)
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty or in_notebook()


def tqdm_class():
    """``tqdm.auto.tqdm``, or the text ``tqdm`` in a notebook that lacks ipywidgets."""
    if in_notebook():
        import importlib.util
        if importlib.util.find_spec("ipywidgets") is None:
            from tqdm.std import tqdm
            return tqdm
    from tqdm.auto import tqdm
    return tqdm


class _NoBar:
    n = 0
    total = None

    def update(self, n=1):
        pass

    def set_postfix_str(self, s="", refresh=True):
        pass

    def set_postfix(self, *a, **k):
        pass

    def set_description(self, *a, **k):
        pass

    def close(self):
        pass

    def refresh(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def bar(total=None, desc: str = "", enabled: bool | None = None, **kwargs):
    """A progress bar (context manager) or, when disabled, an object that does nothing."""
    from . import _progress
    if not _progress.enabled(enabled):
        return _NoBar()
    return tqdm_class()(total=total, desc=desc, **kwargs)
