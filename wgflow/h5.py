"""Low-level HDF5 access shared by :mod:`wgflow.io` and the flows' storage.

* **Atomic files** (:class:`atomic_h5`): a file is written under a temporary name in its
  directory, flushed to disk and renamed over the target only when complete, so a crash
  never leaves a half-written file where a good one was. Temporary files of writers that were
  killed are removed by the next writer of the same path (:func:`clean_orphans`).
* **Reads that trust nothing in the file**: :func:`dataset` and :func:`group` follow hard
  links only (no soft or external links), refuse external raw storage and virtual datasets (a
  crafted file could otherwise make a load return bytes of another file), check dtype and
  shape, and estimate the memory before reading; :func:`attr` checks each attribute's type.
  Every failure is a :class:`~wgflow.errors.FileFormatError` that names the file and the
  dataset or attribute.
* **Sealed files**: a file written by :class:`atomic_h5` (and a flow's storage once the run
  has closed it) starts with a 512-byte HDF5 user block holding the SHA-256 of everything after
  it (:func:`seal`); :func:`open_checked` verifies it before the HDF5 library parses anything,
  so a damaged file is refused with a :class:`~wgflow.errors.FileFormatError` instead of
  reaching the library (some damaged headers crash it outright). In-place edits of a sealed
  file go through :func:`unseal` and :func:`seal`.
* **Probed files**: a file without a seal (written before seals, a flow's storage while it runs
  or after its process was killed, a file left open by an edit) is first parsed by a
  short-lived child process (:func:`probe`) that opens it and reads every attribute and
  dataset the loaders could read; if the HDF5 library crashes or hangs there, the load raises
  :class:`~wgflow.errors.FileFormatError` and the calling process never parses the file.
* Helpers for JSON attributes, grids, and digests (fingerprints of arrays and per-frame
  checksums).
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import signal
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import h5py
import numpy as np

from . import validation
from .errors import FileFormatError, MissingFileError, ValidationError
from .grids import Grid
from .version import __version__

__all__ = ["FORMAT_VERSION", "atomic_h5", "clean_orphans", "open_checked", "dataset", "read",
           "group", "attr", "grid_attr", "grid_from_attr", "jsonable", "digest", "checksum",
           "file_error", "seal", "unseal", "edit_sealed", "probe", "USERBLOCK",
           "PROBE_TIMEOUT", "check_bytes"]

#: layout version written by this wgflow (2: trajectories carry per-frame checksums, restart
#: flags and scheme state); files of versions 1 and 2 are read
FORMAT_VERSION = 2

#: bytes of the HDF5 user block of the files :class:`atomic_h5` writes (the seal lives there)
USERBLOCK = 512
_SEALED = b"WGFLOW-SHA256 "
_OPEN = b"WGFLOW-OPEN\n"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _content_digest(fh) -> str:
    """SHA-256 of a file's bytes after its user block."""
    fh.seek(USERBLOCK)
    h = hashlib.sha256()
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()


def _head(fh) -> tuple:
    """``(head, has_userblock)``: the file's first bytes up to the HDF5 signature's place after a
    user block, and whether that signature is there (a file written before seals starts with
    HDF5's own bytes)."""
    head = fh.read(USERBLOCK + len(_HDF5_SIGNATURE))
    return head, head[USERBLOCK:] == _HDF5_SIGNATURE


def seal(path) -> bool:
    """Write the SHA-256 of the file's content (after its user block) into its user block.

    Returns False, leaving the file as it is, when it has no user block (a file written before
    seals: its first bytes are HDF5's own).
    """
    with open(path, "r+b") as fh:
        if not _head(fh)[1]:
            return False
        line = _SEALED + _content_digest(fh).encode() + b"\n"
        fh.seek(0)
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
    return True


