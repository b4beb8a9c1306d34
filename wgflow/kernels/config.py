"""Project-wide numba settings."""
from __future__ import annotations

import os
import time

import numba
import numba.core.event

#: how many kernels this process has jit-decorated (compilation happens on first call)
KERNELS_DECLARED = 0


class _CompileClock(numba.core.event.Listener):
    """Wall time spent in numba compilation (outermost compile events only: nested ones overlap)."""

    def __init__(self):
        self.total = 0.0
        self._depth = 0
        self._t0 = 0.0

    def on_start(self, event):
        if self._depth == 0:
            self._t0 = time.perf_counter()
        self._depth += 1

    def on_end(self, event):
        self._depth = max(self._depth - 1, 0)
        if self._depth == 0:
            self.total += time.perf_counter() - self._t0


COMPILE_CLOCK = _CompileClock()
numba.core.event.register("numba:compile", COMPILE_CLOCK)


def compile_seconds() -> float:
    """Seconds this process has spent compiling numba kernels so far (cache loads are cheap)."""
    return COMPILE_CLOCK.total


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
