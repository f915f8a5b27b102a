"""The bubblewrap sandbox, tested with real bwrap and real processes: what student code cannot do."""
from __future__ import annotations

import errno
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from autograder import sandbox
from autograder.sandbox import SandboxPolicy
from autograder.uids import UidLease
from tests.processes import processes_of

REPO_ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 60


def need_sandbox() -> None:
    """Fail, never skip, when the sandbox cannot run here: grading untrusted code needs it."""
    ok, reason = sandbox.available()
    if not ok:
        pytest.fail(f"the sandbox does not work here ({reason}): run make system-packages",
                    pytrace=False)


@pytest.fixture
def workdir(tmp_path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


def run(code: str, policy: SandboxPolicy | None = None, timeout: float = RUN_TIMEOUT,
        **popen) -> subprocess.CompletedProcess:
    """Run a Python snippet with this (the venv's) interpreter inside the sandbox."""
    need_sandbox()
    argv = sandbox.command([sys.executable, "-c", textwrap.dedent(code)], policy or SandboxPolicy())
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **popen)


def run_json(code: str, policy: SandboxPolicy | None = None):
    """Run a snippet that prints one JSON document last; return that document."""
    result = run(code, policy)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


_LEASES = []   # held until the test process ends


def unused_uid() -> int:
    """A uid no other process uses, leased host-wide (so that a test owns its process count
    alone, whatever else grades or tests on this machine at the same time)."""
    lease = UidLease(1)
    _LEASES.append(lease)
    return lease.uids[0]


# ---------------------------------------------------------------------------------------------------

def test_available_here():
    need_sandbox()
    ok, reason = sandbox.available()
    assert ok, reason
    assert "bubblewrap" in reason


def test_runs_as_nobody_without_capabilities():
    info = run_json("""
        import json, os
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        print(json.dumps({"ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid()],
                          "groups": os.getgroups(),
                          "caps": [status[k].strip() for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb")],
                          "no_new_privs": status["NoNewPrivs"].strip(),
                          "pid": os.getpid()}))
    """)
    assert info["ids"] == [65534] * 4
    assert info["groups"] == []
    assert set(info["caps"]) == {"0000000000000000"}
    assert info["no_new_privs"] == "1"
    assert info["pid"] < 10  # its own pid namespace


def test_no_network_to_a_host_listener():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    port = listener.getsockname()[1]
    try:
        info = run_json(f"""
            import json, socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
                outcome = "connected"
            except OSError as e:
                outcome = type(e).__name__
            print(json.dumps({{"outcome": outcome, "interfaces": [n for _, n in socket.if_nameindex()]}}))
        """)
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    assert info["outcome"] != "connected"
    assert info["interfaces"] == ["lo"]