def unseal(path) -> None:
    """Mark a sealed file as open for an in-place edit (read without a checksum until
    :func:`seal` is called again); files without a user block are left alone."""
    with open(path, "r+b") as fh:
        if not _head(fh)[1]:
            return
        fh.seek(0)
        fh.write(_OPEN + bytes(len(_SEALED) + 65 - len(_OPEN)))
        fh.flush()
        os.fsync(fh.fileno())


@contextlib.contextmanager
def edit_sealed(path):
    """An ``h5py.File`` of a finished file opened for an in-place edit: unsealed while open,
    sealed again once closed (a file without a user block is edited as it is)."""
    unseal(path)
    with h5py.File(path, "a") as f:
        yield f
    seal(path)


def _check_seal(path: Path) -> bool:
    """Refuse a sealed file whose content no longer matches its seal; True for a sealed file
    that matches, False for a file without a seal."""
    try:
        with open(path, "rb") as fh:
            head, userblock = _head(fh)
            if not head.startswith(_SEALED):
                if head.startswith(_OPEN) or not userblock:
                    return False        # no seal (older files, a running flow's storage)
                raise FileFormatError(f"{path}: its seal (the checksum in the first {USERBLOCK} "
                                      "bytes) is damaged: the file is corrupted")
            want = head[len(_SEALED):len(_SEALED) + 64].decode("ascii", "replace")
            got = _content_digest(fh)
    except OSError as exc:
        raise FileFormatError(f"{path} cannot be read: {exc}") from exc
    if got != want:
        raise FileFormatError(f"{path}: its content does not match its checksum (SHA-256 "
                              f"{got[:12]}... against {want[:12]}... stored when it was written): "
                              "the file was damaged or changed after it was written")
    return True


#: seconds a :func:`probe` may take before the file is refused as unparsable (plus one second
#: per 20 MB of file, the time to read it from a slow disk)
PROBE_TIMEOUT = 60.0

#: exit status of the probe when it cannot run at all (h5py not importable)
_PROBE_UNAVAILABLE = 3

# The probe (run as ``python -c``, with the parent's sys.path read from stdin, NUL-separated,
# so that it imports the same h5py without importing wgflow, which takes seconds): open the
# file as open_checked does, then walk every object reachable through hard links -- the only
# links the loaders follow -- and read every attribute (names and values) and every dataset's
# data, in slabs of at most 16 MiB along the first axis (every chunk, so every node of the chunk
# index, is visited). Python errors are caught and the walk goes on: they reach the loader as
# FileFormatError; what the probe detects is a crash (death by a signal) or a hang of the HDF5
# library itself. Datasets stored in other files (external or virtual) are not read: the
# loaders refuse them.
_PROBE_SCRIPT = r"""
import sys
sys.path[:] = sys.stdin.read().split("\0")     # (before any import: nothing from the cwd)
try:
    import h5py
except Exception:
    sys.exit(%d)
path = sys.argv[1]
try:
    try:
        f = h5py.File(path, "r", locking=False)
    except OSError:
        f = h5py.File(path, "r")
except Exception:
    sys.exit(0)
SLAB = 1 << 24
seen = set()

def attributes(obj):
    try:
        names = list(obj.attrs)
    except Exception:
        return
    for name in names:
        try:
            obj.attrs[name]
        except Exception:
            pass

def data(ds):
    try:
        if ds.is_virtual or ds.id.get_create_plist().get_external_count():
            return
        shape = ds.shape
        if shape is None:
            return
        if not shape:
            ds[()]
            return
        row = ds.dtype.itemsize
        for n in shape[1:]:
            row *= n
        step = max(1, SLAB // max(row, 1))
        for i in range(0, shape[0], step):
            ds[i:i + step]
    except Exception:
        pass

def walk(group, depth):
    attributes(group)
    if depth > 64:                  # (hard links can form cycles; wgflow files are 3 deep)
        return
    try:
        names = list(group)
    except Exception:
        return
    for name in names:
        try:
            if not isinstance(group.get(name, getlink=True), h5py.HardLink):
                continue
            obj = group[name]
        except Exception:
            continue
        try:
            key = h5py.h5o.get_info(obj.id).addr
        except Exception:
            key = None
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        if isinstance(obj, h5py.Group):
            walk(obj, depth + 1)
        else:
            attributes(obj)
            if isinstance(obj, h5py.Dataset):
                data(obj)

walk(f, 0)
f.close()
sys.exit(0)
""" % _PROBE_UNAVAILABLE


