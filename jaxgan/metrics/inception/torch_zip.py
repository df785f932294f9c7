"""Reading torch zip files (`torch.save` and TorchScript archives) without torch.

A pickle from a file is arbitrary code execution unless restricted: the unpickler here resolves
only the globals that a saved tree of tensors needs and refuses every other one before it is
looked up. Tensors come back as numpy arrays.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import pickle
import zipfile
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np


class UnsafePickleError(ValueError):
    """A weights file's pickle names a global outside the allowlist; nothing was executed."""


@dataclasses.dataclass(frozen=True)
class _StorageType:
    """Stands in for a `torch.<Name>Storage` class: only its element dtype matters."""

    name: str
    dtype: np.dtype


_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": jnp.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class TorchScriptObject:
    """Plain attribute container standing in for a `__torch__.*` TorchScript module class."""


@functools.cache
def _torchscript_container_class(module: str, name: str) -> type:
    return type(name, (TorchScriptObject,), {"__module__": module, "__qualname__": name})


def _rebuild_tensor_v2(
    storage: np.ndarray,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool,
    backward_hooks: Any,
    metadata: Any = None,
) -> np.ndarray:
    """Builds a numpy copy of a torch tensor view: `size` elements from `storage` by `stride`."""
    del requires_grad, backward_hooks, metadata  # Autograd state has no numpy counterpart.
    size = tuple(int(dim) for dim in size)
    stride = tuple(int(step) for step in stride)
    if len(size) != len(stride) or storage_offset < 0 or min(stride, default=0) < 0:
        raise ValueError(
            f"Malformed tensor: size {size}, stride {stride}, offset {storage_offset}."
        )
    if 0 in size:
        return np.zeros(size, storage.dtype)
    last_index = storage_offset + sum(
        (dim - 1) * step for dim, step in zip(size, stride, strict=True)
    )
    if last_index >= storage.size:
        raise ValueError(
            f"Malformed tensor: size {size} and stride {stride} at offset {storage_offset} reach "
            f"element {last_index} of a storage of {storage.size} elements."
        )
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:],
        shape=size,
        strides=tuple(step * storage.itemsize for step in stride),
        writeable=False,
    )
    return np.array(view)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a torch zip's `data.pkl`, resolving only the globals a saved tensor tree needs.

    Storages are read from the zip's `data/<key>` records with numpy. Any other global raises
    `UnsafePickleError` before it is looked up, so no code named by the file ever runs.
    """

    def __init__(self, archive: zipfile.ZipFile, record_prefix: str):
        super().__init__(archive.open(record_prefix + "data.pkl"))
        self._archive = archive
        self._record_prefix = record_prefix
        self._storages: dict[str, np.ndarray] = {}
        byteorder_record = record_prefix + "byteorder"
        byteorder = "little"
        if byteorder_record in archive.namelist():
            byteorder = archive.read(byteorder_record).decode().strip()
        self._byteorder = "<" if byteorder == "little" else ">"

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, np.dtype(_STORAGE_DTYPES[name]))
        if (module, name) == ("torch.jit._pickle", "build_intlist"):
            return list
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module.startswith("__torch__.") and name.isidentifier():
            return _torchscript_container_class(module, name)
        raise UnsafePickleError(
            f"Refusing to load global '{module}.{name}' from a weights pickle: only torch tensor "
            "rebuilding, storages, int lists, OrderedDict and TorchScript containers are allowed. "
            "The file is not a plain saved tensor tree; it may be malicious."
        )

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise ValueError(f"Unsupported persistent id in weights pickle: {pid!r}.")
        _, storage_type, key, _, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise ValueError(f"Persistent id names no torch storage type: {pid!r}.")
        if key not in self._storages:
            raw = self._archive.read(f"{self._record_prefix}data/{key}")
            dtype = storage_type.dtype.newbyteorder(self._byteorder)
            if len(raw) < numel * dtype.itemsize:
                raise ValueError(
                    f"Storage {key} holds {len(raw)} bytes, fewer than {numel} x {dtype.itemsize}."
                )
            self._storages[key] = np.frombuffer(raw, dtype, count=numel).astype(
                dtype.newbyteorder("=")
            )
        return self._storages[key]


def read_torch_zip(path: str) -> Any:
    """Unpickles the object tree of a torch zip file (`torch.save` or TorchScript).

    Args:
        path: The .pt/.pth file.

    Returns:
        The tree: dicts, `TorchScriptObject`s and numpy arrays in place of tensors.

    Raises:
        UnsafePickleError: the pickle names a global outside the allowlist.
        ValueError: not a torch zip file, or a malformed one.
    """
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise ValueError(
            f"{path} is not a torch zip file (the format torch >= 1.6 saves): {error}."
        ) from error
    with archive:
        # Records sit under one top folder named after the archive, e.g. 'out_jit_module/'.
        pickles = [
            name
            for name in archive.namelist()
            if name.count("/") == 1 and name.endswith("/data.pkl")
        ]
        if len(pickles) != 1:
            raise ValueError(f"{path} has {len(pickles)} top-level data.pkl records, expected 1.")
        record_prefix = pickles[0][: -len("data.pkl")]
        return _RestrictedUnpickler(archive, record_prefix).load()


def flatten_tensors(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Dotted name -> array for every array in a tree of dicts and TorchScript containers."""
    if isinstance(tree, np.ndarray):
        return {prefix: tree}
    if isinstance(tree, TorchScriptObject):
        children = vars(tree)
    elif isinstance(tree, Mapping):
        children = tree
    else:
        return {}
    flat = {}
    for key, child in children.items():
        flat.update(flatten_tensors(child, f"{prefix}.{key}" if prefix else str(key)))
    return flat
