"""Assembly of the policy transition matrix ``P_pi = sum_a pi(a|s) P[(s, a), :]``.

``P`` is CSR with ``nS * nA`` rows (row ``s*nA + a``); ``P_pi`` is CSR ``(nS, nS)``. The kernel
merges the ``nA`` rows of each state with a dense marker (classic row-wise SpGEMM), in two passes
(count, then fill) so memory is exactly the output's.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .config import jit


@jit
def assemble_policy_matrix(indptr, indices, data, masses, nS, nA):
    """CSR arrays of ``P_pi`` (the number of actions is an argument: one compilation serves all)."""
    marker = np.full(nS, -1, dtype=np.int64)
    counts = np.zeros(nS + 1, dtype=np.int64)
    for s in range(nS):
        c = 0
        for a in range(nA):
            if masses[s, a] == 0.0:
                continue
            r = s * nA + a
            for k in range(indptr[r], indptr[r + 1]):
                j = indices[k]
                if marker[j] != s:
                    marker[j] = s
                    c += 1
        counts[s + 1] = c
    out_ptr = np.cumsum(counts)
    out_idx = np.empty(out_ptr[nS], dtype=np.int64)
    out_val = np.zeros(out_ptr[nS], dtype=np.float64)
    pos = np.full(nS, -1, dtype=np.int64)
    for s in range(nS):
        start = out_ptr[s]
        c = 0
        for a in range(nA):
            p = masses[s, a]
            if p == 0.0:
                continue
            r = s * nA + a
            for k in range(indptr[r], indptr[r + 1]):
                j = indices[k]
                if marker[j] != nS + s:   # second pass marks with nS + s
                    marker[j] = nS + s
                    pos[j] = start + c
                    out_idx[start + c] = j
                    c += 1
                out_val[pos[j]] += p * data[k]
    return out_ptr, out_idx, out_val


@jit
def union_pattern(indptr, indices, nS, nA):
    """Pattern of ``P_pi`` when every mass is positive, and the slot of each entry of ``P`` in it."""
    marker = np.full(nS, -1, dtype=np.int64)
    pos = np.full(nS, -1, dtype=np.int64)
    counts = np.zeros(nS + 1, dtype=np.int64)
    for s in range(nS):
        c = 0
        for r in range(s * nA, (s + 1) * nA):
            for k in range(indptr[r], indptr[r + 1]):
                j = indices[k]
                if marker[j] != s:
                    marker[j] = s
                    c += 1
        counts[s + 1] = c
    out_ptr = np.cumsum(counts)
    out_idx = np.empty(out_ptr[nS], dtype=np.int64)
    slots = np.empty(indptr[nS * nA], dtype=np.int64)
    for s in range(nS):
        start = out_ptr[s]
        c = 0
        for r in range(s * nA, (s + 1) * nA):
            for k in range(indptr[r], indptr[r + 1]):
                j = indices[k]
                if marker[j] != nS + s:
                    marker[j] = nS + s
                    pos[j] = start + c
                    out_idx[start + c] = j
                    c += 1
                slots[k] = pos[j]
    return out_ptr, out_idx, slots


@jit
def fill_pattern(indptr, data, slots, masses, nS, nA, out_val):
    """One pass over ``P``: ``out_val[slot] += pi(a|s) P[(s,a), j]``."""
    out_val[:] = 0.0
    for s in range(nS):
        for a in range(nA):
            p = masses[s, a]
            r = s * nA + a
            for k in range(indptr[r], indptr[r + 1]):
                out_val[slots[k]] += p * data[k]


class PolicyMatrixAssembler:
    """Assembles ``P_pi`` for many policies on the same ``P``.

    Policies with every mass positive (entropy-regularized ones, flows) share one sparsity
    pattern, the union over actions: it is computed once and each assembly is a single pass over
    ``P``. Policies with zero masses use :func:`assemble_policy_matrix`, whose pattern is exact
    (a deterministic policy's ``P_pi`` is much sparser than the union, which matters for LU fill).
    """

    def __init__(self, P: sp.csr_matrix, n_actions: int):
        self.P = P
        self.nA = int(n_actions)
        self.nS = P.shape[0] // self.nA
        self._pattern = None

    def __call__(self, masses: np.ndarray) -> sp.csr_matrix:
        masses = np.ascontiguousarray(masses, dtype=np.float64)
        if not np.all(masses > 0):
            if np.all(masses.max(axis=1) == 1.0):
                # deterministic policy: P_pi is a row selection of P (sorted indices, no merging)
                return self.P[np.arange(self.nS) * self.nA + np.argmax(masses, axis=1)]
            return policy_matrix(self.P, masses)
        if self._pattern is None:
            self._pattern = union_pattern(self.P.indptr, self.P.indices, self.nS, self.nA)
        ptr, idx, slots = self._pattern
        val = np.empty(idx.size)
        fill_pattern(self.P.indptr, self.P.data, slots, masses, self.nS, self.nA, val)
        out = sp.csr_matrix((val, idx, ptr), shape=(self.nS, self.P.shape[1]))
        out.has_sorted_indices = False
        return out


def policy_matrix(P: sp.csr_matrix, masses: np.ndarray) -> sp.csr_matrix:
    """``P_pi`` as CSR ``(nS, nS)`` from ``P`` ``(nS*nA, nS)`` CSR and masses ``(nS, nA)``."""
    nS, nA = masses.shape
    ptr, idx, val = assemble_policy_matrix(P.indptr, P.indices, P.data,
                                           np.ascontiguousarray(masses, dtype=np.float64), nS, nA)
    out = sp.csr_matrix((val, idx, ptr), shape=(nS, P.shape[1]))
    out.has_sorted_indices = False
    return out


def policy_matrix_numpy(P: sp.csr_matrix, masses: np.ndarray) -> sp.csr_matrix:
    """Plain scipy twin of :func:`policy_matrix`: ``Pi @ P`` with ``Pi[s, s*nA+a] = pi(a|s)``."""
    nS, nA = masses.shape
    rows = np.repeat(np.arange(nS), nA)
    Pi = sp.csr_matrix((masses.ravel(), (rows, np.arange(nS * nA))), shape=(nS, nS * nA))
    return (Pi @ P).tocsr()
