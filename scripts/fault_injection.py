"""Fault injection: kill (SIGKILL) flows with storage and saves at random moments, and check the files.

Each **flow trial** runs a flow with ``storage=`` in a child process and kills it at a random
moment (uniform over the run, so most kills land inside a frame's commit, which is where the
run spends its time), then resumes it in a new child -- killed again at random, 1 to 3 kills per
trial -- and finally lets a resume finish. After every kill it checks that

* the file (when the run had committed a frame) is readable by ``wg.Trajectory.from_hdf5``;
* no committed frame is lost: the file holds at least the frames the child had committed (the
  child prints the frame count each time ``FrameWriter.append`` returns);
* no torn frame is served: every frame read equals, bit for bit, the same frame of an
  uninterrupted reference run with the same arguments;

and after the final resume that the whole file equals the reference run bit for bit.

Each **save trial** kills ``wg.save(path, big_mdp)`` over an existing file at a random moment and
checks that ``path`` holds either the old file, byte for byte, or the complete new object, and
that the next save removes the orphaned temporary file.

Run ``python scripts/fault_injection.py --trials 200`` (a few minutes); ``--json`` prints the
figures as JSON (used by tests/flows/test_fault_injection.py with a few trials).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

# the flows killed: (scheme, options), cycled over the trials
SCHEMES = [("otto", {}), ("wppg", {"particles": 7}), ("pg", {}), ("jko", {})]
T_END = {"otto": 0.3, "wppg": 1.0, "pg": 2.0, "jko": 4.0}
N_FRAMES = 40


def problem():
    import wgflow as wg
    mdp = wg.problems.get("lqr1d", n_states=21, n_actions=15, noise=0.6)
    obj = wg.Discounted(0.9, entropy=0.3)
    pi0 = wg.Policy.gaussian(mdp, mean=1.0, std=0.8)
    return mdp, obj, pi0


def flow_kwargs(scheme, options):
    t_end = T_END[scheme]
    return dict(scheme=scheme, t_end=t_end, save_every=t_end / N_FRAMES, progress=False, **options)


# ------------------------------------------------------------------------------ child processes
# Children are forked from this process (POSIX): they start at once, with wgflow imported and its
# kernels compiled, and report through a pipe; the parent kills them with SIGKILL.
def child_flow(emit, path: str, scheme: str, resume: bool):
    import wgflow as wg
    from wgflow.flows import trajectory
    original = trajectory.FrameWriter.append

    def append(self, *args, **kwargs):
        n = original(self, *args, **kwargs)
        emit(f"committed {n}")          # the frame is committed: it must never be lost
        return n

    trajectory.FrameWriter.append = append
    mdp, obj, pi0 = problem()
    options = dict(SCHEMES)[scheme]
    emit("ready")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")    # a torn tail warns; the parent checks the file
        wg.flow(mdp, obj, None if resume else pi0, storage=path, resume=resume,
                **flow_kwargs(scheme, options))


def big_mdp():
    import wgflow as wg
    return wg.problems.get("lqr1d", n_states=301, n_actions=21, noise=0.4)


def child_save(emit, path: str, mdp):
    import wgflow as wg
    emit("ready")
    wg.save(path, mdp)


def _run_and_kill(target, args, delay):
    """Fork a child running ``target(emit, *args)``; once it says 'ready', SIGKILL it ``delay``
    seconds later (None: let it finish). Returns (lines it emitted, killed)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                    # child
        os.close(r)
        code = 0
        try:
            target(lambda msg: os.write(w, (msg + "\n").encode()), *args)
        except BaseException as exc:                # noqa: BLE001 - reported to the parent
            os.write(w, f"error {type(exc).__name__}: {exc}\n".encode())
            code = 1
        os._exit(code)
    os.close(w)
    buf = b""
    while b"\n" not in buf:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        buf += chunk
    killed = False
    if delay is not None and buf.startswith(b"ready"):
        deadline = time.perf_counter() + delay
        while time.perf_counter() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(min(0.002, max(deadline - time.perf_counter(), 0.0)))
        else:
            os.kill(pid, signal.SIGKILL)
            killed = True
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        buf += chunk
    os.close(r)
    with __import__("contextlib").suppress(ChildProcessError):
        os.waitpid(pid, 0)
    lines = buf.decode().split("\n")
    errors = [x for x in lines if x.startswith("error")]
    if errors and not killed:
        raise RuntimeError(f"child failed: {errors[0]}")
    return lines, killed


def _temp_files(directory: Path) -> list:
    return [p for p in directory.iterdir() if ".tmp-" in p.name]


def _same_frame(a, i, b, j) -> bool:
    return (a.times[i] == b.times[j] and a.J[i] == b.J[j] and a.grad_norm2[i] == b.grad_norm2[j]
            and np.array_equal(a.masses[i], b.masses[j])
            and all(np.array_equal(a.params[k][i], b.params[k][j]) for k in a.params))


