"""The warm-rerun fast path. The initializer blocks every container's start, and most of a rerun
that changes nothing is spent importing cryptography and PyJWT to re-check files that nobody
touched. After a full run the inputs are recorded: the settings, the code version, and for every
file the run read or wrote its inode, size, mtime and ctime (ctime can't be set back by tools),
plus the earliest moment anything would need renewing. A later plain `run` whose inputs all match,
before that moment, has nothing to do for the local phases; any difference takes the full path.
"""
from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime
from pathlib import Path

from . import __version__
from .phases import Counts

STATE_FILE = ".higress-init/last-run.json"
# The phases whose only inputs are files and settings. `nacos`, `seed` and `deliver` are not here,
# so they run every time: the store (Nacos, or the file store the apiserver writes into) may have
# changed without the volumes knowing, and its higress-config must reach the mesh files like a
# ConfigMap reaches a pod.
LOCAL_PHASES = ("apiserver-pki", "pilot-pki", "kubeconfig", "tokens", "pod-config", "write")


def _settings_digest(settings) -> str:
    return hashlib.sha256(f"{__version__}|{settings!r}".encode()).hexdigest()


def _stat(path: Path):
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode, st.st_uid, st.st_gid]


def record(settings, paths, deadline: datetime | None, kept: dict[str, dict[str, int]]) -> None:
    """Remember this run's inputs (called after a full run, with the lock held)."""
    state_path = settings.volumes_root / STATE_FILE
    if deadline is None:
        state_path.unlink(missing_ok=True)
        return
    state = {"settings": _settings_digest(settings), "deadline": deadline.isoformat(), "kept": kept,
             "files": {str(p): _stat(p) for p in sorted(paths)}}
    tmp = state_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, state_path)


def unchanged(settings, now: datetime) -> dict[str, dict[str, int]] | None:
    """The per-phase outcome counts of the last run when nothing it depends on has changed."""
    try:
        state = json.loads((settings.volumes_root / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if state.get("settings") != _settings_digest(settings) or now >= datetime.fromisoformat(state["deadline"]):
        return None
    if any(_stat(Path(p)) != recorded for p, recorded in state["files"].items()):
        return None
    return state["kept"]


def forget(settings) -> None:
    (settings.volumes_root / STATE_FILE).unlink(missing_ok=True)


def outcome(counts) -> dict[str, int]:
    """What a rerun would report for a phase: whatever this run made, a rerun keeps."""
    result: dict[str, int] = {}
    for action, items in counts.by_action.items():
        if action not in ("written", "owner set"):
            kind = "skipped" if action == "skipped" else "kept"
            result[kind] = result.get(kind, 0) + len(items)
    return result


def replay(kept: dict[str, dict[str, int]], phase: str) -> Counts:
    counts = Counts()
    for action, number in kept.get(phase, {}).items():
        for _ in range(number):
            counts.add(action, phase)
    return counts
