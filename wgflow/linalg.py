"""Sparse linear algebra shared by evaluation, flows and the Hessian.

:class:`LinearSolveCache` solves ``A x = b`` and ``A^T y = c`` for a *sequence* of slowly
changing sparse matrices (policy iteration, flows). The first matrix is LU-factorized (SuperLU);
later ones are first tried with GMRES preconditioned by the previous factorization, which costs a
few sparse mat-vecs when the policy moved little; when GMRES does not reach the tolerance within
``max_krylov`` iterations the new matrix is factorized.

Ordering. The chains of grid-discretized control problems are close to acyclic: a deterministic
policy moves probability along trajectories, so the graph of ``P_pi`` has many small strongly
connected components (on the pendulum 150 x 150 at its optimum, 21,994 components, the largest of
490 states). Ordering the unknowns by these components, successors first (Tarjan's order), makes
``I - g P_pi`` block lower-triangular; a factorization in that order has fill only inside the
diagonal blocks. :class:`LinearSolveCache` uses this order (``ordering="auto"``) whenever the
largest component holds at most ``btf_max_fraction`` of the states, COLAMD otherwise.
:func:`block_triangular_solve` goes one step further for ``(I - g P) v = c``: block forward
substitution with numba (singletons and small blocks by elimination in place, larger blocks by a
sparse LU of the block only).
"""
from __future__ import annotations

import time
import warnings

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from . import validation
from .kernels.bellman import (DENSE_BLOCK, block_system, blocks_still_triangular, btf_substitute,
                              downwind_order, scc_order)
from .kernels.config import jit

__all__ = ["single_thread_blas", "LinearSolveCache", "block_triangular_solve", "scc_blocks", "BlockTriangularSolver",
           "CSRArrays"]


def scc_blocks(A) -> tuple:
    """``(order, block_ptr)`` of the strongly connected components of the graph of CSR ``A``.

    Every edge of a block points into the same or an earlier block (successors first).
    """
    A = sp.csr_matrix(A)
    return scc_order(A.indptr, A.indices, A.shape[0])


@jit
def _permute_csr(indptr, indices, data, order, inv):
    """CSR arrays of ``A[order][:, order]`` (``inv`` the inverse permutation)."""
    n = order.size
    out_ptr = np.empty(n + 1, dtype=np.int64)
    out_ptr[0] = 0
    for i in range(n):
        s = order[i]
        out_ptr[i + 1] = out_ptr[i] + indptr[s + 1] - indptr[s]
    out_idx = np.empty(out_ptr[n], dtype=np.int64)
    out_val = np.empty(out_ptr[n])
    for i in range(n):
        s = order[i]
        m = out_ptr[i]
        for k in range(indptr[s], indptr[s + 1]):
            out_idx[m] = inv[indices[k]]
            out_val[m] = data[k]
            m += 1
    return out_ptr, out_idx, out_val


class CSRArrays:
    """The three CSR arrays of a square matrix, without scipy's format checks (hot loops)."""

    __slots__ = ("indptr", "indices", "data", "shape")

    def __init__(self, indptr, indices, data, n):
        self.indptr, self.indices, self.data, self.shape = indptr, indices, data, (n, n)

    @property
    def nnz(self):
        return int(self.indptr[-1])

    def tocsr(self) -> sp.csr_matrix:
        return sp.csr_matrix((self.data, self.indices, self.indptr), shape=self.shape)