def flow_trials(n_trials, rng, workdir: Path, stats: dict, schemes=None):
    import wgflow as wg
    mdp, obj, pi0 = problem()
    refs = {}
    cases = [c for c in SCHEMES if schemes is None or c[0] in schemes]
    for trial in range(n_trials):
        scheme, options = cases[trial % len(cases)]
        if scheme not in refs:
            ref_path = workdir / f"ref_{scheme}.h5"
            wg.flow(mdp, obj, pi0, storage=ref_path, overwrite=True, **flow_kwargs(scheme, options))
            t0 = time.perf_counter()       # a forked child's run time, kernels compiled
            _run_and_kill(child_flow, (str(workdir / f"timing_{scheme}.h5"), scheme, False), None)
            refs[scheme] = (wg.Trajectory.from_hdf5(ref_path), time.perf_counter() - t0)
        ref, duration = refs[scheme]
        d = workdir / f"trial{trial}"
        d.mkdir()
        path = d / "run.h5"
        for _ in range(rng.randint(1, 3)):
            resume = path.exists()
            left = 1.0
            if resume:                 # kill within what is left of the run
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    left = max(1.0 - len(wg.Trajectory.from_hdf5(path)) / len(ref), 0.05)
            lines, killed = _run_and_kill(child_flow, (str(path), scheme, resume),
                                          rng.uniform(0.0, left * duration))
            stats["kills"] += killed
            stats["kills_in_resumed_runs"] += killed and resume
            committed = [int(x.split()[1]) for x in lines if x.startswith("committed")]
            if not path.exists():
                if committed:
                    stats["frames_lost"] += committed[-1]
                    stats["unreadable_files"] += 1
                continue
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    got = wg.Trajectory.from_hdf5(path)
                stats["torn_tails_dropped"] += sum("torn" in str(w.message) for w in caught)
            except Exception as exc:        # noqa: BLE001 - counted, reported
                stats["unreadable_files"] += 1
                stats["errors"].append(f"trial {trial}: {type(exc).__name__}: {exc}")
                break
            stats["files_checked"] += 1
            if committed and len(got) < committed[-1]:
                stats["frames_lost"] += committed[-1] - len(got)
            for i in range(min(len(got), len(ref))):
                if not _same_frame(got, i, ref, i):
                    stats["torn_frames_served"] += 1
            stats["frames_checked"] += len(got)
        # the final resume runs to the end (or a fresh run if no frame was ever committed)
        _run_and_kill(child_flow, (str(path), scheme, path.exists()), None)
        final = wg.Trajectory.from_hdf5(path)
        identical = len(final) == len(ref) and all(_same_frame(final, i, ref, i)
                                                   for i in range(len(ref)))
        stats["resumes_bit_identical" if identical else "resumes_different"] += 1
        stats["orphans_left"] += len(_temp_files(d))
        stats["flow_trials"] += 1


def save_trials(n_trials, rng, workdir: Path, stats: dict):
    import wgflow as wg
    small = wg.problems.get("garnet", n_states=10, n_actions=3)
    new = big_mdp()
    t0 = time.perf_counter()
    wg.save(workdir / "timing.h5", new)
    duration = time.perf_counter() - t0
    for trial in range(n_trials):
        d = workdir / f"save{trial}"
        d.mkdir()
        path = d / "x.h5"
        wg.save(path, small)
        old = path.read_bytes()
        lines, killed = _run_and_kill(child_save, (str(path), new), rng.uniform(0.0, 1.2 * duration))
        stats["save_kills"] += killed
        if path.read_bytes() == old:
            stats["saves_old_intact"] += 1
        else:
            try:
                back = wg.load(path)
                ok = back.P.nnz == new.P.nnz and np.array_equal(back.C, new.C)
            except Exception:  # noqa: BLE001
                ok = False
            stats["saves_new_complete" if ok else "saves_broken"] += 1
        stats["save_orphans_after_kill"] += len(_temp_files(d))
        wg.save(path, small)                      # the next save cleans up after the killed one
        stats["save_orphans_left"] += len(_temp_files(d))
        stats["save_trials"] += 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=50, help="flow trials (and as many save trials)")
    ap.add_argument("--save-trials", type=int, default=None, help="save trials (default: --trials)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--schemes", default=",".join(c[0] for c in SCHEMES),
                    help="comma-separated schemes to kill, cycled over the trials")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    stats = {k: 0 for k in ("flow_trials", "kills", "kills_in_resumed_runs", "files_checked",
                            "frames_checked", "frames_lost", "torn_frames_served",
                            "torn_tails_dropped", "unreadable_files", "resumes_bit_identical",
                            "resumes_different", "orphans_left", "save_trials", "save_kills",
                            "saves_old_intact", "saves_new_complete", "saves_broken",
                            "save_orphans_after_kill", "save_orphans_left")}
    stats["errors"] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        flow_trials(args.trials, rng, Path(tmp), stats, args.schemes.split(","))
        save_trials(args.trials if args.save_trials is None else args.save_trials, rng, Path(tmp), stats)
    stats["seconds"] = round(time.perf_counter() - t0, 1)
    stats["schemes"] = args.schemes
    if args.json:
        print(json.dumps(stats))
    else:
        for k, v in stats.items():
            print(f"{k:26s} {v}")
    bad = (stats["frames_lost"] + stats["torn_frames_served"] + stats["unreadable_files"]
           + stats["resumes_different"] + stats["orphans_left"] + stats["saves_broken"]
           + stats["save_orphans_left"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
