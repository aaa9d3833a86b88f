"""Read a dict saved with ``np.save`` as plain data: nothing in the file is executed, big arrays are memory-mapped.

THINGS-EEG2's files (``preprocessed_eeg_{training,test}.npy``, ``image_metadata.npy``) are ``np.save`` of a
Python dict: an ``.npy`` header for a 0-d object array followed by a **pickle** of it. ``np.load(...,
allow_pickle=True)`` would run whatever callable the pickle names. :func:`load_npy_dict` reads the pickle
with an unpickler that admits only numpy arrays (and their dtypes and scalars), dicts, lists, tuples,
strings, bytes, numbers, booleans and ``None``; any other global (``os.system``, ``builtins.eval``, a class
of some library ...) is refused **before** it is looked up, as ``torch.load(weights_only=True)`` does for
``.pth`` files.

Arrays whose raw bytes are stored in one piece outside pickle frames and exceed ``mmap_threshold`` bytes
(the EEG: 16540 × 4 × 63 × 250 float64 is 8.3 GB) are returned as read-only ``np.memmap`` views of the file
instead of being read into memory.
"""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

MMAP_THRESHOLD = 1 << 20  # bytes; smaller arrays are read into memory
# numpy moved its internals from ``numpy.core`` to ``numpy._core`` in 2.0: files of either era are read.
_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMPY_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")


class NotPlainNpyError(ValueError):
    """An ``.npy`` pickle names something other than numpy arrays, dicts, lists, strings and numbers."""


class _Bytes:
    """Raw array bytes left on disk: ``length`` bytes at ``offset`` of the file."""

    def __init__(self, offset: int, length: int) -> None:
        self.offset, self.length = offset, length


class _NDArrayType:
    """Stands for ``numpy.ndarray`` as the first argument of ``_reconstruct`` (the only use it is admitted for)."""


