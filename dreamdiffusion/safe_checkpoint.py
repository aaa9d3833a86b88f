"""Read a ``torch.save`` file without running anything from it: tensors and plain containers come back,
every other pickled object becomes an inert :class:`SkippedObject`.

``torch.load(..., weights_only=True)`` refuses a file that pickles any object outside its allow-list (the
authors' checkpoint holds their ``config.Config_Generative_Model``); ``weights_only=False`` would import and
run whatever the file names. :func:`read_checkpoint` does neither: it rebuilds tensors from the zip archive's
storages itself and replaces each global the pickle names — a class, a function, ``os.system`` — by a record
class that stores the arguments it is called with and the state it is given. No module is imported on the
file's behalf and no callable from the file is ever called; :attr:`SafeCheckpoint.skipped` lists the globals
that were turned into records.

Supported: the zip format ``torch.save`` writes since torch 1.6 (little-endian storages); tensors, parameters
(read as tensors), ``dict``/``OrderedDict``/``list``/``tuple``/``set`` and scalars.
"""

from __future__ import annotations

import io
import mmap
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

# torch.<Name>Storage → element type; what a pickled storage reference names as its type.
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128,
    "UntypedStorage": torch.uint8,
}


class SkippedObject:
    """Stands in for an object of a class (or the result of a function) that the file names but that is not
    rebuilt. ``name`` is the pickled global (``module.qualname``); ``args``, ``kwargs``, ``state`` and ``items``
    are what the pickle handed it. Nothing it receives is executed."""

    name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> SkippedObject:
        record = object.__new__(cls)
        record.args, record.kwargs, record.state, record.items = args, kwargs, None, []
        return record

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # called by REDUCE after __new__; all is recorded
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    def append(self, value: Any) -> None:
        self.items.append(value)

    def extend(self, values: Any) -> None:
        self.items.extend(values)

    def fields(self) -> dict:
        """The recorded attributes when the object was pickled with a ``__dict__`` state, else ``{}``."""
        state = self.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = state[0]  # (__dict__, __slots__ state)
        return dict(state) if isinstance(state, dict) else {}

    def __repr__(self) -> str:
        return f"<skipped {self.name}>"


@dataclass
class _StorageRef:
    """One storage of the archive: ``nbytes`` at ``offset`` of ``buffer`` (the file, memory-mapped copy-on-write,
    or the entry's bytes when it is compressed or misaligned)."""

    buffer: Any
    offset: int
    nbytes: int
    dtype: torch.dtype

    def tensor(self, dtype: torch.dtype | None = None) -> Tensor:
        dtype = dtype or self.dtype
        size = torch.empty(0, dtype=dtype).element_size()
        if self.nbytes == 0:
            return torch.empty(0, dtype=dtype)
        if self.nbytes % size:
            raise ValueError(f"a storage of {self.nbytes} bytes does not hold whole {dtype} elements")
        return torch.frombuffer(self.buffer, dtype=dtype, count=self.nbytes // size, offset=self.offset)


def _rebuild_tensor(storage: _StorageRef, offset: int, size, stride, requires_grad=False, hooks=None, metadata=None) -> Tensor:
    return storage.tensor().as_strided(tuple(size), tuple(stride), int(offset))


def _rebuild_tensor_v3(storage: _StorageRef, offset: int, size, stride, requires_grad, hooks, dtype, metadata=None) -> Tensor:
    return storage.tensor(dtype).as_strided(tuple(size), tuple(stride), int(offset))


def _rebuild_parameter(data: Tensor, requires_grad=False, hooks=None, state=None) -> Tensor:
    return data  # a plain tensor: a state dict needs the values, not the Parameter wrapper


def _rebuild_from_type(func, new_type, args, state) -> Any:
    """``Tensor.__reduce_ex__`` of a tensor with a subclass or attributes: rebuilt as the plain tensor."""
    if func in (_rebuild_tensor, _rebuild_tensor_v3, _rebuild_parameter):
        return func(*args)
    return _record_class("torch._tensor._rebuild_from_type_v2")(func, new_type, args, state)


# A tensor type named as the ``new_type`` of _rebuild_from_type; not callable, so never constructed.
_TENSOR_TYPE = object()

# The only globals rebuilt for real: our own tensor builders and plain containers.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch", "Tensor"): _TENSOR_TYPE,
    ("torch.nn.parameter", "Parameter"): _TENSOR_TYPE,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
}

