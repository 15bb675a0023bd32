"""Models as the native module takes them: a path, or named arrays read in place."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any, List, Optional, Tuple, Union

import numpy as np

from .errors import ArgumentError

#: A tensor as handed to Rust: (key, typestr, shape, byte strides or None, address, owner).
TensorDesc = Tuple[str, str, Tuple[int, ...], Optional[Tuple[int, ...]], int, Any]
Source = Union[str, Tuple[str, List[TensorDesc]]]

# keys under which training checkpoints commonly keep the model's weights
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights")


def _is_torch(obj: Any) -> bool:
    torch = sys.modules.get("torch")  # never import torch ourselves
    return torch is not None and isinstance(obj, (torch.Tensor, torch.nn.Module))


def _is_tensor_like(v: Any) -> bool:
    if isinstance(v, np.ndarray):
        return True
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(v, torch.Tensor)


def _array(key: str, v: Any) -> Tuple[np.ndarray, Optional[str]]:
    """The array to read (sharing memory where possible) and a type override."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(v, torch.Tensor):
        t = v.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if t.is_sparse or t.is_quantized:
            t = t.dequantize() if t.is_quantized else t.to_dense()
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy(), "bf16"
        if t.is_complex():
            raise ArgumentError(f"{key}: complex tensors are not filters")
        return t.numpy(), None
    a = np.asarray(v)
    return a, None


def describe(key: str, v: Any) -> TensorDesc:
    """Describes one tensor or array by numpy's array interface (no copy for contiguous or
    positively strided arrays)."""
    a, override = _array(key, v)
    if a.dtype.kind not in "fiub" or a.dtype.itemsize > 8:
        raise ArgumentError(f"{key}: unsupported array type {a.dtype} (float, integer or bool)")
    strides = a.strides
    if any(s < 0 or s % a.itemsize for s in strides):
        a = np.ascontiguousarray(a)
    ai = a.__array_interface__
    typestr = override or ai["typestr"]
    st = ai.get("strides")
    return (
        str(key),
        typestr,
        tuple(int(d) for d in a.shape),
        None if st is None else tuple(int(s) for s in st),
        int(ai["data"][0]),
        a,
    )


def _tensors_of(mapping: Mapping, where: str) -> List[TensorDesc]:
    top = [(k, v) for k, v in mapping.items() if _is_tensor_like(v)]
    if top:
        return [describe(str(k), v) for k, v in top]
    for k in _NESTED_KEYS:
        inner = mapping.get(k)
        if isinstance(inner, Mapping):
            return _tensors_of(inner, f"{where}[{k!r}]")
        if _is_torch(inner) and hasattr(inner, "state_dict"):
            return _tensors_of(inner.state_dict(), f"{where}[{k!r}]")
    raise ArgumentError(
        f"{where}: no tensors or arrays in this mapping (keys: {', '.join(map(str, list(mapping)[:10]))})"
    )


def source(model: Any, name: Optional[str] = None) -> Source:
    """A path, or ``(name, tensors)`` for a ``torch.nn.Module``, a state dict (a mapping of
    names to tensors or arrays) or a single array."""
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        return (name or type(model).__name__, _tensors_of(model.state_dict(), "module"))
    if isinstance(model, Mapping):
        return (name or "state_dict", _tensors_of(model, "mapping"))
    if _is_tensor_like(model) or hasattr(model, "__array_interface__"):
        return (name or "array", [describe("weight", model)])
    raise ArgumentError(
        f"cannot read a model from a {type(model).__module__}.{type(model).__qualname__}: give a "
        "path, a torch.nn.Module, a state dict (mapping of names to tensors/arrays) or an array"
    )
