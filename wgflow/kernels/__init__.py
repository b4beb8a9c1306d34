"""Numba kernels, each built by a factory that bakes constants into a jitted closure.

Every kernel has a plain-numpy twin (``*_numpy``) used by the tests and the benchmarks.
The single :func:`jit` wrapper applies the project's numba settings (``cache=True``,
``nogil=True``) and counts compilations so diagnostics can split compile from solve time.
"""
from .config import jit, numba_environment
from .assembly import (assemble_policy_matrix, policy_matrix_numpy, policy_matrix,
                       PolicyMatrixAssembler)
from .fluxes import (make_sg_flux, sg_flux, sg_flux_numpy, sg_coefficients, sg_euler_frozen,
                     sg_frozen_steps, sg_frozen_steps_numpy)
from .heat import (make_heat_kernel, make_dense_heat_kernel, heat_step, heat_step_numpy,
                   heat_step_dct, heat_weights, heat_matrix)
from .deposition import make_deposition_kernel, push_forward, push_forward_numpy, deposition_variance
from .sg_implicit import (SGOperator, make_sg_operator, sg_implicit_solve, sg_implicit_solve_numpy,
                          sg_generator_dense)

__all__ = ["jit", "numba_environment", "assemble_policy_matrix", "policy_matrix_numpy",
           "policy_matrix", "PolicyMatrixAssembler", "make_sg_flux", "sg_flux", "sg_flux_numpy", "sg_coefficients", "sg_euler_frozen",
           "sg_frozen_steps", "sg_frozen_steps_numpy", "make_heat_kernel",
           "make_dense_heat_kernel", "heat_step", "heat_step_numpy", "heat_step_dct", "heat_weights",
           "heat_matrix", "make_deposition_kernel", "push_forward", "push_forward_numpy",
           "deposition_variance", "SGOperator", "make_sg_operator", "sg_implicit_solve",
           "sg_implicit_solve_numpy", "sg_generator_dense"]
