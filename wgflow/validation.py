"""The one validation layer of wgflow.

Every entry point -- constructors (:class:`~wgflow.Grid`, :class:`~wgflow.MDP`,
:class:`~wgflow.Policy`, the objectives, the problem registry), the loaders of :mod:`wgflow.io`
and of stored trajectories, :func:`wgflow.flow` and its schemes, :func:`wgflow.solve` and the
command line -- checks what it is given with the functions of this module, so a new entry
point cannot forget a check and a file is held to the same rules as a user's arrays.

Each function returns the value in canonical form (a ``float``, an ``int``, a C-contiguous
float64 array...) or raises an exception derived from :class:`~wgflow.errors.WgflowError` and
from the matching builtin (docs/reliability.md lists them). Messages say *what* is wrong
(``gamma must be a real number in [0, 1)``), *where* (the function or file, the argument, the
row, state or action) and *what was given* (``got '0.9' (a str)``). Nothing is silently
converted: a complex number is not cut to its real part, a string is not parsed, rows are not
renormalized, a boolean is not a number.

Examples
--------
>>> from wgflow import validation as v
>>> v.real(0.5, "gamma", "Discounted", low=0, high=1, high_open=True)
0.5
>>> v.real("0.9", "gamma", "Discounted", low=0, high=1, high_open=True)
Traceback (most recent call last):
...
wgflow.errors.ValidationError: Discounted: gamma must be a finite real number in [0, 1), got '0.9' (a str); strings are not parsed
"""
from __future__ import annotations

import difflib
import numbers
import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .errors import ExistingFileError, LookupFailure, MissingFileError, ValidationError

__all__ = ["ROW_SUM_TOL", "real", "integer", "boolean", "array", "prob_vector", "masses",
           "costs", "solve_arguments", "csr_structure", "sparse_matrix", "transition_matrix", "memory",
           "available_memory", "choice", "options", "path", "output_path", "describe"]

#: tolerance on the sum of a probability row (docs/design.md §1)
ROW_SUM_TOL = 1e-10


# ---------------------------------------------------------------------------------------------
# messages
# ---------------------------------------------------------------------------------------------
def describe(value) -> str:
    """``repr`` of a value (shortened) and its type, for messages: ``'0.9' (a str)``."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    r = repr(value)
    if len(r) > 60:
        r = r[:57] + "..."
    return f"{r} (a {type(value).__name__})"


def _at(where: str) -> str:
    return f"{where}: " if where else ""


def _interval(low, high, low_open, high_open) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return ""


# ---------------------------------------------------------------------------------------------
# scalars
# ---------------------------------------------------------------------------------------------
def _scalar(value):
    """A 0-d real numpy array counts as its value; everything else is returned as is."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        return value.item()
    return value


def real(value, name: str, where: str = "", *, low=None, high=None, low_open: bool = False,
         high_open: bool = False, finite: bool = True, none: bool = False):
    """A real number (not a bool, string, complex or array) within the given bounds.

    ``none=True`` lets ``None`` through (returned as None); ``finite=False`` allows ``+-inf``
    (never NaN).
    """
    if value is None and none:
        return None
    v = _scalar(value)
    rng = _interval(low, high, low_open, high_open)
    kind = "a finite real number" if finite else "a real number"
    want = f"{kind} {rng}".strip()
    if (isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Real, np.integer, np.floating))):
        extra = ""
        if isinstance(v, (complex, np.complexfloating)):
            extra = "; complex values are not cut to their real part"
        elif isinstance(v, (str, bytes)):
            extra = "; strings are not parsed"
        raise ValidationError(f"{_at(where)}{name} must be {want}, got {describe(value)}{extra}")
    x = float(v)
    if np.isnan(x) or (finite and not np.isfinite(x)):
        raise ValidationError(f"{_at(where)}{name} must be {want}, got {x!r}")
    if low is not None and (x < low or (low_open and x == low)):
        raise ValidationError(f"{_at(where)}{name} must be {want}, got {x!r}")
    if high is not None and (x > high or (high_open and x == high)):
        raise ValidationError(f"{_at(where)}{name} must be {want}, got {x!r}")
    return x


