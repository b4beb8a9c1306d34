"""Trackers: code that runs at chosen times during a flow (py-pde's pattern).

A tracker's :meth:`~Tracker.handle` is called every ``interval`` units of flow time (``interval=0``:
after every step; ``None``: at every saved frame). Returning a string stops the flow; the string
is recorded as ``trajectory.diagnostics["stop_reason"]``.

Built in: ``"progress"`` (tqdm bar), ``"steady_state"`` (stop when the policy stops moving),
``"guard"`` (stop on NaN/inf or blow-up, always on), :class:`StorageTracker` (append frames to
HDF5, flushed), :class:`CallbackTracker` (your function).
"""
from __future__ import annotations


import numpy as np

from .. import validation
from ..errors import ValidationError

__all__ = ["Tracker", "ProgressTracker", "SteadyStateTracker", "GuardTracker", "StorageTracker",
           "CallbackTracker", "get_tracker"]


class Tracker:
    """Base class: override :meth:`handle` (and optionally :meth:`start`, :meth:`finish`)."""

    def __init__(self, interval: float | None = None):
        self.interval = validation.real(interval, "interval", type(self).__name__, low=0.0, none=True)
        self._next = 0.0

    def due(self, t: float, is_frame: bool) -> bool:
        if self.interval is None:
            return is_frame
        if t + 1e-12 >= self._next:
            self._next = t + self.interval
            return True
        return False

    def start(self, state, context: dict):
        pass

    def handle(self, state, context: dict):
        return None

    def finish(self, state, context: dict):
        pass


class ProgressTracker(Tracker):
    """A tqdm bar over flow time (``progress=False`` in :func:`wgflow.flow` silences it)."""

    def __init__(self, interval: float = 0.0, enabled: bool | None = None):
        super().__init__(interval)
        from .._progress import enabled as _enabled
        self.enabled = _enabled(enabled)
        self.bar = None

    def start(self, state, context):
        if self.enabled:
            from .._progress import tqdm_class
            self.bar = tqdm_class()(total=float(context["t_end"]), desc=f"flow ({context['scheme']})",
                            unit="t", leave=False, bar_format="{l_bar}{bar}| t={n:.4g}/{total:.4g} [{elapsed}{postfix}]")
            self.bar.update(state.t)

    def handle(self, state, context):
        if self.bar is not None:
            self.bar.update(state.t - self.bar.n)
            self.bar.set_postfix(J=f"{state.J:.10g}", refresh=False)

    def finish(self, state, context):
        if self.bar is not None:
            self.bar.close()


class SteadyStateTracker(Tracker):
    """Stop when the masses change by less than ``atol`` per unit time (sup-norm) between checks,
    and by less than ``atol`` in all over a check longer than one unit of time.

    The change over a long step is no derivative: implicit steps grow by orders of magnitude,
    and ``max |dm| / dt`` alone falls below any ``atol`` once ``dt`` is large enough, however
    much the policy still moves (pendulum 21^2 x 11, entropy 0.1: a step of ``1e10`` that moved
    a mass by 0.28 read as ``|dm/dt| = 3e-11``). So the change is divided by ``min(dt, 1)``."""

    def __init__(self, atol: float = 1e-10, interval: float | None = 0.0):
        super().__init__(interval)
        self.atol = validation.real(atol, "atol", "SteadyStateTracker", low=0.0, low_open=True)
        self._prev = None

    def start(self, state, context):
        # the start state is the reference of the first check, so that a resumed run stops
        # where the uninterrupted one does
        self._prev = (state.t, state.masses)

    def handle(self, state, context):
        if self._prev is not None and state.t > self._prev[0]:
            dt = state.t - self._prev[0]
            dm = np.max(np.abs(state.masses - self._prev[1]))
            rate = dm / min(dt, 1.0)
            if rate < self.atol:
                self._prev = (state.t, state.masses)
                return (f"steady state (|dm| = {dm:.2e} over dt = {dt:.3g}: below {self.atol:g} "
                        "per unit time)")
        self._prev = (state.t, state.masses)
        return None


