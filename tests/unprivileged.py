"""Run a command so that an unprivileged user can start this Python, as on a Gradescope image.

The interpreter of this venv may live under a folder that only root can enter (a pyenv install
in /root, say). Gradescope images install Python system-wide and open the venv to everyone
(setup.sh), so there the grader's no-bubblewrap mode runs student code as uid 65534. To test that
mode here, the command runs in a private mount namespace in which each such folder is covered by
an empty tmpfs that everyone may enter, with only the interpreter's own tree bound back in.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

SCRIPT = """
set -e
while [ "$1" != "--" ]; do
    closed="$1"; tree="$2"; shift 2
    keep="$(mktemp -d)"
    mount --bind "$tree" "$keep"
    mount -t tmpfs -o mode=0755 none "$closed"
    mkdir -p "$tree"
    mount --move "$keep" "$tree"
done
shift
exec "$@"
"""


def _closed_folders() -> list[tuple[str, str]]:
    """(folder others cannot enter, the tree below it that the interpreter needs)."""
    found = []
    for prefix in {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}:
        path = Path(prefix)
        for parent in reversed(path.parents):
            if parent != Path("/") and not os.stat(parent).st_mode & 0o001:
                tree = parent / path.relative_to(parent).parts[0]
                found.append((str(parent), str(tree)))
                break
    return sorted(set(found))


def command(argv: list[str]) -> list[str]:
    """`argv`, run so that uid 65534 can execute this interpreter and import its packages."""
    pairs = _closed_folders()
    if not pairs:
        return list(argv)
    flat = [item for pair in pairs for item in pair]
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", SCRIPT, "sh",
            *flat, "--", *argv]
