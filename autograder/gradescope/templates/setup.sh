#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (the zip is unpacked in
# /autograder/source). It makes a venv next to this file with a Python of at least @PYTHON@ and
# the pinned packages of requirements.txt; run_autograder runs the grader with that venv.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export DEBIAN_FRONTEND=noninteractive

recent_enough() {
    "$1" -c 'import sys; sys.exit(sys.version_info[:2] < (@MAJOR@, @MINOR@))' 2>/dev/null
}

python=""
for candidate in python3 python3.14 python3.13 python3.12 python3.@MINOR@; do
    if command -v "$candidate" >/dev/null && recent_enough "$candidate"; then
        python="$(command -v "$candidate")"
        break
    fi
done

apt-get update -qq
if [ -z "$python" ]; then
    apt-get install -y -qq "python@PYTHON@" "python@PYTHON@-venv"
    python="$(command -v "python@PYTHON@")"
else
    # Debian and Ubuntu ship venv's pip in a package of its own.
    minor="$("$python" -c 'import sys; print(sys.version_info[1])')"
    apt-get install -y -qq "python3.$minor-venv" || true
fi
# Optional: where the container allows namespaces, student code then runs in the sandbox.
apt-get install -y -qq bubblewrap || true

"$python" -m venv "$here/venv"
"$here/venv/bin/python" -m pip install --quiet --no-cache-dir -r "$here/requirements.txt"
"$here/venv/bin/python" -c "import @IMPORTS@"

# Student code may run as an unprivileged user: it may read the grader's code and Python, never
# the grading template with the hidden tests.
chmod -R a+rX "$here/autograder" "$here/venv"
chmod -R go-rwx "$here/grading"
