"""Wasserstein gradient flows of policies and the algorithms derived from them.

``wg.flow(mdp, objective, policy0, scheme=..., t_end=..., dt=None, save_every=..., trackers=...,
storage=...)`` integrates the flow with the chosen scheme (what is solved: ``mdp``, ``objective``;
how: ``scheme`` and ``dt``; what is saved: ``save_every``, ``trackers``, ``storage``) and returns a
:class:`Trajectory`. Schemes register by name (:func:`scheme_names`); see :class:`Scheme` to add one.
"""
from __future__ import annotations

import time

import numpy as np

from ..errors import ValidationError
from ..evaluation import timings
from ..kernels.config import compile_seconds
from ..policy import Policy
from .base import FlowState, Scheme, get_scheme, scheme_names
from .trackers import (CallbackTracker, GuardTracker, ProgressTracker, SteadyStateTracker,
                       StorageTracker, Tracker, get_tracker)
from .trajectory import FrameWriter, Trajectory  # noqa: F401
from . import otto, jko, wpo, wppg, baselines  # noqa: F401  (registration)

__all__ = ["flow", "Trajectory", "Scheme", "FlowState", "scheme_names", "get_scheme", "Tracker",
           "ProgressTracker", "SteadyStateTracker", "GuardTracker", "StorageTracker",
           "CallbackTracker"]


