#!/usr/bin/env python
"""Run every benchmark module and write one table: docs/benchmarks.md and data/bench_*.json.

Each module ``benchmarks/<name>.py`` exposes ``run(quick: bool) -> list[dict]``; a row has at
least the keys ``benchmark, case, what, wgflow_s, peer, peer_s, ratio, peak_mib, command``
(``ratio = peer_s / wgflow_s``: above 1, wgflow is faster; ``peak_mib``: wgflow's peak memory
over the process's resident size before the measurement). A module without ``run`` is reported
and skipped.

Usage::

    python benchmarks/run.py            # everything (tens of minutes on 2 shared cores)
    python benchmarks/run.py --quick    # small sizes (a minute or two): printed, nothing replaced
    python benchmarks/run.py --only solve,geometry

The table replaces the part of docs/benchmarks.md between the ``run.py`` markers; the rest of
that page (how each benchmark measures, what the numbers say) is kept. Raw rows go to
``data/bench_<module>.json`` together with the machine's description. With ``--only``, the
other modules' rows are taken from their ``data/bench_<module>.json`` (the table's header says
from which run), so a partial run never drops rows. ``--quick`` writes
``data/bench_<module>_quick.json`` and the table only where ``--doc`` says.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

MODULES = ("solve", "flows", "hessian", "geometry")
START = "<!-- run.py: table start -->"
END = "<!-- run.py: table end -->"
REQUIRED = ("benchmark", "case", "what", "wgflow_s", "peer", "peer_s", "ratio", "peak_mib", "command")


def _fmt(x, digits=3):
    if x is None:
        return "-"
    if isinstance(x, float):
        if x != x:
            return "nan"
        if abs(x) >= 100:
            return f"{x:.0f}"
        return f"{x:.{digits}g}"
    return str(x)


def markdown_table(rows: list) -> str:
    """The rows as one markdown table (accuracy and notes folded into the ``what`` cell)."""
    head = ["benchmark", "case", "what", "wgflow [s]", "peer", "peer [s]", "ratio peer/wgflow",
            "wgflow peak [MiB]", "command"]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in rows:
        what = r.get("what", "")
        extra = []
        if r.get("wgflow_rel_err") is not None:
            extra.append(f"wgflow err {r['wgflow_rel_err']:.0e}")
        if r.get("peer_rel_err") is not None:
            extra.append(f"peer err {r['peer_rel_err']:.0e}")
        if r.get("note"):
            extra.append(str(r["note"]))
        if r.get("error"):
            extra.append("FAILED: " + str(r["error"]))
        if extra:
            what = f"{what} ({'; '.join(extra)})"
        ratio = r.get("ratio")
        cells = [r.get("benchmark", "?"), r.get("case", "?"), what, _fmt(r.get("wgflow_s")),
                 str(r.get("peer", "-")), _fmt(r.get("peer_s")),
                 f"**{ratio:.2f}**" if isinstance(ratio, float) else _fmt(ratio),
                 _fmt(r.get("peak_mib"), 2), f"`{r.get('command', '')}`"]
        out.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(out)


def machine() -> dict:
    import numpy
    import scipy
    info = {"date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "python": platform.python_version(),
            "cores": os.cpu_count(), "numpy": numpy.__version__, "scipy": scipy.__version__,
            "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for dist in ("wgflow", "numba", "quantecon", "pymdptoolbox", "POT", "py-pde"):
        try:
            from importlib.metadata import version
            info[dist] = version(dist)
        except Exception:
            info[dist] = "?"
    try:
        info["loadavg"] = os.getloadavg()
    except OSError:
        pass
    return info


def _data_path(name: str, quick: bool) -> str:
    return os.path.join(ROOT, "data", f"bench_{name}{'_quick' if quick else ''}.json")


def kept_rows(only, quick: bool) -> tuple:
    """Rows of the modules not run now, from their stored files: ``(rows, notes)``."""
    rows, notes = [], []
    for name in MODULES:
        if name in only or not os.path.exists(_data_path(name, quick)):
            continue
        with open(_data_path(name, quick)) as f:
            stored = json.load(f)
        rows += stored.get("rows", [])
        when = stored.get("machine", {}).get("date_utc", "?")
        notes.append(f"the {name} rows from `data/{os.path.basename(_data_path(name, quick))}` ({when} UTC)")
    return rows, notes


def run_all(quick: bool, only=None) -> tuple:
    rows, problems = [], []
    for name in MODULES:
        if only and name not in only:
            continue
        if not os.path.exists(os.path.join(HERE, name + ".py")):
            problems.append(f"{name}: no benchmarks/{name}.py")
            continue
        try:
            mod = importlib.import_module(name)
        except Exception as exc:         # a module that cannot be imported is reported, not fatal
            msg = f"{name}: importing benchmarks/{name}.py failed: {type(exc).__name__}: {exc}"
            print(msg, flush=True)
            problems.append(msg)
            continue
        if not callable(getattr(mod, "run", None)):
            msg = f"{name}: benchmarks/{name}.py has no run(quick) function; skipped"
            print(msg, flush=True)
            problems.append(msg)
            continue
        print(f"== {name} ({'quick' if quick else 'full'})", flush=True)
        t0 = time.perf_counter()
        try:
            got = list(mod.run(quick))
        except Exception as exc:         # one failing module must not lose the others' rows
            traceback.print_exc()
            problems.append(f"{name}: run() raised {type(exc).__name__}: {exc}")
            continue
        for r in got:
            missing = [k for k in REQUIRED if k not in r]
            if missing:
                problems.append(f"{name}: a row lacks {missing}")
            r.setdefault("benchmark", name)
        rows += got
        print(f"   {len(got)} rows in {time.perf_counter() - t0:.0f} s", flush=True)
        with open(_data_path(name, quick), "w") as f:
            json.dump({"machine": machine(), "quick": quick, "rows": got}, f, indent=1,
                      default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    return rows, problems


def write_doc(rows, problems, quick, path, kept=(), only=None):
    m = machine()
    cmd = "python benchmarks/run.py" + (" --quick" if quick else "")
    if only:
        cmd += " --only " + ",".join(n for n in MODULES if n in only)
    block = [START, "",
             f"Generated by `{cmd}` on {m['date_utc']} UTC: {m.get('cpu', '?')}, {m['cores']} cores "
             f"(shared; 1-min load {m.get('loadavg', ['?'])[0]:.1f} at the end), Python {m['python']}, "
             f"numpy {m['numpy']}, scipy {m['scipy']}, numba {m['numba']}, quantecon {m['quantecon']}, "
             f"pymdptoolbox {m['pymdptoolbox']}, POT {m['POT']}, py-pde {m['py-pde']}. "
             "Times are the best of interleaved runs (CPU seconds where a module says so); "
             "**ratio = peer / wgflow** (above 1: wgflow is faster)."
             + (" Kept from earlier runs: " + "; ".join(kept) + "." if kept else ""), "",
             markdown_table(rows), ""]
    if problems:
        block += ["Not measured: " + "; ".join(problems) + ".", ""]
    block.append(END)
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n"
    if START in text and END in text:
        pre, rest = text.split(START, 1)
        post = rest.split(END, 1)[1]
        text = pre + "\n".join(block) + post
    else:
        text = text.rstrip() + "\n\n## The table\n\n" + "\n".join(block) + "\n"
    with open(path, "w") as f:
        f.write(text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", help="comma-separated module names")
    ap.add_argument("--doc", default=None,
                    help="page whose table is replaced (default docs/benchmarks.md; none for --quick)")
    args = ap.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    rows, problems = run_all(args.quick, only)
    kept = []
    if only:
        old, kept = kept_rows(only, args.quick)
        order = {n: i for i, n in enumerate(MODULES)}
        rows = sorted(rows + old, key=lambda r: order.get(r.get("benchmark"), len(MODULES)))
    print(markdown_table(rows))
    for p in problems:
        print("NOTE:", p)
    doc = args.doc or (None if args.quick else os.path.join(ROOT, "docs", "benchmarks.md"))
    if doc:
        write_doc(rows, problems, args.quick, doc, kept, only)
        print(f"table written to {doc}")


if __name__ == "__main__":
    main()
