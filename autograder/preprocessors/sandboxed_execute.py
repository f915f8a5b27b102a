"""SandboxedExecute: nbgrader's Execute, with the kernel in the sandbox and test cells left out.

The student's notebook still runs top to bottom in a Jupyter kernel, so graders see its outputs
(the speed plot, the demo cells), but the kernel runs inside bubblewrap as an unprivileged user
with no network and no view of the course, and it never runs the graded test cells: those are
scored by TrustedTests, in the grader's process.

The whole notebook has a time `budget` (each cell also has nbgrader's `timeout`): a notebook of
slow code, or one whose own timing loops never end, costs at most that much, and the cells after
it say why they did not run. The outputs are only for graders to read; no score depends on them.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
import time

import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbgrader.preprocessors import Execute
from traitlets import Any, Bool, Float, Int, default

from ..notebook import is_test_cell
from ..phases import Phases, cpu_seconds


class SandboxedKernelManager(AsyncKernelManager):
    """Launches the kernel through `sandbox.kernel_command`, talking over ipc sockets."""

    policy = Any(None, allow_none=True)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        from .. import sandbox

        return await super()._async_launch_kernel(
            sandbox.kernel_command(kernel_cmd, self.connection_file, self.policy), **kw)


class SandboxedExecute(Execute):
    sandbox = Bool(True, help="run the kernel in the bubblewrap sandbox").tag(config=True)
    memory_bytes = Int(2 * 1024**3, help="address-space limit of the kernel").tag(config=True)
    sandbox_uid = Int(65534, help="unprivileged uid (and gid) the kernel runs as").tag(config=True)
    budget = Float(30.0, help="seconds the whole notebook may run; later cells are not run"
                   ).tag(config=True)

    @default("shutdown_kernel")
    def _immediate_shutdown(self):
        # Every output has arrived once the last cell is done, and the sandbox is thrown away
        # with whatever the kernel would still write: a graceful shutdown only waits (0.5 s).
        return "immediate"

    def _note(self, cell, text: str) -> None:
        cell.outputs.append(nbformat.from_dict({"output_type": "stream", "name": "stderr",
                                                "text": text + "\n"}))

    def preprocess_cell(self, cell, resources, index):
        if self._started is not None:      # the kernel is up: the first cell is about to run
            wall, cpu = self._started
            resources["phases"].add("kernel: start", time.perf_counter() - wall,
                                    cpu_seconds() - cpu)
            self._started = None
        if is_test_cell(cell):
            return cell, resources  # scored by TrustedTests, never in the student's kernel
        if self._kernel_died or cell.cell_type != "code" or not cell.source.strip():
            return cell, resources
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            if not self._out_of_time:
                self._out_of_time = True
                self._note(cell, f"(not run: grading gives the whole notebook {self.budget:g} s, "
                                 f"and they were used up; the cells after this one were not run "
                                 f"either)")
            return cell, resources
        self.timeout = max(1, min(self._cell_timeout or math.inf, math.ceil(remaining)))
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
            if time.monotonic() >= self._deadline:
                self._note(cell, f"(stopped: grading gives the whole notebook {self.budget:g} s, "
                                 f"and they ran out during this cell)")
            return cell, resources
        except (DeadKernelError, CellTimeoutError) as exc:
            # The student's code ended the kernel (os._exit, a crash, the memory limit) or kept
            # it busy past the time limit and its interrupt. Its later cells cannot run, but the
            # tests are scored elsewhere: say so here and go on.
            self._kernel_died = True
            what = "died" if isinstance(exc, DeadKernelError) else "did not stop when interrupted"
            cell.outputs.append(nbformat.from_dict({
                "output_type": "error", "ename": type(exc).__name__,
                "evalue": f"the kernel {what} while running this cell; later cells were not run",
                "traceback": [f"{type(exc).__name__}: the kernel {what} while running this cell"]}))
            return cell, resources
        finally:
            self.timeout = self._cell_timeout

    def create_kernel_manager(self):
        if not self.sandbox:
            return super().create_kernel_manager()
        from ..sandbox import grant_access
        from ..trusted.launch import kernel_policy

        self.kernel_name = self.kernel_name or self.nb.metadata.get("kernelspec", {}).get(
            "name", "python3")
        self._scratch = tempfile.mkdtemp(prefix="kernel-")
        runtime = os.path.join(self._scratch, "runtime")
        workdir = os.path.join(self._scratch, "work")
        os.mkdir(runtime)
        os.mkdir(workdir)
        policy = kernel_policy(workdir, self.sandbox_uid, self.memory_bytes)
        grant_access(workdir, policy)
        self.km = SandboxedKernelManager(kernel_name=self.kernel_name, config=self.config,
                                         transport="ipc", policy=policy,
                                         connection_file=os.path.join(runtime, "kernel.json"))
        self.km.kernel_spec.interrupt_mode = "message"  # a signal to bubblewrap would not arrive
        return self.km

    def preprocess(self, nb, resources, km=None):
        self._kernel_died = self._out_of_time = False
        self._deadline = time.monotonic() + self.budget
        self._cell_timeout = self.timeout
        phases = resources.setdefault("phases", Phases())
        self._started = (time.perf_counter(), cpu_seconds())
        wall, cpu = self._started
        try:
            return super().preprocess(nb, resources, km=km)
        finally:
            start = phases.seconds.get("kernel: start", [0.0, 0.0])
            phases.add("kernel: notebook cells", time.perf_counter() - wall - start[0],
                       cpu_seconds() - cpu - start[1])
            self.timeout = self._cell_timeout
            scratch = getattr(self, "_scratch", None)
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)
