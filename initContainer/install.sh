#!/bin/sh
# Install the initializer into a new virtual environment, exactly as the image does, with uv:
# the runtime dependencies synced from requirements.lock (exactly those pins, every file checked
# against its hash: nothing else ends up installed), then the package (uv resolving its declared
# dependencies against them, as pip would); `uv pip check` must pass. Bytecode is compiled here,
# as pip does, so that no start of the one-shot container pays for it.
# uv: $UV, else the one on PATH, else the pinned one `make` installs into ~/.cache/higress-init.
# Usage: install.sh VENV_DIR
set -eu
venv="$1"
here="$(cd "$(dirname "$0")" && pwd)"
uv_version="0.13.9"
uv="${UV:-$(command -v uv || echo "${HOME:-/root}/.cache/higress-init/uv-$uv_version/bin/uv")}"
if ! [ -x "$uv" ]; then
    echo "install.sh: uv is needed: pip install uv==$uv_version (or make .venv/bin/higress-init, which installs it)" >&2
    exit 1
fi
python3 -m venv --without-pip "$venv"
export UV_PYTHON="$venv/bin/python" UV_NO_PROGRESS=1
"$uv" pip sync --quiet --require-hashes --compile-bytecode "$here/requirements.lock"
"$uv" pip install --quiet --compile-bytecode "$here"
"$uv" pip check --quiet
