"""`make run` on a fresh clone, as an operator types it: it says what it is doing while it installs."""
from __future__ import annotations

import os
import shutil
import subprocess

from conftest import REPO


def test_make_run_on_a_fresh_clone_says_what_it_installs_then_runs(tmp_path):
    clone = tmp_path / "clone"
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        (clone / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, clone / rel)
    result = subprocess.run(["make", "--no-print-directory", "run", "CA_KEY_ALGORITHM=ecdsa-p256"], cwd=clone,
                            capture_output=True, text=True, timeout=1200,
                            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ["HOME"],
                                 "CA_KEY_ALGORITHM": "ecdsa-p256", "LEAF_KEY_ALGORITHM": "ecdsa-p256"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout.splitlines()
    first = out.index(next(line for line in out if line.startswith("make: installing the initializer into .venv/")))
    assert out[first].endswith("the pinned, hash-checked dependencies of initContainer/requirements.lock")
    # uv names each package it installs (on stderr), so the minute on a fresh clone is not silent
    installed = [line.strip() for line in result.stderr.splitlines() if line.strip().startswith("+ ")]
    assert any(line.startswith("+ cryptography==") for line in installed), result.stderr[-2000:]
    assert any(line.startswith("make: the initializer itself") for line in out)
    assert out[-1].startswith("done ") and (clone / "volumes/api/ca.crt").is_file()
