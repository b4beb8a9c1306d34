"""Wasserstein gradient flows of policies and the algorithms derived from them.

``wg.flow(mdp, objective, policy0, scheme=..., t_end=..., dt=None, save_every=..., trackers=...,
storage=...)`` integrates the flow with the chosen scheme (what is solved: ``mdp``, ``objective``;
how: ``scheme`` and ``dt``; what is saved: ``save_every``, ``trackers``, ``storage``) and returns a
:class:`Trajectory`. Schemes register by name (:func:`scheme_names`); see :class:`Scheme` to add one.
"""
from __future__ import annotations

import time
import warnings

import numpy as np

from .. import validation
from ..errors import MissingFileError, ValidationError
from ..evaluation import _check_mdp, _check_objective, timings
from ..kernels.config import compile_seconds
from .base import FlowState, Scheme, get_scheme, rebuild_state, scheme_names, scheme_options
from .trackers import (CallbackTracker, GuardTracker, ProgressTracker, SteadyStateTracker,
                       StorageTracker, Tracker, get_tracker)
from .trajectory import FrameWriter, Trajectory, read_restart_frame, run_header  # noqa: F401
from . import otto, jko, wpo, wppg, baselines  # noqa: F401  (registration)

__all__ = ["flow", "Trajectory", "Scheme", "FlowState", "scheme_names", "scheme_options", "get_scheme", "Tracker",
           "ProgressTracker", "SteadyStateTracker", "GuardTracker", "StorageTracker",
           "CallbackTracker"]


#: the keywords of :func:`flow` itself (anything else goes to the scheme)
FLOW_KEYWORDS = ("mdp", "objective", "policy0", "scheme", "t_end", "dt", "save_every", "trackers",
                 "storage", "resume", "overwrite", "progress", "max_steps")
#: a run that would need more than this factor times the steps it has left is stopped as stalled
STALL_FACTOR = 100
#: steps between two progress checks of the stall detector
STALL_WINDOW = 100
#: ... and the relative change of J over such a window below which the flow counts as settled
STALL_RTOL = 1e-12


def _next_frame_time(t: float, save_every: float) -> float:
    """The first frame time ``k * save_every`` after ``t`` (the same function before and after a
    resume, so frames stay on the same grid bit for bit)."""
    if not save_every > 0:
        return np.inf
    k = np.floor(t / save_every + 1e-9) + 1.0
    tol = 1e-12 * max(1.0, abs(t))
    if k * save_every <= t + tol:
        # (a jump, not steps of one: save_every may be far below the tolerance)
        k = max(k + 1.0, np.floor((t + tol) / save_every))
    while k * save_every <= t + tol:
        k = max(k + 1.0, np.nextafter(k, np.inf))      # (k + 1 == k beyond 2^53)
    return k * save_every


