"""``P_pi`` assembly kernel vs its plain-scipy twin (and a dense einsum)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import wgflow as wg
from wgflow.kernels import assemble_policy_matrix, policy_matrix, policy_matrix_numpy


def _random_P(rng, nS, nA, density=0.3, empty_rows=0, normalize=True):
    """Random CSR ``(nS*nA, nS)``; ``empty_rows`` rows without any stored entry."""
    n = nS * nA
    D = rng.random((n, nS)) * (rng.random((n, nS)) < density)
    D[np.arange(n), rng.integers(0, nS, n)] += rng.random(n) + 0.1     # no accidental empty row
    if empty_rows:
        D[rng.choice(n, size=empty_rows, replace=False)] = 0.0
    if normalize:
        s = D.sum(axis=1, keepdims=True)
        D = np.divide(D, s, out=np.zeros_like(D), where=s > 0)
    return sp.csr_matrix(D), D


def _random_masses(rng, nS, nA, zero_frac):
    m = rng.random((nS, nA)) * (rng.random((nS, nA)) >= zero_frac)
    m[np.arange(nS), rng.integers(0, nA, nS)] += 0.1
    return m / m.sum(axis=1, keepdims=True)


def _maxdiff(A, B):
    d = (sp.csr_matrix(A) - sp.csr_matrix(B))
    return float(np.max(np.abs(d.toarray()))) if d.nnz else 0.0


def _check(P, D, masses, nS, nA):
    K = policy_matrix(P, masses)
    N = policy_matrix_numpy(P, masses)
    assert sp.isspmatrix_csr(K) and K.shape == (nS, nS)
    assert _maxdiff(K, N) <= 1e-15
    dense = np.einsum("sa,sat->st", masses, D.reshape(nS, nA, nS))
    np.testing.assert_allclose(K.toarray(), dense, rtol=0, atol=1e-15)
    # structure: no duplicate column within a row, indices in range
    for s in range(nS):
        cols = K.indices[K.indptr[s]:K.indptr[s + 1]]
        assert len(np.unique(cols)) == len(cols)
    assert K.indices.size == 0 or (K.indices.min() >= 0 and K.indices.max() < nS)
    return K


@pytest.mark.parametrize("nS,nA", [(1, 1), (7, 1), (1, 5), (13, 3), (40, 6)])
@pytest.mark.parametrize("zero_frac", [0.0, 0.6])
def test_policy_matrix_matches_numpy_twin(rng, nS, nA, zero_frac):
    P, D = _random_P(rng, nS, nA)
    masses = _random_masses(rng, nS, nA, zero_frac)
    K = _check(P, D, masses, nS, nA)
    np.testing.assert_allclose(np.asarray(K.sum(axis=1)).ravel(), 1.0, rtol=0, atol=1e-14)


def test_policy_matrix_one_hot_and_zero_masses(rng):
    nS, nA = 20, 4
    P, D = _random_P(rng, nS, nA)
    idx = rng.integers(0, nA, nS)
    masses = np.zeros((nS, nA))
    masses[np.arange(nS), idx] = 1.0
    K = _check(P, D, masses, nS, nA)
    # one-hot: P_pi rows are exactly the chosen rows of P
    np.testing.assert_array_equal(K.toarray(), D.reshape(nS, nA, nS)[np.arange(nS), idx])
    # a state whose masses are all zero gives an empty row (the kernel does not validate)
    masses[3] = 0.0
    K = _check(P, D, masses, nS, nA)
    assert K.indptr[4] - K.indptr[3] == 0


def test_policy_matrix_with_empty_rows_of_P(rng):
    nS, nA = 15, 3
    P, D = _random_P(rng, nS, nA, empty_rows=10)
    assert np.sum(np.diff(P.indptr) == 0) == 10
    masses = _random_masses(rng, nS, nA, 0.3)
    _check(P, D, masses, nS, nA)
    # every row of P empty
    P0 = sp.csr_matrix((nS * nA, nS))
    K = policy_matrix(P0, masses)
    assert K.nnz == 0 and K.shape == (nS, nS)
    assert _maxdiff(K, policy_matrix_numpy(P0, masses)) == 0.0


def test_policy_matrix_unnormalized_and_int64_indices(rng):
    # the kernel is linear in P: it must not assume probability rows; int64 index arrays work too
    nS, nA = 11, 3
    P, D = _random_P(rng, nS, nA, normalize=False)
    masses = _random_masses(rng, nS, nA, 0.3)
    _check(P, D, masses, nS, nA)
    P64 = sp.csr_matrix((P.data, P.indices.astype(np.int64), P.indptr.astype(np.int64)), shape=P.shape)
    assert _maxdiff(policy_matrix(P64, masses), policy_matrix(P, masses)) == 0.0
    # non-contiguous masses (a transposed view)
    mT = np.asfortranarray(masses)
    assert _maxdiff(policy_matrix(P, mT), policy_matrix(P, masses)) == 0.0


def test_policy_matrix_non_canonical_csr(rng):
    # unsorted column indices and duplicate entries within a row (summed, as scipy does)
    nS, nA = 4, 2
    indptr = np.array([0, 3, 4, 6, 7, 9, 10, 11, 13])
    indices = np.array([3, 0, 3, 1, 2, 2, 0, 1, 0, 3, 2, 1, 1])
    data = np.array([0.2, 0.5, 0.3, 1.0, 0.25, 0.75, 1.0, 0.6, 0.4, 1.0, 1.0, 0.5, 0.5])
    P = sp.csr_matrix((data, indices, indptr), shape=(nS * nA, nS))
    P.has_canonical_format = False
    D = np.zeros((nS * nA, nS))
    for r in range(nS * nA):
        for k in range(indptr[r], indptr[r + 1]):
            D[r, indices[k]] += data[k]
    np.testing.assert_allclose(D.sum(axis=1), 1.0)
    masses = _random_masses(rng, nS, nA, 0.0)
    K = _check(P, D, masses, nS, nA)
    np.testing.assert_allclose(np.asarray(K.sum(axis=1)).ravel(), 1.0, rtol=0, atol=1e-15)


def test_python_body_matches_jitted(rng):
    py = getattr(assemble_policy_matrix, "py_func", None)
    if py is None:
        pytest.skip("numba JIT disabled (WGFLOW_NO_JIT=1): the kernel already is the Python body")
    nS, nA = 9, 4
    P, _ = _random_P(rng, nS, nA, empty_rows=3)
    masses = _random_masses(rng, nS, nA, 0.5)
    a = assemble_policy_matrix(P.indptr, P.indices, P.data, masses, nS, nA)
    b = py(P.indptr, P.indices, P.data, masses, nS, nA)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_policy_matrix_on_problem_mdps():
    for mdp in (wg.problems.get("garnet", n_states=50, n_actions=7, branching=3, seed=0),
                wg.problems.get("quadratic_bandit", n_actions=31)):
        nS, nA = mdp.n_states, mdp.n_actions
        masses = wg.Policy.uniform(mdp).masses
        K = policy_matrix(mdp.P, masses)
        assert _maxdiff(K, policy_matrix_numpy(mdp.P, masses)) <= 1e-15
        np.testing.assert_allclose(np.asarray(K.sum(axis=1)).ravel(), 1.0, rtol=0, atol=1e-14)