def probe(path) -> None:
    """Parse a file in a short-lived child process before this process does.

    The child opens ``path`` with h5py and reads every attribute and every dataset reachable
    through hard links (what the loaders may read). If the HDF5 library crashes there (damaged
    metadata can make it dereference garbage: a segmentation fault) or does not finish within
    :data:`PROBE_TIMEOUT` seconds (plus one per 20 MB), :class:`~wgflow.errors.FileFormatError`
    is raised and this process never parses the file; errors the library reports normally are
    left to the loader. :func:`open_checked` probes every file without a seal; a sealed file
    whose checksum matches holds the bytes the HDF5 library wrote and is not probed.

    Where no child interpreter can be started (``sys.executable`` unusable, h5py not importable
    there) a ``RuntimeWarning`` says so and the file is read unprobed.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise FileFormatError(f"{path} cannot be read: {exc}") from exc
    timeout = PROBE_TIMEOUT + size / 20e6
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE_SCRIPT, os.fspath(path)],
                              input="\0".join(str(p) for p in sys.path).encode(),
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise FileFormatError(f"{path}: the HDF5 library did not finish reading this file within "
                              f"{timeout:.0f} s (in a separate test process, which was stopped): "
                              "its internal structure (HDF5 metadata) is damaged, and it has no "
                              "seal (checksum) to tell more") from None
    except (OSError, ValueError) as exc:
        warnings.warn(f"{path} has no seal and could not be test-read in a separate process "
                      f"({exc}); reading it directly", RuntimeWarning, stacklevel=3)
        return
    rc = proc.returncode
    if rc == 0:
        return
    if rc == _PROBE_UNAVAILABLE:
        warnings.warn(f"{path} has no seal and could not be test-read in a separate process "
                      f"({sys.executable} cannot import h5py); reading it directly",
                      RuntimeWarning, stacklevel=3)
        return
    if rc < 0:
        try:
            how = f"was killed by signal {signal.Signals(-rc).name}"
        except ValueError:
            how = f"was killed by signal {-rc}"
    else:
        how = f"ended with status {rc}"
    raise FileFormatError(f"{path}: the HDF5 library crashed reading this file (a separate test "
                          f"process that parsed it {how}): its internal structure (HDF5 "
                          "metadata) is damaged, and it has no seal (checksum) to tell more")


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # someone else's process
        return True
    except OSError:                  # pragma: no cover - not POSIX
        return True
    return True


def temp_name(path: Path) -> Path:
    """``.NAME.tmp-PID-RANDOM`` next to ``path`` (the writer's process id identifies orphans)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def clean_orphans(path) -> list:
    """Remove the temporary files that killed writers of ``path`` left behind.

    A temporary file is an orphan when the process id in its name no longer runs; files of live
    processes (a concurrent writer) are kept. Returns the paths removed.
    """
    path = Path(path)
    prefix = f".{path.name}.tmp-"
    removed = []
    for p in glob.glob(os.path.join(glob.escape(str(path.parent)), glob.escape(prefix) + "*")):
        try:
            pid = int(Path(p).name[len(prefix):].split("-")[0])
        except ValueError:
            continue
        if pid == os.getpid() or _pid_alive(pid):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)
            removed.append(Path(p))
    return removed


