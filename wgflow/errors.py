"""Exceptions raised by wgflow.

Every exception derives from :class:`WgflowError` and from the builtin that matches
its nature, so ``except ValueError`` keeps working for malformed input:

======================  ======================  ===============================================
exception               also a                  raised for
======================  ======================  ===============================================
``ValidationError``     ``ValueError``          malformed input (arrays, numbers, parameters)
``LookupFailure``       ``KeyError`` and        a name that is not there (problem, parameter,
                        ``ValueError``          scheme, option, check); a ValidationError too
``NotUnichainError``    ``ValueError``          average cost on a multichain policy
``ConvergenceError``    ``RuntimeError``        an iteration that stopped short, a numerically
                                                failed computation (NaN, loss of accuracy)
``FileFormatError``     ``ValueError``          a file that is damaged, foreign or unsafe
``MissingFileError``    ``FileNotFoundError``   a file or output directory that does not exist
``ExistingFileError``   ``FileExistsError``     a file that would be overwritten unasked
======================  ======================  ===============================================
"""
from __future__ import annotations


class WgflowError(Exception):
    """Base class of every error raised by wgflow."""


class ValidationError(WgflowError, ValueError):
    """Malformed input: wrong shape, NaN/inf, negative probability, rows not summing to 1..."""


class LookupFailure(ValidationError, KeyError):
    """A name that is not there (a problem, a parameter, a scheme, an option, a check...).

    A :class:`KeyError` (what a lookup raises) and a :class:`ValidationError` (a bad name is bad
    input); ``str()`` gives the message itself, not ``KeyError``'s quoted form.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NotUnichainError(WgflowError, ValueError):
    """Average-cost evaluation of a chain with more than one recurrent class."""

    def __init__(self, message: str, classes=None):
        super().__init__(message)
        #: list of arrays, the state indices of each closed (recurrent) class found
        self.classes = classes or []


class ConvergenceError(WgflowError, RuntimeError):
    """An iterative method stopped before reaching its tolerance, or a computation lost its
    accuracy (NaN, overflow, an estimated error too large to trust)."""

    def __init__(self, message: str, diagnostics: dict | None = None):
        super().__init__(message)
        self.diagnostics = dict(diagnostics or {})


class FileFormatError(WgflowError, ValueError):
    """A file that is not a (readable, safe, consistent) wgflow HDF5 file."""


class MissingFileError(WgflowError, FileNotFoundError):
    """A path given to :func:`wgflow.load` (or a resume) that does not exist, or an output
    directory that does not exist."""


class ExistingFileError(WgflowError, FileExistsError):
    """A file that an operation would overwrite without being told to (``overwrite=True``)."""


class AccuracyWarning(UserWarning):
    """A result is returned, but its estimated error is larger than rounding (the message says
    how large)."""
