"""Small copies of the default study's figures for the documentation (docs/figures/).

    python scripts/make_figures.py                       # runs `wgflow run` (the default study)
    python scripts/make_figures.py --from wgflow-pendulum/pendulum.h5   # redraws an existing run

Writes (overwrites) docs/figures/<name>.png (low dpi) and docs/figures/flow_otto.gif, and prints
the study's summary table; other files in docs/figures are left alone. The figures are those `wgflow plot` draws; only the resolution differs.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import wgflow as wg  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--from", dest="source", help="a study file (wgflow run's HDF5) to redraw instead of running")
    p.add_argument("--config", default=None, help="config to run (default: the default study)")
    p.add_argument("--dpi", type=int, default=72)
    p.add_argument("--gif-dpi", type=int, default=60)
    p.add_argument("--out", default=str(ROOT / "docs" / "figures"))
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.source:
            res = wg.load(args.source)
        else:
            res = wg.run_study(args.config, outdir=tmp, figures=False)
        res.config["output"]["animation_frames"] = 20
        paths = res.plot(tmp, dpi=args.dpi, animation=False)
        paths += res._animate(tmp, dpi=args.gif_dpi)
        for path in paths:
            shutil.copy(path, out / Path(path).name)
    print(res.summary())
    print(f"\nwrote {len(paths)} files to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