def flow(mdp, objective, policy0=None, scheme="otto", t_end: float = 10.0, dt: float | None = None,
         save_every: float | None = None, trackers=None, storage=None, resume: bool = False,
         overwrite: bool = False, progress: bool | None = None, max_steps: int = 10**7,
         **options) -> Trajectory:
    r"""Integrate the policy's gradient flow (or iterate a policy-optimization scheme).

    Parameters
    ----------
    mdp : MDP
    objective : Discounted or Average
    policy0 : Policy (or the representation the scheme takes, e.g. a ParticlePolicy)
        The initial policy (not needed with ``resume=True``: the stored run's frame is used).
    scheme : str or Scheme subclass
        ``"otto"`` (the semi-discrete Scharfetter--Gummel flow; linearly implicit steps, or
        forward Euler with ``method="explicit"``), or any name in
        :func:`scheme_names`.
    t_end : float
        Final time (for iterative schemes, the sum of the step sizes).
    dt : float, optional
        Fixed step; None lets the scheme choose (adaptive; for ``otto`` error-controlled implicit
        steps without a CFL bound, or CFL- and energy-controlled explicit ones).
    save_every : float, optional
        Flow time between saved frames (default ``t_end / 100``). The first and last states are
        always saved.
    trackers : list, optional
        :class:`Tracker` objects, callables ``f(state, context)``, or ``"steady_state"``,
        ``"progress"``. A NaN/blow-up guard is always active.
    storage : path, optional
        HDF5 file that every saved frame is committed to as it is made (an interrupted or killed
        run leaves a readable file holding every committed frame). An existing file is refused
        unless ``overwrite=True`` or ``resume=True``. Each stored frame is a restart point: the
        run continues from the frame's stored data (see :class:`Scheme`), so that resuming from
        it gives the uninterrupted run bit for bit.
    resume : bool
        Continue the run stored in ``storage`` from its last restart frame (snapshots stored
        after it by an interrupted run, and a torn tail, are dropped from the file and counted in
        ``diagnostics["resumed_from"]``: ``dropped_frames``, ``torn_frames``,
        ``uncommitted_frames``). The scheme, its options, ``dt``, the MDP and the objective must
        be those of the stored run.
    overwrite : bool
        Replace an existing ``storage`` file.
    progress : bool or None
        tqdm progress bar (None: when stderr is a terminal or in a notebook).
    max_steps : int
        Steps allowed in this call. A run whose step size cannot make progress stops early, with
        the reason in ``diagnostics["stop_reason"]``: a step below the resolution of ``t``, or
        ``J`` flat (relative change below ``1e-12`` over 100 steps) while the mean step of those
        steps would need more than ``100 x`` the steps left to reach ``t_end``.
    **options
        Passed to the scheme (e.g. ``method``, ``tol`` for ``otto``); an unknown keyword raises
        :class:`~wgflow.LookupFailure` listing the keywords of ``flow`` and of the scheme.

    Returns
    -------
    Trajectory
        Every saved frame, and the state where the run stopped (``max_steps``, a tracker, an
        interruption) when that is not a saved frame. After a resume: from the resumed frame on
        (the file holds the whole run).

    Examples
    --------
    >>> import wgflow as wg
    >>> mdp = wg.problems.get("quadratic_bandit", n_actions=41)
    >>> traj = wg.flow(mdp, wg.Discounted(0.5, entropy=0.5), wg.Policy.uniform(mdp), t_end=1.0)
    >>> bool(traj.J[-1] < traj.J[0])
    True
    """
    where = "flow"
    _check_mdp(mdp, where)
    _check_objective(objective)
    cls = get_scheme(scheme)
    validation.options(options, {"flow()": FLOW_KEYWORDS, f"scheme {cls.name!r}": scheme_options(cls)},
                       where)
    t_end = validation.real(t_end, "t_end", where, low=0.0)
    dt = validation.real(dt, "dt", where, low=0.0, low_open=True, none=True)
    save_every = validation.real(save_every, "save_every", where, low=0.0, low_open=True, none=True)
    max_steps = validation.integer(max_steps, "max_steps", where, low=1)
    resume = validation.boolean(resume, "resume", where)
    overwrite = validation.boolean(overwrite, "overwrite", where)
    progress = validation.boolean(progress, "progress", where, none=True)
    if trackers is not None and not isinstance(trackers, (list, tuple)):
        trackers = [trackers]
    if storage is not None:
        storage = validation.output_path(storage, "storage", where, overwrite=overwrite or resume)
        if resume and not storage.exists():
            raise MissingFileError(f"flow: cannot resume: {storage} does not exist")
    elif resume:
        raise ValidationError("flow: resume=True needs storage=PATH (the file of the run to continue)")
    elif overwrite:
        raise ValidationError("flow: overwrite=True needs storage=PATH")
    if policy0 is None and not resume:
        raise ValidationError("flow: policy0 is required (e.g. wg.Policy.uniform(mdp)); only "
                              "resume=True takes the policy from the storage file")
    if save_every is None:
        save_every = t_end / 100.0
        if dt is not None:      # save on the step grid: a whole number of fixed steps per frame
            save_every = dt * max(1.0, np.ceil(save_every / dt - 1e-9))
    sch = cls(mdp, objective, **options)
    t_start, c_start = time.perf_counter(), compile_seconds()

    tracker_list = [get_tracker(t) for t in (trackers or [])]
    tracker_list.append(GuardTracker())
    tracker_list.append(ProgressTracker(enabled=progress))
    store = None
    header = None
    if storage is not None:
        store = StorageTracker(storage, resume=resume, overwrite=overwrite)
        tracker_list.append(store)
        header = run_header(sch, {**scheme_options(cls, defaults=True), **options}, dt)

    if resume:
        frame = read_restart_frame(storage, header)
        if policy0 is not None:
            warnings.warn(f"flow: resume=True continues {storage} from its stored frame at t = "
                          f"{frame.t:.6g}; the policy0 given is not used", UserWarning, stacklevel=2)
        if frame.t >= t_end * (1 - 1e-12):
            warnings.warn(f"flow: {storage} is already at t = {frame.t:.6g} >= t_end = {t_end:g}: "
                          "nothing to run (raise t_end to continue the run)", UserWarning,
                          stacklevel=2)
        state = rebuild_state(sch, frame.t, frame.masses, frame.params, frame.state)
        if state.J != frame.J:
            warnings.warn(f"flow: resuming {storage} at t = {frame.t!r}: the re-evaluated J = "
                          f"{state.J!r} differs from the stored J = {frame.J!r} (different linear "
                          "algebra libraries or thread counts?); the run will not be bit-identical",
                          UserWarning, stacklevel=2)
    else:
        state = sch.init(policy0, t0=0.0)
        if store is not None:
            state = rebuild_state(sch, state.t, state.masses, state.params, sch.state_dict())

    context = {"scheme": sch.name, "t_end": t_end, "mdp": mdp, "objective": objective}
    times, Js, gn2, frames = [], [], [], []
    params = {k: [] for k in state.params}

    def keep(st, g2):
        times.append(st.t)
        Js.append(st.J)
        gn2.append(g2)
        frames.append(st.masses.copy())
        for k in params:
            params[k].append(np.array(st.params[k], copy=True))

    def invalid(st):
        """Why a state cannot be stored (None if it can)."""
        if not np.isfinite(st.J):
            return f"J = {st.J}"
        try:
            validation.masses(st.masses, name="masses")
        except ValidationError as exc:
            return str(exc)
        return None

    def record(st, restart: bool):
        g2 = sch.grad_norm2(st)
        keep(st, g2)
        if store is not None:
            store.write(st, g2, sch.state_dict(), restart)

    if store is not None:
        if resume:
            store.reopen(frame.index + 1)
        else:
            store.open(sch, state, context, header)
    next_save = _next_frame_time(state.t, save_every)
    stop_reason = None
    steps = 0
    complete = False
    first_step_time = None
    window = (0, state.t, state.J)
    try:
        for tr in tracker_list:
            tr.start(state, context)
        if not resume:
            record(state, True)
        else:
            keep(state, sch.grad_norm2(state))
        while state.t < t_end * (1 - 1e-12) - 1e-15:
            if steps >= max_steps:
                stop_reason = f"max_steps = {max_steps} reached at t = {state.t:.6g} < t_end = {t_end:g}"
                break
            h = dt if dt is not None else sch.suggest_dt(state)
            h = min(h, t_end - state.t, next_save - state.t) if next_save > state.t + 1e-15 else min(h, t_end - state.t)
            if not state.t + h > state.t:
                stop_reason = (f"stalled: the step size {h:.3g} cannot advance t = {state.t:.6g} "
                               "(below the resolution of floating point); the problem is too stiff "
                               "for this scheme (huge costs or entropy?): rescale it or use another "
                               "scheme (e.g. 'pmd' or 'jko')")
                break
            ts = time.perf_counter()
            state = sch.step(state, h, adaptive=dt is None)
            if first_step_time is None:
                first_step_time = time.perf_counter() - ts
            steps += 1
            if steps - window[0] >= STALL_WINDOW:
                mean = (state.t - window[1]) / (steps - window[0])
                need = (t_end - state.t) / mean if mean > 0 else np.inf
                flat = abs(state.J - window[2]) <= STALL_RTOL * max(abs(state.J), 1e-300)
                if flat and need > STALL_FACTOR * max(max_steps - steps, 1):
                    stop_reason = (f"stalled: J changed by less than {STALL_RTOL:g} (relative) over "
                                   f"the last {steps - window[0]} steps, whose mean step {mean:.3g} "
                                   f"would need about {need:.3g} more steps to reach t_end = {t_end:g}, "
                                   f"over {STALL_FACTOR} x the {max_steps - steps} left (max_steps = "
                                   f"{max_steps}). The flow has settled on a time scale far below "
                                   "t_end: at a stationary state (the optimum, or, at small "
                                   "entropies, mass held in local minima of Q(s, .) over the "
                                   "actions, which a Wasserstein flow leaves only at times of "
                                   "order exp(barrier / entropy); compare J with wg.solve), or "
                                   "because huge costs or entropy make its steps tiny: rescale the "
                                   "problem, shorten t_end, or use another scheme (e.g. 'pmd' or 'jko')")
                window = (steps, state.t, state.J)
            is_frame = state.t >= next_save - 1e-12 * max(1.0, abs(next_save)) or state.t >= t_end * (1 - 1e-12)
            for tr in tracker_list:
                if tr is store:
                    continue
                if tr.due(state.t, is_frame):
                    reason = tr.handle(state, context)
                    if reason and stop_reason is None:
                        stop_reason = reason
            if is_frame:
                why = invalid(state)
                if why is not None:
                    stop_reason = stop_reason or f"invalid state at t = {state.t:.6g}: {why}"
                else:
                    if store is not None:     # a restart point: continue from the stored bits
                        state = rebuild_state(sch, state.t, state.masses, state.params,
                                              sch.state_dict())
                    record(state, True)
                    next_save = _next_frame_time(state.t, save_every)
            if stop_reason:
                break
        complete = True
    finally:
        if times and times[-1] != state.t and invalid(state) is None:
            try:
                record(state, False)     # where it stopped: max_steps, a tracker, an interruption
            except Exception:  # the state itself may be what failed; the stored frames stand
                pass
        total = time.perf_counter() - t_start
        solver = sch.evaluate.solver_stats()
        diag = {"steps": steps, "rejected": sch.stats.get("rejected", 0), "stop_reason": stop_reason,
                "evaluations": sch.evaluate.count, "time_total": total,
                "timings": timings(total, compile_seconds() - c_start, solver.get("solve_time", 0.0)),
                "time_evaluation": sch.evaluate.time, "time_first_step": first_step_time,
                "linear_solver": solver, "interrupted": not complete,
                **{k: v for k, v in sch.stats.items() if k not in ("steps", "rejected")}}
        if resume:
            diag["resumed_from"] = frame.resume_diagnostics()
        context["diagnostics"] = diag
        context["complete"] = complete
        for tr in tracker_list:
            tr.finish(state, context)
    return Trajectory(times, Js, gn2, np.array(frames), mdp.actions, mdp.states,
                      {k: np.array(v) for k, v in params.items()}, sch.name, objective.to_dict(),
                      mdp.provenance, diag)