_RECORD_CLASSES: dict[str, type] = {}


def _record_class(name: str) -> type:
    if name not in _RECORD_CLASSES:
        _RECORD_CLASSES[name] = type("SkippedObject", (SkippedObject,), {"name": name})
    return _RECORD_CLASSES[name]


@dataclass(frozen=True)
class _StorageType:
    name: str
    dtype: torch.dtype


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, file_map: mmap.mmap | None, prefix: str, source: str) -> None:
        super().__init__(io.BytesIO(data))
        self.archive, self.file_map, self.prefix, self.source = archive, file_map, prefix, source
        self.storages: dict[str, _StorageRef] = {}
        self.skipped: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[module, name]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)  # a dtype is a constant, not code
        self.skipped.add(f"{module}.{name}")
        return _record_class(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise ValueError(f"{self.source}: unexpected storage reference {pid!r}; is this a torch.save file?")
        _, storage_type, key, _location, _numel = pid
        key = str(key)
        if key not in self.storages:
            try:
                info = self.archive.getinfo(f"{self.prefix}data/{key}")
            except KeyError:
                raise ValueError(f"{self.source}: storage {key} is missing from the archive (a truncated download?)") from None
            self.storages[key] = self._storage(info, storage_type.dtype)
        return self.storages[key]

    def _storage(self, info: zipfile.ZipInfo, dtype: torch.dtype) -> _StorageRef:
        """torch.save stores storages uncompressed and 64-byte aligned: then the tensor views the mapped file
        (no copy in memory); otherwise the entry is read."""
        if self.file_map is not None and info.compress_type == zipfile.ZIP_STORED:
            header = self.file_map[info.header_offset : info.header_offset + 30]
            if header[:4] == b"PK\x03\x04":
                name_length, extra_length = struct.unpack("<HH", header[26:30])
                start = info.header_offset + 30 + name_length + extra_length
                if start % 64 == 0 and start + info.file_size <= len(self.file_map):
                    return _StorageRef(self.file_map, start, info.file_size, dtype)
        data = bytearray(self.archive.read(info))
        return _StorageRef(data, 0, len(data), dtype)


def _map_file(path: Path) -> mmap.mmap | None:
    """The file mapped copy-on-write (tensors viewing it are writable; the file never changes)."""
    with open(path, "rb") as f:
        try:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        except (OSError, ValueError):  # e.g. a file system without mmap: read the entries instead
            return None


@dataclass
class SafeCheckpoint:
    """What :func:`read_checkpoint` found: the unpickled object and the globals it skipped."""

    content: Any
    skipped: list[str] = field(default_factory=list)


def read_checkpoint(path: str | Path) -> SafeCheckpoint:
    """Unpickle the ``torch.save`` file ``path`` without executing anything from it.

    Tensors come back as CPU tensors (parameters as plain tensors) that view the memory-mapped file where they
    can (copy-on-write: changing them never changes the file); every other global the file names is returned
    as an inert :class:`SkippedObject` and listed in :attr:`SafeCheckpoint.skipped`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; give the checkpoint file (e.g. checkpoint.pth)")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a zip-format torch.save file (the format of torch >= 1.6); re-save it with a recent "
            "torch, or check that the download is complete"
        )
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ValueError(f"{path}: expected one <name>/data.pkl in the archive, found {pickles or 'none'}")
        prefix = pickles[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in archive.namelist() and archive.read(f"{prefix}byteorder").strip() != b"little":
            raise ValueError(f"{path} was written on a big-endian machine; only little-endian files are read")
        unpickler = _SafeUnpickler(archive.read(pickles[0]), archive, _map_file(path), prefix, str(path))
        try:
            content = unpickler.load()
        except (pickle.UnpicklingError, EOFError, TypeError, AttributeError) as e:
            raise ValueError(f"{path}: its pickle could not be read safely ({type(e).__name__}: {e})") from None
    return SafeCheckpoint(content, sorted(unpickler.skipped))


__all__ = ["SafeCheckpoint", "SkippedObject", "read_checkpoint"]