def fsync_dir(path) -> None:
    """Make a rename in directory ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


class atomic_h5:
    """Context manager: an ``h5py.File`` written to a temporary name, renamed on success.

    The target's directory must exist (:class:`~wgflow.errors.MissingFileError` otherwise);
    with ``overwrite=False`` an existing target raises
    :class:`~wgflow.errors.ExistingFileError`. Orphaned temporary files of earlier, killed
    writers of the same path are removed first. On success the file is sealed (:func:`seal`)
    and fsync'ed, renamed over the target, and the rename is made durable; on an exception the
    temporary file is removed and the old target is untouched.
    """

    def __init__(self, path, overwrite: bool = True, where: str = "save"):
        self.path = validation.output_path(path, "path", where, overwrite=overwrite)
        self.tmp = temp_name(self.path)

    def __enter__(self) -> h5py.File:
        clean_orphans(self.path)
        self.file = h5py.File(self.tmp, "w", userblock_size=USERBLOCK)
        return self.file

    def __exit__(self, exc_type, exc, tb):
        try:
            self.file.close()
        finally:
            if exc_type is None:
                seal(self.tmp)                   # (fsync'ed: durable before it replaces a good file)
                os.replace(self.tmp, self.path)
                fsync_dir(self.path.parent)
            elif self.tmp.exists():
                self.tmp.unlink()
        return False


def write_header(f: h5py.File, kind: str) -> None:
    """Root attributes of every wgflow file."""
    f.attrs["wgflow_type"] = kind
    f.attrs["wgflow_version"] = __version__
    f.attrs["format_version"] = FORMAT_VERSION


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
def file_error(path, where: str, message: str) -> FileFormatError:
    """A :class:`FileFormatError` saying which file and which dataset or attribute."""
    return FileFormatError(f"{path}: {where}: {message}" if where else f"{path}: {message}")


@contextlib.contextmanager
def reading(path, where: str):
    """Turn a validation failure of data read from ``path`` (at ``where``) into a
    :class:`FileFormatError` naming both; errors of h5py become the same."""
    try:
        yield
    except FileFormatError:
        raise
    except (ValidationError, MissingFileError) as exc:
        raise file_error(path, where, f"invalid content: {exc}") from exc
    except (KeyError, OSError, RuntimeError, TypeError, ValueError) as exc:
        raise file_error(path, where, f"unreadable: {exc}") from exc


def check_bytes(path) -> None:
    """Make sure the HDF5 library may parse ``path``: the seal of a sealed file must match its
    content, a file without a seal is parsed first in a child process (:func:`probe`).

    Raises :class:`FileFormatError` otherwise. For readers that open a file with h5py
    themselves (:func:`open_checked` does this before its own checks).
    """
    if not _check_seal(Path(path)):
        probe(path)


def open_checked(path, kind: str | None = None) -> h5py.File:
    """Open a wgflow HDF5 file for reading, or raise :class:`FileFormatError` saying why not.

    Checks the seal of a sealed file (its SHA-256, before the HDF5 library parses anything) or
    probes a file without one (:func:`probe`: parsed first in a child process, so damaged
    metadata that crashes the HDF5 library raises instead of crashing this process), then checks
    that the file is HDF5, was written by wgflow (``wgflow_type``), has a format version this
    wgflow reads, and (with ``kind``) holds that type. Files are opened without HDF5 file
    locking, so a file that a running flow appends to can be read.
    """
    path = validation.path(path, "path", "load")
    if not path.exists():
        raise MissingFileError(f"no such file: {path}")
    if path.is_dir():
        raise FileFormatError(f"{path} is a directory, not a wgflow file")
    check_bytes(path)
    try:
        try:
            f = h5py.File(path, "r", locking=False)
        except OSError as exc:
            if "locking" not in str(exc):
                raise
            f = h5py.File(path, "r")     # this process writes it (same locking flags needed)
    except OSError as exc:
        raise FileFormatError(f"{path} is not a readable HDF5 file (corrupted or another format): "
                              f"{exc}") from exc
    try:
        found = attr(f, "wgflow_type", path, "str", missing="was not written by wgflow (no "
                     "'wgflow_type' attribute)")
        fmt = attr(f, "format_version", path, "int", default=1)
        if fmt > FORMAT_VERSION:
            raise FileFormatError(f"{path} has format version {fmt}, newer than this wgflow "
                                  f"({__version__}) reads ({FORMAT_VERSION}); upgrade wgflow")
        if fmt < 1:
            raise file_error(path, "attribute format_version", f"must be >= 1, got {fmt}")
        if kind is not None and found != kind:
            raise FileFormatError(f"{path} holds a {found}, not a {kind}")
    except BaseException:
        f.close()
        raise
    return f


def _checked_link(parent, name: str, path, what: str):
    where = f"{what} {parent.name.rstrip('/')}/{name}"
    try:
        link = parent.get(name, getlink=True)
    except (KeyError, OSError, RuntimeError) as exc:
        raise file_error(path, where, f"unreadable: {exc}") from exc
    if link is None:
        raise file_error(path, where, "missing")
    if not isinstance(link, h5py.HardLink):
        raise file_error(path, where, f"is a {type(link).__name__}; wgflow files hold their data "
                                      "directly (links to other objects or files are refused)")
    try:
        return parent[name], where
    except (KeyError, OSError, RuntimeError) as exc:
        raise file_error(path, where, f"unreadable: {exc}") from exc


def group(parent, name: str, path) -> h5py.Group:
    """The group ``name`` of ``parent`` (a hard link to a group, nothing else)."""
    obj, where = _checked_link(parent, name, path, "group")
    if not isinstance(obj, h5py.Group):
        raise file_error(path, where, f"is a {type(obj).__name__}, not a group")
    return obj


def dataset(parent, name: str, path, *, kind: str = "f", ndim: int | None = None,
            shape=None) -> h5py.Dataset:
    """The dataset ``name`` of ``parent``, checked but not read.

    A hard link to a dataset stored in this file (no external raw storage, not virtual), of a
    dtype kind in ``kind`` (``"f"`` float, ``"iu"`` integer, ``"b"`` bool...), with ``ndim``
    dimensions and the given ``shape`` (``None`` entries match any length), small enough for
    this machine's memory.
    """
    ds, where = _checked_link(parent, name, path, "dataset")
    if not isinstance(ds, h5py.Dataset):
        raise file_error(path, where, f"is a {type(ds).__name__}, not a dataset")
    if ds.is_virtual:
        raise file_error(path, where, "is a virtual dataset (data mapped from other files); refused")
    try:
        n_ext = ds.id.get_create_plist().get_external_count()
    except (OSError, RuntimeError) as exc:  # pragma: no cover
        raise file_error(path, where, f"unreadable: {exc}") from exc
    if n_ext:
        raise file_error(path, where, "stores its data in external files; refused (a wgflow file "
                                      "holds its data itself)")
    if ds.dtype.kind not in kind:
        raise file_error(path, where, f"has dtype {ds.dtype}, expected "
                                      f"{ {'f': 'float', 'iu': 'integer', 'u': 'unsigned integer', 'b': 'bool'}.get(kind, kind) }")
    if ndim is not None and ds.ndim != ndim:
        raise file_error(path, where, f"must be {ndim}-D, has shape {ds.shape}")
    if shape is not None:
        shape = tuple(shape)
        if ds.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, ds.shape)):
            raise file_error(path, where, f"has shape {ds.shape}, expected "
                                          f"{tuple('any' if s is None else s for s in shape)}")
    with reading(path, where):
        validation.memory(float(ds.size) * ds.dtype.itemsize, f"reading {where}")
    return ds


def read(parent, name: str, path, *, sel=(), **checks) -> np.ndarray:
    """Read a :func:`dataset` (or the selection ``sel`` of it) into memory."""
    ds = dataset(parent, name, path, **checks)
    where = f"dataset {parent.name.rstrip('/')}/{name}"
    with reading(path, where):
        return ds[sel] if sel != () else ds[()]


_NO_DEFAULT = object()


def attr(obj, name: str, path, kind: str, *, default=_NO_DEFAULT, missing: str | None = None):
    """Attribute ``name`` of ``obj`` as ``kind``: ``"str"``, ``"int"``, ``"float"``, ``"bool"``,
    ``"json"`` (a JSON string, parsed) or ``"ints"`` (a 1-D integer array)."""
    where = f"attribute {name} of {obj.name}"
    try:
        present = name in obj.attrs
        val = obj.attrs[name] if present else None
    except (KeyError, OSError, RuntimeError, TypeError, ValueError) as exc:
        # (h5py raises KeyError when the object's header is damaged: "unable to determine
        # object type")
        raise file_error(path, where, f"unreadable: {exc}") from exc
    if not present:
        if default is not _NO_DEFAULT:
            return default
        raise (FileFormatError(f"{path} {missing}") if missing else file_error(path, where, "missing"))
    if isinstance(val, bytes):
        val = val.decode("utf-8", "replace")
    if kind in ("str", "json"):
        if not isinstance(val, str):
            raise file_error(path, where, f"must be a string, got {validation.describe(val)}")
        if kind == "str":
            return val
        try:
            return json.loads(val)
        except ValueError as exc:
            raise file_error(path, where, f"is not valid JSON: {exc}") from exc
    if kind == "int":
        if isinstance(val, np.ndarray) and val.shape == ():
            val = val[()]
        if isinstance(val, (bool, np.bool_)) or not isinstance(val, (int, np.integer)):
            raise file_error(path, where, f"must be an integer, got {validation.describe(val)}")
        return int(val)
    if kind == "float":
        if isinstance(val, np.ndarray) and val.shape == ():
            val = val[()]
        if isinstance(val, (bool, np.bool_)) or not isinstance(val, (int, float, np.integer, np.floating)):
            raise file_error(path, where, f"must be a number, got {validation.describe(val)}")
        return float(val)
    if kind == "bool":
        if isinstance(val, np.ndarray) and val.shape == ():
            val = val[()]
        if not isinstance(val, (bool, np.bool_)):
            raise file_error(path, where, f"must be a boolean, got {validation.describe(val)}")
        return bool(val)
    if kind == "ints":
        a = np.asarray(val)
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise file_error(path, where, f"must be a 1-D integer array, got {validation.describe(val)}")
        return a
    raise ValueError(f"unknown attribute kind {kind!r}")  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------------------------
def jsonable(obj, max_array: int | None = None):
    """JSON-ready copy; arrays become lists (or a placeholder above ``max_array`` elements)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v, max_array) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v, max_array) for v in obj]
    if isinstance(obj, np.ndarray):
        if max_array is not None and obj.size > max_array:
            return f"<array shape={obj.shape}>"
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return repr(obj)          # JSON has no NaN/inf
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


def grid_attr(g) -> str:
    return json.dumps(None if g is None else g.to_dict())


def grid_from_attr(obj, name: str, path):
    """The :class:`Grid` (or None) stored as JSON in attribute ``name``."""
    d = attr(obj, name, path, "json")
    if d is None:
        return None
    with reading(path, f"attribute {name} of {obj.name}"):
        return Grid.from_dict(d)


def digest(*parts) -> str:
    """A hex fingerprint of arrays and strings (dtype, shape and bytes of each)."""
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        if isinstance(p, str):
            h.update(b"s" + p.encode())
        else:
            a = np.ascontiguousarray(p)
            h.update(f"a{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def checksum(arrays) -> np.uint64:
    """64-bit checksum of a frame's values (each converted to its stored dtype beforehand)."""
    h = hashlib.blake2b(digest_size=8)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return np.frombuffer(h.digest(), dtype="<u8")[0]
