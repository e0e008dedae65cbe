"""The volume writer: stages every file of a run, then commits them crash-safely.

A commit writes each changed file to a temporary name in its own directory and fsyncs it,
records the planned renames in a journal, then renames. A run killed half-way leaves either
the old files plus stray temporaries (ignored, cleaned up) or a journal that the next run
rolls forward, so no component ever reads a partial file and no CA/key pair is torn apart.
Every file that is replaced is first copied to backup/<UTC timestamp>/.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from . import faults

JOURNAL = ".higress-init/journal.json"
LOCK = ".higress-init/lock"
TMP_PREFIX = ".higress-init-tmp."
DIR_MODE = 0o755
PRIVATE_DIRS = ("pki",)  # the initializer's own secrets: no component mounts them


class VolumeError(Exception):
    """The volumes directory cannot be used (exit code 2: it is the VOLUMES_ROOT setting)."""


@dataclass
class StagedFile:
    path: Path
    data: bytes | None   # None: remove the file
    mode: int


class VolumeWriter:
    def __init__(self, root: Path, uid: int | None = None, gid: int | None = None):
        self.root = root
        self.uid, self.gid = uid, gid
        self.staged: dict[Path, StagedFile] = {}
        self._disk: dict[Path, bytes | None] = {}  # each file is read from disk once per run
        self.touched: set[Path] = set()             # every path this run read or wrote

    # --- reading: staged content wins, so later phases see what earlier phases produced
    def path(self, rel: str | Path) -> Path:
        return rel if Path(rel).is_absolute() else self.root / rel

    def read(self, rel: str | Path) -> bytes | None:
        path = self.path(rel)
        self.touched.add(path)
        if path in self.staged:
            return self.staged[path].data
        if path not in self._disk:
            try:
                self._disk[path] = path.read_bytes()
            except (FileNotFoundError, NotADirectoryError):
                self._disk[path] = None
        return self._disk[path]

    def exists(self, rel: str | Path) -> bool:
        return self.read(rel) is not None

    # --- staging
    def stage(self, rel: str | Path, data: bytes, private: bool = False) -> bool:
        """Stage a file; returns True when it differs from what is on disk."""
        path = self.path(rel)
        self.touched.add(path)
        mode = 0o600 if private else 0o644
        self.staged[path] = StagedFile(path, data, mode)
        return self._differs(self.staged[path])

    def remove(self, rel: str | Path) -> None:
        """Stage a removal; the file is copied to backup/ before it goes."""
        path = self.path(rel)
        self.staged[path] = StagedFile(path, None, 0)

    def _differs(self, staged: StagedFile) -> bool:
        try:
            st = staged.path.stat()
        except FileNotFoundError:
            return staged.data is not None
        if staged.data is None:
            return True
        return (st.st_mode & 0o777) != staged.mode or self._owner_differs(st) or \
            self._disk_bytes(staged.path) != staged.data

    def _disk_bytes(self, path: Path) -> bytes | None:
        if path not in self._disk:
            self._disk[path] = path.read_bytes()
        return self._disk[path]

    def _owner_differs(self, st) -> bool:
        return (self.uid is not None and st.st_uid != self.uid) or (self.gid is not None and st.st_gid != self.gid)

    def changes(self) -> list[StagedFile]:
        return [s for s in self.staged.values() if self._differs(s)]

    def ensure_dir(self, rel: str | Path) -> None:
        self._make_dirs(self.path(rel))

    # --- committing
    def commit(self) -> list[Path]:
        """Write every changed staged file; returns the paths written."""
        changed = self.changes()
        if not changed:
            self.staged.clear()
            return []
        renames = []
        for item in changed:
            if item.data is None:
                renames.append((None, str(item.path)))
                continue
            self._make_dirs(item.path.parent)
            tmp = item.path.parent / (TMP_PREFIX + item.path.name)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, item.mode)
            try:
                os.fchmod(fd, item.mode)
                half = len(item.data) // 2
                os.write(fd, item.data[:half])
                faults.point(f"write:{item.path.name}")
                os.write(fd, item.data[half:])
                os.fsync(fd)
            finally:
                os.close(fd)
            self._chown(tmp)
            renames.append((str(tmp), str(item.path)))
        self._write_journal(renames)
        faults.point("commit:journal")
        self._roll_forward(renames)
        self.staged.clear()
        self._disk.clear()
        return [item.path for item in changed]

    def fix_owners(self) -> list[Path]:
        """Apply VOLUMES_UID/GID to files a run kept too, so changing the owner is enough."""
        if self.uid is None and self.gid is None:
            return []
        fixed = []
        for path in [self.root, *self.root.rglob("*")]:
            rel = path.relative_to(self.root).parts
            if rel[:1] in (("backup",), (".higress-init",)):
                continue
            if self._owner_differs(path.lstat()):
                self._chown(path)
                fixed.append(path)
        return fixed

    def recover(self) -> int:
        """Finish a commit that a killed run left half-done; drop stray temporaries."""
        journal = self.root / JOURNAL
        done = 0
        if journal.exists():
            try:
                renames = json.loads(journal.read_text())
            except ValueError:
                renames = None  # the journal itself was torn: its renames never started
            if renames:
                done = self._roll_forward([tuple(r) for r in renames])
            journal.unlink(missing_ok=True)
        for tmp in self.root.rglob(TMP_PREFIX + "*"):
            tmp.unlink(missing_ok=True)
        return done

    def _roll_forward(self, renames) -> int:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        done = 0
        for tmp, final in renames:
            if tmp is None:  # a removal
                if os.path.exists(final):
                    self._backup(Path(final), stamp)
                    os.unlink(final)
                    done += 1
                continue
            if not os.path.exists(tmp):
                continue  # renamed before the crash
            if os.path.exists(final):
                self._backup(Path(final), stamp)
            faults.point(f"rename:{Path(final).name}")
            os.replace(tmp, final)
            done += 1
        for parent in {Path(final).parent for _, final in renames}:
            _fsync_dir(parent)
        (self.root / JOURNAL).unlink(missing_ok=True)
        return done

    def _backup(self, path: Path, stamp: str) -> None:
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            rel = Path("external") / path.relative_to(path.anchor)
        target = self.root / "backup" / stamp / rel
        if target.exists():
            return
        self._make_dirs(target.parent, mode=0o700)
        tmp = target.parent / (TMP_PREFIX + target.name)
        shutil.copy2(path, tmp)
        os.replace(tmp, target)

    def _write_journal(self, renames) -> None:
        journal = self.root / JOURNAL
        self._make_dirs(journal.parent, mode=0o700)
        tmp = journal.parent / (TMP_PREFIX + journal.name)
        with open(tmp, "w") as f:
            json.dump(renames, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, journal)
        _fsync_dir(journal.parent)

    def _make_dirs(self, directory: Path, mode: int | None = None) -> None:
        missing = []
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for d in reversed(missing):
            private = d.name in PRIVATE_DIRS and d.parent == self.root
            os.mkdir(d)
            os.chmod(d, mode or (0o700 if private else DIR_MODE))
            self._chown(d)

    def _chown(self, path: Path) -> None:
        if self.uid is not None or self.gid is not None:
            os.chown(path, -1 if self.uid is None else self.uid, -1 if self.gid is None else self.gid)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RunLock:
    """An exclusive lock on the volumes directory: concurrent runs queue, not interleave."""

    def __init__(self, root: Path, on_wait=None):
        self.path = root / LOCK
        self.on_wait = on_wait
        self.fd = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            if self.on_wait:
                self.on_wait(self.path)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def check_writable(root: Path) -> None:
    """Fail early, with the setting's name, when the volumes directory cannot be written."""
    probe = root
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise VolumeError(f"VOLUMES_ROOT={root}: not a writable directory ({probe} is not writable)")