class _ArrayBuilder:
    """What ``numpy...multiarray._reconstruct(ndarray, (0,), b'b')`` becomes: an empty array the pickle's BUILD
    fills through :meth:`__setstate__` with ``(version, shape, dtype, is_fortran, raw)``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.array: np.ndarray | None = None
        self.items: list | None = None  # an object array's items (built in _unwrap)
        self.shape: tuple[int, ...] = ()

    def __setstate__(self, state: tuple) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise NotPlainNpyError(f"{self.path}: an array's pickled state is not numpy's (version, shape, dtype, order, data)")
        shape, dtype, fortran, raw = state[-4:]
        if not isinstance(dtype, np.dtype) or not all(isinstance(n, int) for n in shape):
            raise NotPlainNpyError(f"{self.path}: an array's pickled shape/dtype is malformed")
        order = "F" if fortran else "C"
        if dtype.hasobject:  # an object array's state holds its items (already unpickled, so already checked)
            if not isinstance(raw, list) or len(raw) != int(np.prod(shape)):
                raise NotPlainNpyError(f"{self.path}: an object array's pickled items do not match its shape {shape}")
            self.items, self.shape = raw, tuple(shape)
        elif isinstance(raw, _Bytes):
            self.array = np.memmap(self.path, dtype=dtype, mode="r", offset=raw.offset, shape=tuple(shape), order=order)
        elif isinstance(raw, (bytes, bytearray, str, memoryview)):
            data = raw.encode("latin1") if isinstance(raw, str) else raw  # protocol-2 files store bytes as latin-1 text
            self.array = np.frombuffer(data, dtype=dtype).reshape(shape, order=order).copy(order=order)
        else:
            raise NotPlainNpyError(f"{self.path}: an array's pickled data is a {type(raw).__name__}, not bytes")


def _reconstruct(path: Path):
    def build(subtype, shape, typecode) -> _ArrayBuilder:
        if subtype is not _NDArrayType:
            raise NotPlainNpyError(f"{path}: only plain numpy.ndarray may be rebuilt, not {subtype!r}")
        return _ArrayBuilder(path)

    return build


def _scalar(path: Path):
    def build(dtype, raw=b""):
        if not isinstance(dtype, np.dtype) or dtype.hasobject:
            raise NotPlainNpyError(f"{path}: a pickled numpy scalar of dtype {dtype!r} is not plain data")
        data = raw.encode("latin1") if isinstance(raw, str) else raw
        return np.frombuffer(data, dtype=dtype, count=1)[0]

    return build


def _frombuffer(path: Path):
    """``numpy..._frombuffer(buffer, dtype, shape, order)``: how protocol 5 pickles an array."""

    def build(raw, dtype, shape, order):
        if not isinstance(dtype, np.dtype) or dtype.hasobject or not all(isinstance(n, int) for n in shape):
            raise NotPlainNpyError(f"{path}: a protocol-5 array has a malformed dtype or shape")
        builder = _ArrayBuilder(path)
        builder.__setstate__((1, tuple(shape), dtype, order == "F", raw))
        return builder

    return build


def _dtype(path: Path):
    def build(spec, align=False, copy=True) -> np.dtype:
        if not isinstance(spec, str):
            raise NotPlainNpyError(f"{path}: a pickled dtype is built from a {type(spec).__name__}, not a type string")
        return np.dtype(spec, align=bool(align))

    return build


class _PlainUnpickler(pickle._Unpickler):  # the pure-Python unpickler: its opcodes can be overridden
    """Admits the globals numpy's array pickles need (mapped to the builders above) and nothing else; raw bytes
    longer than ``mmap_threshold`` outside a pickle frame are skipped and left on disk (:class:`_Bytes`)."""

    def __init__(self, file, path: Path, mmap_threshold: int) -> None:
        super().__init__(file)
        self.file, self.path, self.mmap_threshold = file, path, mmap_threshold
        self.dispatch = dict(pickle._Unpickler.dispatch)
        self.dispatch[pickle.BINBYTES[0]] = lambda self: self._bytes("<I")
        self.dispatch[pickle.BINBYTES8[0]] = lambda self: self._bytes("<Q")
        self.dispatch[pickle.BYTEARRAY8[0]] = lambda self: self._bytes("<Q")  # protocol 5, in-band buffers

    def _bytes(self, length_format: str) -> None:
        (length,) = struct.unpack(length_format, self.read(struct.calcsize(length_format)))
        if length > self.mmap_threshold and self._unframer.current_frame is None:
            offset = self.file.tell()
            self.file.seek(length, os.SEEK_CUR)
            self.append(_Bytes(offset, length))
        else:
            self.append(self.read(length))

    def find_class(self, module: str, name: str):
        if module in _NUMPY_CORE and name == "_reconstruct":
            return _reconstruct(self.path)
        if module in _NUMPY_CORE and name == "scalar":
            return _scalar(self.path)
        if module in _NUMPY_NUMERIC and name == "_frombuffer":
            return _frombuffer(self.path)
        if module == "numpy" and name == "ndarray":
            return _NDArrayType
        if module == "numpy" and name == "dtype":
            return _dtype(self.path)
        if module == "_codecs" and name == "encode":  # protocol-2 pickles spell bytes as codecs.encode(text, "latin1")
            return lambda text, encoding="utf-8": str(text).encode(str(encoding))
        raise NotPlainNpyError(
            f"{self.path} is not a plain data file: its pickle names {module}.{name}, which is not a numpy array, "
            "dict, list, string or number. It was refused without running anything. Get the original file "
            "(THINGS-EEG2 on OSF, see data/README.md) or re-save its contents as plain arrays"
        )

    def load(self) -> Any:
        return _unwrap(super().load())


def _unwrap(value: Any) -> Any:
    """Replace array builders by their arrays, recursively through dicts, lists and tuples."""
    if isinstance(value, _ArrayBuilder):
        if value.items is not None:
            array = np.empty(value.shape, dtype=object)
            flat = array.reshape(-1)
            for i, item in enumerate(value.items):
                flat[i] = _unwrap(item)
            return array
        if value.array is None:
            raise NotPlainNpyError(f"{value.path}: an array in the pickle was never filled (no BUILD): the file is malformed")
        return value.array
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_unwrap(v) for v in value)
    return value


def load_npy_dict(
    path: str | os.PathLike, what: str = "file", mmap_threshold: int = MMAP_THRESHOLD, keys: tuple[str, ...] = ()
) -> dict:
    """The dict that ``np.save(path, a_dict)`` stored, read without executing anything.

    Raises ``FileNotFoundError`` (absent), :class:`NotPlainNpyError` (the pickle names anything but plain
    data), ``ValueError`` (not an ``.npy`` file, not a pickled object, not a dict), ``KeyError`` naming the
    ``keys`` the dict lacks.
    """
    content = _load_npy_dict(Path(path), what, mmap_threshold)
    missing = [k for k in keys if k not in content]
    if missing:
        raise KeyError(
            f"{path} lacks key(s) {', '.join(map(repr, missing))} (it has {sorted(map(str, content))}); {what}: "
            f"a dict with {', '.join(keys)}"
        )
    return content


def _load_npy_dict(path: Path, what: str, mmap_threshold: int) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist; see data/README.md for where it goes")
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f)
        except ValueError as err:
            raise ValueError(f"{what} {path} is not an .npy file ({err}); fetch it again") from None
        if dtype != np.dtype(object) or shape != ():
            raise ValueError(
                f"{what} {path} holds a plain {dtype} array of shape {shape}, not a saved dict (np.save of a dict)"
            )
        try:
            content = _PlainUnpickler(f, path, mmap_threshold).load()
        except NotPlainNpyError:
            raise
        except Exception as err:  # noqa: BLE001 - truncated or malformed pickle: name the file
            raise ValueError(
                f"{what} {path} could not be read ({type(err).__name__}: {err}); the file may be truncated: fetch it again"
            ) from None
    if isinstance(content, np.ndarray) and content.dtype.hasobject and content.shape == ():
        content = content.item()
    if not isinstance(content, dict):
        raise ValueError(f"{what} {path} holds a {type(content).__name__}, not a dict")
    return content
