#!/usr/bin/env bash
# Install a working learn2learn 0.2.0 into the active Python environment.
#
# Why: learn2learn 0.2.0 ships on PyPI as an sdist only, and its pre-generated C files
# (meta_dataset.c, task_dataset.c, transforms.c) include CPython's private longintrepr.h,
# which moved in Python 3.11, so `pip install learn2learn` fails to compile on Python >= 3.11.
# Regenerating the C from the shipped .pyx sources with a current Cython fixes the build.
#
# Usage (from any directory, with the target environment active or PYTHON set):
#   bash scripts/install_learn2learn.sh
#   PYTHON=.venv/bin/python bash scripts/install_learn2learn.sh
#
# Idempotent: does nothing when `import learn2learn` already works.
set -euo pipefail

PYTHON="${PYTHON:-python}"
VERSION="0.2.0"
RUNTIME_DEPS=(gym qpth scipy requests tqdm)

say() { printf '[install_learn2learn] %s\n' "$*"; }

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    say "error: no Python interpreter '$PYTHON' on PATH; activate your environment or set PYTHON=/path/to/python." >&2
    exit 1
fi
# Absolute interpreter path: the steps below change directory.
PYTHON="$("$PYTHON" -c 'import sys; print(sys.executable)')"

if "$PYTHON" -c "import learn2learn" >/dev/null 2>&1; then
    say "learn2learn $("$PYTHON" -c 'import learn2learn; print(learn2learn.__version__)') is already importable by $PYTHON; nothing to do."
    exit 0
fi

if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
    say "error: torch is not importable by $PYTHON; install torch first (learn2learn builds against it)." >&2
    exit 1
fi

WORKDIR="$(mktemp -d)"
trap 'rm -rf "$WORKDIR"' EXIT

say "downloading the learn2learn==$VERSION sdist into $WORKDIR"
"$PYTHON" -m pip download --quiet --no-binary :all: --no-deps --dest "$WORKDIR" "learn2learn==$VERSION"
ARCHIVE="$(find "$WORKDIR" -maxdepth 1 -name "learn2learn-$VERSION.tar.gz" -print -quit)"
if [[ -z "$ARCHIVE" ]]; then
    say "error: pip download did not produce learn2learn-$VERSION.tar.gz in $WORKDIR" >&2
    exit 1
fi
tar -xzf "$ARCHIVE" -C "$WORKDIR"
SRC="$WORKDIR/learn2learn-$VERSION"

say "installing cython and regenerating the C sources from the .pyx files"
"$PYTHON" -m pip install --quiet cython
(
    cd "$SRC"
    # -3: Python 3 semantics; overwrites the stale .c files that include longintrepr.h.
    "$PYTHON" -m cython -3 learn2learn/data/{meta_dataset,task_dataset,transforms}.pyx
)

say "building and installing learn2learn $VERSION (no dependency resolution: torch stays as installed)"
"$PYTHON" -m pip install --quiet --no-deps --no-build-isolation "$SRC"

say "installing learn2learn's runtime dependencies: ${RUNTIME_DEPS[*]}"
"$PYTHON" -m pip install --quiet "${RUNTIME_DEPS[@]}"

cd "$WORKDIR"  # import the installed package, not the source tree
"$PYTHON" -c "import learn2learn; print('[install_learn2learn] learn2learn', learn2learn.__version__, 'imports fine')"
