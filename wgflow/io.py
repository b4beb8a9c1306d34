"""HDF5 storage: :func:`save` and :func:`load` for MDP, Policy, Evaluation, Solution, Trajectory
(and :func:`load` for study files).

Arrays are datasets; parameters, grids and the package version are attributes (JSON for nested
values). Writes are atomic (:class:`wgflow.h5.atomic_h5`): the file is written under a
temporary name in the same directory, flushed to disk and renamed into place only when
complete, so a crash never leaves a half-written file where a good one was, and temporary
files of killed writers are removed by the next save to the same path.

The groups of the core objects are written and read by :mod:`wgflow.records`. Loading trusts nothing in the file: every dataset is checked (hard links only, no external
storage, dtype, shape, memory) and every object is rebuilt through the same validation as the
constructors (:mod:`wgflow.validation`): CSR indices in range and ``indptr`` monotone before
scipy or a compiled kernel sees them, rows summing to 1, finite values, consistent shapes. Any
failure is a :class:`~wgflow.FileFormatError` naming the file and the dataset.

Layout (root attributes ``wgflow_type``, ``wgflow_version``, ``format_version``)::

    /mdp        P_data, P_indices, P_indptr (CSR), C; attrs P_shape, states, actions, provenance
    /policy     masses; attrs states, actions
    /solution   V, Q, weights, history, policy/…; attrs J, iterations, converged, residual, method,
                objective, diagnostics
    /evaluation V, Q, weights, c_pi, policy/…; attrs J, objective, diagnostics
    /trajectory see wgflow.flows.trajectory
"""
from __future__ import annotations

from pathlib import Path

from . import h5, records, validation
from .errors import FileFormatError, ValidationError
from .evaluation import Evaluation, Solution
from .flows.trajectory import Trajectory
from .h5 import FORMAT_VERSION, atomic_h5, open_checked  # noqa: F401  (public names)
from .mdp import MDP
from .policy import Policy
from .study import StudyResult

__all__ = ["save", "load", "atomic_h5", "FORMAT_VERSION"]



def save(path, obj, overwrite: bool = True) -> Path:
    """Save an MDP, Policy, Evaluation, Solution or Trajectory to an HDF5 file, atomically.

    Parameters
    ----------
    path : str or Path
        The file; its directory must exist.
    obj : MDP, Policy, Evaluation, Solution or Trajectory
    overwrite : bool
        Replace an existing file (default). ``False`` raises
        :class:`~wgflow.errors.ExistingFileError` when ``path`` exists.

    Examples
    --------
    >>> import wgflow as wg, tempfile, os
    >>> mdp = wg.problems.get("garnet", n_states=5, n_actions=2)
    >>> path = os.path.join(tempfile.mkdtemp(), "garnet.h5")
    >>> _ = wg.save(path, mdp)
    >>> wg.load(path).P.shape
    (10, 5)
    """
    overwrite = validation.boolean(overwrite, "overwrite", "save")
    if isinstance(obj, Trajectory):
        return obj.to_hdf5(path, overwrite=overwrite)
    kind = {MDP: "MDP", Policy: "Policy", Solution: "Solution", Evaluation: "Evaluation"}.get(type(obj))
    if kind is None:
        raise ValidationError(f"wgflow.save stores MDP, Policy, Evaluation, Solution or Trajectory, "
                              f"not {type(obj).__name__}")
    with atomic_h5(path, overwrite=overwrite) as f:
        h5.write_header(f, kind)
        grp = f.create_group(records.GROUP[kind])
        if kind == "MDP":
            records.write_mdp(grp, obj)
        elif kind == "Policy":
            records.write_policy(grp, obj)
        else:
            records.write_result(grp, obj, kind)
    return Path(path)


def load(path):
    """Load what :func:`save` (or a flow's ``storage=``, or :func:`wgflow.run_study`) wrote.

    Every dataset is checked as the constructors check user input; a trajectory is read up to
    its last complete frame (see :meth:`wgflow.Trajectory.from_hdf5`).

    Raises
    ------
    MissingFileError
        There is no such file.
    FileFormatError
        The file is corrupted, not HDF5, not written by wgflow, or its content is invalid or
        unsafe (external links or storage); the message names the file and the dataset.
    """
    with open_checked(path) as f:
        kind = h5.attr(f, "wgflow_type", path, "str")
        if kind in records.GROUP:
            grp = h5.group(f, records.GROUP[kind], path)
            if kind == "MDP":
                return records.read_mdp(grp, path)
            if kind == "Policy":
                return records.read_policy(grp, path)
            return records.read_result(grp, kind, path)
    if kind == "Trajectory":
        return Trajectory.from_hdf5(path)
    if kind == "Study":
        return StudyResult.from_hdf5(path)
    raise FileFormatError(f"{path} holds an unknown wgflow object type {kind!r}")