class GuardTracker(Tracker):
    """Stop on NaN/inf masses or J, negative masses, or ``|J|`` above ``blowup`` times its start."""

    def __init__(self, blowup: float = 1e8, interval: float = 0.0):
        super().__init__(interval)
        self.blowup = blowup
        self._J0 = None

    def start(self, state, context):
        self._J0 = abs(state.J)

    def handle(self, state, context):
        if not np.all(np.isfinite(state.masses)):
            return "guard: non-finite masses"
        if not np.isfinite(state.J):
            return "guard: non-finite J"
        if np.min(state.masses) < -1e-12:
            return f"guard: negative mass {np.min(state.masses):.3e}"
        if self._J0 is None:
            self._J0 = abs(state.J)
        if abs(state.J) > self.blowup * max(self._J0, 1.0):
            return f"guard: |J| = {abs(state.J):.3e} blew up (start {self._J0:.3e})"
        return None


class StorageTracker(Tracker):
    """Append every saved frame to an HDF5 file with a commit protocol (interrupted or killed
    runs keep every committed frame; see :mod:`wgflow.flows.trajectory`).

    ``overwrite=True`` replaces an existing file (once the new run's first frame is committed);
    without it an existing file raises :class:`~wgflow.errors.ExistingFileError`. ``resume``
    is handled by :func:`wgflow.flow`, which calls :meth:`reopen`.
    """

    def __init__(self, path, resume: bool = False, overwrite: bool = False):
        super().__init__(None)
        self.path = path
        self.resume = resume
        self.overwrite = overwrite
        self.writer = None

    def open(self, scheme, state, context, run: dict | None = None):
        """Create the file for a new run (the header, no frame yet)."""
        from .trajectory import FrameWriter
        mdp = scheme.mdp
        specs = {k: (np.shape(v), np.asarray(v).dtype) for k, v in state.params.items()}
        sd = scheme.state_dict()
        sspecs = {k: (np.shape(v), np.asarray(v).dtype) for k, v in sd.items()}
        self.writer = FrameWriter.create(self.path, state.masses.shape, mdp.actions, mdp.states,
                                         scheme.name, scheme.objective.to_dict(), mdp.provenance,
                                         specs, sspecs, run, overwrite=self.overwrite)

    def reopen(self, keep: int):
        """Continue a stored run after its first ``keep`` frames."""
        from .trajectory import FrameWriter
        self.writer = FrameWriter.reopen(self.path, keep)

    def write(self, state, grad_norm2, scheme_state: dict | None = None, restart: bool = True):
        self.writer.append(state.t, state.J, grad_norm2, state.masses, state.params,
                           scheme_state or {}, restart)

    def finish(self, state, context):
        if self.writer is not None:
            self.writer.close(context.get("diagnostics"), complete=context.get("complete", True))


class CallbackTracker(Tracker):
    """Call ``func(state, context)``; a string (or False) returned stops the flow."""

    def __init__(self, func, interval: float | None = None):
        super().__init__(interval)
        self.func = func

    def handle(self, state, context):
        out = self.func(state, context)
        if out is False:
            return "stopped by callback"
        return out if isinstance(out, str) else None


def get_tracker(spec) -> Tracker:
    """A tracker from a Tracker, a callable, or one of "progress", "steady_state", "guard"."""
    if isinstance(spec, Tracker):
        return spec
    if callable(spec):
        return CallbackTracker(spec)
    table = {"progress": ProgressTracker, "steady_state": SteadyStateTracker, "guard": GuardTracker}
    if isinstance(spec, str):
        validation.choice(spec, "tracker", sorted(table), "flow")
        return table[spec]()
    raise ValidationError(f"flow: a tracker is a Tracker, a callable or one of {sorted(table)}, got "
                          f"{validation.describe(spec)}")
