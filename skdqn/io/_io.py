"""Storing arrays plus a JSON header without pickle, readable memory-mapped.

Two layouts hold the same content, a small JSON header and named numpy
arrays (``.npy`` format):

* a **directory**: ``header.json`` and one ``<name>.npy`` file per array;
* a **single file**: an uncompressed ZIP archive (the ``.npz`` layout of
  :func:`numpy.savez`, so :func:`numpy.load` opens it too) with the members
  ``header.json`` and ``<name>.npy``.

Both are read back with ``mmap_mode`` (as :func:`numpy.load` takes it): the
arrays then stay on disk and are paged in as they are read, which is how an
index larger than memory is searched. In the single file this works because
the members are stored, not compressed: each array is a contiguous byte range
of the archive, mapped at its offset.

Nothing here unpickles: object arrays are refused when writing and when
reading (``allow_pickle=False``).

Trust on load: every array's bytes and the header itself carry a CRC-32 in
the header (``checksums``, ``header_crc32``), verified by :func:`read_bundle`
(also for memory-mapped arrays, by reading their bytes once; ``verify=False``
skips it), so a truncated or damaged file gives a ``ValueError`` that names
it, never a different index or a crash. Bundles written before checksums
existed still load. Writing never touches the bundle being replaced: the new
one is written beside it and swapped in (:func:`os.replace` for a file, two
renames for a directory), so arrays memory-mapped from the old bundle stay
valid and an interrupted save leaves the old bundle intact.

Concurrency: saves into one directory hold an exclusive ``flock`` of that
directory (no lock file; where ``fcntl`` exists), so concurrent saves to one
path run one after the other and leave exactly one bundle, the last, and no
temporary or old copies; a failed save raises an ``OSError`` naming the
user's path. A read takes every member from one open file (the ``.npz``) or
through one open directory descriptor, never by name again, so a save that
replaces the bundle meanwhile cannot mix two bundles, with or without
checksums (a directory member deleted under the reader is read again, up to
three times, then a ``ValueError``). Each member's declared shape is compared
with the bytes it holds before anything is read or mapped (a forged shape is
a ``ValueError``, not a ``MemoryError``).

Headers are strict JSON: non-finite floats are written as ``{"$float":
"nan" | "inf" | "-inf"}`` and mapped back on reading; headers written with
``NaN``/``Infinity`` literals still load.

Every bundle's header names its ``format`` (e.g. ``"skdqn.AQDNeighbors"``)
and ``format_version``, and the skdqn version that wrote it
(:func:`format_header`); :func:`check_header` refuses, with a ``ValueError``
naming the file, a header that is not a JSON object, of another format, or
of a version newer than the reader knows.
"""

import contextlib
import json
import math
import os
import shutil
import struct
import tokenize
import uuid
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .._version import __version__

__all__ = ["write_bundle", "read_bundle", "format_header", "check_header"]

HEADER_NAME = "header.json"
_CHECKSUMS = "checksums"  # header field: CRC-32 of each array's .npy bytes
_HEADER_CRC = "header_crc32"  # header field: CRC-32 of the rest of the header
_READ_CHUNK = 1 << 24  # bytes read at a time when verifying
_ZIP_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes, see the ZIP specification
_ZIP_LOCAL_SIGNATURE = b"PK\x03\x04"
# What numpy raises for a damaged .npy header (a flipped byte in its dict can
# make it unparsable Python: SyntaxError, or tokenize's TokenError).
_NPY_ERRORS = (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError)


def _check_saveable(name, array):
    if array.dtype.hasobject:
        raise ValueError(
            f"cannot save {name!r}: it is an array of Python objects (dtype=object), which "
            "only pickle can store; use numbers, strings or booleans."
        )


class _CRCWriter:
    """A write-only file wrapper that keeps the CRC-32 of what passes through."""

    def __init__(self, fileobj):
        self.fileobj = fileobj
        self.crc = 0

    def write(self, data):
        self.crc = zlib.crc32(data, self.crc)
        return self.fileobj.write(data)