def integer(value, name: str, where: str = "", *, low=None, high=None, none: bool = False):
    """An integer (``int`` or numpy integer, not a bool or a float) within ``[low, high]``."""
    if value is None and none:
        return None
    v = _scalar(value)
    rng = _interval(low, high, False, False)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Integral, np.integer)):
        raise ValidationError(f"{_at(where)}{name} must be an integer {rng}".rstrip()
                              + f", got {describe(value)}")
    n = int(v)
    if (low is not None and n < low) or (high is not None and n > high):
        raise ValidationError(f"{_at(where)}{name} must be an integer {rng}, got {n}")
    return n


def boolean(value, name: str, where: str = "", *, none: bool = False):
    """``True`` or ``False`` (numpy booleans too; not 0/1, not strings)."""
    if value is None and none:
        return None
    if not isinstance(value, (bool, np.bool_)):
        raise ValidationError(f"{_at(where)}{name} must be True or False, got {describe(value)}")
    return bool(value)


# ---------------------------------------------------------------------------------------------
# arrays
# ---------------------------------------------------------------------------------------------
def array(value, name: str, where: str = "", *, shape=None, ndim=None, finite: bool = True,
          dtype=float, copy: bool = False) -> np.ndarray:
    """A real array of the given shape (``None`` in ``shape`` matches any length).

    Refuses None, strings, ragged or object input, complex values (the imaginary part is never
    dropped) and, with ``finite``, NaN or inf (naming the first bad index).
    """
    if value is None:
        raise ValidationError(f"{_at(where)}{name} must be an array, got None")
    if sp.issparse(value):
        raise ValidationError(f"{_at(where)}{name} must be a dense array, got a sparse matrix")
    if np.iscomplexobj(value):
        raise ValidationError(f"{_at(where)}{name} has complex values; wgflow takes real arrays "
                              "and does not drop imaginary parts")
    raw = value
    if not isinstance(raw, np.ndarray):
        try:
            raw = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"{_at(where)}{name} must be a real array, got "
                                  f"{describe(value)}: {exc}") from None
    if raw.dtype.kind not in "biuf":
        raise ValidationError(f"{_at(where)}{name} must be a real array, got dtype {raw.dtype}"
                              + (f" ({describe(value)})" if raw.dtype.kind in "OUS" else ""))
    a = np.array(raw, dtype=dtype, copy=True) if copy else np.asarray(raw, dtype=dtype)
    if ndim is not None and a.ndim != ndim:
        raise ValidationError(f"{_at(where)}{name} must be a {ndim}-D array, got shape {a.shape}")
    if shape is not None:
        shape = tuple(shape)
        if a.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, a.shape)):
            want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + \
                   ("," if len(shape) == 1 else "") + ")"
            raise ValidationError(f"{_at(where)}{name} must have shape {want}, got {a.shape}")
    if finite and a.dtype.kind == "f" and a.size and not np.all(np.isfinite(a)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        raise ValidationError(f"{_at(where)}{name} contains NaN or inf at index "
                              f"{bad[0] if len(bad) == 1 else bad} (value {float(a[bad])!r})")
    return a


def prob_vector(p, n: int, name: str, where: str = "") -> np.ndarray:
    """A probability vector of length ``n`` (entries >= 0, sum 1 within :data:`ROW_SUM_TOL`)."""
    p = array(p, name, where, shape=(n,))
    if np.any(p < 0):
        i = int(np.nonzero(p < 0)[0][0])
        raise ValidationError(f"{_at(where)}{name} has a negative entry {p[i]:g} at index {i}")
    if abs(p.sum() - 1.0) > ROW_SUM_TOL:
        raise ValidationError(f"{_at(where)}{name} sums to {p.sum():.17g}, not 1 (tolerance "
                              f"{ROW_SUM_TOL:g}); nothing is renormalized")
    return p


def masses(m, n_states: int | None = None, n_actions: int | None = None, name: str = "masses",
           where: str = "", *, tol: float = ROW_SUM_TOL) -> np.ndarray:
    """Per-state probability masses ``(nS, nA)``: finite, >= 0, each row summing to 1 within
    ``tol``. Nothing is renormalized. A 3-D array is checked frame by frame (``(n, nS, nA)``,
    as stored in a trajectory)."""
    a = array(m, name, where, finite=False)
    if a.ndim not in (2, 3):
        raise ValidationError(f"{_at(where)}{name} must be a 2-D array (nS, nA), got shape {a.shape}")
    frame = "" if a.ndim == 2 else "frame {f}, "
    if n_states is not None and a.shape[-2] != n_states:
        raise ValidationError(f"{_at(where)}{name} has {a.shape[-2]} rows but the MDP has "
                              f"{n_states} states")
    if n_actions is not None and a.shape[-1] != n_actions:
        raise ValidationError(f"{_at(where)}{name} has {a.shape[-1]} columns but the MDP has "
                              f"{n_actions} actions")

    def loc(idx):
        idx = tuple(int(i) for i in idx)
        f = frame.format(f=idx[0]) if a.ndim == 3 else ""
        return f"{f}state {idx[-2]}, action {idx[-1]}"

    if not np.all(np.isfinite(a)):
        idx = np.argwhere(~np.isfinite(a))[0]
        raise ValidationError(f"{_at(where)}{name} contains NaN or inf at {loc(idx)}")
    if np.any(a < 0):
        idx = np.argwhere(a < 0)[0]
        raise ValidationError(f"{_at(where)}{name} has a negative mass {a[tuple(idx)]:g} at {loc(idx)}")
    sums = a.sum(axis=-1)
    bad = np.argwhere(np.abs(sums - 1.0) > tol)
    if bad.size:
        idx = tuple(int(i) for i in bad[0])
        f = frame.format(f=idx[0]) if a.ndim == 3 else ""
        raise ValidationError(f"{_at(where)}{name} of {f}state {idx[-1]} sum to {sums[idx]:.17g}, "
                              f"not 1 (tolerance {tol:g}; {len(bad)} rows in all). Nothing is "
                              "renormalized: divide by the row sums yourself if that is what you mean.")
    return np.ascontiguousarray(a)


def costs(C, n_states: int, n_actions: int, name: str = "C", where: str = "") -> np.ndarray:
    """A finite real cost table ``(nS, nA)``."""
    C = array(C, name, where, finite=False)
    if C.shape != (n_states, n_actions):
        raise ValidationError(f"{_at(where)}{name} must have shape (nS, nA) = ({n_states}, "
                              f"{n_actions}), got {C.shape}")
    if not np.all(np.isfinite(C)):
        s, a = np.argwhere(~np.isfinite(C))[0]
        raise ValidationError(f"{_at(where)}{name} contains NaN or inf at state {s}, action {a}")
    return np.ascontiguousarray(C)


# ---------------------------------------------------------------------------------------------
# sparse matrices
# ---------------------------------------------------------------------------------------------
def csr_structure(indptr, indices, n_rows: int, n_cols: int, name: str = "P", where: str = "",
                  nnz: int | None = None) -> None:
    """The index arrays of a compressed (CSR) matrix are safe to hand to compiled code.

    ``indptr`` is an integer array of length ``n_rows + 1`` starting at 0, non-decreasing and
    ending at ``len(indices)``; ``indices`` are integers in ``[0, n_cols)``. (The CSC arrays of
    a matrix are the CSR arrays of its transpose.)
    """
    indptr = np.asarray(indptr)
    indices = np.asarray(indices)
    for nm, a in (("indptr", indptr), ("indices", indices)):
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise ValidationError(f"{_at(where)}{name}.{nm} must be a 1-D integer array, got shape "
                                  f"{a.shape} and dtype {a.dtype}")
    if indptr.size != n_rows + 1:
        raise ValidationError(f"{_at(where)}{name}.indptr must have {n_rows + 1} entries (rows + 1), "
                              f"got {indptr.size}")
    if indptr[0] != 0:
        raise ValidationError(f"{_at(where)}{name}.indptr must start at 0, got {int(indptr[0])}")
    steps = np.diff(indptr.astype(np.int64))
    if np.any(steps < 0):
        r = int(np.nonzero(steps < 0)[0][0])
        raise ValidationError(f"{_at(where)}{name}.indptr decreases at row {r} ({int(indptr[r])} -> "
                              f"{int(indptr[r + 1])}); it must be non-decreasing")
    n = indices.size if nnz is None else nnz
    if int(indptr[-1]) != indices.size or int(indptr[-1]) != n:
        raise ValidationError(f"{_at(where)}{name}.indptr ends at {int(indptr[-1])} but there are "
                              f"{indices.size} indices and {n} values")
    if indices.size:
        lo, hi = int(indices.min()), int(indices.max())
        if lo < 0 or hi >= n_cols:
            k = int(np.nonzero((indices < 0) | (indices >= n_cols))[0][0])
            r = int(np.searchsorted(indptr, k, side="right") - 1)
            raise ValidationError(f"{_at(where)}{name}.indices has {int(indices[k])} at row {r} "
                                  f"(entry {k}); column indices must be in [0, {n_cols})")


def sparse_matrix(P, name: str = "P", where: str = "", copy: bool = True) -> sp.csr_matrix:
    """A real sparse matrix as a float64 CSR matrix with sorted, summed indices (a new one unless
    ``copy=False`` and ``P`` is one already).

    The index arrays of CSR, CSC, COO and BSR input are checked *before* scipy converts them
    (scipy's compiled conversions trust them), data must be real and finite.
    """
    if not sp.issparse(P):
        raise ValidationError(f"{_at(where)}{name} must be a scipy.sparse matrix, got {describe(P)}")
    if len(P.shape) != 2:
        raise ValidationError(f"{_at(where)}{name} must be 2-D, got shape {P.shape}")
    n_rows, n_cols = (int(n) for n in P.shape)
    data = np.asarray(P.data) if P.format in ("csr", "csc", "coo", "bsr") else None
    if data is not None:
        if np.iscomplexobj(data):
            raise ValidationError(f"{_at(where)}{name} has complex values; wgflow takes real "
                                  "matrices and does not drop imaginary parts")
        if data.dtype.kind not in "biuf":
            raise ValidationError(f"{_at(where)}{name} has values of dtype {data.dtype}, not real numbers")
    fmt = P.format
    if fmt == "csr":
        csr_structure(P.indptr, P.indices, n_rows, n_cols, name, where, nnz=data.size)
    elif fmt == "csc":
        csr_structure(P.indptr, P.indices, n_cols, n_rows, f"{name} (CSC)", where, nnz=data.size)
    elif fmt == "coo":
        row, col = np.asarray(P.row), np.asarray(P.col)
        if row.shape != data.shape or col.shape != data.shape:
            raise ValidationError(f"{_at(where)}{name} (COO) has {row.size} rows, {col.size} columns "
                                  f"and {data.size} values")
        for nm, a, n in (("row", row, n_rows), ("col", col, n_cols)):
            if a.size and (a.dtype.kind not in "iu" or int(a.min()) < 0 or int(a.max()) >= n):
                raise ValidationError(f"{_at(where)}{name} (COO) {nm} indices must be integers in "
                                      f"[0, {n})")
    elif fmt == "bsr":
        R, Cb = P.blocksize
        csr_structure(P.indptr, P.indices, n_rows // R, n_cols // Cb, f"{name} (BSR)", where,
                      nnz=data.shape[0])
    else:
        try:
            P = P.tocsr()
        except Exception as exc:  # a foreign sparse type that cannot convert
            raise ValidationError(f"{_at(where)}{name}: cannot convert a {fmt} matrix: {exc}") from None
        return sparse_matrix(P, name, where, copy=False)
    out = sp.csr_matrix(P, dtype=np.float64, copy=copy)
    if out.nnz and not np.all(np.isfinite(out.data)):
        k = int(np.nonzero(~np.isfinite(out.data))[0][0])
        r = int(np.searchsorted(out.indptr, k, side="right") - 1)
        raise ValidationError(f"{_at(where)}{name} contains NaN or inf at row {r}, column "
                              f"{int(out.indices[k])}")
    out.sum_duplicates()
    out.eliminate_zeros()      # stored zeros would count as transitions in graph algorithms
    return out


def transition_matrix(P: sp.csr_matrix, n_actions: int | None = None, name: str = "P",
                      where: str = "") -> None:
    """Rows of a (checked, CSR) ``P`` are probability vectors: finite, >= 0, summing to 1
    within :data:`ROW_SUM_TOL`."""
    def row_at(r):
        return f"row {r}" if n_actions is None else f"row {r} (state {r // n_actions}, action {r % n_actions})"

    if not np.all(np.isfinite(P.data)):
        k = int(np.nonzero(~np.isfinite(P.data))[0][0])
        r = int(np.searchsorted(P.indptr, k, side="right") - 1)
        raise ValidationError(f"{_at(where)}{name} contains NaN or inf at {row_at(r)}, column "
                              f"{int(P.indices[k])}")
    if np.any(P.data < 0):
        k = int(np.nonzero(P.data < 0)[0][0])
        r = int(np.searchsorted(P.indptr, k, side="right") - 1)
        raise ValidationError(f"{_at(where)}{name} has a negative probability {P.data[k]:g} at "
                              f"{row_at(r)}, column {int(P.indices[k])}")
    sums = np.asarray(P.sum(axis=1)).ravel()
    bad = np.nonzero(np.abs(sums - 1.0) > ROW_SUM_TOL)[0]
    if bad.size:
        r = int(bad[0])
        raise ValidationError(f"{_at(where)}{name} {row_at(r)} sums to {sums[r]:.17g}, not 1 "
                              f"(tolerance {ROW_SUM_TOL:g}; {bad.size} bad rows in all)")


def solve_arguments(tol, max_iter, aperiodicity, where: str = "solve"):
    """``tol`` > 0 and finite, ``max_iter`` an integer >= 1 or None, ``aperiodicity`` in [0, 1)."""
    return (real(tol, "tol", where, low=0.0, low_open=True),
            integer(max_iter, "max_iter", where, low=1, none=True),
            real(aperiodicity, "aperiodicity", where, low=0.0, high=1.0, high_open=True))


# ---------------------------------------------------------------------------------------------
# resources, names, paths
# ---------------------------------------------------------------------------------------------
def available_memory() -> int:
    """Physical memory of the machine in bytes (``2**40`` when it cannot be read)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 1 << 40


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024.0
    return f"{n:.3g} PiB"  # pragma: no cover


def memory(nbytes: float, what: str, where: str = "") -> None:
    """Refuse work whose estimated memory exceeds the machine's physical memory."""
    limit = available_memory()
    if not nbytes <= limit:
        raise ValidationError(f"{_at(where)}{what} needs about {_bytes(float(nbytes))} of memory, "
                              f"more than this machine has ({_bytes(limit)}); use a smaller grid")


def choice(value, name: str, choices, where: str = ""):
    """``value`` is one of ``choices`` (else :class:`LookupFailure` listing them, with the
    closest match)."""
    choices = list(choices)
    try:
        ok = value in choices
    except TypeError:          # unhashable or incomparable
        ok = False
    if not ok:
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise LookupFailure(f"{_at(where)}unknown {name} {value!r}{hint}; choose from "
                            f"{', '.join(repr(c) for c in choices)}")
    return value


def options(given, groups: dict, where: str = "", what: str = "keyword argument") -> None:
    """Every keyword in ``given`` belongs to one of ``groups`` (``{"flow()": [...], "scheme
    'otto'": [...]}``); an unknown one raises :class:`LookupFailure` naming it, the closest
    valid keyword and every group's keywords."""
    valid = [k for names in groups.values() for k in names]
    unknown = [k for k in given if k not in valid]
    if unknown:
        k = unknown[0]
        close = difflib.get_close_matches(k, valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        lists = "; ".join(f"{g} takes {', '.join(sorted(v)) if v else 'none'}" for g, v in groups.items())
        raise LookupFailure(f"{_at(where)}unknown {what} {k!r}{hint}. {lists}")


def path(value, name: str = "path", where: str = "") -> Path:
    """A filesystem path (``str`` or ``os.PathLike``)."""
    if isinstance(value, (str, os.PathLike)) and str(value):
        return Path(value)
    raise ValidationError(f"{_at(where)}{name} must be a file path (str or pathlib.Path), got "
                          f"{describe(value)}")


def output_path(value, name: str = "path", where: str = "", *, overwrite: bool = True) -> Path:
    """A path a file can be written to: its directory exists, it is not a directory, and (unless
    ``overwrite``) no file is there yet."""
    p = path(value, name, where)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise MissingFileError(f"{_at(where)}cannot write {p}: the directory {parent} does not exist")
    if p.is_dir():
        raise ValidationError(f"{_at(where)}{name} {p} is a directory, not a file")
    if not overwrite and p.exists():
        raise ExistingFileError(f"{_at(where)}{p} exists; pass overwrite=True to replace it"
                                + (" or resume=True to continue the run it holds"
                                   if "flow" in where else ""))
    return p