def flow(mdp, objective, policy0, scheme="otto", t_end: float = 10.0, dt: float | None = None,
         save_every: float | None = None, trackers=None, storage=None, resume: bool = False,
         progress: bool | None = None, max_steps: int = 10**7, **options) -> Trajectory:
    r"""Integrate the policy's gradient flow (or iterate a policy-optimization scheme).

    Parameters
    ----------
    mdp : MDP
    objective : Discounted or Average
    policy0 : Policy (or the representation the scheme takes, e.g. a ParticlePolicy)
    scheme : str or Scheme subclass
        ``"otto"`` (explicit Scharfetter--Gummel steps of the semi-discrete flow), or any name in
        :func:`scheme_names`.
    t_end : float
        Final time (for iterative schemes, the sum of the step sizes).
    dt : float, optional
        Fixed step; None lets the scheme choose (adaptive, CFL- and energy-controlled for ``otto``).
    save_every : float, optional
        Flow time between saved frames (default ``t_end / 100``). The first and last states are
        always saved.
    trackers : list, optional
        :class:`Tracker` objects, callables ``f(state, context)``, or ``"steady_state"``,
        ``"progress"``. A NaN/blow-up guard is always active.
    storage : path, optional
        HDF5 file to append every saved frame to (flushed): an interrupted run leaves a readable
        file. With ``resume=True`` the flow continues from the file's last frame.
    progress : bool or None
        tqdm progress bar (None: when stderr is a terminal or in a notebook).
    **options
        Passed to the scheme (e.g. ``cfl`` for ``otto``).

    Returns
    -------
    Trajectory

    Examples
    --------
    >>> import wgflow as wg
    >>> mdp = wg.problems.get("quadratic_bandit", n_actions=41)
    >>> traj = wg.flow(mdp, wg.Discounted(0.5, entropy=0.5), wg.Policy.uniform(mdp), t_end=1.0)
    >>> bool(traj.J[-1] < traj.J[0])
    True
    """
    if not (np.isfinite(t_end) and t_end >= 0):
        raise ValidationError(f"t_end must be a finite number >= 0, got {t_end}")
    if dt is not None and not (np.isfinite(dt) and dt > 0):
        raise ValidationError(f"dt must be > 0, got {dt}")
    if save_every is None:
        save_every = t_end / 100.0
        if dt is not None:      # save on the step grid: a whole number of fixed steps per frame
            save_every = dt * max(1.0, np.ceil(save_every / dt - 1e-9))
    save_every = float(save_every)
    if not save_every > 0 and t_end > 0:
        raise ValidationError(f"save_every must be > 0, got {save_every}")
    sch = get_scheme(scheme)(mdp, objective, **options)
    t_start, c_start = time.perf_counter(), compile_seconds()

    tracker_list = [get_tracker(t) for t in (trackers or [])]
    tracker_list.append(GuardTracker())
    tracker_list.append(ProgressTracker(enabled=progress))
    store = None
    if storage is not None:
        store = StorageTracker(storage, resume=resume)
        tracker_list.append(store)

    if resume:
        if store is None:
            raise ValidationError("resume=True needs storage=PATH")
        reader = Trajectory.from_hdf5(storage)
        if len(reader) == 0:
            raise ValidationError(f"cannot resume: {storage} has no frames")
        t0 = float(reader.times[-1])
        pol0 = Policy(reader.masses[-1], mdp.actions, mdp.states, validate=False)
        state = sch.init_from_frame(pol0, {k: v[-1] for k, v in reader.params.items()}, t0)
        # the resumed frame is in the file already; the writer appends after it
    else:
        state = sch.init(policy0, t0=0.0)

    context = {"scheme": sch.name, "t_end": t_end, "mdp": mdp, "objective": objective}
    times, Js, gn2, frames = [], [], [], []
    params = {k: [] for k in state.params}

    def record(st):
        g2 = sch.grad_norm2(st)
        times.append(st.t)
        Js.append(st.J)
        gn2.append(g2)
        frames.append(st.masses.copy())
        for k in params:
            params[k].append(np.array(st.params[k], copy=True))
        if store is not None:
            store.write(st, g2)

    if store is not None:
        store.open(sch, state, context)
    for tr in tracker_list:
        tr.start(state, context)
    if not resume:
        record(state)
    else:
        times.append(state.t); Js.append(state.J); gn2.append(sch.grad_norm2(state))
        frames.append(state.masses.copy())
        for k in params:
            params[k].append(np.array(state.params[k], copy=True))

    # frames stay on the grid k * save_every, also after a resume
    next_save = (np.floor(state.t / save_every + 1e-9) + 1.0) * save_every if save_every > 0 else np.inf
    stop_reason = None
    steps = 0
    complete = False
    first_step_time = None
    try:
        while state.t < t_end * (1 - 1e-12) - 1e-15:
            if steps >= max_steps:
                stop_reason = f"max_steps = {max_steps} reached"
                break
            h = dt if dt is not None else sch.suggest_dt(state)
            h = min(h, t_end - state.t, next_save - state.t) if next_save > state.t + 1e-15 else min(h, t_end - state.t)
            ts = time.perf_counter()
            state = sch.step(state, h, adaptive=dt is None)
            if first_step_time is None:
                first_step_time = time.perf_counter() - ts
            steps += 1
            is_frame = state.t >= next_save - 1e-12 * max(1.0, abs(next_save)) or state.t >= t_end * (1 - 1e-12)
            for tr in tracker_list:
                if tr is store:
                    continue
                if tr.due(state.t, is_frame):
                    reason = tr.handle(state, context)
                    if reason and stop_reason is None:
                        stop_reason = reason
            if is_frame:
                record(state)
                while next_save <= state.t + 1e-12 * max(1.0, abs(next_save)):
                    next_save += save_every
            if stop_reason:
                if not is_frame:
                    record(state)
                break
        complete = True
    finally:
        if not complete and (not times or times[-1] != state.t):
            try:
                record(state)
            except Exception:  # the state itself may be what failed
                pass
        total = time.perf_counter() - t_start
        diag = {"steps": steps, "rejected": sch.stats.get("rejected", 0), "stop_reason": stop_reason,
                "evaluations": sch.evaluate.count, "time_total": total,
                "timings": timings(total, compile_seconds() - c_start,
                                   sch.evaluate.cache.stats["solve_time"]),
                "time_evaluation": sch.evaluate.time, "time_first_step": first_step_time,
                "linear_solver": dict(sch.evaluate.cache.stats), "interrupted": not complete,
                **{k: v for k, v in sch.stats.items() if k not in ("steps", "rejected")}}
        context["diagnostics"] = diag
        context["complete"] = complete
        for tr in tracker_list:
            tr.finish(state, context)
    return Trajectory(times, Js, gn2, np.array(frames), mdp.actions, mdp.states,
                      {k: np.array(v) for k, v in params.items()}, sch.name, objective.to_dict(),
                      mdp.provenance, diag)
