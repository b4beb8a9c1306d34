#!/usr/bin/env python
"""Flow benchmark: the cost of one explicit ``otto`` step, the Scharfetter--Gummel flux kernel, a
Fokker--Planck integration side by side with py-pde, every scheme run from the uniform policy to
the optimum ``J*``, the default ``otto`` (and multi-D ``jko``) against ``pmd`` to ``J - J* <
1e-8``, the order in time of both ``otto`` integrators, and the accuracy of the default
trajectory.

Run::

    python benchmarks/flows.py                      # everything but 'accuracy' (~15 min wall on 2 shared cores)
    python benchmarks/flows.py --quick              # small cases only
    python benchmarks/flows.py --only goal order    # some sections (otto, kernel, pypde, schemes,
                                                    # goal, order, accuracy)
    python benchmarks/flows.py --only order --figure docs/figures/otto_order_in_time.png
    python benchmarks/flows.py --cap 120            # wall-time cap of one scheme run (default 60 s)
    python benchmarks/flows.py --json out.json      # raw numbers

``run(quick)`` returns the rows of ``benchmarks/run.py`` (sections 5 and 3: ratio = peer / wgflow
in CPU seconds).

Times in sections 1--3 are CPU time of this process (``time.process_time``; everything timed is
single-threaded), so that they mean something on a shared machine; section 4 reports wall and CPU
time. Results and their interpretation: docs/flows_benchmarks.md.

Sections
--------
1. **One explicit otto step in units of one sparse mat-vec** ``P @ v`` (``P`` the ``(nS*nA, nS)``
   transition matrix, ``v`` of length ``nS``; mean of many calls). The scheme is driven exactly as
   :func:`wgflow.flow` drives it (``suggest_dt`` then ``step(adaptive=True)``), without trackers.
   Three warm-up steps are excluded (numba compilation of the spacing-specific flux kernel, first
   LU). Two windows: *early* steps from the uniform policy (the policy changes fast) and *late*
   steps from ``0.98 * optimal + 0.02 * uniform`` after 10 unrecorded steps (near the steady
   state, where the old LU factors are reused). The split is measured by timing wrappers
   installed in this process around ``wgflow.flows.otto.sg_flux`` (flux kernel),
   ``PolicyMatrixAssembler.__call__`` (assembly of ``P_pi``), ``wgflow.flows.base._evaluate_masses``
   (whole exact evaluation) and the scheme's ``LinearSolveCache.solve`` (sparse solves); the
   mat-vec unit is timed between the steps (same machine conditions). A second table gives the
   building blocks (assembly, LU factorization and solves) in the same unit.
2. **Flux kernel** (``sg_flux``: numba, allocates its outputs; the raw factory kernel with
   preallocated outputs) against its numpy twin ``sg_flux_numpy`` and a memory copy of the
   masses (the machine's floor for touching the data once); inputs: the Fokker--Planck case of
   section 3, random Q (worst case for branches), and each problem's uniform policy and exact Q.
3. **Fokker--Planck equation vs py-pde**: ``d_t rho = d_a(rho d_a Q) + tau d_aa rho`` with a frozen
   smooth ``Q`` on the same 1-D cell-centred grid, the same explicit Euler ``dt`` and number of
   steps. py-pde: ``pde.PDE`` with ``Q'`` as a constant field, ``EulerSolver(backend="numba",
   adaptive=False).make_stepper`` (one compiled loop over all steps, no tracker); batched = a
   Python loop over the ``nS`` independent states, each integrated by the same compiled stepper.
   wgflow: (a) ``wgflow.kernels.fluxes.sg_frozen_steps`` (frozen Q: SG coefficients computed once,
   then fused Euler steps, one multiply-add per face per step), (b) the per-step factory flux
   kernel (coefficients recomputed every step, what otto needs since its Q changes every step)
   inside a numba-jitted Euler loop, (c) ``otto_rhs`` + ``m += dt * dm`` in a Python loop (what an
   otto step calls); and a reference frozen loop that is not in wgflow (2-D masses, the left
   face's flux carried in a register, each cell written once per step). Compilation is excluded from per-step times and reported separately.
   Results are compared as densities (``m / h``); the two discretizations differ (SG fluxes vs
   central differences) so they agree to O(h^2), shown on two grids.
4. **Schemes to J***: ``wg.flow`` with every registered scheme (``jko`` if ``wgflow.flows.jko``
   imports) from the uniform policy, default step control (``dt=None``; one documented extra
   ``dt``), ``t_end`` and ``save_every`` huge (``1e300``: frames never cut a step), stopped by a
   callback tracker when ``J - J* < 1e-8`` (``J*`` from ``wg.solve(tol=1e-13)``), when the best
   ``J - J*`` has not improved for 500 steps (the floor of a biased scheme), by the
   ``steady_state`` tracker, or at the wall-time cap. Reports steps, wall and CPU time, exact
   evaluations and ``J - J*``.
5. **Goal: to J - J* < 1e-8 against pmd**: default ``otto`` on the pendulum 51x51x21 with
   ``Discounted(0.99, entropy=0.1)`` (the goal), lqr1d, the mountain car, the pendulum with the
   average cost and on 2-D actions (lqr2d), default ``jko`` on lqr2d; each against default
   ``pmd`` on the same problem in the same process, interleaved, best of 3 (CPU and wall
   separately) after a warm-up run; peak memory of one run. Full run only: the explicit
   reference on the pendulum (60 s cap) and the small entropy 1e-3 (Gibbs tails underflow; 60 s
   cap), once each.
   ``--only jko``: the entropic (multi-D) jko: proximal solves, one step on 21x21 actions, and the
   flow to ``J*`` with default options (the section runs on older versions of wgflow too).
   ``--only barriers``: the action barriers of the optimal soft Q of those problems (how long the
   exact flow takes to leave a local minimum of ``Q(s, .)``, ``~ exp(barrier / tau)``).
6. **Order in time**: fixed steps of both otto integrators on lqr1d 21x15 against a
   Richardson-extrapolated explicit reference; ``--figure`` writes the log-log plot.
7. **Trajectory accuracy** (only with ``--only accuracy``; ~7 min): ``J(t)`` of the default otto
   at several ``tol`` against the explicit reference on the goal's pendulum, frames every 0.1.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

import wgflow as wg
import wgflow.evaluation as wg_eval
import wgflow.flows.base as base_mod
import wgflow.flows.otto as otto_mod
from wgflow.flows import CallbackTracker
from wgflow.flows.otto import Otto, otto_rhs
from wgflow.kernels import numba_environment
from wgflow.kernels.assembly import PolicyMatrixAssembler
from wgflow.kernels.fluxes import (make_sg_flux, sg_coefficients, sg_flux, sg_flux_numpy,
                                   sg_frozen_steps)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _measure import peak_mib  # noqa: E402


# ------------------------------------------------------------------------------------ helpers
#: all timings are CPU time of this process: every code path timed here is single-threaded
#: (scipy sparse, SuperLU, numba kernels without parallel=True, py-pde below its multithreading
#: threshold), and CPU time is not inflated when other processes share the machine
CLOCK = time.process_time


def best_time(fn, repeat=5, min_time=0.05):
    """Best (minimum) mean over ``repeat`` blocks of calls lasting at least ``min_time`` each:
    robust to other processes sharing the machine."""
    fn()
    out = []
    for _ in range(repeat):
        reps, t0 = 0, CLOCK()
        while True:
            fn()
            reps += 1
            el = CLOCK() - t0
            if el >= min_time:
                break
        out.append(el / reps)
    return min(out)


def matvec_time(P, rng):
    v = rng.random(P.shape[1])
    return best_time(lambda: P @ v, repeat=5, min_time=0.1)


class Timed:
    """Wrap ``owner.name`` (a module function or an instance's method) with a CPU-time
    accumulator (restored by :meth:`restore`)."""

    def __init__(self, module, name):
        self.module, self.name = module, name
        self.orig = getattr(module, name)
        self.total = 0.0

        def wrapper(*a, **k):
            t0 = CLOCK()
            try:
                return self.orig(*a, **k)
            finally:
                self.total += CLOCK() - t0

        setattr(module, name, wrapper)

    def restore(self):
        if isinstance(self.module, (type(os), type)):
            setattr(self.module, self.name, self.orig)
        else:
            delattr(self.module, self.name)        # instance: back to the class's method


# ------------------------------------------------------------------------ 1. one otto step
def otto_window(sch, state, n_steps, flux_t, asm_t, P, v):
    eval_t = Timed(base_mod, "_evaluate_masses")
    solve_t = Timed(sch.evaluate.cache, "solve")
    try:
        return _otto_window(sch, state, n_steps, flux_t, asm_t, P, v, eval_t, solve_t)
    finally:
        eval_t.restore()
        solve_t.restore()


def _otto_window(sch, state, n_steps, flux_t, asm_t, P, v, eval_t, solve_t):
    """Run ``n_steps`` steps the way ``wg.flow`` does and return (state, per-step means).

    After every step (outside the timed step) three mat-vecs ``P @ v`` are timed, so the unit is
    measured under the same machine load as the steps it normalizes."""
    ev, cache = sch.evaluate, sch.evaluate.cache
    s0 = dict(cache.stats)
    e0, c0, f0, a0, r0 = eval_t.total, ev.count, flux_t.total, asm_t.total, sch.stats["rejected"]
    total, mv_total = 0.0, 0.0
    for _ in range(n_steps):
        t0 = CLOCK()
        h = sch.suggest_dt(state)
        state = sch.step(state, h, adaptive=True)
        total += CLOCK() - t0
        t0 = CLOCK()
        for _ in range(3):
            P @ v
        mv_total += (CLOCK() - t0) / 3
    s1 = cache.stats
    out = {
        "matvec": mv_total / n_steps,
        "total": total / n_steps,
        "evaluation": (eval_t.total - e0) / n_steps,
        "assembly": (asm_t.total - a0) / n_steps,
        "linear_solve": solve_t.total / n_steps,
        "flux": (flux_t.total - f0) / n_steps,
        "evaluations_per_step": (ev.count - c0) / n_steps,
        "rejected": sch.stats["rejected"] - r0,
        "factorizations": s1["factorizations"] - s0["factorizations"],
        "reuse_solves": s1["krylov_solves"] - s0["krylov_solves"],
        "refinement_iterations": s1["krylov_iterations"] - s0["krylov_iterations"],
        "dt_last": state.info.get("dt"),
        "t": state.t,
        "J": state.J,
    }
    out["rest"] = out["total"] - out["evaluation"] - out["flux"]
    out["eval_other"] = out["evaluation"] - out["assembly"] - out["linear_solve"]
    return state, out


def ratio_to_matvec(fn, P, v, n=20):
    """Median of ``time(fn) / time(P @ v)`` over ``n`` alternating pairs (load-robust)."""
    fn()
    P @ v
    r = []
    for _ in range(n):
        t0 = CLOCK()
        fn()
        t1 = CLOCK()
        P @ v
        t2 = CLOCK()
        r.append((t1 - t0) / (t2 - t1))
    return float(np.median(r))


def lu_facts(mdp, obj, masses, rng):
    """Size and cost of the LU factors the evaluation uses (discounted: A = I - gamma P_pi),
    in units of one ``P @ v``."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spla
    from wgflow.kernels import policy_matrix
    v = rng.random(mdp.n_states)
    asm = wg_eval._assembler(mdp)
    A = (sp.identity(mdp.n_states, format="csr") - obj.gamma * asm(masses)).tocsr()
    Ac = sp.csc_matrix(A)
    lu = spla.splu(Ac, permc_spec="COLAMD")
    b = rng.random(mdp.n_states)
    P = mdp.P
    return {"nnz_A": int(A.nnz), "nnz_LU": int(lu.L.nnz + lu.U.nnz),
            "factor": ratio_to_matvec(lambda: spla.splu(Ac, permc_spec="COLAMD"), P, v, n=5),
            "lu_solve": ratio_to_matvec(lambda: lu.solve(b), P, v),
            "lu_solve_T": ratio_to_matvec(lambda: lu.solve(b, trans="T"), P, v),
            "A_matvec": ratio_to_matvec(lambda: A @ b, P, v),
            "assembly": ratio_to_matvec(lambda: asm(masses), P, v),
            "assembly_two_pass": ratio_to_matvec(lambda: policy_matrix(P, masses), P, v)}


def bench_otto_case(label, mdp, obj, n_early, n_late, rng):
    flux_t = Timed(otto_mod, "sg_flux")
    # assembly of P_pi: the evaluation calls the MDP's PolicyMatrixAssembler (one pass over P with
    # a fixed pattern for positive policies, the two-pass policy_matrix otherwise)
    asm_t = Timed(PolicyMatrixAssembler, "__call__")
    try:
        mv = matvec_time(mdp.P, rng)
        v = rng.random(mdp.n_states)
        sch = Otto(mdp, obj, method="explicit")
        st = sch.init(wg.Policy.uniform(mdp))
        kcase = (label, st.masses.copy(), st.evaluation.Q.copy(), sch.tau, float(mdp.actions.spacing[0]))
        for _ in range(3):                                   # warm-up: compile, first LU
            st = sch.step(st, sch.suggest_dt(st), adaptive=True)
        _, early = otto_window(sch, st, n_early, flux_t, asm_t, mdp.P, v)

        t0 = CLOCK()
        sol = wg.solve(mdp, obj)
        t_solve = CLOCK() - t0
        m_late = 0.98 * sol.policy.masses + 0.02 / mdp.n_actions
        sch2 = Otto(mdp, obj, method="explicit")
        st = sch2.init(wg.Policy.from_masses(mdp, m_late))
        for _ in range(10):
            st = sch2.step(st, sch2.suggest_dt(st), adaptive=True)
        st, late = otto_window(sch2, st, n_late, flux_t, asm_t, mdp.P, v)
        late["J_gap"] = late["J"] - sol.J
        lu_info = lu_facts(mdp, obj, st.masses, rng)
    finally:
        flux_t.restore()
        asm_t.restore()
    return {"case": label, "nS": mdp.n_states, "nA": mdp.n_actions, "nnz": int(mdp.P.nnz),
            "matvec": mv, "solve_time": t_solve, "early": early, "late": late, "lu": lu_info,
            "n_early": n_early, "n_late": n_late}, kcase


def print_otto(rows):
    print("\n## 1. One otto step, in units of one sparse mat-vec P @ v (mean per step)\n")
    print("P@v: best-of time on a quiet moment / mean of the mat-vecs timed between the steps (the unit).\n")
    print("| case | nS x nA (nnz P) | P@v | window | step | step / quiet P@v | exact eval (assembly / solve / other) "
          "| flux kernel | rest | LU / reuse solves / refinement+GMRES its |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for w in ("early", "late"):
            d = r[w]
            mv = d["matvec"]
            n = r["n_" + w]
            print(f"| {r['case']} | {r['nS']} x {r['nA']} ({r['nnz']}) | {r['matvec'] * 1e3:.3f} / {mv * 1e3:.3f} ms "
                  f"| {w} ({n} steps) | **{d['total'] / mv:.1f}** ({d['total'] * 1e3:.2f} ms) | {d['total'] / r['matvec']:.0f} "
                  f"| {d['evaluation'] / mv:.1f} ({d['assembly'] / mv:.1f} / {d['linear_solve'] / mv:.1f} / "
                  f"{d['eval_other'] / mv:.1f}) | {d['flux'] / mv:.1f} | {d['rest'] / mv:.1f} "
                  f"| {d['factorizations']} / {d['reuse_solves']} / {d['refinement_iterations']} |")
    rej = sum(r[w]["rejected"] for r in rows for w in ("early", "late"))
    print(f"\n(rejected steps in all windows: {rej}; one exact evaluation per step)")
    print("\nBuilding blocks at the late policy, in units of one P @ v (median of alternating pairs):\n")
    print("| case | nnz(P) | nnz(A) | nnz(L+U) | assemble P_pi (one pass / two-pass) | factorize A "
          "| LU solve (N / T) | A @ x | wg.solve (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        lu = r["lu"]
        print(f"| {r['case']} | {r['nnz']} | {lu['nnz_A']} | {lu['nnz_LU']} | {lu['assembly']:.1f} / "
              f"{lu['assembly_two_pass']:.1f} "
              f"| {lu['factor']:.0f} | {lu['lu_solve']:.2f} / {lu['lu_solve_T']:.2f} | {lu['A_matvec']:.2f} "
              f"| {r['solve_time']:.1f} |")
    print("\n(late window: J - J* at its end: " +
          ", ".join(f"{r['case']}: {r['late']['J_gap']:.2e}" for r in rows) + ")")


# ------------------------------------------------------------------------ 2. flux kernel
def bench_kernel(cases):
    """``cases``: (label, masses (nS, n), Q (nS, n), tau, spacing)."""
    rows = []
    for label, m2, q2, tau, h in cases:
        nS, n = m2.shape
        m = np.ascontiguousarray(m2).reshape(nS, n, 1)
        q = np.ascontiguousarray(q2).reshape(nS, n, 1)
        kern = make_sg_flux(h)
        F = np.empty((nS, n - 1, 1))
        rate = np.zeros_like(m)
        kern(m, q, tau, F, rate)
        sg_flux(m, q, tau, h)
        out = np.empty_like(m)
        t_raw = best_time(lambda: kern(m, q, tau, F, rate))
        t_sg = best_time(lambda: sg_flux(m, q, tau, h))
        t_np = best_time(lambda: sg_flux_numpy(m, q, tau, h))
        t_cp = best_time(lambda: np.copyto(out, m))
        F1, r1 = sg_flux(m, q, tau, h)
        F2, r2 = sg_flux_numpy(m, q, tau, h)
        err = max(np.max(np.abs(F1 - F2)) / np.max(np.abs(F2)), np.max(np.abs(r1 - r2)) / np.max(r2))
        rows.append({"case": label, "nS": nS, "n": n, "tau": tau, "faces": nS * (n - 1), "raw": t_raw,
                     "sg_flux": t_sg, "numpy": t_np, "copy": t_cp, "max_rel_diff": float(err)})
    return rows


def print_kernel(rows):
    print("\n## 2. SG flux kernel vs numpy twin (best of 5; same inputs)\n")
    print("| case (nS, nA), tau | faces | raw kernel | sg_flux (allocates) | numpy twin | twin / sg_flux "
          "| ns per face (raw) | memcopy of m | raw / memcopy | max rel diff |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} ({r['nS']}, {r['n']}), {r['tau']:g} | {r['faces']} | {r['raw'] * 1e6:.1f} us | {r['sg_flux'] * 1e6:.1f} us "
              f"| {r['numpy'] * 1e6:.1f} us | **{r['numpy'] / r['sg_flux']:.1f}x** | {r['raw'] / r['faces'] * 1e9:.1f} "
              f"| {r['copy'] * 1e6:.2f} us | {r['raw'] / r['copy']:.0f} | {r['max_rel_diff']:.1e} |")


# ------------------------------------------------------------------------ 3. vs py-pde
def fp_setup(n, L=4.0):
    grid = wg.Grid([(-L, L)], [n])
    a = grid.centers[:, 0]
    # Q'(+-L) = 0: py-pde's Neumann condition on the expression rho * Q' then matches no-flux
    # (with Q'(+-L) != 0 it acts as a source at the boundary that grows exponentially)
    k = np.pi / L
    Q = -2.0 * np.cos(k * a) + 0.6 * np.cos(2 * k * a) + 0.4 * np.cos(3 * k * a)
    dQ = 2.0 * k * np.sin(k * a) - 1.2 * k * np.sin(2 * k * a) - 1.2 * k * np.sin(3 * k * a)
    return grid, a, Q, dQ


def fp_initial(a, h, nS):
    centres = np.array([-1.0]) if nS == 1 else np.linspace(-2.0, 2.0, nS)
    rho = np.exp(-(a[None, :] - centres[:, None]) ** 2 / (2 * 0.4 ** 2))
    rho /= rho.sum(axis=1, keepdims=True) * h               # density, integral 1
    return rho


def make_jit_euler(flux):
    """Explicit Euler with the per-step SG kernel (coefficients recomputed every step, as otto
    needs since its Q changes every step), in one jitted loop: the kernel's cost without Python."""
    import numba

    @numba.njit(cache=False)
    def euler(m, q, tau, dt, n_steps, F, rate):
        A, n, B = m.shape
        for _ in range(n_steps):
            flux(m, q, tau, F, rate)                        # rate is accumulated, unused here
            for i in range(A):
                for k in range(n - 1):
                    for j in range(B):
                        f = dt * F[i, k, j]
                        m[i, k, j] -= f
                        m[i, k + 1, j] += f
        return m

    return euler


def make_frozen_reference():
    """Reference loop, not in wgflow: frozen coefficients of a 1-D grid on 2-D masses (nS, n), the
    flux of the left face carried in a register so that every cell is read and written once per
    step (the library's ``sg_euler_frozen`` works on (outer, n, inner) views and writes both cells
    of every face)."""
    import numba

    @numba.njit(cache=False)
    def euler_frozen(m, cf, cb, dt, n_steps):
        A, n = m.shape
        for _ in range(n_steps):
            for i in range(A):
                prev = 0.0                                   # dt * flux into cell k from the left face
                for k in range(n - 1):
                    f = dt * (cf[k] * m[i, k] - cb[k] * m[i, k + 1])
                    m[i, k] += prev - f
                    prev = f
                m[i, n - 1] += prev
        return m

    return euler_frozen


def bench_pypde(n, tau, T, batch_sizes, rounds=4):
    import pde

    grid, a, Q, dQ = fp_setup(n)
    h = float(grid.spacing[0])
    n_steps = int(np.ceil(T / (0.2 * h * h / tau)))     # dt <= 0.2 h^2 / tau, same T on every grid
    dt = T / n_steps
    pgrid = pde.CartesianGrid([(-4.0, 4.0)], [n])
    assert np.allclose(pgrid.axes_coords[0], a, rtol=0, atol=1e-13)
    eq = pde.PDE({"rho": f"d_dx(rho * dQ) + {tau!r} * laplace(rho)"},
                 consts={"dQ": pde.ScalarField(pgrid, dQ)}, bc={"derivative": 0})
    solver = pde.EulerSolver(eq, backend="numba", adaptive=False)
    field = pde.ScalarField(pgrid, fp_initial(a, h, 1)[0])
    t0 = CLOCK()
    stepper = solver.make_stepper(field, dt=dt)
    stepper(field, 0.0, 2 * dt)
    t_compile_pde = CLOCK() - t0

    # wgflow kernels: compile once (excluded from the per-step times)
    kern = make_sg_flux(h)
    euler = make_jit_euler(kern)
    t0 = CLOCK()
    m1 = fp_initial(a, h, 1)[:, :, None] * h
    q1 = Q.reshape(1, n, 1).copy()
    euler(m1.copy(), q1, tau, dt, 2, np.empty((1, n - 1, 1)), np.zeros((1, n, 1)))
    sg_frozen_steps(m1, q1, tau, h, dt, 2)
    reference = make_frozen_reference()
    reference(m1[:, :, 0].copy(), np.ones(n - 1), np.ones(n - 1), dt, 2)
    t_compile_wg = CLOCK() - t0
    # the same coefficients as sg_frozen_steps, for the reference loop
    cf_ref, cb_ref = np.empty((1, n - 1, 1)), np.empty((1, n - 1, 1))
    sg_coefficients(q1, float(tau), 1.0 / (h * h), cf_ref, cb_ref)
    cf_ref, cb_ref = cf_ref[0, :, 0].copy(), cb_ref[0, :, 0].copy()
    _, rate0 = sg_flux_numpy(np.ones((1, n, 1)), q1, tau, h)
    assert dt * rate0.max() <= 1.0, "dt above the SG positivity bound"

    rows = []
    for nS in batch_sizes:
        rho0 = fp_initial(a, h, nS)
        Qb = np.broadcast_to(Q, (nS, n)).copy()
        Q3 = Qb[:, :, None].copy()
        m0 = (rho0 * h)[:, :, None].copy()

        def run_pde():
            # py-pde: loop over the independent states, one compiled stepper call each
            fields = [pde.ScalarField(pgrid, rho0[s].copy()) for s in range(nS)]
            steps_before = solver.info["steps"]
            t0 = CLOCK()
            for f in fields:
                stepper(f, 0.0, n_steps * dt)
            el = CLOCK() - t0
            assert solver.info["steps"] - steps_before == nS * n_steps, "py-pde took another number of steps"
            return el, np.array([f.data for f in fields])

        def run_frozen():
            # wgflow.kernels.fluxes.sg_frozen_steps: coefficients once, then fused Euler steps
            # (the timing includes the copy of m, the coefficients and the allocations)
            t0 = CLOCK()
            m = sg_frozen_steps(m0, Q3, tau, h, dt, n_steps)
            return CLOCK() - t0, m[:, :, 0] / h

        def run_reference():
            # reference loop (not in wgflow), coefficients precomputed (their cost is negligible)
            mr = rho0 * h
            t0 = CLOCK()
            reference(mr, cf_ref, cb_ref, dt, n_steps)
            return CLOCK() - t0, mr / h

        def run_jit():
            # per-step SG kernel (coefficients every step) in a jitted Euler loop
            m3 = m0.copy()
            F = np.empty((nS, n - 1, 1))
            rate = np.zeros((nS, n, 1))
            t0 = CLOCK()
            euler(m3, Q3, tau, dt, n_steps, F, rate)
            return CLOCK() - t0, m3[:, :, 0] / h

        def run_rhs():
            # otto_rhs (which calls sg_flux) + Euler update in a Python loop: what an otto step does
            m = rho0 * h
            t0 = CLOCK()
            for _ in range(n_steps):
                dm, _, _ = otto_rhs(m, Qb, tau, grid)
                m = m + dt * dm
            return CLOCK() - t0, m / h

        # round-robin repetitions, best of each: the machine may be shared, and interleaving
        # keeps slow drifts of the load from biasing one method
        runs = {"pypde": run_pde, "frozen": run_frozen, "reference": run_reference, "sg_flux_jit": run_jit,
                "otto_rhs": run_rhs}
        best, last = {}, {}
        for _ in range(rounds):
            for key, run in runs.items():
                el, last[key] = run()
                best[key] = min(best.get(key, np.inf), el)
        rho_pde = last["pypde"]
        scale = np.max(np.abs(rho_pde))
        per = nS * n_steps
        row = {"n": n, "nS": nS, "steps": n_steps, "dt": dt,
               "time": {k: best[k] / per for k in runs},
               "maxdiff_vs_pypde": {k: float(np.max(np.abs(last[k] - rho_pde)) / scale) for k in runs if k != "pypde"},
               "maxdiff_vs_frozen": {k: float(np.max(np.abs(last[k] - last["frozen"])) / scale)
                                     for k in ("reference", "sg_flux_jit", "otto_rhs")},
               "mass_err_wg": float(np.max(np.abs(last["frozen"].sum(axis=1) * h - 1.0))),
               "mass_err_pypde": float(np.max(np.abs(rho_pde.sum(axis=1) * h - 1.0)))}
        rows.append(row)
    return {"rows": rows, "compile_pypde": t_compile_pde, "compile_wg": t_compile_wg, "h": h, "dt": dt}


PYPDE_METHODS = [("frozen", "`sg_frozen_steps` (frozen Q: coefficients once)"),
                 ("reference", "reference frozen loop, flux carried in a register (not in wgflow)"),
                 ("sg_flux_jit", "per-step SG kernel (coefficients every step), jitted Euler loop"),
                 ("otto_rhs", "per-step `otto_rhs` (calls `sg_flux`) in a Python loop")]


def print_pypde(results, tau):
    print(f"\n## 3. Fokker-Planck d_t rho = d_a(rho Q') + tau rho'' (tau = {tau}, frozen Q, T = 5) vs py-pde\n")
    print("Time per step and per state (batched: per state-step), best of the rounds. "
          "Ratio > 1: wgflow faster.\n")
    print("| n | nS | steps | wgflow method | wgflow | py-pde stepper | py-pde / wgflow "
          "| max diff vs py-pde (rel. to max rho) |")
    print("|---|---|---|---|---|---|---|---|")
    for res in results:
        for r in res["rows"]:
            tp = r["time"]["pypde"]
            for key, label in PYPDE_METHODS:
                tw = r["time"][key]
                ratio = f"**{tp / tw:.2f}**" if key == "frozen" else f"{tp / tw:.2f}"
                print(f"| {r['n']} | {r['nS']} | {r['steps']} | {label} | {tw * 1e9:.1f} ns | {tp * 1e9:.0f} ns "
                      f"| {ratio} | {r['maxdiff_vs_pypde'][key]:.2e} |")
    print()
    for res in results:
        r0 = res["rows"][0]
        agree = max(max(r["maxdiff_vs_frozen"].values()) for r in res["rows"])
        print(f"- n = {r0['n']}: h = {res['h']:.4g}, dt = {res['dt']:.4g}; compile: py-pde make_stepper + "
              f"first call {res['compile_pypde']:.1f} s CPU, wgflow (jitted loops + sg_frozen_steps) "
              f"{res['compile_wg']:.2f} s; the four wgflow results agree to {agree:.1e}; mass error "
              f"wgflow {max(r['mass_err_wg'] for r in res['rows']):.1e}, py-pde "
              f"{max(r['mass_err_pypde'] for r in res['rows']):.1e}")


# ------------------------------------------------------------------------ 4. schemes to J*
SCHEMES = ["otto", "jko", "wppg", "wpo", "pmd", "pg"]
#: schemes whose fixed point is not the grid optimum J* (they stop at a floor)
BIASED = {"wppg": "O(h) bias of the transport+heat splitting on the grid",
          "wpo": "policy restricted to (box-conditioned) Gaussians"}


def _jko_available():
    try:
        import wgflow.flows.jko  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the tree
        return f"import failed: {exc!r}"
    return None


def run_scheme(mdp, obj, J_star, scheme, cap_wall, max_steps, target=1e-8, patience=500, dt=None):
    """``wg.flow`` from the uniform policy with the scheme's default step control (dt=None),
    stopped by a callback when ``J - J* < target``, when the best ``J - J*`` has not improved for
    ``patience`` steps (a floor), after ``cap_wall`` seconds, or by the steady-state tracker."""
    rec = {"best": np.inf, "since": 0, "steps": 0}
    t_wall0 = time.perf_counter()

    def stop(state, context):
        gap = state.J - J_star
        rec["steps"] += 1
        if gap < rec["best"] - 1e-14 * max(1.0, abs(J_star)):
            rec["best"], rec["since"] = gap, 0
        else:
            rec["since"] += 1
        rec["best"] = min(rec["best"], gap)
        if gap < target:
            return f"J - J* < {target:g}"
        if rec["since"] >= patience:
            return f"floor: no new best J - J* in {patience} steps"
        if time.perf_counter() - t_wall0 > cap_wall:
            return f"wall-time cap {cap_wall:g} s"
        return None

    trackers = [CallbackTracker(stop, interval=0.0), "steady_state"]
    c0 = CLOCK()
    try:
        tr = wg.flow(mdp, obj, wg.Policy.uniform(mdp), scheme=scheme, t_end=1e300, save_every=1e300,
                     dt=dt, trackers=trackers, max_steps=max_steps, progress=False)
    except Exception as exc:
        return {"scheme": scheme, "error": f"{type(exc).__name__}: {exc}"[:300],
                "wall": time.perf_counter() - t_wall0, "cpu": CLOCK() - c0}
    d = tr.diagnostics
    gap = float(tr.J[-1] - J_star)
    return {"scheme": scheme, "steps": d["steps"], "rejected": d["rejected"], "wall": time.perf_counter() - t_wall0,
            "cpu": CLOCK() - c0, "evaluations": d["evaluations"], "gap": gap, "best_gap": float(rec["best"]),
            "reached": bool(min(gap, rec["best"]) < target), "stop": d["stop_reason"], "t": float(tr.times[-1]),
            "time_first_step": d["time_first_step"]}


def bench_schemes(cases, cap_wall, max_steps):
    out = []
    jko_err = _jko_available()
    for label, build, obj, obj_txt, extra in cases:
        mdp = build()
        t0 = time.perf_counter()
        sol = wg.solve(mdp, obj, tol=1e-13)
        t_solve = time.perf_counter() - t0
        rows = []
        for s, dt in [(s, None) for s in SCHEMES] + list(extra):
            if s == "jko" and jko_err:
                rows.append({"scheme": s, "dt": dt, "error": f"not available ({jko_err})"})
                continue
            r = run_scheme(mdp, obj, sol.J, s, cap_wall, max_steps, dt=dt)
            r["dt"] = dt
            rows.append(r)
            print(f"  ({label}: {s} done, {r.get('wall', 0):.1f} s wall, "
                  f"{r.get('stop', r.get('error'))}, gap {r.get('gap', float('nan')):.2e})", flush=True)
        out.append({"case": label, "objective": obj_txt, "nS": mdp.n_states, "nA": mdp.n_actions,
                    "J_star": float(sol.J), "solve_wall": t_solve, "rows": rows})
    return out


def print_schemes(results, cap_wall, max_steps):
    print("\n## 4. Schemes from the uniform policy to J* (default step control dt=None unless a dt is given)\n")
    print(f"Stop: J - J* < 1e-8, or no new best J - J* in 500 steps (floor), or steady state "
          f"(max|dm/dt| < 1e-10), or {cap_wall:g} s wall, or {max_steps} steps.\n")
    print("| problem | scheme | steps (rejected) | flow time t | wall (CPU) | evaluations | final J - J* "
          "| best J - J* | 1e-8 reached | stop reason |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for res in results:
        case = f"{res['case']} ({res['objective']})"
        for r in res["rows"]:
            name = r["scheme"] + ("" if r.get("dt") is None else f" (dt = {r['dt']:g})")
            if "error" in r:
                print(f"| {case} | {name} | - | - | - | - | - | - | {r['error']} | |")
                continue
            capped = "cap" in str(r["stop"]) or "max_steps" in str(r["stop"])
            if r["reached"]:
                reached = "yes"
            elif r["scheme"] in BIASED:
                reached = (f"no: {'capped above' if capped else 'stopped at'} its floor ({BIASED[r['scheme']]})")
            else:
                reached = "**not reached**"
            print(f"| {case} | {name} | {r['steps']} ({r['rejected']}) | {r['t']:.4g} | {r['wall']:.2f} s ({r['cpu']:.2f} s) "
                  f"| {r['evaluations']} | {r['gap']:.2e} | {r['best_gap']:.2e} | {reached} | {r['stop']} |")
    print()
    for res in results:
        print(f"- {res['case']}: nS = {res['nS']}, nA = {res['nA']}, J* = {res['J_star']:.10g} "
              f"(wg.solve, tol 1e-13, {res['solve_wall']:.2f} s wall)")


# ------------------------------------------------------------------------ 5. to J*: otto vs pmd
def to_optimum(mdp, obj, J_star, scheme, target=1e-8, cap_wall=None, **options):
    """``wg.flow`` from the uniform policy with the scheme's default options, ``t_end`` beyond
    reach (``1e300``: otto's steps grow through the times at which the exact flow crosses the
    barriers of a multimodal Q), frames only at the ends, stopped by a callback when
    ``J - J* < target`` (or after ``cap_wall`` seconds). Returns the run's figures."""
    t0 = time.perf_counter()

    def stop(state, context):
        if state.J - J_star < target:
            return f"J - J* < {target:g}"
        if cap_wall is not None and time.perf_counter() - t0 > cap_wall:
            return f"wall-time cap {cap_wall:g} s"
        return None

    c0 = CLOCK()
    tr = wg.flow(mdp, obj, wg.Policy.uniform(mdp), scheme=scheme, t_end=1e300,
                 trackers=[CallbackTracker(stop, interval=0.0)], progress=False, max_steps=100000,
                 **options)
    d = tr.diagnostics
    return {"cpu": CLOCK() - c0, "wall": time.perf_counter() - t0, "steps": d["steps"],
            "rejected": d["rejected"], "evaluations": d["evaluations"],
            "approximate": d.get("approximate_evaluations", 0), "gap": float(tr.J[-1] - J_star),
            "t": float(tr.times[-1]), "stop": d["stop_reason"],
            "reached": bool(tr.J[-1] - J_star < target), "dt_largest": d.get("dt_largest")}


def goal_cases(quick):
    """(label, build, objective, objective text, wgflow scheme and options, peer scheme)."""
    pend = ("pendulum 51x51x21", lambda: wg.problems.get("pendulum"))
    cases = [
        (*pend, wg.Discounted(0.99, entropy=0.1), "Discounted(0.99, entropy=0.1)", ("otto", {}), "pmd"),
        ("lqr1d 101x61", lambda: wg.problems.get("lqr1d"), wg.Discounted(0.9, entropy=0.5),
         "Discounted(0.9, entropy=0.5)", ("otto", {}), "pmd"),
        ("mountain car 61x61x21", lambda: wg.problems.get("mountain_car"),
         wg.Discounted(0.99, entropy=0.1), "Discounted(0.99, entropy=0.1)", ("otto", {}), "pmd"),
        (*pend, wg.Average(entropy=0.1), "Average(entropy=0.1)", ("otto", {}), "pmd"),
        ("lqr2d 21x21, actions 7x7", lambda: wg.problems.get("lqr2d"), wg.Discounted(0.9, entropy=0.5),
         "Discounted(0.9, entropy=0.5)", ("otto", {}), "pmd"),
        ("lqr2d 21x21, actions 7x7", lambda: wg.problems.get("lqr2d"), wg.Discounted(0.9, entropy=0.5),
         "Discounted(0.9, entropy=0.5)", ("jko", {}), "pmd"),
    ]
    if quick:
        cases = [("pendulum 31x31x21", lambda: wg.problems.get("pendulum", n_theta=31, n_omega=31),
                  wg.Discounted(0.99, entropy=0.1), "Discounted(0.99, entropy=0.1)", ("otto", {}), "pmd"),
                 ("lqr1d 51x41", lambda: wg.problems.get("lqr1d", n_states=51, n_actions=41),
                  wg.Discounted(0.9, entropy=0.5), "Discounted(0.9, entropy=0.5)", ("otto", {}), "pmd"),
                 ("lqr2d 11x11, actions 7x7", lambda: wg.problems.get("lqr2d", n_states=(11, 11)),
                  wg.Discounted(0.9, entropy=0.5), "Discounted(0.9, entropy=0.5)", ("jko", {}), "pmd")]
    return cases


def bench_goal(quick, rounds=None, explicit_cap=60.0):
    """Time to ``J - J* < 1e-8`` from the uniform policy, default options: ``otto`` (and ``jko``
    on 2-D actions) against ``pmd`` in the same process, interleaved, best of ``rounds`` (CPU and
    wall separately); a warm-up run of each first (compilation, caches). On the goal's pendulum
    (full run) also the explicit reference and the small-entropy case, once each."""
    rounds = rounds or (2 if quick else 3)
    out = []
    for label, build, obj, obj_txt, (scheme, opts), peer in goal_cases(quick):
        mdp = build()
        sol = wg.solve(mdp, obj, tol=1e-12)
        runs = {"wgflow": lambda: to_optimum(mdp, obj, sol.J, scheme, **opts),
                "peer": lambda: to_optimum(mdp, obj, sol.J, peer)}
        res = {k: fn() for k, fn in runs.items()}                        # warm-up
        best = {k: None for k in runs}
        peaks = {}
        for r in range(rounds):
            for k, fn in runs.items():
                if r == 0:
                    got, peaks[k] = peak_mib(fn)
                else:
                    got = fn()
                if best[k] is None:
                    best[k] = dict(got)
                best[k]["cpu"] = min(best[k]["cpu"], got["cpu"])
                best[k]["wall"] = min(best[k]["wall"], got["wall"])
        row = {"case": label, "objective": obj_txt, "nS": mdp.n_states, "nA": mdp.n_actions,
               "scheme": scheme, "peer": peer, "ours": best["wgflow"], "theirs": best["peer"],
               "peak": peaks.get("wgflow"), "rounds": rounds}
        out.append(row)
        print(f"  ({label}, {obj_txt}: {scheme} {best['wgflow']['cpu']:.2f} s CPU, {peer} "
              f"{best['peer']['cpu']:.2f} s CPU)", flush=True)
    if not quick:
        mdp = wg.problems.get("pendulum")
        for obj, txt, scheme, opts, cap in [
                (wg.Discounted(0.99, entropy=0.1), "Discounted(0.99, entropy=0.1)", "otto",
                 {"method": "explicit"}, explicit_cap),
                (wg.Discounted(0.99, entropy=1e-3), "Discounted(0.99, entropy=0.001)", "otto", {}, 60.0),
                (wg.Discounted(0.99, entropy=1e-3), "Discounted(0.99, entropy=0.001)", "pmd", {}, 60.0)]:
            sol = wg.solve(mdp, obj, tol=1e-11)
            got = to_optimum(mdp, obj, sol.J, scheme, cap_wall=cap, **opts)
            out.append({"case": "pendulum 51x51x21", "objective": txt, "nS": mdp.n_states,
                        "nA": mdp.n_actions, "scheme": scheme + (" (explicit)" if opts else ""),
                        "peer": None, "ours": got, "theirs": None, "peak": None, "rounds": 1})
            print(f"  (pendulum {txt}: {scheme} {opts} once: {got['stop']}, gap {got['gap']:.2e})",
                  flush=True)
    return out


def print_goal(rows):
    print("\n## 5. From the uniform policy to J - J* < 1e-8, default options, against pmd\n")
    print("wg.flow(mdp, obj, Policy.uniform(mdp), scheme=..., t_end=1e300) stopped by a callback at "
          "J - J* < 1e-8; best of interleaved rounds (CPU and wall separately) after a warm-up run.\n")
    print("| problem | objective | scheme | steps (rejected) [approx. Q] | exact evaluations | final J - J* "
          "| final t | CPU s | wall s | pmd: steps, CPU s, wall s | **CPU ratio scheme/pmd** | wall ratio | peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        o, p = r["ours"], r["theirs"]
        reached = "" if o["reached"] else f" (not reached: {o['stop']})"
        if p is None:
            print(f"| {r['case']} | {r['objective']} | {r['scheme']} | {o['steps']} ({o['rejected']}) "
                  f"[{o['approximate']}] | {o['evaluations']} | {o['gap']:.2e}{reached} | {o['t']:.3g} | "
                  f"{o['cpu']:.2f} | {o['wall']:.2f} | - | - | - | - |")
            continue
        pk = "-" if r["peak"] is None else f"{r['peak']:.0f}"
        print(f"| {r['case']} | {r['objective']} | {r['scheme']} | {o['steps']} ({o['rejected']}) "
              f"[{o['approximate']}] | {o['evaluations']} | {o['gap']:.2e}{reached} | {o['t']:.3g} | "
              f"{o['cpu']:.2f} | {o['wall']:.2f} | {p['steps']}, {p['cpu']:.2f}, {p['wall']:.2f} | "
              f"**{o['cpu'] / p['cpu']:.2f}** | {o['wall'] / p['wall']:.2f} | {pk} |")


def action_barriers(Q, tau):
    """Per state (1-D action grids): the largest barrier, in units of ``tau``, that mass sitting
    at a local minimum of ``Q(s, .)`` must climb along the action grid to reach the global
    minimum (0 where ``Q(s, .)`` has a single local minimum). The Wasserstein flow leaves such a
    minimum at a rate ``~ exp(-barrier)``."""
    out = np.zeros(Q.shape[0])
    n = Q.shape[1]
    for s_, q in enumerate(Q):
        g = int(np.argmin(q))
        for i in range(n):
            local = (i == 0 or q[i] <= q[i - 1]) and (i == n - 1 or q[i] <= q[i + 1])
            if local and i != g:
                lo, hi = min(i, g), max(i, g)
                out[s_] = max(out[s_], (q[lo:hi + 1].max() - q[i]) / tau)
    return out


def bench_barriers():
    """Metastability of the goal's problems: action barriers of the optimal soft Q."""
    rows = []
    for label, mdp, obj in [("pendulum 51x51x21", wg.problems.get("pendulum"), wg.Discounted(0.99, entropy=0.1)),
                            ("mountain car 61x61x21", wg.problems.get("mountain_car"),
                             wg.Discounted(0.99, entropy=0.1)),
                            ("pendulum 51x51x21", wg.problems.get("pendulum"), wg.Discounted(0.99, entropy=1e-3))]:
        sol = wg.solve(mdp, obj, tol=1e-11)
        b = action_barriers(sol.Q, obj.entropy)
        rows.append({"case": label, "objective": repr(obj), "states": int(mdp.n_states),
                     "multimodal": int(np.sum(b > 0)), "max_barrier": float(b.max())})
    return rows


def print_barriers(rows):
    print("\n## Metastability: action barriers of the optimal soft Q (in units of tau)\n")
    print("| problem | objective | states with a second local minimum | largest barrier / tau |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['objective']} | {r['multimodal']} of {r['states']} | {r['max_barrier']:.1f} |")


def bench_jko_multid(cap_wall=120.0):
    """Entropic (multi-D) jko: one proximal solve at several eps, one step on a 21x21 action grid,
    and the flow to J - J* < 1e-8 with default options. Uses only names that older versions of
    wgflow have too, so that the same section measures them (``PYTHONPATH=<old tree>``)."""
    import wgflow.flows.jko as jko
    out = {"prox": [], "step": [], "flow": []}
    mdp = wg.problems.get("lqr2d", n_states=(5, 5), n_actions=(7, 7), noise=0.3)
    obj = wg.Discounted(0.9, entropy=0.5)
    ev = wg.evaluate(mdp, wg.Policy.uniform(mdp), obj)
    for eps in (0.05, 0.01, 1e-3):
        c0 = CLOCK()
        _, info = jko.jko_prox_entropic(ev.policy.masses, ev.Q, 0.5, 1.0, eps, mdp.actions)
        out["prox"].append((eps, info["iterations"], CLOCK() - c0))
    mdp = wg.problems.get("lqr2d", n_actions=(21, 21))
    ev = wg.evaluate(mdp, wg.Policy.uniform(mdp), obj)
    for h in (1.0, 10.0):
        eps = jko.entropic_default_eps(mdp.actions, h)
        c0 = CLOCK()
        _, info = jko.jko_prox_entropic(ev.policy.masses, ev.Q, 0.5, h, eps, mdp.actions)
        out["step"].append((h, eps, info["iterations"], CLOCK() - c0))
    mdp = wg.problems.get("lqr2d")
    sol = wg.solve(mdp, obj, tol=1e-12)
    t0 = time.perf_counter()
    c0 = CLOCK()
    stop = lambda s_, c: ("done" if s_.J - sol.J < 1e-8 else  # noqa: E731
                          ("cap" if time.perf_counter() - t0 > cap_wall else None))
    tr = wg.flow(mdp, obj, wg.Policy.uniform(mdp), scheme="jko", t_end=1e300, save_every=1e300,
                 trackers=[CallbackTracker(stop, interval=0.0)], progress=False)
    d = tr.diagnostics
    out["flow"] = (d["steps"], d["inner_iterations"], float(tr.J[-1] - sol.J), d["stop_reason"],
                   CLOCK() - c0)
    return out


def print_jko_multid(res):
    print(f"\n## Entropic jko (multi-D actions), wgflow from {wg.__file__}\n")
    for eps, it, c in res["prox"]:
        print(f"- prox, lqr2d 5x5 states, 7x7 actions, uniform start, h = 1, eps = {eps:g}: {it} iterations, {c:.2f} s CPU")
    for h, eps, it, c in res["step"]:
        print(f"- one step, lqr2d 441 states, 21x21 actions, uniform start, h = {h:g} (eps {eps:.3g}): {it} iterations, {c:.2f} s CPU")
    st, it, gap, why, c = res["flow"]
    print(f"- wg.flow(scheme='jko', default options), lqr2d 441 states x 7x7 actions, to J - J* < 1e-8: "
          f"{st} steps, {it} Sinkhorn iterations, J - J* = {gap:.2e} ({why}), {c:.1f} s CPU")


# ------------------------------------------------------------------------ 6. order in time
def bench_order(figure=None):
    """Observed order in time of both otto integrators with fixed steps, against a
    Richardson-extrapolated explicit reference (second order): lqr1d 21x15, Discounted(0.8,
    entropy=0.5), Gaussian start, T = 0.2; max |m - m_ref| at T for n = 1 ... 640 steps (the
    explicit step only where dt is within its positivity bound)."""
    mdp = wg.problems.get("lqr1d", n_states=21, n_actions=15, noise=0.7)
    obj = wg.Discounted(0.8, entropy=0.5)
    pi0 = wg.Policy.gaussian(mdp, mean=-1.0, std=0.5)
    T = 0.2

    def final(n, method):
        return wg.flow(mdp, obj, pi0, t_end=T, dt=T / n, save_every=T, progress=False,
                       method=method).final.masses

    ref = 2.0 * final(5120, "explicit") - final(2560, "explicit")
    ns = [1, 2, 5, 10, 20, 40, 80, 160, 320, 640]
    rate = float(otto_rhs(pi0.masses, wg.evaluate(mdp, pi0, obj).Q, 0.5, mdp.actions)[1].max())
    rows = []
    for n in ns:
        row = {"n": n, "dt": T / n, "dt_rate": T / n * rate}
        for method in ("implicit", "explicit"):
            if method == "explicit" and T / n * rate > 1.0:
                row[method] = None          # above the positivity (CFL) bound: raises
                continue
            row[method] = float(np.abs(final(n, method) - ref).max())
        rows.append(row)
    if figure:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
        for method, mk in (("implicit", "o-"), ("explicit", "s--")):
            pts = [(r["dt"], r[method]) for r in rows if r[method] is not None]
            ax.loglog(*zip(*pts), mk, label=f"otto, method='{method}'")
        d0, e0 = rows[-3]["dt"], rows[-3]["implicit"]
        ax.loglog([rows[0]["dt"], rows[-1]["dt"]], [e0 * rows[0]["dt"] / d0, e0 * rows[-1]["dt"] / d0],
                  ":", color="gray", label="slope 1")
        ax.axvline(1.0 / rate, color="gray", lw=0.8)
        ax.text(0.9 / rate, ax.get_ylim()[0] * 2, "explicit CFL bound ", fontsize=8, color="gray",
                ha="right")
        ax.set_xlabel("time step dt (flow time units)")
        ax.set_ylabel("max |m(T) - m_ref(T)| (mass per action cell)")
        ax.set_title("lqr1d 21x15, T = 0.2: order in time", fontsize=10)
        ax.legend(fontsize=8)
        fig.savefig(figure, dpi=120)
        plt.close(fig)
    return {"rows": rows, "max_rate": rate, "T": T}


def print_order(res):
    print(f"\n## 6. Order in time (fixed steps, lqr1d 21x15, T = {res['T']}; reference: Richardson-"
          "extrapolated explicit steps, n = 5120 and 2560)\n")
    print("| n | dt | dt x max rate | implicit error | observed order | explicit error | observed order |")
    print("|---|---|---|---|---|---|---|")
    prev = None
    for r in res["rows"]:
        cells = []
        for m in ("implicit", "explicit"):
            e = r[m]
            if e is None:
                cells += ["- (dt above the CFL bound: raises)", "-"]
                continue
            order = ("-" if prev is None or prev[m] is None
                     else f"{np.log(prev[m] / e) / np.log(r['n'] / prev['n']):.3f}")
            cells += [f"{e:.3e}", order]
        print(f"| {r['n']} | {r['dt']:.4g} | {r['dt_rate']:.3g} | " + " | ".join(cells) + " |")
        prev = r


# ------------------------------------------------------------------------ 7. trajectory accuracy
def bench_accuracy(t_end=20.0, tols=(0.05, 0.01, 0.003)):
    """J(t) of the default (implicit, adaptive) otto against the explicit reference (cfl 0.5)
    on the goal's pendulum, frames every 0.1 (both runs land on them). Slow: the reference takes
    ~8000 explicit steps."""
    mdp = wg.problems.get("pendulum")
    obj = wg.Discounted(0.99, entropy=0.1)
    J_star = wg.solve(mdp, obj, tol=1e-12).J
    kw = dict(t_end=t_end, save_every=0.1, progress=False)
    c0 = CLOCK()
    ref = wg.flow(mdp, obj, wg.Policy.uniform(mdp), method="explicit", **kw)
    out = {"ref_steps": ref.diagnostics["steps"], "ref_cpu": CLOCK() - c0, "runs": []}
    times = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0]
    idx_ref = [int(np.argmin(np.abs(ref.times - t))) for t in times]
    for tol in tols:
        c0 = CLOCK()
        tr = wg.flow(mdp, obj, wg.Policy.uniform(mdp), tol=tol, **kw)
        idx = [int(np.argmin(np.abs(tr.times - t))) for t in times]
        out["runs"].append({"tol": tol, "steps": tr.diagnostics["steps"], "cpu": CLOCK() - c0,
                            "rows": [(t, float(ref.J[i] - J_star), float(tr.J[k] - J_star),
                                      float(np.mean(np.abs(tr.masses[k] - ref.masses[i]).sum(axis=1))))
                                     for t, i, k in zip(times, idx_ref, idx)]})
    # the reference's own error, and fixed small implicit steps, over the fast transient
    kw = dict(t_end=0.5, save_every=0.1, progress=False)
    half = wg.flow(mdp, obj, wg.Policy.uniform(mdp), method="explicit", cfl=0.25, **kw)
    fixed = wg.flow(mdp, obj, wg.Policy.uniform(mdp), dt=5e-4, **kw)
    out["transient"] = [(float(t), float(ref.J[int(np.argmin(np.abs(ref.times - t)))] - J_star),
                         float(a - J_star), float(b - J_star))
                        for t, a, b in zip(half.times, half.J, fixed.J)]
    return out


def print_accuracy(res):
    print(f"\n## 7. Trajectory accuracy: implicit adaptive otto vs the explicit reference "
          f"({res['ref_steps']} steps, {res['ref_cpu']:.0f} s CPU), pendulum, frames every 0.1\n")
    print("| t | reference J - J* | " + " | ".join(
        f"tol = {r['tol']:g} ({r['steps']} steps): J - J*, rel. diff, mean TV" for r in res["runs"]) + " |")
    print("|---|---|" + "---|" * len(res["runs"]))
    for j in range(len(res["runs"][0]["rows"])):
        t, gref = res["runs"][0]["rows"][j][:2]
        cells = []
        for r in res["runs"]:
            _, _, g, tv = r["rows"][j]
            cells.append(f"{g:.4g}, {(g - gref) / gref:+.1%}, {tv:.1e}")
        print(f"| {t:g} | {gref:.4g} | " + " | ".join(cells) + " |")
    print("\nFirst half time unit: J - J* of the reference (explicit, cfl 0.5), explicit with cfl 0.25, "
          "implicit with fixed dt = 5e-4\n")
    print("| t | explicit cfl 0.5 | explicit cfl 0.25 | implicit dt = 5e-4 |")
    print("|---|---|---|---|")
    for t, a, b, c in res["transient"]:
        print(f"| {t:g} | {a:.4g} | {b:.4g} | {c:.4g} |")


# ------------------------------------------------------------------------------------ run()
CMD = "python benchmarks/flows.py"


def run(quick: bool = False) -> list:
    """Rows for ``benchmarks/run.py`` (ratio = peer / wgflow, CPU seconds): the goal section
    (otto / jko to ``J - J* < 1e-8`` against pmd) and the frozen-Q kernel against py-pde."""
    rows = []
    for r in bench_goal(quick):
        o, p = r["ours"], r["theirs"]
        what = (f"{r['scheme']} (default options) from uniform to J - J* < 1e-8: {o['steps']} steps, "
                f"{o['evaluations']} exact evaluations, final J - J* {o['gap']:.1e}"
                + ("" if o["reached"] else f", NOT reached ({o['stop']})"))
        rows.append({"benchmark": "flows", "case": f"{r['case']}, {r['objective']}", "what": what,
                     "wgflow_s": o["cpu"], "peer": None if p is None else f"{r['peer']} (default)",
                     "peer_s": None if p is None else p["cpu"],
                     "ratio": None if p is None else p["cpu"] / o["cpu"],
                     "peak_mib": r["peak"], "note": f"wall {o['wall']:.2f} s" + (
                         "" if p is None else f" vs {p['wall']:.2f} s"),
                     "command": f"{CMD} --only goal" + (" --quick" if quick else "")})
    fp = bench_pypde(101, 0.2, 5.0, [1, 64] if quick else [1, 256], rounds=2 if quick else 4)
    for r in fp["rows"]:
        rows.append({"benchmark": "flows", "case": f"Fokker-Planck 1-D, n = {r['n']}, {r['nS']} state(s)",
                     "what": "frozen-Q SG Euler steps (sg_frozen_steps), per state-step",
                     "wgflow_s": r["time"]["frozen"], "peer": "py-pde EulerSolver (numba)",
                     "peer_s": r["time"]["pypde"], "ratio": r["time"]["pypde"] / r["time"]["frozen"],
                     "peak_mib": None, "command": f"{CMD} --only pypde" + (" --quick" if quick else "")})
    return rows


# ------------------------------------------------------------------------------------ main
SECTIONS = ("otto", "kernel", "pypde", "schemes", "goal", "barriers", "jko", "order", "accuracy")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small cases only")
    ap.add_argument("--only", nargs="+", choices=SECTIONS,
                    default=[x for x in SECTIONS if x != "accuracy"],
                    help="run only these sections ('accuracy' runs only when named: ~7 min)")
    ap.add_argument("--cap", type=float, default=60.0,
                    help="wall-time cap of one scheme run in section 4 (seconds, default 60)")
    ap.add_argument("--max-steps", type=int, default=200_000, help="step cap of one scheme run")
    ap.add_argument("--json", help="write the raw numbers to this file")
    ap.add_argument("--figure", help="order section: write its figure (PNG) here")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    t_start = time.perf_counter()
    out = {}

    print("# wgflow flow benchmark")
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"python {platform.python_version()}, numpy {np.__version__}, numba env {numba_environment()}, "
          f"load average at start {os.getloadavg()}")

    # tiny warm-up of the flow machinery (imports, generic kernels)
    tiny = wg.problems.get("lqr1d", n_states=11, n_actions=7)
    wg.flow(tiny, wg.Discounted(0.9, entropy=0.1), wg.Policy.uniform(tiny), t_end=0.01, progress=False)

    kcases = []
    if "otto" in args.only or "kernel" in args.only:
        cases = [("lqr1d 101x61", lambda: wg.problems.get("lqr1d"), wg.Discounted(0.95, entropy=0.1), 200, 200),
                 ("pendulum 51x51x21", lambda: wg.problems.get("pendulum"), wg.Discounted(0.99, entropy=0.1), 60, 60)]
        if not args.quick:
            cases.append(("pendulum 101x101x31",
                          lambda: wg.problems.get("pendulum", n_theta=101, n_omega=101, n_actions=31),
                          wg.Discounted(0.99, entropy=0.1), 25, 25))
        otto_rows = []
        for label, build, obj, n_early, n_late in cases:
            mdp = build()
            if "otto" in args.only:
                row, kcase = bench_otto_case(label, mdp, obj, n_early, n_late, rng)
                otto_rows.append(row)
            else:
                sch = Otto(mdp, obj)
                st = sch.init(wg.Policy.uniform(mdp))
                kcase = (label, st.masses.copy(), st.evaluation.Q.copy(), sch.tau, float(mdp.actions.spacing[0]))
            kcases.append(kcase)
            print(f"  ({label} done, {time.perf_counter() - t_start:.0f} s wall)", flush=True)
        if otto_rows:
            print(f"\nobjectives: lqr1d Discounted(0.95, entropy=0.1); pendulum Discounted(0.99, entropy=0.1); "
                  f"adaptive dt (cfl 0.5), default reuse of LU factors; load average {os.getloadavg()}")
            print_otto(otto_rows)
            out["otto"] = otto_rows

    if "kernel" in args.only:
        # kernel inputs: the problems' uniform policy and its exact Q (smooth in a), the 1-D
        # Fokker-Planck case below, and random Q per cell (random signs: worst case for branches)
        grid, a, Qfp, _ = fp_setup(101)
        hfp = float(grid.spacing[0])
        fp_m = fp_initial(a, hfp, 256) * hfp
        kc = [("FP 1 state", fp_m[:1], Qfp[None, :], 0.2, hfp),
              ("FP batch", fp_m, np.broadcast_to(Qfp, fp_m.shape).copy(), 0.2, hfp),
              ("FP batch, random Q~N(0,1)", fp_m, rng.standard_normal(fp_m.shape), 0.2, hfp)] + \
            [(f"{lab}, Q of uniform policy", m, q, tau, h) for lab, m, q, tau, h in kcases]
        krows = bench_kernel(kc)
        print_kernel(krows)
        out["kernel"] = krows

    if "pypde" in args.only:
        tau = 0.2
        fp = [bench_pypde(101, tau, 5.0, [1, 256] if not args.quick else [1, 64])]
        if not args.quick:
            fp.append(bench_pypde(201, tau, 5.0, [1, 256]))
        print_pypde(fp, tau)
        out["pypde"] = fp
        print(f"  (py-pde section done, {time.perf_counter() - t_start:.0f} s wall)", flush=True)

    if "schemes" in args.only:
        cases = [("lqr1d 51x41", lambda: wg.problems.get("lqr1d", n_states=51, n_actions=41),
                  wg.Discounted(0.9, entropy=0.5), "Discounted(0.9, entropy=0.5)", []),
                 # jko's default step (1.0) is slow on the pendulum: extra rows with larger steps
                 ("pendulum 51x51x21", lambda: wg.problems.get("pendulum"),
                  wg.Discounted(0.95, entropy=0.1), "Discounted(0.95, entropy=0.1)", [("jko", 100.0), ("jko", 1e4)])]
        if args.quick:
            cases = cases[:1]
        sres = bench_schemes(cases, args.cap, args.max_steps)
        print_schemes(sres, args.cap, args.max_steps)
        out["schemes"] = sres

    if "goal" in args.only:
        g = bench_goal(args.quick)
        print_goal(g)
        out["goal"] = g

    if "jko" in args.only:
        j = bench_jko_multid()
        print_jko_multid(j)
        out["jko"] = j

    if "barriers" in args.only:
        b = bench_barriers()
        print_barriers(b)
        out["barriers"] = b

    if "order" in args.only:
        o = bench_order(args.figure)
        print_order(o)
        out["order"] = o

    if "accuracy" in args.only:
        a = bench_accuracy()
        print_accuracy(a)
        out["accuracy"] = a

    print(f"\ntotal benchmark time {time.perf_counter() - t_start:.0f} s wall; load average at end {os.getloadavg()}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1, default=float)


if __name__ == "__main__":
    main()
