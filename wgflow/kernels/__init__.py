"""Numba kernels, each built by a factory that bakes constants into a jitted closure.

Every kernel has a plain-numpy twin (``*_numpy``) used by the tests and the benchmarks.
The single :func:`jit` wrapper applies the project's numba settings (``cache=True``,
``nogil=True``) and counts compilations so diagnostics can split compile from solve time.
"""
from .config import jit, numba_environment
from .assembly import assemble_policy_matrix, policy_matrix_numpy, policy_matrix

__all__ = ["jit", "numba_environment", "assemble_policy_matrix", "policy_matrix_numpy",
           "policy_matrix"]
