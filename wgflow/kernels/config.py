"""Project-wide numba settings."""
from __future__ import annotations

import os

import numba

#: how many kernels this process has jit-decorated (compilation happens on first call)
KERNELS_DECLARED = 0


def jit(func=None, **options):
    """``numba.njit`` with wgflow's defaults (``cache=True``, ``nogil=True``).

    Set the environment variable ``WGFLOW_NO_JIT=1`` to run the pure-Python bodies (debugging).
    """
    opts = {"cache": True, "nogil": True}
    opts.update(options)

    def wrap(f):
        global KERNELS_DECLARED
        if os.environ.get("WGFLOW_NO_JIT", "0") == "1":
            return f
        KERNELS_DECLARED += 1
        return numba.njit(**opts)(f)

    return wrap if func is None else wrap(func)


def numba_environment() -> dict:
    """Numba version, threading layer and thread count (for bug reports)."""
    info = {"numba": numba.__version__, "num_threads": numba.config.NUMBA_NUM_THREADS,
            "default_threads": numba.config.NUMBA_DEFAULT_NUM_THREADS,
            "jit_disabled": os.environ.get("WGFLOW_NO_JIT", "0") == "1"}
    try:
        info["threading_layer"] = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        info["threading_layer"] = f"not initialised (configured: {numba.config.THREADING_LAYER})"
    return info
