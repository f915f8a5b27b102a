"""The process that holds a student's code and runs it on the grader's request.

It is started by `remote.Worker` (inside the sandbox when there is one), receives the code cells to
load, then answers requests until its input closes: call a function or method, run one many times
for timing, report the matrix products a call made, record what the backend dispatched. Its answers
are data only (see `wire`). Nothing here is trusted by the grader: results are checked, and times are
read by the grader from the kernel's accounting of this process, not from anything it reports.
Timed calls run on inputs changed before every call, and the last result of each series is
checked, so a result kept from an earlier call shows.

Before any student code runs, the request and reply channels are moved off file descriptors 0-2,
which then point to /dev/null: prints, input() and writes to fd 1 cannot reach the grader.
"""
from __future__ import annotations

import builtins
import os
import sys


def _private_channels():
    reader = os.fdopen(os.dup(0), "rb")
    writer = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    sys.stdin = open(os.devnull)
    sys.stdout = sys.stderr = open(os.devnull, "w")
    return reader, writer


READER, WRITER = _private_channels()

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from autograder.trusted import wire  # noqa: E402

threadpool_limits(limits=1, user_api="blas")

PRODUCT_FUNCTIONS = {np.dot: "np.dot", np.einsum: "np.einsum", np.tensordot: "np.tensordot",
                     np.inner: "np.inner", np.vdot: "np.vdot", np.outer: "np.outer",
                     np.linalg.multi_dot: "np.linalg.multi_dot", np.kron: "np.kron"}


