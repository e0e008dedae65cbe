"""Shared by the tests/test_hostile_*.py modules: a victim folder outside the volumes root that
no run may change, and the checks every hostile case makes."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from conftest import run_cli


def make_victim(base: Path) -> Path:
    """Files a compromised component would like root to overwrite, chown, chmod or publish."""
    victim = base / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "secret").write_bytes(b"host secret\n")
    (victim / "sub/config.yaml").write_bytes(b"kind: Host\n")
    os.chmod(victim / "secret", 0o600)
    return victim


def state_of(folder: Path) -> dict:
    """Content, mode, owner and mtime of everything in a folder, links not followed."""
    out = {}
    for path in sorted([folder, *folder.rglob("*")]):
        st = path.lstat()
        data = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else ""
        out[str(path.relative_to(folder))] = (data, st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)
    return out


def one_line_error(result, *words: str) -> str:
    """The run failed with exactly one line on stderr (no traceback) holding every word."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def status(volumes: Path, env=None):
    return run_cli("status", volumes=volumes, env=env, timeout=120)
