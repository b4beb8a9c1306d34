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
