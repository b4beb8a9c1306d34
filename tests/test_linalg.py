"""LinearSolveCache: its parameters are checked like any input."""
from __future__ import annotations

import pytest

import wgflow as wg
from wgflow.linalg import LinearSolveCache


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(ordering="x"), wg.LookupFailure, "unknown ordering 'x'"),
    (dict(ordering="colmad"), wg.LookupFailure, "did you mean 'colamd'"),
    (dict(reuse="no"), wg.ValidationError, "reuse must be True or False"),
    (dict(rtol=0.0), wg.ValidationError, "rtol"),
    (dict(rtol=float("nan")), wg.ValidationError, "rtol"),
    (dict(max_krylov=0), wg.ValidationError, "max_krylov"),
    (dict(max_krylov=2.5), wg.ValidationError, "max_krylov"),
    (dict(max_refine=-1), wg.ValidationError, "max_refine"),
    (dict(small_factor="many"), wg.ValidationError, "small_factor"),
    (dict(btf_max_fraction=1.5), wg.ValidationError, "btf_max_fraction"),
    (dict(backward_tol=-1e-16), wg.ValidationError, "backward_tol"),
])
def test_bad_parameters_name_themselves(kwargs, error, words):
    with pytest.raises(error, match=words) as info:
        LinearSolveCache(**kwargs)
    assert "LinearSolveCache" in str(info.value)
