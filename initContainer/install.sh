#!/bin/sh
# Install the initializer into a new virtual environment, exactly as the image does:
# the pinned runtime dependencies from requirements.lock, then the package, both --no-deps.
# Usage: install.sh VENV_DIR
set -eu
venv="$1"
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m venv --without-pip "$venv"
pip_install() {
    python3 -m pip --python "$venv/bin/python" install --quiet --no-cache-dir --no-deps \
        --disable-pip-version-check "$@"
}
pip_install -r "$here/requirements.lock"
pip_install "$here"
