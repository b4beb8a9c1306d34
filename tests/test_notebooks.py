"""The notebooks run top to bottom at small sizes, and are committed with their outputs.

Each notebook's first code cell (tagged ``parameters``) reads ``WGFLOW_NOTEBOOK_SMALL``; the test
runs it with ``WGFLOW_NOTEBOOK_SMALL=1`` through ``scripts/execute_notebooks.py`` (the script that
also produces the committed outputs). The notebooks contain asserting cells (closed forms,
invariants), so a run without error means their numbers hold at the small sizes too.
"""
import importlib.util
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
_spec = importlib.util.spec_from_file_location("execute_notebooks", ROOT / "scripts" / "execute_notebooks.py")
execute_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(execute_notebooks)


def test_the_expected_notebooks_exist():
    assert {p.stem for p in NOTEBOOKS} >= {"getting_started", "geodesics", "flows", "second_order",
                                          "wppg_wpo_bandit"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_committed_with_outputs(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = code[0]
    assert "parameters" in first.metadata.get("tags", []) and "WGFLOW_NOTEBOOK_SMALL" in first.source, \
        f"{path.name}: the first code cell must be the parameters cell reading WGFLOW_NOTEBOOK_SMALL"
    # executed top to bottom in one kernel (python scripts/execute_notebooks.py), at full size
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), \
        f"{path.name}: not saved from one top-to-bottom run; run scripts/execute_notebooks.py"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"], f"{path.name} has error outputs"
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name} shows no figure"
    # the committed outputs are those of the full sizes (the parameters cell prints which)
    assert "sizes: full" in "".join(o.get("text", "") for o in first.outputs), \
        f"{path.name}: committed outputs are not from a full-size run"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_small(path):
    nbclient = pytest.importorskip("nbclient")
    try:
        nb = execute_notebooks.execute(path, small=True, timeout=300, save=False)
    except nbclient.exceptions.CellExecutionError as err:       # an asserting cell failed
        pytest.fail(f"{path.name} (small sizes): {err}")
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")
