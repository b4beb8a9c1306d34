"""Sparse linear algebra shared by evaluation, flows and the Hessian.

:class:`LinearSolveCache` solves ``A x = b`` and ``A^T y = c`` for a *sequence* of slowly
changing sparse matrices (policy iteration, flows). The first matrix is LU-factorized (SuperLU,
COLAMD ordering); later ones are first tried with GMRES preconditioned by the previous
factorization, which costs a few sparse mat-vecs when the policy moved little; when GMRES does
not reach the tolerance within ``max_krylov`` iterations the new matrix is factorized.
"""
from __future__ import annotations

import time
import warnings

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

__all__ = ["LinearSolveCache"]


class LinearSolveCache:
    """Reusable solver for ``A x = b`` / ``A^T y = c`` with slowly varying ``A``.

    Parameters
    ----------
    reuse : bool
        Try the previous factorization as a GMRES preconditioner before refactorizing.
    rtol : float
        Relative residual asked of GMRES (a direct solve is accurate to rounding).
    max_krylov : int
        GMRES iterations allowed before falling back to a new factorization.
    max_refine : int
        Iterative-refinement steps with the old factors tried before GMRES.
    small_factor : int
        Factors with fewer nonzeros than this are recomputed rather than reused (cheaper).
    """

    def __init__(self, reuse: bool = True, rtol: float = 1e-13, max_krylov: int = 25,
                 max_refine: int = 6, small_factor: int = 20000):
        self.reuse = reuse
        self.rtol = rtol
        self.max_krylov = max_krylov
        self.max_refine = max_refine
        self.small_factor = small_factor
        self._lu = None
        self._transposed = False
        self._probe_in = 0
        self.stats = {"factorizations": 0, "krylov_solves": 0, "krylov_iterations": 0,
                      "refactorizations_after_krylov": 0, "factor_time": 0.0, "solve_time": 0.0}

    def reset(self):
        self._lu = None

    def _factor(self, A):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("error", spla.MatrixRankWarning)
            try:
                if sp.isspmatrix_csr(A) or isinstance(A, sp.csr_array):
                    # a CSR matrix's arrays are the CSC arrays of its transpose: factor A^T
                    # with no conversion (and, on these chains, less fill) and swap the solves
                    self._lu = spla.splu(A.T, permc_spec="COLAMD")
                    self._transposed = True
                else:
                    self._lu = spla.splu(sp.csc_matrix(A), permc_spec="COLAMD")
                    self._transposed = False
            except (RuntimeError, spla.MatrixRankWarning) as exc:  # exactly singular
                self._lu = None
                raise np.linalg.LinAlgError(f"singular matrix: {exc}") from exc
        self.stats["factorizations"] += 1
        self.stats["factor_time"] += time.perf_counter() - t0

    def lu_solve(self, b, trans: bool = False):
        """Solve with the current factorization: ``A x = b``, or ``A^T x = b`` when ``trans``."""
        flip = trans != self._transposed
        return self._lu.solve(np.asarray(b, dtype=float), trans="T" if flip else "N")

    def _krylov(self, A, b, trans, x0=None):
        op = A.T if trans else A
        nb = max(np.linalg.norm(b), 1e-300)
        # iterative refinement with the old factors: cheap, and enough when A moved little;
        # started from x0 when the caller has a better guess than the old factors' solution
        x = self.lu_solve(b, trans) if x0 is None else np.array(x0, dtype=float)
        r = b - op @ x
        rn = np.linalg.norm(r)
        for _ in range(self.max_refine):
            if rn <= self.rtol * nb:
                return x
            x = x + self.lu_solve(r, trans)
            r = b - op @ x
            rn_new = np.linalg.norm(r)
            self.stats["krylov_iterations"] += 1
            if rn_new > 0.5 * rn:       # contracting too slowly: hand over to GMRES
                rn = rn_new
                break
            rn = rn_new
        if rn <= self.rtol * nb:
            return x
        prec = spla.LinearOperator(A.shape, matvec=lambda v: self.lu_solve(v, trans), dtype=float)
        iters = [0]

        def count(_):
            iters[0] += 1

        x, info = spla.gmres(op, b, x0=x, M=prec, rtol=self.rtol, atol=0.0, restart=self.max_krylov,
                             maxiter=1, callback=count, callback_type="pr_norm")
        self.stats["krylov_iterations"] += iters[0]
        # decide on the true residual: GMRES's own estimate is preconditioned, and scipy reports
        # info != 0 when one restart cycle ends even if the residual is already small enough
        if not np.all(np.isfinite(x)) or np.linalg.norm(b - op @ x) > 10 * self.rtol * nb:
            return None
        return x

    def solve(self, A, rhs: list, trans: list, x0: list | None = None) -> list:
        """Solve ``A x_i = b_i`` (or ``A^T x_i = b_i`` where ``trans[i]``) for each right-hand side.

        The choice between reusing the old factors and refactorizing is deterministic (no
        timings), so identical runs give identical numbers: factors with fewer than
        ``small_factor`` nonzeros are cheaper to recompute than to iterate with; otherwise reuse
        is tried, and after a failed attempt the next ``4`` solves refactorize before reuse is
        probed again. ``x0`` (optional, one initial guess or None per right-hand side) starts the
        reuse iteration; the stopping rule and a fresh factorization's direct solve are unchanged.
        """
        t0 = time.perf_counter()
        out = None
        if self._probe_in > 0:
            self._probe_in -= 1
        try_reuse = (self.reuse and self._lu is not None and self._lu.shape == A.shape
                     and self._probe_in == 0
                     and self._lu.L.nnz + self._lu.U.nnz >= self.small_factor)
        if try_reuse:
            out = []
            for b, t in zip(rhs, trans):
                x = self._krylov(A, np.asarray(b, dtype=float), t, None if x0 is None else x0[len(out)])
                if x is None:
                    out = None
                    self.stats["refactorizations_after_krylov"] += 1
                    break
                out.append(x)
            if out is not None:
                self.stats["krylov_solves"] += len(rhs)
            else:
                self._probe_in = 4      # failed: factorize now, re-probe reuse after a few solves
        if out is None:
            self._factor(A)
            out = [self.lu_solve(b, t) for b, t in zip(rhs, trans)]
        self.stats["solve_time"] += time.perf_counter() - t0
        return out
