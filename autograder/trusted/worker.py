"""The process that holds a student's code and runs it on the grader's request.

    python -m autograder.trusted.worker        (started by `remote.Worker`, in the sandbox)

It receives the code cells to load, then answers requests until its input closes: call a function
or method (one call or a batch of them, the same request either way), read an attribute, record
what the backend dispatched. Every array argument reaches student code as a `TrackedArray` view,
and every reply lists the library products the calls made. Its answers are data only (see
`wire`). Nothing here is trusted by the grader: results are checked, and times are read by the
grader from the kernel's accounting of this process, not from anything it reports.

Before any student code runs, the request and reply channels are moved off file descriptors 0-2,
which then point to /dev/null: prints, input() and writes to fd 1 cannot reach the grader.
"""
from __future__ import annotations

import builtins
import importlib
import importlib.util
import os
import sys
import types

ARENA_FD = "AUTOGRADER_ARENA_FD"        # environment: the shared memory the grader made
ARENA_SIZE = "AUTOGRADER_ARENA_SIZE"


def _private_channels():
    reader = os.fdopen(os.dup(0), "rb")
    writer = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    sys.stdin = open(os.devnull)
    sys.stdout = sys.stderr = open(os.devnull, "w")
    return reader, writer


def describe(exc: BaseException) -> dict:
    try:
        message = str(exc)[:2000]
    except BaseException:  # noqa: BLE001 - a student exception whose str() fails
        message = "(the exception's message could not be shown)"
    kind = type(exc)
    return {"type": kind.__name__[:100], "message": message,
            "builtin": kind.__module__ == "builtins" and isinstance(exc, Exception)}


class _StandIn(types.ModuleType):
    """A module `defer_import` put in place, until the real one replaces it."""


def defer_import(name: str) -> None:
    """Put a stand-in for module `name` (and for its parent packages) in `sys.modules`: the real
    module is imported at the first use of any of its attributes, and used from then on.

    The setup cell imports matplotlib.pyplot for the notebook's plots (0.6 s, most of this
    process's start), and no test draws. `importlib.util.LazyLoader` cannot serve here: an import
    statement reads the lazy module's `__spec__`, and that loads it.
    """
    if name in sys.modules:
        return
    parent, _, child = name.rpartition(".")
    if parent:
        defer_import(parent)
        if parent not in sys.modules:
            return
    spec = importlib.util.find_spec(name)    # the parent's stand-in has the __path__ it needs
    if spec is None:
        return                               # not installed: the import fails as it would have
    stand_in = _StandIn(name)
    if spec.submodule_search_locations is not None:
        stand_in.__path__ = list(spec.submodule_search_locations)

    def load(attribute: str):
        for module in [name] + [name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)]:
            if isinstance(sys.modules.get(module), _StandIn):
                del sys.modules[module]
        return getattr(importlib.import_module(name), attribute)

    stand_in.__getattr__ = load     # a module's __getattr__ serves every attribute it lacks
    sys.modules[name] = stand_in
    if parent:
        setattr(sys.modules[parent], child, stand_in)


class Session:
    """The student's namespace, the objects handed out by reference, and the request handlers."""

    def __init__(self, wire, tracked):
        self.wire, self.tracked = wire, tracked
        self.namespace: dict = {"__name__": "__main__", "__builtins__": builtins}
        self.refs: dict[int, object] = {}
        self.dispatched: list | None = None

    # values ---------------------------------------------------------------------------------
    def to_ref(self, obj):
        ref_id = len(self.refs) + 1
        self.refs[ref_id] = obj
        return self.wire.Ref(ref_id, type(obj).__name__, callable(obj))

    def from_ref(self, ref):
        return self.refs[ref.id]

    def resolve(self, target: dict):
        obj = self.namespace[target["name"]] if "name" in target else self.refs[target["ref"]]
        for attr in target.get("attrs", []):
            obj = getattr(obj, attr)
        return obj

    # requests -------------------------------------------------------------------------------
    def load(self, header, arrays):
        errors, student_names = {}, {}
        for name in header.get("deferred", []):
            defer_import(name)
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
        """Call the target once per entry of `calls`; the same path for tests and timing."""
        fn = self.resolve(header["target"])
        log, values = self.tracked.ProductLog(), []
        for spec in header["calls"]:
            args = self.wire.decode(spec["args"], arrays, self.from_ref)
            kwargs = self.wire.decode(spec["kwargs"], arrays, self.from_ref)
            args = [self.tracked.track(x) for x in args]
            kwargs = {k: self.tracked.track(v) for k, v in kwargs.items()}
            with log.recording():
                values.append(fn(*args, **kwargs))
        return {"values": values, "products": log.entries(), "overflow": log.overflow}

    def getattr(self, header, arrays):
        return {"value": self.resolve(header["target"])}

    def isinstance(self, header, arrays):
        return {"value": isinstance(self.resolve(header["target"]), self.resolve(header["cls"]))}

    def record_dispatch(self, header, arrays):
        backend = self.namespace.get(str(header.get("object", "")))
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


HANDLERS = ("load", "call", "getattr", "isinstance", "record_dispatch", "release")


def answer(session: Session, header: dict, arrays: list) -> tuple[dict, list]:
    """The reply to one request: its header and arrays, ready for `wire.write_message`."""
    wire = session.wire
    try:
        if header.get("op") not in HANDLERS:
            raise ValueError(f"unknown request {str(header.get('op'))[:40]!r}")
        reply = {"ok": True, **getattr(session, header["op"])(header, arrays)}
    except BaseException as exc:  # noqa: BLE001 - everything the student raises is an answer
        reply = {"ok": False, "error": describe(exc)}
    out_arrays: list = []
    try:
        return {k: wire.encode(v, out_arrays, session.to_ref) for k, v in reply.items()}, out_arrays
    except BaseException as exc:  # noqa: BLE001
        return {"ok": False, "error": describe(exc)}, []


def serve() -> None:
    reader, writer = _private_channels()
    import numpy as np  # noqa: F401 - loaded before any student code, as in the kernel
    from threadpoolctl import threadpool_limits

    from autograder.trusted import memory, tracked, wire

    threadpool_limits(limits=1, user_api="blas")
    memory.steady_allocation()     # as the grader's process does: see `memory`
    arena = None
    if os.environ.get(ARENA_FD):
        arena = wire.Arena.attach(int(os.environ[ARENA_FD]), int(os.environ[ARENA_SIZE]))
    session = Session(wire, tracked)
    while True:
        try:
            header, arrays = wire.read_message(reader, arena)
        except EOFError:
            return
        wire.write_message(writer, *answer(session, header, arrays), arena)


if __name__ == "__main__":
    serve()
