#!/bin/sh
# Install the initializer into a new virtual environment, exactly as the image does: the pinned
# runtime dependencies from requirements.lock, then the package, pip resolving and checking
# dependencies as usual; `pip check` must pass.
# Usage: install.sh VENV_DIR
set -eu
venv="$1"
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m venv --without-pip "$venv"
pip() {
    python3 -m pip --python "$venv/bin/python" --disable-pip-version-check "$@"
}
pip install --quiet --no-cache-dir -r "$here/requirements.lock"
pip install --quiet --no-cache-dir "$here"
pip check
