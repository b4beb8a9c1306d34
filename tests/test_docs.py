"""The documentation builds with warnings as errors, and its code blocks run.

The build renders the notebooks from their committed outputs (nothing is executed) and generates
the API reference from the docstrings; any warning (a broken cross-reference, a malformed
docstring, a page outside every toctree) fails the test.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# pages whose ```python blocks are executed, in order, one namespace per page
EXECUTED_PAGES = [DOCS / "getting_started.md"] + sorted((DOCS / "guide").glob("*.md"))


def python_blocks(path: Path) -> list:
    """The fenced ```python blocks of a markdown file, in order."""
    return re.findall(r"^```python\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_sphinx_build_without_warnings(tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}"
    html = tmp_path / "html"
    # the pages a reader looks for exist, and the notebooks are rendered with their figures
    for page in ["index", "getting_started", "theory", "guide/flows", "api/index",
                 "api/generated/wgflow.flow", "api/generated/wgflow.kernels.fluxes",
                 "examples/notebooks/second_order", "bibliography", "benchmarks"]:
        assert (html / f"{page}.html").is_file(), page
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        text = (html / "examples" / "notebooks" / f"{nb.stem}.html").read_text(encoding="utf-8")
        assert "<img" in text, f"{nb.name}: the rendered page shows no figure"
    # the API reference is generated from the docstrings (math of the SG flux, a numpydoc table)
    assert "Scharfetter" in (html / "api/generated/wgflow.kernels.fluxes.html").read_text(encoding="utf-8")


def test_every_guide_page_is_executed():
    pages = {p.name for p in EXECUTED_PAGES}
    assert {"getting_started.md", "problems.md", "custom_mdp.md", "solving.md", "geometry.md",
            "flows.md", "second_order.md", "verify.md", "storage.md"} <= pages
    assert all(python_blocks(p) for p in EXECUTED_PAGES if p.name != "index.md")


@pytest.mark.parametrize("page", EXECUTED_PAGES, ids=[p.stem for p in EXECUTED_PAGES])
def test_page_code_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                 # files written by the snippets land here
    monkeypatch.setenv("MPLBACKEND", "Agg")
    ns = {"__name__": f"docs_{page.stem}"}
    for i, block in enumerate(python_blocks(page)):
        code = compile(block, f"{page.relative_to(ROOT)} [python block {i + 1}]", "exec")
        exec(code, ns)


def test_api_index_lists_every_top_level_name():
    """Every class and function exported as ``wgflow.<name>`` has its page in the API reference."""
    import inspect

    import wgflow

    text = (DOCS / "api" / "index.rst").read_text(encoding="utf-8")
    listed = set(re.findall(r"^   (\w+)$", text, flags=re.M))
    missing = [n for n in wgflow.__all__
               if not inspect.ismodule(getattr(wgflow, n)) and not n.startswith("__") and n not in listed]
    assert not missing, f"add these to docs/api/index.rst: {missing}"
