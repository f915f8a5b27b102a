"""Run an argv in a bubblewrap sandbox: no network, a private view of the file system, rlimits.

This module knows nothing about what it runs; callers hand it a command line and a
`SandboxPolicy` and get back the command line that runs it confined:

    policy = SandboxPolicy(workdir="/path/to/scratch", env={"OMP_NUM_THREADS": "1"})
    grant_access(policy.workdir, policy)                      # the sandbox user may write there
    subprocess.run(command([sys.executable, "-c", "print(1)"], policy))

What the sandboxed process sees and may do:

* A fresh root holding read-only binds of the system (`/usr`, the `/bin`, `/sbin`, `/lib*` entries
  as they are on the host, and the few files of `/etc` that Python and the C library read), a
  private `/proc` (its own pid namespace), a minimal `/dev`, and a private, size-limited `/tmp`.
* This Python installation, read-only at the same paths: `sys.prefix` (the venv),
  `sys.base_prefix`/`sys.base_exec_prefix` (the interpreter the venv points at) and every hop of
  the `sys.executable` symlink chain, so the venv's `bin/python` works unchanged.
* The grader's home directory is hidden: an empty tmpfs is mounted over it, and only the parts of
  it bound explicitly (the interpreter, say a pyenv install) show through, read-only.
* `policy.readonly_paths` read-only, and `policy.workdir` read-write, each at its own (resolved)
  host path; the process starts in the workdir. Nothing else of the host is visible: not the
  repository, not other temporary folders, not the gradebook.
* No network (its own network namespace with only a loopback), and its own ipc, uts and cgroup
  namespaces. It runs in a new session (no terminal injection), and is killed with everything it
  started when the process that launched bubblewrap dies (`--die-with-parent`, plus the pid
  namespace: when the sandbox's first process exits, all the others are killed).
* Exactly the environment `sandbox_environment(policy)` returns: PATH, HOME (the workdir), LANG and
  whatever `policy.env` adds (bubblewrap adds PWD). Nothing of the grader's environment leaks in.
* Resource limits (address space, CPU seconds, processes, file size, open files, no core files)
  applied with util-linux `prlimit` inside the sandbox, so they bind the sandboxed command and
  never the grader; `preexec` offers the same limits for `subprocess.Popen(preexec_fn=...)`.

User: the command runs as an unprivileged host user, uid/gid 65534 (nobody/nogroup) by default,
switched to with util-linux `setpriv` inside the sandbox (all capabilities, the bounding set and
supplementary groups dropped, no_new_privs set). Bubblewrap's own `--uid/--gid` is not used: run
by root it maps the sandbox user onto host uid 0 in a user namespace, and the kernel never applies
RLIMIT_NPROC to host root, so a fork bomb would not stop. For the same reason no user namespace
is created (`--unshare-all` would try to create one, so the other namespaces are listed one by
one). This needs the grader to run as root, which `available()` checks.

RLIMIT_NPROC counts every process and thread of the uid on the whole host. Sandboxes that run at
the same time under the same uid share `max_processes`; give concurrent sandboxes distinct
`uid`/`gid` values when each needs its own budget, and keep BLAS/OpenMP thread counts small
(`OPENBLAS_NUM_THREADS`, `OMP_NUM_THREADS` in `policy.env`): every thread counts.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import pwd
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

GiB = 1 << 30
MiB = 1 << 20

INSTALL_HINT = "install the Debian package bubblewrap (make system-packages)"

# Top-level system entries, bound read-only (or recreated as the same symlink, with merged /usr).
_SYSTEM_TREES = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# The parts of /etc that the C library, Python and the usual scientific stack read.
_ETC_ENTRIES = (
    "alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "ld.so.preload",
    "passwd", "group", "nsswitch.conf", "host.conf", "hosts", "gai.conf", "localtime",
    "timezone", "mime.types", "os-release", "locale.alias", "fonts", "matplotlibrc",
)
_ETC_NETWORK_ENTRIES = ("resolv.conf", "ssl", "ca-certificates", "pki")
_KERNEL_PARENT_VARIABLES = ("JPY_PARENT_PID",)


class SandboxUnavailable(RuntimeError):
    """Bubblewrap cannot sandbox anything on this machine; `reason` says why and what to do."""

    def __init__(self, reason: str):
        super().__init__(f"the sandbox is unavailable: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class SandboxPolicy:
    """What a sandboxed command may use. Limits are per process unless noted; None lifts one.

    memory_bytes    RLIMIT_AS: address space of each process (a failed allocation raises
                    MemoryError in Python).
    cpu_seconds     RLIMIT_CPU: CPU time of each process; SIGXCPU at the limit, SIGKILL one
                    second later.
    max_processes   RLIMIT_NPROC: processes and threads of the sandbox uid, host-wide (see the
                    module docstring).
    max_file_bytes  RLIMIT_FSIZE: largest file a process may write (writes beyond fail with EFBIG).
    max_open_files  RLIMIT_NOFILE.
    tmp_bytes       size of the private tmpfs on /tmp (it is memory, not counted by RLIMIT_AS).
    workdir         host directory bound read-write at its own resolved path and made the current
                    directory; HOME points there. It must be writable by `uid` (`grant_access`).
                    None: no writable host directory, the process starts in /tmp.
    readonly_paths  extra host paths bound read-only at their own resolved paths.
    env             variables set inside on top of PATH, HOME and LANG (and overriding them).
    network         False: own network namespace with only a loopback device. True shares the
                    host's network (and binds resolv.conf and the TLS certificates).
    uid, gid        the unprivileged host user the command runs as (never 0).
    """
    memory_bytes: int | None = 2 * GiB
    cpu_seconds: int | None = 600
    max_processes: int | None = 64
    max_file_bytes: int | None = 64 * MiB
    max_open_files: int | None = 1024
    tmp_bytes: int = 256 * MiB
    workdir: str | None = None
    readonly_paths: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    network: bool = False
    uid: int = 65534
    gid: int = 65534

    def __post_init__(self):
        for name in ("memory_bytes", "cpu_seconds", "max_processes", "max_file_bytes",
                     "max_open_files"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"SandboxPolicy.{name} must be a positive int or None, not {value!r}")
        if not isinstance(self.tmp_bytes, int) or self.tmp_bytes <= 0:
            raise ValueError(f"SandboxPolicy.tmp_bytes must be a positive int, not {self.tmp_bytes!r}")
        if not all(isinstance(v, int) and v > 0 for v in (self.uid, self.gid)):
            raise ValueError("the sandbox must run as an unprivileged user: uid and gid must be "
                             f"positive ints, not {self.uid!r}/{self.gid!r}")
        if isinstance(self.readonly_paths, (str, os.PathLike)):
            raise TypeError("SandboxPolicy.readonly_paths is a sequence of paths, not one path")
        object.__setattr__(self, "readonly_paths", tuple(os.fspath(p) for p in self.readonly_paths))
        if self.workdir is not None:
            object.__setattr__(self, "workdir", os.fspath(self.workdir))
        env = {str(k): str(v) for k, v in dict(self.env).items()}
        for key, value in env.items():
            if not key or "=" in key or "\0" in key or "\0" in value:
                raise ValueError(f"invalid environment variable for the sandbox: {key!r}")
        object.__setattr__(self, "env", MappingProxyType(env))


# Resource limits ----------------------------------------------------------------------------------

def _rlimits(policy: SandboxPolicy) -> list[tuple[str, int, int | None, int | None]]:
    """(prlimit option, resource, soft, hard) for every limit of the policy; None is unlimited."""
    cpu = policy.cpu_seconds
    return [
        ("as", resource.RLIMIT_AS, policy.memory_bytes, policy.memory_bytes),
        ("cpu", resource.RLIMIT_CPU, cpu, None if cpu is None else cpu + 1),
        ("nproc", resource.RLIMIT_NPROC, policy.max_processes, policy.max_processes),
        ("fsize", resource.RLIMIT_FSIZE, policy.max_file_bytes, policy.max_file_bytes),
        ("nofile", resource.RLIMIT_NOFILE, policy.max_open_files, policy.max_open_files),
        ("core", resource.RLIMIT_CORE, 0, 0),
    ]


def preexec(policy: SandboxPolicy) -> Callable[[], None]:
    """A `preexec_fn` that applies the policy's rlimits to the child about to exec bubblewrap.

    `command()` already applies the same limits inside the sandbox, so this is optional; it runs
    in the forked child only, never in the grader. (Root is exempt from RLIMIT_NPROC, so that
    limit takes effect once the sandbox has switched to its unprivileged user.)
    """
    limits = [(res, _rlim(soft), _rlim(hard)) for _, res, soft, hard in _rlimits(policy)]

    def apply() -> None:
        for res, soft, hard in limits:
            resource.setrlimit(res, (soft, hard))

    return apply


def _rlim(value: int | None) -> int:
    return resource.RLIM_INFINITY if value is None else value


def _prlimit_value(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


# Building the command line ------------------------------------------------------------------------

def _depth(path: str) -> int:
    return 0 if path == "/" else path.count("/")


def _is_within(path: str, root: str) -> bool:
    return path == root or root == "/" or path.startswith(root.rstrip("/") + "/")


_SYSTEM_BIN = ("/usr/bin", "/bin", "/usr/sbin", "/sbin")


def _bwrap() -> str | None:
    return shutil.which("bwrap") or shutil.which("bwrap", path=os.pathsep.join(_SYSTEM_BIN))


def _tool(name: str) -> str:
    """A util-linux tool, by a path that exists inside the sandbox as well (the system dirs)."""
    found = shutil.which(name, path=os.pathsep.join(_SYSTEM_BIN))
    if found is None:
        raise SandboxUnavailable(f"`{name}` is missing: install the Debian package util-linux")
    return os.path.realpath(found)


def _symlink_chain(path: str) -> list[str]:
    """Every path a chain of symlinks passes through, the final target included."""
    seen: list[str] = []
    current = os.path.abspath(path)
    for _ in range(40):
        parent = os.path.realpath(os.path.dirname(current))
        current = os.path.join(parent, os.path.basename(current))
        if current in seen:
            break
        seen.append(current)
        if not os.path.islink(current):
            break
        current = os.path.join(parent, os.readlink(current))
    return seen


def python_paths() -> list[str]:
    """The host directories this Python installation lives in, resolved and deduplicated.

    sys.prefix is the venv, sys.base_prefix the interpreter it was made from; every hop of the
    `sys.executable` symlink chain (venv bin/python -> .../bin/python3 -> python3.11) is covered.
    """
    candidates = [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix]
    for hop in _symlink_chain(sys.executable):
        candidates.append(os.path.dirname(hop))
    resolved: list[str] = []
    for path in candidates:
        if not path:
            continue
        for variant in (os.path.realpath(path), os.path.abspath(path)):
            if os.path.isdir(variant) and variant not in resolved:
                resolved.append(variant)
    # Keep only the outermost of nested directories.
    return [p for p in resolved if not any(q != p and _is_within(p, q) for q in resolved)]


def _grader_homes() -> list[str]:
    homes = {os.path.expanduser("~")}
    try:
        homes.add(pwd.getpwuid(os.geteuid()).pw_dir)
    except KeyError:
        pass
    result = []
    for home in homes:
        if home and os.path.isabs(home) and os.path.isdir(home):
            real = os.path.realpath(home)
            if real != "/" and not any(_is_within(real, t) for t in ("/usr", "/etc", "/proc", "/dev")):
                result.append(real)
    return sorted(set(result))


def sandbox_environment(policy: SandboxPolicy) -> dict[str, str]:
    """The environment of the sandboxed command (bubblewrap adds PWD, the working directory)."""
    bindir = os.path.dirname(os.path.abspath(sys.executable))
    home = os.path.realpath(policy.workdir) if policy.workdir else "/tmp"
    env = {
        "PATH": os.pathsep.join(dict.fromkeys([bindir, "/usr/local/bin", "/usr/bin", "/bin"])),
        "HOME": home,
        "LANG": "C.UTF-8",
    }
    env.update(policy.env)
    return env


def _destinations(path: str) -> list[str]:
    """Where a host path is bound: its real path, and also the path as given when that differs
    (a symlinked component such as a symlinked temporary folder), so both spellings work inside.
    Paths through the system symlinks (/bin, /lib, ...) resolve inside as they do on the host."""
    real, given = os.path.realpath(path), os.path.abspath(path)
    through_system_link = any(_is_within(given, top) for top in _SYSTEM_TREES if os.path.islink(top))
    return [real] if given == real or through_system_link else [real, given]


@dataclass
class _Mount:
    kind: str              # "ro", "rw", "tmpfs", "symlink"
    dest: str
    source: str = ""
    perms: str = ""
    size: int | None = None


def _mounts(policy: SandboxPolicy, writable: list[str]) -> list[_Mount]:
    mounts: list[_Mount] = []
    for top in _SYSTEM_TREES:
        if os.path.islink(top):
            mounts.append(_Mount("symlink", top, os.readlink(top)))
        elif os.path.isdir(top):
            mounts.append(_Mount("ro", top, top))
    etc = list(_ETC_ENTRIES) + (list(_ETC_NETWORK_ENTRIES) if policy.network else [])
    for name in etc:
        path = os.path.join("/etc", name)
        if os.path.lexists(path):
            mounts.append(_Mount("ro", path, path))
    mounts.append(_Mount("tmpfs", "/tmp", perms="1777", size=policy.tmp_bytes))
    for home in _grader_homes():
        mounts.append(_Mount("tmpfs", home, perms="0755"))
    for path in python_paths():
        mounts.append(_Mount("ro", path, os.path.realpath(path)))
    for path in policy.readonly_paths:
        real = os.path.realpath(path)
        if not os.path.exists(real):
            raise FileNotFoundError(f"read-only path for the sandbox does not exist: {path}")
        mounts += [_Mount("ro", dest, real) for dest in _destinations(path)]
    for path in ([policy.workdir] if policy.workdir else []) + writable:
        real = os.path.realpath(path)
        if not os.path.isdir(real):
            raise NotADirectoryError(f"writable directory for the sandbox does not exist: {path}")
        mounts += [_Mount("rw", dest, real) for dest in _destinations(path)]

    # One mount per destination: writable over read-only over tmpfs over system entries.
    rank = {"symlink": 0, "tmpfs": 1, "ro": 2, "rw": 3}
    by_dest: dict[str, _Mount] = {}
    for mount in mounts:
        current = by_dest.get(mount.dest)
        if current is None or rank[mount.kind] >= rank[current.kind]:
            by_dest[mount.dest] = mount
    chosen = list(by_dest.values())

    def redundant(mount: _Mount) -> bool:
        # A read-only bind of something an enclosing read-only bind already shows as is.
        if mount.kind != "ro":
            return False
        enclosing = [m for m in chosen if m is not mount and _is_within(mount.dest, m.dest)
                     and m.kind in ("ro", "rw", "tmpfs")]
        if not enclosing:
            return False
        nearest = max(enclosing, key=lambda m: _depth(m.dest))
        return (nearest.kind == "ro"
                and os.path.join(nearest.source, os.path.relpath(mount.dest, nearest.dest))
                == mount.source)

    chosen = [m for m in chosen if not redundant(m)]
    chosen.sort(key=lambda m: (_depth(m.dest), rank[m.kind], m.dest))
    return chosen


def _mount_args(mounts: list[_Mount]) -> list[str]:
    """bwrap arguments for the mounts, parents first, creating traversable parent directories.

    bubblewrap makes missing parents of a mount point with mode 0700, which the unprivileged
    sandbox user could not traverse; they are created explicitly with mode 0755.
    """
    args: list[str] = []
    created = {"/"}
    host_backed: list[str] = []   # destinations whose subtree comes from the host
    for mount in mounts:
        parents = []
        parent = os.path.dirname(mount.dest)
        while parent not in created and not any(_is_within(parent, b) for b in host_backed):
            parents.append(parent)
            parent = os.path.dirname(parent)
        for directory in reversed(parents):
            args += ["--perms", "0755", "--dir", directory]
            created.add(directory)
        if mount.kind == "symlink":
            args += ["--symlink", mount.source, mount.dest]
        elif mount.kind == "tmpfs":
            if mount.perms:
                args += ["--perms", mount.perms]
            if mount.size is not None:
                args += ["--size", str(mount.size)]
            args += ["--tmpfs", mount.dest]
        else:
            args += ["--ro-bind" if mount.kind == "ro" else "--bind", mount.source, mount.dest]
            host_backed.append(mount.dest)
        created.add(mount.dest)
    return args


def _build(argv: list[str], policy: SandboxPolicy, writable: list[str] = ()) -> list[str]:
    if not argv:
        raise ValueError("nothing to run: argv is empty")
    bwrap = _bwrap()
    if bwrap is None:
        raise SandboxUnavailable(f"bubblewrap is not installed: {INSTALL_HINT}")
    cmd = [bwrap, "--die-with-parent", "--new-session",
           "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
           "--hostname", "sandbox"]
    if not policy.network:
        cmd.append("--unshare-net")
    cmd += _mount_args(_mounts(policy, list(writable)))
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    cmd.append("--clearenv")
    for key, value in sandbox_environment(policy).items():
        cmd += ["--setenv", key, value]
    cmd += ["--chdir", os.path.realpath(policy.workdir) if policy.workdir else "/tmp"]
    cmd += ["--", _tool("prlimit")]
    for option, _, soft, hard in _rlimits(policy):
        cmd.append(f"--{option}={_prlimit_value(soft)}:{_prlimit_value(hard)}")
    cmd += ["--", _tool("setpriv"), f"--reuid={policy.uid}", f"--regid={policy.gid}",
            "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    return cmd + [os.fspath(a) for a in argv]


def command(argv: list[str], policy: SandboxPolicy) -> list[str]:
    """The command line that runs `argv` inside the sandbox `policy` describes.

    Raises SandboxUnavailable when bubblewrap does not work on this machine (see `available`).
    Run it as is, e.g. `subprocess.run(command(argv, policy))`; its exit status is the sandboxed
    command's (128 + N when signal N killed it).
    """
    require()
    return _build(list(argv), policy)


# Jupyter kernels -----------------------------------------------------------------------------------

def kernel_command(kernel_argv: list[str], connection_file: str, policy: SandboxPolicy) -> list[str]:
    """The command line that runs a Jupyter kernel in the sandbox, talking over ipc sockets.

    `kernel_argv` is the kernel spec's argv; "{connection_file}" in it is replaced. The connection
    file must exist and say `"transport": "ipc"` (there is no network, so no TCP loopback either),
    with an absolute `ip` in the connection file's directory, which is where the kernel creates
    its sockets: jupyter_client's default for a KernelManager with `transport="ipc"` and
    `connection_file` set. That directory is bound read-write into the sandbox, so it must belong
    to this kernel alone (a fresh `tempfile.mkdtemp()` per kernel) -- otherwise one sandboxed
    kernel could read another's key and drive it; a directory holding anything else is refused.
    The directory and the connection file are handed to the sandbox user (chown, mode 0700/0600).

    The kernel gets no JPY_PARENT_PID: in its own pid namespace ipykernel would take its parent
    for dead and exit; the sandbox dies with its launcher instead. Interrupt such a kernel with
    messages (kernel spec `"interrupt_mode": "message"`): a signal sent to bubblewrap does not
    reach it.
    """
    require()
    conn = os.path.abspath(connection_file)
    with open(conn) as f:
        info = json.load(f)
    if info.get("transport") != "ipc":
        raise ValueError(f"{connection_file}: the sandbox has no network; the kernel needs "
                         f"\"transport\": \"ipc\", not {info.get('transport')!r}")
    ip = info.get("ip") or ""
    if not os.path.isabs(ip):
        raise ValueError(f"{connection_file}: the ipc \"ip\" must be an absolute path, not {ip!r}")
    folder = os.path.dirname(conn)
    if os.path.realpath(os.path.dirname(ip)) != os.path.realpath(folder):
        raise ValueError(f"{connection_file}: the ipc sockets ({ip}-N) must be in the connection "
                         f"file's directory {folder}")
    socket_prefix = os.path.basename(ip) + "-"
    strangers = sorted(name for name in os.listdir(folder)
                       if name != os.path.basename(conn) and not name.startswith(socket_prefix))
    if strangers:
        raise ValueError(f"{folder} is bound into the kernel's sandbox, so it must hold only this "
                         f"kernel's files; it also holds {', '.join(strangers[:5])}: use a fresh "
                         "directory per kernel")
    grant_access(folder, policy)
    os.chmod(folder, 0o700)
    os.chmod(conn, 0o600)
    env = {k: v for k, v in policy.env.items() if k not in _KERNEL_PARENT_VARIABLES}
    kernel_policy = dataclasses.replace(policy, env=env)
    argv = [a.replace("{connection_file}", conn) for a in map(os.fspath, kernel_argv)]
    return _build(argv, kernel_policy, writable=[folder])


def grant_access(path: str, policy: SandboxPolicy) -> None:
    """Give `path` (recursively) to the sandbox user, so the sandbox can read and write it.

    The grader, as root, keeps full access. Symlinks are changed themselves, never followed.
    """
    path = os.fspath(path)
    os.chown(path, policy.uid, policy.gid, follow_symlinks=False)
    if os.path.isdir(path) and not os.path.islink(path):
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.chown(os.path.join(root, name), policy.uid, policy.gid, follow_symlinks=False)


# Availability --------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def available() -> tuple[bool, str]:
    """(True, description) when a trivial command runs in the sandbox here, else (False, reason).

    Cached; `available.cache_clear()` makes the next call check again.
    """
    if _bwrap() is None:
        return False, f"bubblewrap is not installed: {INSTALL_HINT}"
    for tool in ("setpriv", "prlimit"):
        try:
            _tool(tool)
        except SandboxUnavailable as e:
            return False, e.reason
    if os.geteuid() != 0:
        return False, ("the grader must run as root: the sandbox switches to an unprivileged "
                       "user (setpriv) so that its process limit applies")
    true = shutil.which("true", path=os.pathsep.join(_SYSTEM_BIN)) or "/bin/true"
    try:
        result = subprocess.run(_build([true], SandboxPolicy()), stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"bubblewrap could not be run: {e}"
    if result.returncode == 0:
        version = subprocess.run([_bwrap(), "--version"], capture_output=True,
                                 text=True).stdout.strip()
        return True, f"{version or 'bubblewrap'} works (namespaces, setpriv to an unprivileged user)"
    return False, _explain(result.stderr.strip(), result.returncode)


def _explain(stderr: str, returncode: int) -> str:
    lowered = stderr.lower()
    if "namespace" in lowered and ("operation not permitted" in lowered
                                   or "permission" in lowered or "no space" in lowered):
        hint = ("the kernel refused to create namespaces (a container without CAP_SYS_ADMIN, or "
                "user namespaces disabled: sysctl user.max_user_namespaces / "
                "kernel.unprivileged_userns_clone)")
    elif "setpriv" in lowered:
        hint = "switching to the unprivileged sandbox user failed"
    elif "mount" in lowered or "pivot_root" in lowered:
        hint = "bubblewrap could not set up its mounts (mounting not permitted here?)"
    else:
        hint = f"a trivial sandboxed command failed (exit status {returncode})"
    return f"{hint}: {stderr or 'no error output'}"


def require() -> None:
    """Raise SandboxUnavailable unless `available()`."""
    ok, reason = available()
    if not ok:
        raise SandboxUnavailable(reason)
