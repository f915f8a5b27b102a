"""Run a command so that an unprivileged user can start this Python, as on a Gradescope image.

The interpreter of this venv may live under a folder that only root can enter (a pyenv install
in /root, say), and so may the repository (a clone in a home folder, or in a `mktemp -d` folder,
both mode 0700). Gradescope images install Python system-wide and open the venv to everyone
(setup.sh), so there the grader's no-bubblewrap mode runs student code as uid 65534. To test that
mode here, the command runs in a private mount namespace in which each such folder is covered by
an empty tmpfs that everyone may enter, with only the trees that user needs bound back in: this
Python installation (the paths the bubblewrap sandbox binds, `sandbox.python_paths`), and the
trees the caller names (the `autograder` package, say, as `trusted.launch` binds it into the
sandbox). Nothing else of a closed folder shows through.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from autograder import sandbox

# Arguments: for each closed folder, outermost first: the folder, how many trees below it are
# kept, and their paths; then "--" and the command. Each kept tree is bound aside, the folder is
# covered, and the tree is moved back to its own path on the (empty, 0755) tmpfs.
SCRIPT = """
set -e
while [ "$1" != "--" ]; do
    closed="$1"; count="$2"; shift 2
    keep="$(mktemp -d)"
    i=0
    for tree in "$@"; do
        [ "$i" -lt "$count" ] || break
        mkdir "$keep/$i"
        mount --bind "$tree" "$keep/$i"
        i=$((i + 1))
    done
    mount -t tmpfs -o mode=0755 none "$closed"
    i=0
    while [ "$i" -lt "$count" ]; do
        mkdir -p "$1"
        mount --move "$keep/$i" "$1"
        rmdir "$keep/$i"
        shift
        i=$((i + 1))
    done
    rmdir "$keep"
done
shift
exec "$@"
"""


def _closed_folders(trees: Iterable[str | os.PathLike]) -> list[tuple[str, list[str]]]:
    """(folder others cannot enter, the entries right below it on the way to `trees`), every
    such folder on the way to each tree, outermost first (a closed folder inside a kept tree is
    covered after that tree is back in place)."""
    kept: dict[Path, set[Path]] = {}
    for tree in trees:
        path = Path(os.path.realpath(tree))
        for parent in reversed(path.parents):
            if parent != Path("/") and not os.stat(parent).st_mode & 0o001:
                kept.setdefault(parent, set()).add(parent / path.relative_to(parent).parts[0])
    return [(str(folder), sorted(map(str, kept[folder])))
            for folder in sorted(kept, key=lambda folder: (len(folder.parts), folder))]


def command(argv: list[str], readable: Iterable[str | os.PathLike] = ()) -> list[str]:
    """`argv`, run so that uid 65534 can execute this interpreter, import its packages and read
    the `readable` trees (each must be open to others itself; only folders above it are
    covered)."""
    folders = _closed_folders([*sandbox.python_paths(), *readable])
    if not folders:
        return list(argv)
    flat = [item for folder, trees in folders for item in (folder, str(len(trees)), *trees)]
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", SCRIPT, "sh",
            *flat, "--", *argv]
