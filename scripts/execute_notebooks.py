#!/usr/bin/env python
"""Execute the notebooks in notebooks/ and save them with their outputs (the rendered docs show them).

Usage::

    python scripts/execute_notebooks.py              # every notebook, full sizes, saved in place
    python scripts/execute_notebooks.py flows        # only notebooks whose name contains "flows"
    python scripts/execute_notebooks.py --small --no-save   # what the test suite runs

Each notebook reads ``WGFLOW_NOTEBOOK_SMALL`` in its first (``parameters``) cell: ``--small`` sets
it to 1 (small grids, short runs), otherwise it is 0. Execution stops at the first failing cell
(asserting cells compare results with closed forms) and the notebook is then not saved.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def execute(path: Path, small: bool = False, timeout: int = 900, save: bool = True):
    """Run ``path`` top to bottom in a fresh kernel; return the executed notebook.

    The kernel starts in a temporary directory (files the notebook writes do not land in the
    repository) with matplotlib's inline backend (figures become PNG outputs, no display needed)
    and ``WGFLOW_NOTEBOOK_SMALL`` set from ``small``.
    Raises ``nbclient.exceptions.CellExecutionError`` when a cell fails.
    """
    import tempfile

    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    env = {"MPLBACKEND": "module://matplotlib_inline.backend_inline", "WGFLOW_NOTEBOOK_SMALL": "1" if small else "0"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)           # the kernel inherits the environment of this process
    try:
        with tempfile.TemporaryDirectory() as tmp:
            client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                             resources={"metadata": {"path": tmp}})
            client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if save:
        nbformat.write(nb, path)
    return nb


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="substrings of notebook names (default: all)")
    ap.add_argument("--small", action="store_true", help="small sizes (WGFLOW_NOTEBOOK_SMALL=1)")
    ap.add_argument("--no-save", action="store_true", help="execute only; do not write outputs")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per cell (default 900)")
    args = ap.parse_args(argv)
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    if args.names:
        paths = [p for p in paths if any(n in p.stem for n in args.names)]
    if not paths:
        print("no notebook matches", args.names, file=sys.stderr)
        return 2
    for p in paths:
        t0 = time.perf_counter()
        execute(p, small=args.small, timeout=args.timeout, save=not args.no_save)
        print(f"{p.relative_to(ROOT)}: executed in {time.perf_counter() - t0:.1f} s"
              + ("" if args.no_save else ", saved with outputs"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
