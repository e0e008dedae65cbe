"""The package installed the plain way a Python user would (`pip install ./initContainer` into a
fresh virtual environment, pip resolving every dependency from pyproject), then checked by
`pip check` and used to seed a real r-nacos: the Nacos SDK must come with the package."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import yaml
from conftest import REPO

NS = "higress-system"


def test_plain_pip_install_passes_pip_check_and_seeds_nacos(tmp_path, rnacos):  # noqa: F811
    # a copy, so that pip's in-tree build leaves nothing behind in the repository
    source = tmp_path / "initContainer"
    shutil.copytree(REPO / "initContainer", source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin/python"), "-m", "pip", "--disable-pip-version-check"]
    install = subprocess.run(pip + ["install", "--quiet", str(source)], capture_output=True, text=True, timeout=1200)
    assert install.returncode == 0, install.stdout + install.stderr
    check = subprocess.run(pip + ["check"], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr

    node = rnacos()
    volumes = tmp_path / "volumes"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NACOS_SERVER_URL": node.url,
           "CA_KEY_ALGORITHM": "ecdsa-p256", "LEAF_KEY_ALGORITHM": "ecdsa-p256"}
    run = subprocess.run([str(venv / "bin/higress-init"), "run", "--volumes", str(volumes)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    cm = yaml.safe_load(node.get_config("configmaps.higress-config", NS, NS))
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "higress-config"
    assert node.get_config("configmaps.__names__", "DEFAULT_GROUP", NS) == \
        "higress-system/higress-config\nhigress-system/higress-console\n"
    assert "gRPC calls" in run.stdout  # the configs went through the SDK
