"""Exceptions raised by wgflow.

Every exception derives from :class:`WgflowError` and from the builtin that matches
its nature, so ``except ValueError`` keeps working for malformed input.
"""
from __future__ import annotations


class WgflowError(Exception):
    """Base class of every error raised by wgflow."""


class ValidationError(WgflowError, ValueError):
    """Malformed input: wrong shape, NaN/inf, negative probability, rows not summing to 1..."""


class NotUnichainError(WgflowError, ValueError):
    """Average-cost evaluation of a chain with more than one recurrent class."""

    def __init__(self, message: str, classes=None):
        super().__init__(message)
        #: list of arrays, the state indices of each closed (recurrent) class found
        self.classes = classes or []


class ConvergenceError(WgflowError, RuntimeError):
    """An iterative method stopped before reaching its tolerance."""

    def __init__(self, message: str, diagnostics: dict | None = None):
        super().__init__(message)
        self.diagnostics = dict(diagnostics or {})


class FileFormatError(WgflowError, ValueError):
    """A file that is not a (readable) wgflow HDF5 file."""


class MissingFileError(WgflowError, FileNotFoundError):
    """A path given to :func:`wgflow.load` (or a resume) that does not exist."""


class LookupFailure(WgflowError, KeyError):
    """A name that is not there (a check, a problem parameter...)."""