def test_no_dns():
    result = run("""
        import socket
        try:
            print(socket.getaddrinfo("example.com", 443))
        except socket.gaierror as e:
            print("gaierror", e)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("gaierror"), result.stdout


def test_host_files_outside_the_binds_are_invisible(tmp_path, workdir):
    secret = tmp_path / "secret.txt"
    secret.write_text("answer key")
    secret.chmod(0o644)  # readable by anyone on the host: only the sandbox hides it
    info = run_json(f"""
        import json, os
        try:
            open({str(secret)!r}).read()
            outcome = "read"
        except OSError as e:
            outcome = type(e).__name__
        print(json.dumps({{"outcome": outcome, "listing": sorted(os.listdir({str(tmp_path)!r}))}}))
    """, SandboxPolicy(workdir=str(workdir)))
    assert info["outcome"] == "FileNotFoundError"
    assert info["listing"] == ["work"]


def test_repository_source_and_gradebook_are_invisible():
    assert (REPO_ROOT / "source").is_dir()
    # What of the repository the sandbox may show: the venv (if it lives there), nothing else.
    expected = sorted({Path(p).relative_to(REPO_ROOT).parts[0] for p in sandbox.python_paths()
                       if Path(p).is_relative_to(REPO_ROOT) and Path(p) != REPO_ROOT})
    info = run_json(f"""
        import json, os
        root = {str(REPO_ROOT)!r}
        print(json.dumps({{
            "source": os.path.exists(os.path.join(root, "source")),
            "gradebook": os.path.exists(os.path.join(root, "gradebook.db")),
            "listing": sorted(os.listdir(root)) if os.path.isdir(root) else [],
        }}))
    """)
    assert info == {"source": False, "gradebook": False, "listing": expected}


def test_graders_home_is_hidden():
    home = Path(os.path.realpath(Path.home()))
    with tempfile.NamedTemporaryFile("w", dir=home, prefix="sandbox-test-", suffix=".txt") as f:
        f.write("grader secret")
        f.flush()
        os.chmod(f.name, 0o644)
        info = run_json(f"""
            import json, os
            try:
                open({f.name!r}).read()
                outcome = "read"
            except OSError as e:
                outcome = type(e).__name__
            print(json.dumps({{"outcome": outcome, "listing": os.listdir({str(home)!r})}}))
        """)
    assert info["outcome"] == "FileNotFoundError"
    # Only the way to the bound interpreter (e.g. .pyenv) shows in the home directory.
    allowed = {Path(p).relative_to(home).parts[0] for p in sandbox.python_paths()
               if Path(p).is_relative_to(home) and Path(p) != home}
    assert set(info["listing"]) <= allowed


def test_only_the_workdir_is_writable(workdir):
    policy = SandboxPolicy(workdir=str(workdir))
    (workdir / "given.txt").write_text("from the grader")
    sandbox.grant_access(workdir, policy)
    private_tmp_name = f"sandbox-test-{os.getpid()}-{time.monotonic_ns()}"
    elsewhere = ["/", "/etc", "/usr", "/usr/lib", sys.prefix, sys.base_prefix,
                 str(Path.home()), str(REPO_ROOT), "/dev/shm", "/proc"]
    info = run_json(f"""
        import json, os
        given = open("given.txt").read()
        with open("made.txt", "w") as f:
            f.write("from the sandbox")
        with open("/tmp/{private_tmp_name}", "w") as f:
            f.write("scratch")
        denied = {{}}
        for folder in {elsewhere!r}:
            try:
                with open(os.path.join(folder, "{private_tmp_name}"), "w") as f:
                    f.write("x")
                denied[folder] = None
            except OSError as e:
                denied[folder] = e.errno
        print(json.dumps({{"given": given, "cwd": os.getcwd(), "home": os.environ["HOME"],
                          "denied": denied}}))
    """, policy)
    assert info["given"] == "from the grader"
    assert info["cwd"] == info["home"] == os.path.realpath(workdir)
    assert (workdir / "made.txt").read_text() == "from the sandbox"
    assert (workdir / "made.txt").stat().st_uid == 65534
    assert not Path("/tmp", private_tmp_name).exists()  # the sandbox's /tmp is its own
    assert {folder: code for folder, code in info["denied"].items() if code is None} == {}
    for folder in elsewhere:
        assert not Path(folder, private_tmp_name).exists()


def test_writes_to_a_readonly_path_fail(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "data.txt").write_text("read me")
    shared.chmod(0o777)  # writable by anyone on the host: only the read-only bind protects it
    (shared / "data.txt").chmod(0o666)
    info = run_json(f"""
        import json, os
        folder = {str(shared)!r}
        content = open(os.path.join(folder, "data.txt")).read()
        errors = []
        for path, mode in (("data.txt", "a"), ("new.txt", "w")):
            try:
                open(os.path.join(folder, path), mode).write("x")
                errors.append(None)
            except OSError as e:
                errors.append(e.errno)
        print(json.dumps({{"content": content, "errors": errors}}))
    """, SandboxPolicy(readonly_paths=(str(shared),)))
    assert info == {"content": "read me", "errors": [errno.EROFS, errno.EROFS]}
    assert (shared / "data.txt").read_text() == "read me"
    assert not (shared / "new.txt").exists()


def test_numpy_works_inside():
    info = run_json("""
        import json, sys
        import numpy as np
        a = np.arange(12.0).reshape(3, 4)
        print(json.dumps({"product": (a @ a.T).trace(), "prefix": sys.prefix,
                          "version": sys.version, "numpy": np.__file__}))
    """, SandboxPolicy(env={"OPENBLAS_NUM_THREADS": "1"}))
    a = __import__("numpy").arange(12.0).reshape(3, 4)
    assert info["product"] == (a @ a.T).trace()
    # The venv's own interpreter and packages, not a system Python found as a fallback.
    assert info["prefix"] == sys.prefix and info["version"] == sys.version
    assert info["numpy"].startswith(sys.prefix)


def test_memory_bomb_raises_memoryerror_and_the_grader_is_unaffected():
    before = resource.getrlimit(resource.RLIMIT_AS)
    result = run("""
        try:
            hog = bytearray(4 << 30)
            print("allocated")
        except MemoryError:
            print("MemoryError")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "MemoryError"
    assert resource.getrlimit(resource.RLIMIT_AS) == before
    assert len(bytearray(64 << 20)) == 64 << 20


def test_fork_bomb_is_stopped_and_the_sandbox_exits():
    uid = unused_uid()
    policy = SandboxPolicy(max_processes=32, uid=uid, gid=uid)
    started = time.monotonic()
    result = run("""
        import os
        while True:
            os.fork()
    """, policy, timeout=30)
    assert time.monotonic() - started < 30
    assert result.returncode != 0
    assert "BlockingIOError" in result.stderr
    deadline = time.monotonic() + 5
    while processes_of(uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_of(uid) == []
    subprocess.run(["true"], check=True)  # the grader can still start processes


def test_file_size_limit():
    with tempfile.TemporaryDirectory() as folder:
        policy = SandboxPolicy(workdir=folder)
        sandbox.grant_access(folder, policy)
        assert policy.max_file_bytes == 64 << 20
        result = run("""
            import errno
            chunk = b"x" * (1 << 20)
            try:
                with open("big.bin", "wb") as f:
                    for _ in range(100):
                        f.write(chunk)
                print("wrote 100 MiB")
            except OSError as e:
                print(errno.errorcode[e.errno])
        """, policy)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "EFBIG"
        assert os.path.getsize(os.path.join(folder, "big.bin")) <= 64 << 20


def test_cpu_limit_kills_a_busy_loop():
    started = time.monotonic()
    result = run("while True: pass", SandboxPolicy(cpu_seconds=2), timeout=30)
    assert result.returncode == 128 + signal.SIGXCPU
    assert time.monotonic() - started < 15


def test_environment_does_not_leak(monkeypatch, workdir):
    monkeypatch.setenv("GRADER_SECRET_TOKEN", "do-not-leak")
    monkeypatch.setenv("JPY_PARENT_PID", str(os.getpid()))
    env = run_json("import json, os; print(json.dumps(dict(os.environ)))",
                   SandboxPolicy(workdir=str(workdir), env={"OMP_NUM_THREADS": "1"}))
    env.pop("PWD", None)  # set by bubblewrap's --chdir
    assert set(env) == {"PATH", "HOME", "LANG", "OMP_NUM_THREADS"}
    assert env["HOME"] == os.path.realpath(workdir)
    assert env["OMP_NUM_THREADS"] == "1"
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)


def test_preexec_limits_the_child_only():
    need_sandbox()
    policy = SandboxPolicy(max_open_files=100)
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    argv = sandbox.command([sys.executable, "-c",
                            "import resource; print(resource.getrlimit(resource.RLIMIT_NOFILE))"],
                           policy)
    result = subprocess.run(argv, preexec_fn=sandbox.preexec(policy), capture_output=True,
                            text=True, timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(100, 100)"
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == before


def test_kernel_command_refuses_tcp_and_shared_directories(tmp_path):
    from jupyter_client.connect import write_connection_file

    need_sandbox()
    tcp = tmp_path / "tcp" / "kernel.json"
    tcp.parent.mkdir()
    write_connection_file(str(tcp), transport="tcp", ip="127.0.0.1")
    with pytest.raises(ValueError, match="ipc"):
        sandbox.kernel_command(["python", "-f", "{connection_file}"], str(tcp), SandboxPolicy())

    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "other-kernel.json").write_text("{}")
    conn = shared / "kernel.json"
    write_connection_file(str(conn), transport="ipc", ip=str(shared / "kernel-ipc"))
    with pytest.raises(ValueError, match="fresh directory"):
        sandbox.kernel_command(["python", "-f", "{connection_file}"], str(conn), SandboxPolicy())


def test_ipykernel_runs_in_the_sandbox_over_ipc(tmp_path, workdir):
    from jupyter_client import KernelManager

    need_sandbox()
    policy = SandboxPolicy(workdir=str(workdir), env={"OPENBLAS_NUM_THREADS": "1"})
    sandbox.grant_access(workdir, policy)

    class SandboxedKernelManager(KernelManager):
        async def _async_launch_kernel(self, kernel_cmd, **kw):
            cmd = sandbox.kernel_command(kernel_cmd, self.connection_file, policy)
            return await super()._async_launch_kernel(cmd, **kw)

    runtime = tmp_path / "kernel"
    runtime.mkdir()
    km = SandboxedKernelManager(kernel_name="python3", transport="ipc",
                                connection_file=str(runtime / "kernel.json"))
    started = time.monotonic()
    km.start_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client = km.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=30)
        ready = time.monotonic() - started
        outputs = []
        reply = client.execute_interactive(
            "import os; print(os.getuid(), 'JPY_PARENT_PID' in os.environ)\n1+1", timeout=20,
            output_hook=lambda msg: outputs.append((msg["msg_type"], msg["content"])))
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)
    assert reply["content"]["status"] == "ok"
    results = [c["data"]["text/plain"] for t, c in outputs if t == "execute_result"]
    streams = "".join(c["text"] for t, c in outputs if t == "stream")
    assert results == ["2"]
    assert streams.split() == ["65534", "False"]
    assert ready < 30
    print(f"sandboxed kernel ready in {ready:.2f} s")
