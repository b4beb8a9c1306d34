"""Soft Bellman sweep kernels against numpy/scipy: the exponential, the fused sweep, the Gibbs map."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import wgflow as wg
from wgflow.kernels import policy_matrix
from wgflow.kernels.assembly import union_pattern
from wgflow.kernels.bellman import bellman_softmin_numpy
from wgflow.kernels.softmin import (GIBBS_CUT, chain_gather_map, exp_gibbs, exp_gibbs_numpy,
                                    gibbs_rows, soft_sweep_chain, span_sweeps)
from wgflow.policy import gibbs_masses

EPS = np.finfo(float).eps


def _mdps():
    return [wg.problems.get("garnet", n_states=40, n_actions=6, branching=4, seed=3),
            wg.problems.get("pendulum", n_theta=9, n_omega=9, n_actions=7)]


def _check_write_and_twin(P, C, u, tau, vol, ptr, idx, plain, written):
    """A plain and a writing soft sweep of the same ``u``: writing Q and the masses changes
    nothing else (bitwise), the masses are :func:`gibbs_rows` of the written Q (the same
    kernel), and everything agrees with the numpy twin and the policy-matrix assembly to the
    stated tolerances. Returns the twin's masses."""
    TV0, val0, cpi0 = plain
    TV, Q, val, cpi, m = written
    np.testing.assert_array_equal(TV, TV0)
    np.testing.assert_array_equal(val, val0)
    np.testing.assert_array_equal(cpi, cpi0)
    g_ref = np.empty(Q.shape)
    gibbs_rows(Q, tau, g_ref)
    np.testing.assert_array_equal(m, g_ref)
    TVn, mn, cpin, Qn = bellman_softmin_numpy(P, C, u, tau, vol)
    scale = 1 + np.max(np.abs(Qn))
    # the same sums in another order: a few ulps of |Q| (exp/log add a few more)
    np.testing.assert_allclose(Q, Qn, rtol=0, atol=1e-13 * scale)
    np.testing.assert_allclose(TV, TVn, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(cpi, cpin, rtol=0, atol=1e-12 * scale)
    # masses: exp of gaps within a few ulps of |Q| / tau (the sums above)
    np.testing.assert_allclose(m, mn, rtol=0, atol=1e-13 * scale / tau)
    # chain entries are sums of at most nA products of masses (each within 1e-12) and P
    nS = TV.size
    np.testing.assert_allclose(sp.csr_matrix((val, idx, ptr), shape=(nS, nS)).toarray(),
                               policy_matrix(P, mn).toarray(), rtol=0, atol=1e-12)
    return mn


def _ulps(x, ref):
    """|x - ref| in units of the spacing of doubles at ref (ref > 0)."""
    return np.abs(x - ref) / np.spacing(ref)


@pytest.mark.parametrize("n", [1, 3, 41, 1000])
def test_exp_gibbs_within_one_ulp_and_cut(rng, n):
    # sizes around the SIMD width exercise the vector body and its remainder loop
    t = np.sort(rng.uniform(0.0, GIBBS_CUT, n))
    t[0] = 0.0
    out, scratch = np.full(n, np.nan), np.empty(n)
    exp_gibbs(t, out, scratch)
    ref = np.exp(-t)
    # against numpy's exponential (itself within 0.5-1 ulp of exp): at most 2 ulps apart
    assert np.max(_ulps(out, ref)) <= 2.0
    assert out[0] == 1.0                             # exp(0) is exact
    if np.finfo(np.longdouble).eps < EPS:            # x87 extended precision: the true value
        true = np.exp(-t.astype(np.longdouble))
        assert float(np.max(np.abs(out - true) / np.spacing(ref))) <= 1.0
    np.testing.assert_array_equal(exp_gibbs_numpy(t), np.exp(-t))


def test_exp_gibbs_dense_range_edges_and_nan(rng):
    # many arguments across [0, GIBBS_CUT), both sides of the cut, NaN and inf
    t = np.concatenate([rng.uniform(0.0, GIBBS_CUT, 200_000),
                        np.nextafter(GIBBS_CUT, 0.0) - np.arange(5) * 1e-12,
                        [GIBBS_CUT, np.nextafter(GIBBS_CUT, 1e3), 60.0, 700.0, 1e300, np.inf,
                         np.nan, 0.0, 5e-324, 1e-300],
                        -rng.uniform(0.0, 700.0, 1000)])        # negative gaps: exp(+)
    out, scratch = np.empty(t.size), np.empty(t.size)
    exp_gibbs(t, out, scratch)
    below = t < GIBBS_CUT
    with np.errstate(over="ignore"):
        ref = np.exp(-t[below])
    assert np.max(_ulps(out[below], ref)) <= 2.0
    # from the cut on: exact zeros (the terms are below exp(-50) = 2e-22 of z >= 1)
    cut = t >= GIBBS_CUT
    assert np.all(out[cut] == 0.0)
    assert np.isnan(out[np.isnan(t)]).all()
    np.testing.assert_array_equal(np.isnan(exp_gibbs_numpy(t)), np.isnan(t))
    np.testing.assert_array_equal(exp_gibbs_numpy(t)[cut], 0.0)


def _grouped(mdp):
    """Union pattern and P grouped on it, with the checks of the layout."""
    P, nS, nA = mdp.P, mdp.n_states, mdp.n_actions
    ptr, idx, pos = union_pattern(P.indptr, P.indices, nS, nA)
    act, perm = np.empty(P.nnz, dtype=np.uint8), np.empty(P.nnz, dtype=np.int32)
    cptr = chain_gather_map(P.indptr, nS, nA, ptr, pos, act, perm)
    return ptr, idx, pos, cptr, act, perm


@pytest.mark.parametrize("k,tau", [(0, 0.5), (1, 0.05), (1, 1e-4)])
def test_soft_sweep_chain_matches_numpy_and_assembly(rng, k, tau):
    # the fused sweep: soft value, Q and regularized cost as the numpy twin (scipy logsumexp),
    # and the Gibbs policy's chain on the union pattern equal to the assembled P_pi
    # (tau = 1e-4: masses underflow to exact zeros, which leave stored zeros on the pattern)
    mdp = _mdps()[k]
    P, nS, nA = mdp.P, mdp.n_states, mdp.n_actions
    vol = mdp.actions.cell_volume if k == 1 else 1.0
    C = np.ascontiguousarray(mdp.C)
    u = 5 * rng.random(nS)
    ptr, idx, pos, cptr, act, perm = _grouped(mdp)
    # the pattern is each state's set of successors over its actions, and pos maps P into it
    for s in range(nS):
        cols = np.unique(P.indices[P.indptr[s * nA]:P.indptr[(s + 1) * nA]])
        np.testing.assert_array_equal(np.sort(idx[ptr[s]:ptr[s + 1]]), cols)
    np.testing.assert_array_equal(idx[pos], P.indices)
    # the gather map is a permutation of P's entries, each grouped on its pattern position with
    # its action, and the entries of a state stay within its rows
    np.testing.assert_array_equal(np.sort(perm), np.arange(P.nnz))
    assert cptr[-1] == P.nnz and np.all(np.diff(cptr) >= 1)
    rows = np.repeat(np.arange(nS * nA), np.diff(P.indptr))
    owner = np.repeat(np.arange(nS), np.diff(ptr))          # state of each pattern position
    j_of = np.repeat(np.arange(ptr[nS]), np.diff(cptr))     # pattern position of each slot
    np.testing.assert_array_equal(pos[perm], j_of)
    np.testing.assert_array_equal(rows[perm], owner[j_of] * nA + act)
    TV, Q, cpi, val = np.empty(nS), np.full((nS, nA), np.nan), np.empty(nS), np.full(idx.size, np.nan)
    m = np.full((nS, nA), np.nan)
    args = (ptr, idx.astype(np.int32), cptr, act, P.data[perm], C, u, tau, np.log(vol), TV, Q, val,
            cpi, m)
    soft_sweep_chain(*args, False)
    assert np.isnan(Q).all() and np.isnan(m).all()           # not asked for: not written
    plain = (TV.copy(), val.copy(), cpi.copy())
    soft_sweep_chain(*args, True)
    mn = _check_write_and_twin(P, C, u, tau, vol, ptr, idx, plain, (TV, Q, val, cpi, m))
    np.testing.assert_array_equal(m == 0.0, gibbs_masses(Q, tau) == 0.0)
    P_pi = sp.csr_matrix((val, idx, ptr), shape=(nS, nS))
    ref = policy_matrix(P, mn)
    if tau == 1e-4:
        # underflowed masses: exact zeros in the chain wherever the reference has none
        assert np.any(mn == 0.0)
        dense = P_pi.toarray()
        on_pattern = np.zeros((nS, nS), dtype=bool)
        on_pattern[owner, idx] = True
        assert np.any(on_pattern & (dense == 0.0))
        np.testing.assert_array_equal(dense[on_pattern & (ref.toarray() == 0.0)], 0.0)


def test_soft_sweep_chain_cut_of_negligible_exponentials_and_nan(rng):
    # actions with (Q - q_min)/tau >= GIBBS_CUT skip the exponential: the values must still match
    # the numpy twin (scipy logsumexp over every action), and a NaN in u must reach TV
    mdp = _mdps()[1]
    P, nS, nA = mdp.P, mdp.n_states, mdp.n_actions
    vol = mdp.actions.cell_volume
    C = np.ascontiguousarray(mdp.C)
    u = 50 * rng.random(nS)
    tau = 0.05
    ptr, idx, pos, cptr, act, perm = _grouped(mdp)
    TV, Q, cpi, val = np.empty(nS), np.empty((nS, nA)), np.empty(nS), np.empty(idx.size)
    m = np.empty((nS, nA))
    soft_sweep_chain(ptr, idx, cptr, act, P.data[perm], C, u, tau, np.log(vol), TV, Q, val, cpi, m,
                     True)
    t = (Q - Q.min(axis=1, keepdims=True)) / tau
    assert np.any((t >= GIBBS_CUT) & (t < 700))     # the cut is exercised on representable terms
    TVn, mn, cpin, Qn = bellman_softmin_numpy(P, C, u, tau, vol)
    scale = 1 + np.max(np.abs(Qn))
    # a few ulps of |Q| (as in the test above); the skipped terms are below 2e-22 of z >= 1
    np.testing.assert_allclose(TV, TVn, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(cpi, cpin, rtol=0, atol=1e-12 * scale)
    ref = policy_matrix(P, mn)
    P_pi = sp.csr_matrix((val, idx, ptr), shape=(nS, nS))
    np.testing.assert_allclose(P_pi.toarray(), ref.toarray(), rtol=0, atol=1e-12)
    u[3] = np.nan
    soft_sweep_chain(ptr, idx, cptr, act, P.data[perm], C, u, tau, np.log(vol), TV, Q, val, cpi, m,
                     False)
    assert np.any(np.isnan(TV))


@pytest.mark.parametrize("tau", [1.0, 0.01, 1e-4])
def test_gibbs_rows_matches_gibbs_masses(rng, tau):
    # tau = 1e-4 with gaps up to 0.5: exp(-5000) underflows, those masses are exact zeros as in
    # numpy; tau = 0.01: gaps above GIBBS_CUT tau keep their (tiny) values
    Q = rng.uniform(-1.0, 1.0, (300, 13)) * 0.5
    out = np.full(Q.shape, np.nan)
    gibbs_rows(Q, tau, out)
    ref = gibbs_masses(Q, tau)
    # each mass is exp (2 ulps, see above) over a sum of 13 such terms: a few ulps of the mass
    np.testing.assert_allclose(out, ref, rtol=8 * EPS, atol=0)
    np.testing.assert_array_equal(out == 0.0, ref == 0.0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=0, atol=16 * EPS)
    if tau == 1e-4:
        assert np.any(ref == 0.0)
    if tau == 0.01:
        assert np.any((ref > 0) & (ref < np.exp(-GIBBS_CUT)))


def test_gibbs_rows_near_underflow():
    # gaps around the end of the normal range (exp(-708)) and of the subnormals (exp(-745)):
    # masses as numpy's, subnormal ones included, and exact zeros beyond
    t = np.array([0.0, 1.0, 700.0, 707.9, 708.0, 708.5, 720.0, 744.0, 745.2, 800.0, 1e6])
    Q = np.vstack([t, t[::-1]]) * 0.5
    out = np.empty(Q.shape)
    gibbs_rows(Q, 0.5, out)
    ref = gibbs_masses(Q, 0.5)
    assert np.any((ref > 0) & (ref < np.finfo(float).tiny))      # subnormal masses occur
    normal = ref >= np.finfo(float).tiny
    np.testing.assert_allclose(out[normal], ref[normal], rtol=8 * EPS, atol=0)
    # subnormals carry fewer digits: the same to a few units of the smallest subnormal
    np.testing.assert_allclose(out[~normal], ref[~normal], rtol=0, atol=4 * 5e-324)
    np.testing.assert_array_equal(out == 0.0, ref == 0.0)


@pytest.mark.parametrize("name,kw", [
    ("garnet", dict(n_states=37, n_actions=1, branching=3, seed=1)),     # one action
    ("garnet", dict(n_states=37, n_actions=5, branching=3, seed=2)),     # rows padded 5 -> 8
    ("pendulum", dict(n_theta=7, n_omega=5, n_actions=4))])               # no padding
def test_soft_sweep_chain_batch_edges(rng, name, kw):
    # states in batches of 16 (37 and 35 states: a last, partial batch), rows padded to a
    # multiple of 4: the same values as the numpy twin, writing Q and the masses changes nothing
    # else, and the masses are gibbs_rows of the written Q
    mdp = wg.problems.get(name, **kw)
    P, nS, nA = mdp.P, mdp.n_states, mdp.n_actions
    vol = mdp.actions.cell_volume if name == "pendulum" else 1.0
    C = np.ascontiguousarray(mdp.C)
    u = 3 * rng.random(nS)
    tau = 0.2
    ptr, idx, pos, cptr, act, perm = _grouped(mdp)
    out = [(np.empty(nS), np.full((nS, nA), np.nan), np.empty(idx.size), np.empty(nS),
            np.full((nS, nA), np.nan)) for _ in range(2)]
    for write, (TV, Q, val, cpi, m) in zip((False, True), out):
        soft_sweep_chain(ptr, idx.astype(np.int32), cptr, act, P.data[perm], C, u, tau,
                         np.log(vol), TV, Q, val, cpi, m, write)
    (TV0, _, val0, cpi0, _), written = out
    _check_write_and_twin(P, C, u, tau, vol, ptr, idx, (TV0, val0, cpi0), written)
    m = written[4]
    if nA == 1:
        np.testing.assert_array_equal(m, 1.0)


def test_gibbs_rows_subnormal_band():
    # gaps across [700, 746), where exp(-t) is subnormal from 708.4 on, and the doubles on both
    # sides of the underflow threshold t = 745.1332...: each row [0, t] has z = 1 + exp(-t) = 1,
    # so the second mass is the exponential itself
    thr = 745.1332191019412
    around = thr + np.spacing(thr) * np.arange(-20, 21)
    t = np.concatenate([np.linspace(700.0, 746.0, 20_001), around])
    Q = np.column_stack([np.zeros_like(t), t])
    out = np.empty(Q.shape)
    gibbs_rows(Q, 1.0, out)
    with np.errstate(under="ignore"):
        ref = np.exp(-t)
    tiny = np.finfo(float).tiny
    assert np.any((ref > 0) & (ref < tiny)) and np.any(ref == 0.0)
    normal = ref >= tiny
    # normal results: the exponential's 1 ulp against numpy's (itself within an ulp)
    np.testing.assert_allclose(out[normal, 1], ref[normal], rtol=4 * EPS, atol=0)
    # subnormal results: one rounding of p 2^n (p within an ulp of exp(r)) against numpy's:
    # a unit of the smallest subnormal each
    np.testing.assert_allclose(out[~normal, 1], ref[~normal], rtol=0, atol=2 * 5e-324)
    # exact zeros exactly where numpy's exponential rounds to zero, at the threshold too
    np.testing.assert_array_equal(out[:, 1] == 0.0, ref == 0.0)
    np.testing.assert_array_equal(out[:, 0], 1.0)


@pytest.mark.parametrize("k_max,target", [(7, 0.0), (500, 1e-6)])
def test_span_sweeps_match_numpy_and_bound_the_error(rng, k_max, target):
    # the Gibbs chain of the pendulum at gamma 0.99: k_max sweeps (or fewer, to the target) of
    # the numpy twin, the midpoint correction, and MacQueen's bound against a direct solve
    from scipy.sparse.linalg import spsolve
    from wgflow.kernels.bellman import policy_sweep_numpy
    mdp = _mdps()[1]
    P, nS, nA = mdp.P, mdp.n_states, mdp.n_actions
    g = 0.99
    masses = gibbs_masses(mdp.C + rng.random((nS, nA)), 0.3)
    P_pi = policy_matrix(P, masses).tocsr()
    c = rng.random(nS)
    v0 = rng.random(nS) / (1 - g)
    v, out = v0.copy(), np.empty(nS)
    w, k, err = span_sweeps(P_pi.indptr, P_pi.indices.astype(np.int32), P_pi.data, c, v, g, k_max,
                            target, out)
    ref = v0.copy()
    for _ in range(k):
        new, lo, hi = policy_sweep_numpy(P_pi, c, ref, g)
        ref = new
    ref = ref + 0.5 * g * (hi + lo) / (1 - g)
    # the same sums in the same order, up to the compiler's rounding: ulps of |v|
    np.testing.assert_allclose(w, ref, rtol=0, atol=1e-13 / (1 - g))
    assert err == pytest.approx(0.5 * g * (hi - lo) / (1 - g), rel=1e-9, abs=1e-13)
    x = spsolve((sp.identity(nS) - g * P_pi).tocsc(), c)
    # the bound holds (up to the direct solve's rounding, ulps of |x| / (1 - g))
    assert np.max(np.abs(w - x)) <= err + 1e-12 * np.max(np.abs(x))
    if target > 0:
        assert err <= target and k < k_max
    else:
        assert k == k_max


def test_soft_sweep_chain_from_zero_values():
    # u = 0 (the first sweep of a solve from V = 0) skips the sums: Q = C exactly, and the rest
    # as the numpy twin
    mdp = _mdps()[1]
    P, nS, nA = mdp.P, mdp.n_states, mdp.n_actions
    vol = mdp.actions.cell_volume
    C = np.ascontiguousarray(mdp.C)
    ptr, idx, pos, cptr, act, perm = _grouped(mdp)
    TV, Q, cpi, val, m = (np.empty(nS), np.empty((nS, nA)), np.empty(nS), np.empty(idx.size),
                          np.empty((nS, nA)))
    soft_sweep_chain(ptr, idx, cptr, act, P.data[perm], C, np.zeros(nS), 0.3, np.log(vol), TV, Q,
                     val, cpi, m, True)
    np.testing.assert_array_equal(Q, C)
    TVn, mn, cpin, Qn = bellman_softmin_numpy(P, C, np.zeros(nS), 0.3, vol)
    scale = 1 + np.max(np.abs(C))
    # exp/log rounding: a few ulps of |Q| (as above)
    np.testing.assert_allclose(TV, TVn, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(cpi, cpin, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(sp.csr_matrix((val, idx, ptr), shape=(nS, nS)).toarray(),
                               policy_matrix(P, mn).toarray(), rtol=0, atol=1e-12)
