"""The message format between the grader and the worker that runs student code.

A message is a JSON header plus NumPy arrays of plain numeric types. Nothing is ever unpickled:
the worker runs untrusted code, so whatever it sends back is parsed as data only (JSON, and raw
array bytes of a checked dtype and shape), with limits on size and nesting.

Arrays travel through an `Arena` when both sides have one: a shared memory file split in two
halves, one per direction. The sender copies an array into its half and the header says where
(offset, dtype, shape); the receiver makes a view of it. Each message starts again at the start of
its half, which is safe because the protocol is strictly request then reply. Without an arena, or
for a message too large for it, arrays follow the header on the stream itself. Passing arrays by
shared memory costs one copy instead of a trip through a pipe, which matters inside a timed window.

Values map to JSON as: None/bool/int/str as themselves; float as itself, or {"float": "nan"} for
values JSON lacks; list as list; tuple as {"tuple": [...]}; dict with str keys as {"dict": [[k, v]]};
ndarray and NumPy scalars as {"array": i}, the i-th array of the message; an object that stays in
the worker as {"ref": id, "type": "ClassName", "callable": bool}.
"""
from __future__ import annotations

import json
import math
import mmap
import os
import struct
from typing import BinaryIO

import numpy as np

MAX_MESSAGE_BYTES = 512 * 1024 * 1024
MAX_DEPTH = 32
MAX_DIMENSIONS = 32
ARENA_BYTES = 64 * 1024 * 1024
ALIGNMENT = 64
ARRAY_KINDS = "biufc"           # bool, signed, unsigned, float, complex
ARRAYS = "_arrays"              # header key that describes the message's arrays
_LENGTH = struct.Struct("<Q")


class WireError(Exception):
    """A message that is malformed, too large or of a kind the other side does not accept."""


class Ref:
    """A handle to an object that lives in the worker."""

    __slots__ = ("id", "type_name", "is_callable")

    def __init__(self, ref_id: int, type_name: str, is_callable: bool):
        self.id, self.type_name, self.is_callable = ref_id, type_name, is_callable


class Arena:
    """Shared memory for arrays: the first half carries requests, the second replies.

    The grader creates it (`Arena.create`) and hands the file descriptor to the worker, which maps
    the same memory (`Arena.attach`). `outgoing` is the half this side writes.
    """

    def __init__(self, fd: int, size: int, outgoing: int):
        self.fd, self.size = fd, size
        self.memory = mmap.mmap(fd, size)
        self.half = size // 2
        self.outgoing = outgoing            # 0: requests (the grader), 1: replies (the worker)
        self.last_offsets: list[int] = []   # where the last message sent put its arrays

    @classmethod
    def create(cls, size: int = ARENA_BYTES) -> "Arena":
        fd = os.memfd_create("autograder-arena", 0)
        os.ftruncate(fd, size)
        return cls(fd, size, outgoing=0)

    @classmethod
    def attach(cls, fd: int, size: int) -> "Arena":
        return cls(fd, size, outgoing=1)

    def close(self) -> None:
        try:
            self.memory.close()
        except BufferError:
            pass  # views of it are still alive: the mapping goes with the last of them
        os.close(self.fd)

    def place(self, arrays: list[np.ndarray]) -> list[int] | None:
        """Copy `arrays` into the outgoing half; their offsets, or None if they do not fit."""
        start = self.outgoing * self.half
        offsets, at = [], 0
        for array in arrays:
            at = -(-at // ALIGNMENT) * ALIGNMENT
            offsets.append(start + at)
            at += array.nbytes
        self.last_offsets = []
        if at > self.half:
            return None
        for array, offset in zip(arrays, offsets):
            if array.nbytes:
                target = np.frombuffer(self.memory, np.uint8, array.nbytes, offset)
                target[:] = _bytes_view(array)
        self.last_offsets = offsets
        return offsets

    def _view(self, half: int, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        start, count = half * self.half, math.prod(shape)
        if not start <= offset <= offset + dtype.itemsize * count <= start + self.half:
            raise WireError(f"array at offset {offset} lies outside its half of the arena")
        if count == 0:
            return np.empty(shape, dtype)
        return np.frombuffer(self.memory, dtype, count, offset).reshape(shape)

    def view(self, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """A writable view of an array the other side placed in its half."""
        return self._view(1 - self.outgoing, offset, dtype, shape)

    def outgoing_view(self, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """A view of an array this side placed (the other side may have changed it since)."""
        return self._view(self.outgoing, offset, dtype, shape)


def _bytes_view(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8)


def _checked_dtype(text) -> np.dtype:
    try:
        dtype = np.dtype(str(text))
    except TypeError:
        raise WireError(f"unknown dtype {str(text)[:40]!r}") from None
    if dtype.kind not in ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise WireError(f"arrays of dtype {dtype} cannot be sent")
    return dtype


def _checked_shape(shape) -> tuple[int, ...]:
    if not isinstance(shape, list) or len(shape) > MAX_DIMENSIONS or not all(
            type(d) is int and 0 <= d <= MAX_MESSAGE_BYTES for d in shape):
        raise WireError(f"bad array shape {str(shape)[:80]}")
    return tuple(shape)


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
        if array.dtype.kind not in ARRAY_KINDS or array.dtype.fields is not None:
            raise WireError(f"cannot send an array of dtype {array.dtype}")
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


def write_message(stream: BinaryIO, header: dict, arrays=(), arena: Arena | None = None) -> None:
    arrays = [np.asarray(a) for a in arrays]
    offsets = arena.place(arrays) if arena is not None else None
    specs = [[None if offsets is None else offsets[i], a.dtype.str, list(a.shape)]
             for i, a in enumerate(arrays)]
    parts = [json.dumps({**header, ARRAYS: specs}, allow_nan=False).encode()]
    if offsets is None:
        parts += [_bytes_view(a).data for a in arrays]
    out = [_LENGTH.pack(len(parts))]
    for part in parts:
        out += [_LENGTH.pack(len(part)), part]
    stream.write(b"".join(out))
    stream.flush()


def _read_exact(stream: BinaryIO, size: int) -> bytearray:
    data = bytearray(size)
    view, got = memoryview(data), 0
    while got < size:
        n = stream.readinto(view[got:])
        if not n:
            raise EOFError("the other side closed the channel")
        got += n
    return data


def read_message(stream: BinaryIO, arena: Arena | None = None,
                 limit: int = MAX_MESSAGE_BYTES) -> tuple[dict, list[np.ndarray]]:
    """One message: its header and arrays (views of the arena for arrays sent through it).

    Raises EOFError at the end of the stream and WireError for a message that is not acceptable.
    """
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
    except ValueError as exc:
        raise WireError(f"unreadable message: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get(ARRAYS, []), list):
        raise WireError("message header is not an object")
    arrays, inline = [], iter(parts[1:])
    for spec in header.pop(ARRAYS, []):
        if not isinstance(spec, list) or len(spec) != 3:
            raise WireError("bad array description")
        offset, dtype, shape = spec[0], _checked_dtype(spec[1]), _checked_shape(spec[2])
        if offset is None:
            data = next(inline, None)
            if data is None or len(data) != dtype.itemsize * math.prod(shape):
                raise WireError("array data missing or of the wrong length")
            arrays.append(np.frombuffer(data, dtype).reshape(shape))
        elif arena is not None and type(offset) is int:
            arrays.append(arena.view(offset, dtype, shape))
        else:
            raise WireError("array in an arena this side does not have")
    return header, arrays
