"""Reading the paper's published pickles without running anything from them.

A pickle names the callables that rebuild its objects (its *globals*), and the standard unpickler imports
and calls whatever a file names: a pickle can run any code when loaded. :func:`load_pickle` allows only the
globals the published steering-vector pickles use, each of which builds plain data and nothing else:

* ``collections.defaultdict`` and ``builtins.list`` (``defaultdict(list)``);
* numpy's array reconstruction, ``_reconstruct`` under both module names numpy has used
  (``numpy.core.multiarray`` before numpy 2, ``numpy._core.multiarray`` since), ``numpy.ndarray`` and
  ``numpy.dtype``; ``_reconstruct`` is given the class to build, and the only class that can reach it is
  ``numpy.ndarray``.

Any other global, and any persistent id (how ``torch.save`` refers to tensor storage), is refused by name in
one line, before it is imported or called. Object arrays are refused too: their elements would be pickles
of their own.

With ``tensors=True`` (the published SAE score pickles: torch tensors pickled with ``pickle``), three more:
``torch._utils._rebuild_tensor_v2`` and ``collections.OrderedDict``, which build a tensor view of a storage,
and ``torch.storage._load_from_bytes``, whose own loader is an unrestricted ``torch.load``: here it is
replaced by a reader of the same bytes through ``torch.load(weights_only=True)``, torch's restricted
unpickler, so the storage's bytes are read and nothing in them is run.
"""

from __future__ import annotations

import io
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TadaError

MAX_BYTES = 1 << 30  # the published pickles are a few MB; a GB-sized one is not one of them


def _allowed() -> dict[tuple[str, str], Any]:
    import collections

    from numpy import dtype, ndarray

    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1
        from numpy.core.multiarray import _reconstruct

    return {
        ("collections", "defaultdict"): collections.defaultdict,
        ("builtins", "list"): list,
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): ndarray,
        ("numpy", "dtype"): dtype,
    }


def _tensor_globals() -> dict[tuple[str, str], Any]:
    import collections

    import torch
    from torch._utils import _rebuild_tensor_v2

    def storage_from_bytes(data: Any) -> Any:
        if not isinstance(data, (bytes, bytearray)):
            raise RefusedPickle("a tensor storage that is not bytes")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # TypedStorage's deprecation notice
            return torch.load(io.BytesIO(bytes(data)), weights_only=True)

    return {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch.storage", "_load_from_bytes"): storage_from_bytes,
    }


class RefusedPickle(TadaError):
    """A pickle that names something outside the allow-list."""


class _AllowListUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, source: str, tensors: bool = False):
        super().__init__(file)
        self.source = source
        self.allowed = {**_allowed(), **(_tensor_globals() if tensors else {})}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise RefusedPickle(
                f"{self.source}: refused to load: the pickle calls {module}.{name}, which is not on tada's "
                "allow-list of data-only globals (nothing from the file was run)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickle(
            f"{self.source}: refused to load: the pickle refers to external storage (persistent id "
            f"{str(pid)[:40]!r}), as torch.save does; nothing from the file was run"
        )


def load_pickle(path: str | Path, tensors: bool = False) -> Any:
    """The object in the pickle at ``path``, rebuilt from allow-listed globals only (see the module);
    ``tensors``: also torch tensors, their storage read by torch's restricted loader."""
    path = Path(path)
    if not path.is_file():
        raise TadaError(f"no file at {path}")
    if path.stat().st_size > MAX_BYTES:
        raise TadaError(f"{path} is larger than 1 GiB: not one of the published artifacts")
    data = path.read_bytes()
    try:
        value = _AllowListUnpickler(io.BytesIO(data), str(path), tensors).load()
    except RefusedPickle:
        raise
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file fails in many ways; one line names it
        raise TadaError(f"{path} is not a readable pickle: {type(err).__name__}: {err}") from None
    _check_arrays(value, str(path))
    return value


def _check_arrays(value: Any, source: str, depth: int = 0) -> None:
    if depth > 16:
        raise TadaError(f"{source}: nested more than 16 levels deep: not one of the published artifacts")
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise RefusedPickle(f"{source}: refused to load: an array of Python objects")
    elif isinstance(value, dict):
        for item in value.values():
            _check_arrays(item, source, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_arrays(item, source, depth + 1)


__all__ = ["RefusedPickle", "load_pickle"]
