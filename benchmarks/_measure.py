"""Measurement helpers shared by the benchmark modules (peak memory, interleaved best-of-N)."""
from __future__ import annotations

import gc
import os
import time


def _status() -> dict:
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmHWM", "VmRSS")):
                    k, v = line.split(":")
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def reset_peak() -> bool:
    """Reset the process's peak-RSS counter (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_mib(fn):
    """``(result, MiB)``: the high-water RSS during ``fn()`` minus the RSS just before (None when
    the counter cannot be reset)."""
    gc.collect()
    ok = reset_peak()
    base = _status().get("VmRSS")
    out = fn()
    peak = _status().get("VmHWM")
    if not ok or base is None or peak is None:
        return out, None
    return out, max(peak - base, 0) / 2**20


def interleaved(fns: dict, rounds: int) -> dict:
    """Best-of-``rounds`` CPU and wall seconds of each callable, run in turn (interleaved).

    Returns ``{name: {"cpu": best cpu s, "wall": best wall s, "cpus": [...], "walls": [...]}}``.
    """
    out = {k: {"cpus": [], "walls": []} for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            gc.collect()
            t, c = time.perf_counter(), time.process_time()
            fn()
            out[k]["walls"].append(time.perf_counter() - t)
            out[k]["cpus"].append(time.process_time() - c)
    for v in out.values():
        v["cpu"], v["wall"] = min(v["cpus"]), min(v["walls"])
    return out


def loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")
