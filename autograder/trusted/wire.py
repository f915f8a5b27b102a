"""The message format between the grader and the worker that runs student code.

A message is a JSON header plus NumPy arrays in .npy format, each part length-prefixed. Nothing is
ever unpickled: the worker runs untrusted code, so whatever it sends back is parsed as data only
(JSON, and .npy with allow_pickle=False), with limits on size and nesting.

Values map to JSON as: None/bool/int/str as themselves; float as itself, or {"float": "nan"} for
values JSON lacks; list as list; tuple as {"tuple": [...]}; dict with str keys as {"dict": [[k, v]]};
ndarray and NumPy scalars as {"array": i}, the i-th array after the header; an object that stays in
the worker as {"ref": id, "type": "ClassName", "callable": bool}.
"""
from __future__ import annotations

import io
import json
import math
import struct
from typing import BinaryIO

import numpy as np

MAX_MESSAGE_BYTES = 512 * 1024 * 1024
MAX_DEPTH = 32
_LENGTH = struct.Struct("<Q")


class WireError(Exception):
    """A message that is malformed, too large or of a kind the other side does not accept."""


class Ref:
    """A handle to an object that lives in the worker."""

    __slots__ = ("id", "type_name", "is_callable")

    def __init__(self, ref_id: int, type_name: str, is_callable: bool):
        self.id, self.type_name, self.is_callable = ref_id, type_name, is_callable


def encode(value, arrays: list[np.ndarray], to_ref=None, depth: int = 0):
    """JSON-able form of `value`; arrays are appended to `arrays`. `to_ref` handles other objects."""
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)  # subclasses travel as plain arrays
        if array.dtype.hasobject:
            raise WireError("cannot send an array of Python objects")
        arrays.append(array)
        return {"array": len(arrays) - 1}
    if isinstance(value, Ref):
        return {"ref": value.id, "type": value.type_name, "callable": value.is_callable}
    if type(value) is list:
        return [encode(v, arrays, to_ref, depth + 1) for v in value]
    if type(value) is tuple:
        return {"tuple": [encode(v, arrays, to_ref, depth + 1) for v in value]}
    if type(value) is dict and all(type(k) is str for k in value):
        return {"dict": [[k, encode(v, arrays, to_ref, depth + 1)] for k, v in value.items()]}
    if to_ref is not None:
        return encode(to_ref(value), arrays, None, depth)
    raise WireError(f"cannot send a {type(value).__name__}")


def decode(value, arrays: list[np.ndarray], from_ref=None, depth: int = 0):
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [decode(v, arrays, from_ref, depth + 1) for v in value]
    if isinstance(value, dict) and len(value) >= 1:
        if "array" in value:
            return arrays[int(value["array"])]
        if "tuple" in value:
            return tuple(decode(v, arrays, from_ref, depth + 1) for v in value["tuple"])
        if "dict" in value:
            return {str(k): decode(v, arrays, from_ref, depth + 1) for k, v in value["dict"]}
        if "float" in value:
            return float(value["float"])
        if "ref" in value:
            ref = Ref(int(value["ref"]), str(value["type"])[:200], bool(value["callable"]))
            return from_ref(ref) if from_ref else ref
    raise WireError(f"unexpected value in message: {str(value)[:80]}")


def write_message(stream: BinaryIO, header: dict, arrays: list[np.ndarray] = ()) -> None:
    parts = [json.dumps(header, allow_nan=False).encode()]
    for array in arrays:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        parts.append(buffer.getvalue())
    out = [_LENGTH.pack(len(parts))]
    for part in parts:
        out += [_LENGTH.pack(len(part)), part]
    stream.write(b"".join(out))
    stream.flush()


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if data is None or len(data) != size:
        raise EOFError("the other side closed the channel")
    return data


def read_message(stream: BinaryIO, limit: int = MAX_MESSAGE_BYTES) -> tuple[dict, list[np.ndarray]]:
    """One message: its header and arrays. Raises EOFError at end of stream, WireError if bad."""
    (count,) = _LENGTH.unpack(_read_exact(stream, _LENGTH.size))
    if not 1 <= count <= 10_000:
        raise WireError(f"bad part count {count}")
    parts, total = [], 0
    for _ in range(count):
        (size,) = _LENGTH.unpack(_read_exact(stream, _LENGTH.size))
        total += size
        if total > limit:
            raise WireError(f"message larger than {limit} bytes")
        parts.append(_read_exact(stream, size))
    try:
        header = json.loads(parts[0])
        arrays = [np.load(io.BytesIO(p), allow_pickle=False) for p in parts[1:]]
    except (ValueError, OSError) as exc:
        raise WireError(f"unreadable message: {exc}") from None
    if not isinstance(header, dict):
        raise WireError("message header is not an object")
    return header, arrays