class BlockTriangularSolver:
    """Solves ``(I - g P) v = c`` and ``(I - g P)^T y = b`` exactly by block substitution.

    ``P`` is a CSR ``(n, n)`` matrix with non-negative entries and row sums ``<= 1`` and
    ``0 <= g < 1`` (so ``I - g P`` is strictly diagonally dominant). The strongly connected
    components of its graph are found once (Tarjan, numba); blocks of at most
    :data:`~wgflow.kernels.bellman.DENSE_BLOCK` states are eliminated in place, larger blocks get
    Gauss-Seidel sweeps until no entry changes by more than 4 ulps (at most :attr:`GS_MAX`;
    a block that needs more is factorized by SuperLU, COLAMD, and the factors kept for later
    right-hand sides). Cost: ``O(nnz)`` per sweep plus any block factorization, against a full
    sparse LU's fill.

    Attributes
    ----------
    largest_block : int
    n_blocks : int
    """

    def __init__(self, P, g: float, previous: "BlockTriangularSolver | None" = None):
        # any object with CSR arrays ``indptr, indices, data`` and ``shape`` (no format checks)
        self.P = P if hasattr(P, "indptr") else sp.csr_matrix(P)
        self.g = float(g)
        n = self.P.shape[0]
        self.reused_order = previous is not None and previous.P.shape[0] == n and bool(
            blocks_still_triangular(self.P.indptr, self.P.indices, previous._block_of))
        if self.reused_order:
            # the previous chain's blocks (and downwind order) still make this chain block
            # lower-triangular: Tarjan's pass is skipped (a block that is no longer strongly
            # connected is still solved exactly)
            self.order, self.block_ptr = previous.order, previous.block_ptr
            self._block_of, sizes = previous._block_of, previous._sizes
            self._downwind = previous._downwind
        else:
            self.order, self.block_ptr = scc_order(self.P.indptr, self.P.indices, n)
            sizes = np.diff(self.block_ptr)
            self._block_of = np.empty(n, dtype=np.int64)
            self._block_of[self.order] = np.repeat(np.arange(sizes.size), sizes)
            # large blocks reordered on the first solve
            self._downwind = sizes.size == 0 or sizes.max() <= DENSE_BLOCK
        self._sizes = sizes
        self.largest_block = int(sizes.max()) if sizes.size else 0
        self.n_blocks = int(sizes.size)
        self._n_swept = max(int(np.count_nonzero(sizes > DENSE_BLOCK)), 1)
        self._big = {}          # block index -> SuperLU factors of I - g P_BB
        self._loc = np.full(n, -1, dtype=np.int64)

    #: Gauss-Seidel sweeps allowed on a large block before it is factorized instead
    GS_MAX = 200

    def solve(self, c: np.ndarray, v0: np.ndarray | None = None, tol: float = 0.0,
              factorize: bool = True):
        """``v`` with ``(I - g P) v = c``: to rounding with ``tol = 0``; otherwise the sweeps on
        large blocks stop once ``v`` is within ``tol`` (sup-norm; each of the ``m`` swept blocks
        within ``tol / m``, errors of earlier blocks reach later ones damped by ``g``). ``v0``
        starts those sweeps. With ``factorize=False`` a block whose sweeps converge too slowly
        is not factorized: the method returns ``None`` instead."""
        P, g = self.P, self.g
        c = np.ascontiguousarray(c, dtype=np.float64)
        v = np.zeros(P.shape[0]) if v0 is None else np.array(v0, dtype=np.float64)
        nb = self.block_ptr.size - 1
        if not self._downwind:
            downwind_order(P.indptr, P.indices, P.data, self.order, self.block_ptr, DENSE_BLOCK,
                           self._loc)
            self._downwind = True
        blk = 0
        while blk < nb:
            blk = btf_substitute(P.indptr, P.indices, P.data, c, g, self.order, self.block_ptr, blk,
                                 v, self._loc, DENSE_BLOCK, self.GS_MAX, tol / self._n_swept)
            if blk >= nb:
                break
            rows = self.order[self.block_ptr[blk]:self.block_ptr[blk + 1]]
            if not factorize and blk not in self._big:
                return None
            ri, ci, x, rhs = block_system(P.indptr, P.indices, P.data, c, g, rows, v, self._loc)
            lu = self._big.get(blk)
            if lu is None:
                m = rows.size
                lu = spla.splu(sp.csc_matrix((x, (ri, ci)), shape=(m, m)), permc_spec="COLAMD")
                self._big[blk] = lu
            v[rows] = lu.solve(rhs)
            blk += 1
        return v


def block_triangular_solve(P: sp.csr_matrix, c: np.ndarray, g: float) -> np.ndarray:
    """``v`` with ``(I - g P) v = c`` by :class:`BlockTriangularSolver` (``0 <= g < 1``)."""
    return BlockTriangularSolver(P, g).solve(c)


_BLAS_CONTROLLER = []