class TrackedArray(np.ndarray):
    """An array that logs every matrix product it takes part in, with the operands' shapes."""

    log: list | None = None

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if ufunc is np.matmul and TrackedArray.log is not None:
            TrackedArray.log.append(["@ / np.matmul", *[list(np.shape(x)) for x in inputs[:2]]])
        plain = [np.asarray(x) if isinstance(x, TrackedArray) else x for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(np.asarray(x) if isinstance(x, TrackedArray) else x
                                  for x in kwargs["out"])
        return getattr(ufunc, method)(*plain, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        name = PRODUCT_FUNCTIONS.get(func)
        if name and TrackedArray.log is not None:
            shapes = [list(np.shape(a)) for a in args if isinstance(a, np.ndarray)][:2]
            TrackedArray.log.append([name, *shapes])
        return super().__array_function__(func, types, args, kwargs)

    def dot(self, other, out=None):
        if TrackedArray.log is not None:
            TrackedArray.log.append(["ndarray.dot", list(self.shape), list(np.shape(other))])
        return np.asarray(self).dot(np.asarray(other), out)


class Session:
    def __init__(self):
        self.namespace: dict = {"__name__": "__main__", "__builtins__": builtins}
        self.refs: dict[int, object] = {}
        self.stashed: dict[int, tuple] = {}
        self.dispatched: list | None = None
        self.last = None

    # values ---------------------------------------------------------------------------------
    def to_ref(self, obj) -> wire.Ref:
        ref_id = len(self.refs) + 1
        self.refs[ref_id] = obj
        return wire.Ref(ref_id, type(obj).__name__, callable(obj))

    def from_ref(self, ref: wire.Ref):
        return self.refs[ref.id]

    def resolve(self, target: dict):
        obj = self.namespace[target["name"]] if "name" in target else self.refs[target["ref"]]
        for attr in target.get("attrs", []):
            obj = getattr(obj, attr)
        return obj

    def arguments(self, header: dict, arrays):
        if "stash" in header:
            return self.stashed[header["stash"]]
        args = wire.decode(header.get("args", []), arrays, self.from_ref)
        kwargs = wire.decode(header.get("kwargs", {"dict": []}), arrays, self.from_ref)
        return list(args), dict(kwargs)

    # requests -------------------------------------------------------------------------------
    def load(self, header, arrays):
        errors, student_names = {}, {}
        for grade_id, source, is_student in header["cells"]:
            before = set(self.namespace)
            try:
                exec(compile(source, f"<cell {grade_id}>", "exec"), self.namespace)
            except BaseException as exc:  # noqa: BLE001 - a broken cell must not stop the others
                errors[grade_id] = describe(exc)
            if is_student:
                for name in set(self.namespace) - before:
                    if not name.startswith("__"):
                        student_names[name] = grade_id
        names = {}
        for name, grade_id in student_names.items():
            value = self.namespace[name]
            if isinstance(value, (bool, int, float, str)) or value is None:
                names[name] = {"kind": "value", "value": value}
            elif isinstance(value, type):
                names[name] = {"kind": "class"}
            elif callable(value):
                names[name] = {"kind": "function"}
            else:
                names[name] = {"kind": "object"}
            names[name]["cell"] = grade_id
        return {"errors": errors, "names": names}

    def call(self, header, arrays):
        fn = self.resolve(header["target"])
        args, kwargs = self.arguments(header, arrays)
        return {"value": fn(*args, **kwargs)}

    def getattr(self, header, arrays):
        return {"value": self.resolve(header["target"])}

    def stash(self, header, arrays):
        key = len(self.stashed) + 1
        self.stashed[key] = self.arguments(header, arrays)
        return {"stash": key}

    def repeat(self, header, arrays):
        """Calls on stored inputs, the first one's [0, 0] set anew before each: the grader times it."""
        fn = self.resolve(header["target"])
        args, kwargs = self.stashed[header["stash"]]
        perturb = header.get("perturb")
        for i in range(int(header["calls"])):
            if perturb is not None:
                args[0][0, 0] = perturb[i]
            self.last = fn(*args, **kwargs)
        return {}

    def last_digest(self, header, arrays):
        """Row 0 and the sum of the last timed call's result, for the grader to check."""
        last = np.asarray(self.last, dtype=np.float64)
        return {"row": last[0].copy(), "sum": float(last.sum())}

    def products(self, header, arrays):
        fn = self.resolve(header["target"])
        args, kwargs = self.arguments(header, arrays)
        tracked = [a.view(TrackedArray) if type(a) is np.ndarray else a for a in args]
        TrackedArray.log = log = []
        try:
            value = fn(*tracked, **kwargs)
        finally:
            TrackedArray.log = None
        return {"value": value, "products": log[:10_000]}

    def isinstance(self, header, arrays):
        return {"value": isinstance(self.resolve(header["target"]), self.resolve(header["cls"]))}

    def record_dispatch(self, header, arrays):
        backend = self.namespace.get("_backend")
        if header["action"] == "start":
            self.dispatched = []
            original, log = type(backend).dispatch, self.dispatched

            def recording(op, *args, **kwargs):
                log.append(op if isinstance(op, str) else repr(op)[:80])
                return original(backend, op, *args, **kwargs)

            backend.dispatch = recording
            return {}
        vars(backend).pop("dispatch", None)
        ops, self.dispatched = self.dispatched or [], None
        return {"value": ops}

    def release(self, header, arrays):
        for ref_id in header["refs"]:
            self.refs.pop(ref_id, None)
        return {}


def describe(exc: BaseException) -> dict:
    try:
        message = str(exc)[:2000]
    except BaseException:  # noqa: BLE001 - a student exception whose str() fails
        message = "(the exception's message could not be shown)"
    kind = type(exc)
    return {"type": kind.__name__[:100], "message": message,
            "builtin": kind.__module__ == "builtins" and isinstance(exc, Exception)}


def serve() -> None:
    session = Session()
    handlers = {name: getattr(session, name) for name in
                ("load", "call", "getattr", "stash", "repeat", "last_digest", "products",
                 "isinstance",
                 "record_dispatch", "release")}
    while True:
        try:
            header, arrays = wire.read_message(READER)
        except EOFError:
            return
        try:
            reply = {"ok": True, **handlers[header["op"]](header, arrays)}
        except BaseException as exc:  # noqa: BLE001 - everything the student raises is an answer
            reply = {"ok": False, "error": describe(exc)}
        out_arrays: list = []
        try:
            encoded = {k: wire.encode(v, out_arrays, session.to_ref) for k, v in reply.items()}
        except BaseException as exc:  # noqa: BLE001
            out_arrays = []
            encoded = {"ok": False, "error": describe(exc)}
        wire.write_message(WRITER, encoded, out_arrays)


if __name__ == "__main__":
    serve()
