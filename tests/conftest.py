"""Shared fixtures: run the CLI as a user would, and real consumers of what it writes."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

# The real servers' fixtures, registered once for every test module: r-nacos (rnacos), real Nacos
# 2.5.1 and 3.0.1 (real_nacos), both (nacos) and the three-node cluster (real_cluster).
pytest_plugins = ["rnacos", "nacos_server"]

# Keep the environment of the CLI under test free of the developer's own settings.
_SETTING_VARS = [name for name in os.environ if name.startswith(("NACOS_", "CONFIG_STORAGE", "VOLUMES_", "FILE_ROOT"))]


def require_tool(name: str, install_hint: str) -> str:
    """A real consumer the tests need; missing is a failure that says what to install."""
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} is not installed: {install_hint}", pytrace=False)
    return path


def run_cli(*args, env=None, volumes=None, check=False, timeout=120, input=None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in _SETTING_VARS}
    full_env.update(env or {})
    command = [sys.executable, "-m", "higress_init", *args]
    if volumes is not None:
        command += ["--volumes", str(volumes)]
    result = subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=timeout, input=input)
    if check and result.returncode != 0:
        raise AssertionError(f"higress-init {' '.join(args)} exited {result.returncode}\n"
                             f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every file under root but the initializer's own bookkeeping (.higress-init/: the lock, the
    journal, the last run's inputs): (sha256, mtime_ns, mode)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and ".higress-init" not in path.relative_to(root).parts:
            st = path.stat()
            out[str(path.relative_to(root))] = (hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns,
                                                st.st_mode & 0o777)
    return out


@pytest.fixture(scope="session")
def initialized_template(tmp_path_factory) -> Path:
    """One cold run with the default settings; tests get copies (RSA-4096 keys are slow to make)."""
    root = tmp_path_factory.mktemp("template") / "volumes"
    run_cli("run", volumes=root, check=True)
    return root


@pytest.fixture
def volumes(tmp_path) -> Path:
    return tmp_path / "volumes"


@pytest.fixture
def initialized(initialized_template, tmp_path) -> Path:
    target = tmp_path / "volumes"
    shutil.copytree(initialized_template, target, symlinks=True)
    return target


@pytest.fixture
def fast_env() -> dict:
    """Small keys for tests about behaviour, not about the default key sizes."""
    return {"CA_KEY_ALGORITHM": "ecdsa-p256", "LEAF_KEY_ALGORITHM": "ecdsa-p256"}