def single_thread_blas():
    """Context manager limiting BLAS to one thread (through ``threadpoolctl``).

    The exact solvers call level-1 BLAS (dot products, norms, GMRES's Gram-Schmidt) on vectors of
    ``10^4``-``10^6`` entries between sparse passes: memory-bound work that extra threads do not
    speed up, but whose threads spin and cost CPU time (mountain car 121^2, average cost: 1.15 s
    of CPU for 0.68 s of wall time with two OpenBLAS threads, 0.67 s for 0.67 s with one).

    Examples
    --------
    >>> import numpy as np
    >>> from wgflow.linalg import single_thread_blas
    >>> with single_thread_blas():
    ...     float(np.ones(3) @ np.ones(3))
    3.0
    """
    if not _BLAS_CONTROLLER:         # inspecting the loaded libraries once is enough
        from threadpoolctl import ThreadpoolController
        _BLAS_CONTROLLER.append(ThreadpoolController())
    ctl = _BLAS_CONTROLLER[0]
    return ctl.limit(limits=1, user_api="blas")


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
    ordering : {"auto", "colamd"}
        ``"auto"`` factorizes in a block-triangular (Tarjan) order when the largest strongly
        connected block holds at most ``btf_max_fraction`` of the unknowns; ``"colamd"`` always
        uses SuperLU's COLAMD column order.
    btf_max_fraction : float
        In ``[0, 1]``: see ``ordering``.
    backward_tol : float, optional
        When given, a reused-factor solve is accepted only when its normwise backward error
        ``|b - A x|_inf / (|A|_inf |x|_inf + |b|_inf)`` is at most ``backward_tol`` (instead of
        the relative residual ``rtol``); otherwise the matrix is refactorized. With a few machine
        epsilons this makes every solve as accurate as a direct one (a sparse LU solve's backward
        error is a small multiple of the machine epsilon), so the answers are exact to rounding.

    Raises
    ------
    ValidationError
        A parameter of the wrong type or out of range (:class:`~wgflow.LookupFailure` for an
        unknown ``ordering``), named in the message.
    """

    def __init__(self, reuse: bool = True, rtol: float = 1e-13, max_krylov: int = 25,
                 max_refine: int = 6, small_factor: int = 20000, ordering: str = "auto",
                 btf_max_fraction: float = 0.25, backward_tol: float | None = None):
        where = "LinearSolveCache"
        self.reuse = validation.boolean(reuse, "reuse", where)
        self.rtol = validation.real(rtol, "rtol", where, low=0.0, high=1.0, low_open=True,
                                    high_open=True)
        # (max_krylov is GMRES's restart length: at least one iteration)
        self.max_krylov = validation.integer(max_krylov, "max_krylov", where, low=1)
        self.max_refine = validation.integer(max_refine, "max_refine", where, low=0)
        self.small_factor = validation.integer(small_factor, "small_factor", where, low=0)
        self.ordering = validation.choice(ordering, "ordering", ("auto", "colamd"), where)
        self.btf_max_fraction = validation.real(btf_max_fraction, "btf_max_fraction", where,
                                                low=0.0, high=1.0)
        self.backward_tol = validation.real(backward_tol, "backward_tol", where, low=0.0,
                                            low_open=True, none=True)
        self._lu = None
        self._transposed = False
        self._perm = None
        self._probe_in = 0
        self.stats = {"factorizations": 0, "krylov_solves": 0, "krylov_iterations": 0,
                      "refactorizations_after_krylov": 0, "factor_time": 0.0, "solve_time": 0.0,
                      "block_ordered_factorizations": 0}

    def reset(self):
        self._lu = None

    def _block_order(self, A):
        """Tarjan order of ``A``'s graph when its largest component is small enough, else None."""
        if self.ordering != "auto" or not (sp.isspmatrix_csr(A) or isinstance(A, sp.csr_array)):
            return None
        n = A.shape[0]
        if n < 64:
            return None
        order, block_ptr = scc_order(A.indptr, A.indices, n)
        if np.max(np.diff(block_ptr)) > self.btf_max_fraction * n:
            return None
        return order

    def _factor(self, A):
        t0 = time.perf_counter()
        self._perm = None
        with warnings.catch_warnings():
            warnings.simplefilter("error", spla.MatrixRankWarning)
            try:
                order = self._block_order(A)
                if order is not None:
                    # successors first: A is block lower-triangular in this order, so a
                    # factorization without reordering has fill only inside the diagonal blocks
                    n = A.shape[0]
                    inv = np.empty(n, dtype=np.int64)
                    inv[order] = np.arange(n)
                    ptr, idx, val = _permute_csr(A.indptr, A.indices, A.data, order, inv)
                    self._lu = spla.splu(sp.csc_matrix((val, idx, ptr), shape=(n, n)),
                                         permc_spec="NATURAL", diag_pivot_thresh=0.1)
                    self._perm = order
                    self._transposed = True
                    self.stats["block_ordered_factorizations"] += 1
                elif sp.isspmatrix_csr(A) or isinstance(A, sp.csr_array):
                    # a CSR matrix's arrays are the CSC arrays of its transpose: factor A^T
                    # with no conversion (and, on these chains, less fill) and swap the solves
                    self._lu = spla.splu(A.T, permc_spec="COLAMD")
                    self._transposed = True
                else:
                    self._lu = spla.splu(sp.csc_matrix(A), permc_spec="COLAMD")
                    self._transposed = False
            except (RuntimeError, spla.MatrixRankWarning) as exc:  # exactly singular
                self._lu = None
                self._perm = None
                raise np.linalg.LinAlgError(f"singular matrix: {exc}") from exc
        self.stats["factorizations"] += 1
        self.stats["factor_time"] += time.perf_counter() - t0

    def lu_solve(self, b, trans: bool = False):
        """Solve with the current factorization: ``A x = b``, or ``A^T x = b`` when ``trans``."""
        flip = trans != self._transposed
        b = np.asarray(b, dtype=float)
        if self._perm is None:
            return self._lu.solve(b, trans="T" if flip else "N")
        x = np.empty_like(b)
        x[self._perm] = self._lu.solve(b[self._perm], trans="T" if flip else "N")
        return x

    def _krylov(self, A, b, trans, x0=None):
        op = A.T if trans else A
        nb = max(np.linalg.norm(b), 1e-300)
        if self.backward_tol is None:
            def done(x, rn):
                return rn <= self.rtol * nb
        else:
            # normwise backward error (inf-norms); |r|_2 >= |r|_inf, so the 2-norm test is safe
            n_op = float(abs(op).sum(axis=1).max())
            nb_inf = float(np.max(np.abs(b)))

            def done(x, rn):
                thr = self.backward_tol * (n_op * float(np.max(np.abs(x))) + nb_inf)
                return rn <= thr or float(np.max(np.abs(b - op @ x))) <= thr
        # iterative refinement with the old factors: cheap, and enough when A moved little;
        # started from x0 when the caller has a better guess than the old factors' solution
        x = self.lu_solve(b, trans) if x0 is None else np.array(x0, dtype=float)
        r = b - op @ x
        rn = np.linalg.norm(r)
        for _ in range(self.max_refine):
            if done(x, rn):
                return x
            x = x + self.lu_solve(r, trans)
            r = b - op @ x
            rn_new = np.linalg.norm(r)
            self.stats["krylov_iterations"] += 1
            if rn_new > 0.5 * rn:       # contracting too slowly: hand over to GMRES
                rn = rn_new
                break
            rn = rn_new
        if done(x, rn):
            return x
        prec = spla.LinearOperator(A.shape, matvec=lambda v: self.lu_solve(v, trans), dtype=float)
        iters = [0]

        def count(_):
            iters[0] += 1

        if self.backward_tol is None:
            x, info = spla.gmres(op, b, x0=x, M=prec, rtol=self.rtol, atol=0.0,
                                 restart=self.max_krylov, maxiter=1, callback=count,
                                 callback_type="pr_norm")
        else:
            # one cycle to a relative residual of 1e-12 (a cycle stagnates near 1e-13 when the
            # old factors are far from A), then restarted cycles, each from the true residual,
            # down to the backward-error target
            x, info = spla.gmres(op, b, x0=x, M=prec, rtol=1e-12, atol=0.0,
                                 restart=self.max_krylov, maxiter=1, callback=count,
                                 callback_type="pr_norm")
            for _ in range(2):
                if not np.all(np.isfinite(x)) or done(x, np.linalg.norm(b - op @ x)):
                    break
                thr = self.backward_tol * (n_op * float(np.max(np.abs(x))) + nb_inf)
                x, info = spla.gmres(op, b, x0=x, M=prec, rtol=0.0, atol=thr,
                                     restart=self.max_krylov, maxiter=1, callback=count,
                                     callback_type="pr_norm")
        # decide on the true residual: GMRES's own estimate is preconditioned, and scipy reports
        # info != 0 when one restart cycle ends even if the residual is already small enough
        if not np.all(np.isfinite(x)):
            return None
        rn = np.linalg.norm(b - op @ x)
        if self.backward_tol is None:
            return x if rn <= 10 * self.rtol * nb else None
        return x if done(x, rn) else None

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