def _write_npy(fileobj, array, chunk_rows):
    """Write ``array`` as .npy (a memory-mapped one in row blocks); return the CRC-32."""
    out = _CRCWriter(fileobj)
    if not isinstance(array, np.memmap) or array.ndim == 0:
        np.lib.format.write_array(out, np.ascontiguousarray(array), allow_pickle=False)
        return out.crc
    header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False,
              "shape": array.shape}
    np.lib.format.write_array_header_2_0(out, header)
    for start in range(0, array.shape[0], chunk_rows):
        out.write(np.ascontiguousarray(array[start : start + chunk_rows]).tobytes())
    return out.crc


_FLOAT_KEY = "$float"  # {"$float": "nan" | "inf" | "-inf"}: a non-finite float in strict JSON
_SPECIAL_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _json_safe(value):
    """``value`` with every NaN or infinite float replaced by ``{"$float": "nan" | "inf" | "-inf"}``."""
    if isinstance(value, float) and not math.isfinite(value):
        return {_FLOAT_KEY: "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def _from_json_safe(value):
    """The inverse of :func:`_json_safe` (headers written before it hold plain NaN/Infinity)."""
    if isinstance(value, dict):
        if len(value) == 1 and value.get(_FLOAT_KEY) in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[value[_FLOAT_KEY]]
        return {key: _from_json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_json_safe(item) for item in value]
    return value


def _header_text(header, checksums):
    """The header as written, strict JSON: with the arrays' and its own CRC-32."""
    full = {**_json_safe(header), _CHECKSUMS: checksums}
    full[_HEADER_CRC] = _header_crc(full)
    return json.dumps(full, indent=1, sort_keys=True, allow_nan=False) + "\n"


def _header_crc(header):
    rest = {key: value for key, value in header.items() if key != _HEADER_CRC}
    return zlib.crc32(json.dumps(rest, sort_keys=True).encode("utf-8"))


def write_bundle(path, header, arrays, *, chunk_rows=1 << 20):
    """Write a JSON ``header`` and named ``arrays`` to a directory or a single file.

    Parameters
    ----------
    path : str or path-like
        A name ending in ``.npz`` writes one file; anything else a directory.
        An existing bundle there is replaced as a whole (written beside it,
        then swapped in); an existing directory that is not an skdqn bundle
        (no ``header.json``) and not empty is refused.
    header : dict
        JSON-serialisable metadata.
    arrays : dict of str to ndarray
        Arrays to store (memory-mapped arrays are copied block by block).
    chunk_rows : int, default=1048576
        Rows copied at a time from a memory-mapped array.

    Returns
    -------
    path : pathlib.Path
        Where the bundle was written.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from skdqn.io._io import write_bundle, read_bundle
    >>> path = os.path.join(tempfile.mkdtemp(), "bundle.npz")
    >>> _ = write_bundle(path, {"kind": "demo"}, {"x": np.arange(3)})
    >>> header, arrays = read_bundle(path)
    >>> header["kind"], arrays["x"]
    ('demo', array([0, 1, 2]))
    """
    path = Path(os.fspath(path))
    for name, array in arrays.items():
        _check_saveable(name, np.asanyarray(array))
    for key in (_CHECKSUMS, _HEADER_CRC):
        if key in header:
            raise ValueError(f"the header field {key!r} is reserved.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _saving_lock(path.parent):
            _write_and_swap(path, header, arrays, chunk_rows)
    except OSError as exc:  # name the user's path, not a temporary one
        raise OSError(exc.errno, f"could not save to {path}: {exc.strerror or exc}") from exc
    return path


@contextlib.contextmanager
def _saving_lock(folder):
    """Hold an exclusive lock on ``folder`` (``flock`` of the directory itself), where available.

    Saves into one directory then run one at a time, across threads and
    processes, so two saves to one path cannot interleave their renames:
    the last one wins, whole, and no copy is left behind. No lock file is
    created. Without ``fcntl`` (Windows) or where the file system refuses
    the lock, saves run unlocked.
    """
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


def _write_and_swap(path, header, arrays, chunk_rows):
    """Write the bundle beside ``path`` and swap it in; the temporary copy never outlives the call."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        if path.suffix == ".npz":
            _write_archive(tmp, header, arrays, chunk_rows)
            os.replace(tmp, path)
        else:
            _check_replaceable_directory(path)
            _write_directory(tmp, header, arrays, chunk_rows)
            _swap_directory(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def _write_archive(path, header, arrays, chunk_rows):
    checksums = {}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, array in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                checksums[name] = _write_npy(member, array, chunk_rows)
        zf.writestr(HEADER_NAME, _header_text(header, checksums))


def _write_directory(path, header, arrays, chunk_rows):
    path.mkdir()
    checksums = {}
    for name, array in arrays.items():
        with open(path / f"{name}.npy", "wb") as f:
            checksums[name] = _write_npy(f, array, chunk_rows)
    (path / HEADER_NAME).write_text(_header_text(header, checksums))


def _check_replaceable_directory(path):
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a directory; pass a directory or a name ending in .npz.")
    if path.is_dir() and not (path / HEADER_NAME).exists() and any(path.iterdir()):
        raise ValueError(
            f"{path} is a directory that holds other files and no {HEADER_NAME}: refusing to "
            "replace it with a saved bundle. Pass a new or empty directory."
        )


def _swap_directory(new, path):
    """Put directory ``new`` at ``path``; the old one is renamed away, then deleted.

    Files of the old bundle that are memory-mapped stay valid: they are
    unlinked, not truncated.
    """
    if not path.exists():
        os.replace(new, path)
        return
    old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:12]}")
    os.replace(path, old)
    try:
        os.replace(new, path)
    except OSError:
        os.replace(old, path)  # put the old bundle back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _read_npy_header(f):
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    if dtype.hasobject:
        raise ValueError("refusing to load an array of Python objects (it would need pickle).")
    return shape, fortran, dtype


def _member_data_offset(f, info, path):
    """Byte offset in the archive (open as ``f``) of a stored member's data."""
    f.seek(info.header_offset)
    fields = _ZIP_LOCAL_HEADER.unpack(f.read(_ZIP_LOCAL_HEADER.size))
    if fields[0] != _ZIP_LOCAL_SIGNATURE:
        raise ValueError(f"{path}: corrupt archive (bad local header of {info.filename}).")
    name_len, extra_len = fields[9], fields[10]
    return info.header_offset + _ZIP_LOCAL_HEADER.size + name_len + extra_len


def _npy_layout(f, start, size):
    """``(shape, dtype, order, data offset)`` of the .npy at ``start`` of ``f``, its size checked.

    The declared shape must fit in the ``size`` bytes the member holds: a
    forged header claiming a huge shape is refused here, before anything
    is allocated or mapped.
    """
    f.seek(start)
    shape, fortran, dtype = _read_npy_header(f)
    offset = f.tell()
    needed = offset - start + math.prod(shape) * dtype.itemsize
    if needed > size:
        raise ValueError(f"its header declares shape {shape} of {dtype} ({needed} bytes), but it holds {size} bytes")
    return shape, dtype, "F" if fortran else "C", offset


def _read_npy(f, start, size, mmap_mode):
    """The .npy at ``start`` of the open file ``f`` (``size`` bytes), read or memory-mapped from ``f``.

    Mapping the open file, not its name, keeps every member of a bundle
    from the one file (or directory) opened, even if a save replaces the
    path meanwhile.
    """
    shape, dtype, order, offset = _npy_layout(f, start, size)
    if mmap_mode is None:
        f.seek(start)
        return np.lib.format.read_array(f, allow_pickle=False)
    if math.prod(shape) == 0:  # np.memmap cannot map zero bytes
        return np.empty(shape, dtype=dtype, order=order)
    return np.memmap(f, dtype=dtype, mode=mmap_mode, offset=offset, shape=shape, order=order)


def _crc_of_range(f, start, size):
    crc = 0
    f.seek(start)
    while size > 0:
        data = f.read(min(size, _READ_CHUNK))
        if not data:
            break
        crc = zlib.crc32(data, crc)
        size -= len(data)
    return crc


def _damaged(path, member, exc):
    return ValueError(f"{path}: {member} is truncated or damaged ({type(exc).__name__}: {exc}).")


def read_bundle(path, mmap_mode=None, *, verify=True):
    """Read what :func:`write_bundle` wrote: ``(header, arrays)``.

    Parameters
    ----------
    path : str or path-like
        The directory or the single ``.npz`` file.
    mmap_mode : {None, "r", "r+", "c"}, default=None
        ``None`` reads the arrays into memory; otherwise they are memory-mapped
        with this mode (see :func:`numpy.load`).
    verify : bool, default=True
        Check the CRC-32 of the header and of every array (memory-mapped ones
        are read once for it). Bundles without checksums are not checked.

    Returns
    -------
    header : dict
        As given to :func:`write_bundle`.
    arrays : dict of str to ndarray (or numpy.memmap)

    Raises
    ------
    ValueError
        For anything that is not an intact bundle: a missing or damaged
        header, a truncated or damaged array, a checksum that does not match;
        the message names the file.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from skdqn.io._io import write_bundle, read_bundle
    >>> folder = os.path.join(tempfile.mkdtemp(), "bundle")
    >>> _ = write_bundle(folder, {"n": 2}, {"codes": np.zeros((2, 4), np.uint8)})
    >>> header, arrays = read_bundle(folder, mmap_mode="r")
    >>> type(arrays["codes"]).__name__, arrays["codes"].shape
    ('memmap', (2, 4))
    """
    if mmap_mode not in (None, "r", "r+", "c"):
        raise ValueError(f"mmap_mode must be None, 'r', 'r+' or 'c'; got {mmap_mode!r}.")
    path = Path(os.fspath(path))
    if not path.exists():
        raise FileNotFoundError(f"no saved index at {path}.")
    if path.is_dir():
        for attempt in range(_READ_ATTEMPTS):  # a save may replace the directory as it is read
            try:
                header, arrays, crcs = _read_directory(path, mmap_mode, verify)
                break
            except _Replaced:
                if attempt == _READ_ATTEMPTS - 1:
                    raise
    else:
        try:
            header, arrays, crcs = _read_archive(path, mmap_mode, verify)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, struct.error) as exc:
            raise ValueError(f"{path} is not an intact single-file (.npz) skdqn bundle ({exc}).") from None
    if verify:
        _verify(path, header, crcs)
    if isinstance(header, dict):
        for key in (_CHECKSUMS, _HEADER_CRC):
            header.pop(key, None)
    return _from_json_safe(header), arrays


_READ_ATTEMPTS = 3  # reads of a directory bundle that a concurrent save replaced, before giving up


class _Replaced(ValueError):
    """A directory bundle was replaced by a save while being read (read it again)."""


@contextlib.contextmanager
def _directory_opener(path):
    """``(names, open_member)`` of a bundle directory, every member opened through one directory fd.

    A save replaces a directory bundle by renaming a new directory into
    place; members opened relative to the directory opened first all belong
    to that one bundle (a member deleted meanwhile is a clear error, never
    a member of the other bundle). Without ``dir_fd`` support (Windows),
    members are opened by path.
    """
    if os.open not in os.supports_dir_fd or os.listdir not in os.supports_fd:
        yield os.listdir(path), lambda name, mode: open(path / name, mode)
        return
    dir_fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    flags = {"rb": os.O_RDONLY, "r+b": os.O_RDWR}

    def open_member(name, mode):
        return os.fdopen(os.open(name, flags[mode], dir_fd=dir_fd), mode)

    try:
        yield os.listdir(dir_fd), open_member
    finally:
        os.close(dir_fd)


def _read_directory(path, mmap_mode, verify):
    mode = "r+b" if mmap_mode == "r+" else "rb"
    try:
        with _directory_opener(path) as (names, open_member):
            if HEADER_NAME not in names:
                raise ValueError(f"{path} is not a saved skdqn bundle: it has no {HEADER_NAME}.")
            with open_member(HEADER_NAME, "rb") as f:
                header = _parse_header(f.read(), path)
            arrays, crcs = {}, {}
            for name in sorted(n for n in names if n.endswith(".npy")):
                with open_member(name, mode) as f:
                    size = os.fstat(f.fileno()).st_size
                    try:
                        arrays[name[: -len(".npy")]] = _read_npy(f, 0, size, mmap_mode)
                    except _NPY_ERRORS as exc:
                        raise _damaged(path, name, exc) from None
                    if verify:
                        crcs[name[: -len(".npy")]] = _crc_of_range(f, 0, size)
    except FileNotFoundError:
        raise _Replaced(
            f"{path}: a member disappeared while being read (the bundle was replaced by a save); "
            "load it again."
        ) from None
    return header, arrays, crcs


def _read_archive(path, mmap_mode, verify):
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is neither a directory nor a single-file (.npz) skdqn bundle.")
    with open(path, "r+b" if mmap_mode == "r+" else "rb") as raw, zipfile.ZipFile(raw) as zf:
        if HEADER_NAME not in zf.namelist():
            raise ValueError(f"{path} is not a saved skdqn bundle: it has no {HEADER_NAME}.")
        header = _parse_header(zf.read(HEADER_NAME), path)
        arrays, crcs = {}, {}
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[: -len(".npy")]
            try:
                arrays[name] = _read_member(raw, zf, info, path, mmap_mode)
            except (*_NPY_ERRORS, zipfile.BadZipFile) as exc:
                raise _damaged(path, info.filename, exc) from None
            if verify:
                crcs[name] = _crc_of_range(raw, _member_data_offset(raw, info, path), info.file_size)
    return header, arrays, crcs


def _read_member(raw, zf, info, path, mmap_mode):
    """One ``.npy`` member of the archive open as ``raw``: stored ones straight from ``raw``."""
    if info.compress_type == zipfile.ZIP_STORED:
        return _read_npy(raw, _member_data_offset(raw, info, path), info.file_size, mmap_mode)
    if mmap_mode is not None:
        raise ValueError(
            f"{path}: member {info.filename} is compressed and cannot be memory-mapped; "
            "load with mmap_mode=None, or save again with skdqn (which stores, not compresses)."
        )
    with zf.open(info) as member:  # e.g. numpy.savez_compressed: check the declared size first
        _npy_layout(member, 0, info.file_size)
    with zf.open(info) as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def _verify(path, header, crcs):
    """Compare the stored checksums with the ones read; a bundle without any is accepted."""
    if not isinstance(header, dict) or (_HEADER_CRC not in header and _CHECKSUMS not in header):
        return
    if header.get(_HEADER_CRC) != _header_crc(header):
        raise ValueError(f"{path}: {HEADER_NAME} is damaged (its checksum does not match).")
    stored = header.get(_CHECKSUMS)
    if not isinstance(stored, dict) or set(stored) != set(crcs):
        raise ValueError(
            f"{path}: the arrays present ({sorted(crcs)}) are not the ones the header lists "
            f"({sorted(stored) if isinstance(stored, dict) else stored!r})."
        )
    for name, crc in crcs.items():
        if stored[name] != crc:
            raise ValueError(f"{path}: {name}.npy is damaged (its checksum does not match).")


def format_header(format_name, format_version):
    """The identifying fields every bundle's header starts with.

    Parameters
    ----------
    format_name : str
        What the bundle holds, e.g. ``"skdqn.AQDNeighbors"``.
    format_version : int
        Version of that layout; raised when the layout changes.

    Returns
    -------
    header : dict
        ``format``, ``format_version`` and ``skdqn_version``.

    Examples
    --------
    >>> from skdqn.io._io import format_header
    >>> sorted(format_header("skdqn.AQDNeighbors", 1))
    ['format', 'format_version', 'skdqn_version']
    """
    return {"format": format_name, "format_version": int(format_version), "skdqn_version": __version__}


def check_header(header, path, format_name, max_version, *, what):
    """Raise a ValueError unless ``header`` is a ``format_name`` header this skdqn reads.

    Parameters
    ----------
    header : object
        The parsed ``header.json``.
    path : str or path-like
        The bundle, named in messages.
    format_name : str
        The expected ``format`` field.
    max_version : int
        The newest ``format_version`` this skdqn reads.
    what : str
        What the bundle should hold, for messages (e.g. ``"an AQDNeighbors index"``).

    Returns
    -------
    format_version : int

    Examples
    --------
    >>> from skdqn.io._io import check_header, format_header
    >>> check_header(format_header("skdqn.demo", 1), "demo", "skdqn.demo", 1, what="a demo")
    1
    """
    if not isinstance(header, dict):
        raise ValueError(
            f"{path}: {HEADER_NAME} must hold a JSON object; got a JSON {type(header).__name__}."
        )
    if header.get("format") != format_name:
        raise ValueError(f"{path} does not hold {what} (format={header.get('format')!r}).")
    version = header.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"{path}: {HEADER_NAME} has format_version={version!r}; expected an integer.")
    if version > max_version:
        raise ValueError(
            f"{path} was written by a newer skdqn (format version {version}); "
            f"this one reads version {max_version}."
        )
    return version


def _parse_header(text, path):
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: {HEADER_NAME} is not valid JSON ({exc}).") from None
