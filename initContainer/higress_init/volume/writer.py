"""The volume writer: stages every file of a run, then commits them crash-safely.

Three parts, each in its own module:
- safefs: every path is resolved under the volumes root one component at a time, never across
  a link; reads take regular files only, with a size cap; temporaries get random names (O_EXCL).
- journal: a commit writes each changed file to a temporary in its own directory and fsyncs it,
  records the planned renames (relative to the root) in a journal, then renames. A run killed
  half-way leaves either the old files plus stray temporaries (cleaned up) or a journal the next
  run validates and rolls forward, so no component reads a partial file and no CA/key pair is
  torn apart. Every file that is replaced is first copied to backup/<UTC timestamp>/.
- ownership: the mode and owner of every managed file and directory, enforced on every run.
"""
from __future__ import annotations

import errno
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from higress_init import faults
from higress_init.errors import StateError
from higress_init.volume import journal, layout
from higress_init.volume.layout import DIR_MODE, PRIVATE_MODE, PUBLIC_MODE
from higress_init.volume.ownership import Owners, is_private, problems
from higress_init.volume.safefs import Refused, Root, check_regular, create_temp, parts_of, refuse, write_all


class VolumeError(Exception):
    """The volumes directory cannot be used (exit code 2: it is the VOLUMES_ROOT setting)."""


@dataclass
class StagedFile:
    path: Path
    data: bytes | None   # None: remove the file
    mode: int


class VolumeWriter:
    def __init__(self, root: Path, uid: int | None = None, gid: int | None = None, private_files=()):
        self.root = Path(root)
        self.uid, self.gid = uid, gid
        self.private_files = frozenset(private_files)   # managed files kept 0600 besides *.key/*key.pem
        self.fs = Root(self.root)
        self.owners = Owners(self.fs, uid, gid)
        self.staged: dict[Path, StagedFile] = {}
        self._disk: dict[Path, bytes | None] = {}  # each file is read from disk once per run
        self._dirs: set[tuple[str, ...]] = set()   # directories ensure_dir made managed
        self._dir_modes: dict[tuple[str, ...], int] = {}  # ... and those given their own mode
        self.touched: set[Path] = set()             # every path this run read or wrote
        self.written: list[str] = []                # every file this run's commits wrote, by volume path
        self.backup_stamp = journal.backup_stamp()  # backup/<stamp>/: what this run's commits replaced

    # --- paths: absolute paths are accepted only inside the root
    def path(self, rel: str | Path) -> Path:
        return self.root.joinpath(*self.parts(rel))

    def parts(self, rel: str | Path) -> tuple[str, ...]:
        rel = Path(rel)
        if rel.is_absolute():
            normal = Path(os.path.normpath(rel))
            if not normal.is_relative_to(self.root) or normal == self.root:
                raise Refused(f"{rel} is outside the volumes directory {self.root}: refused")
            rel = normal.relative_to(self.root)
        return parts_of(rel.as_posix())

    def rel(self, path: Path) -> str:
        return "/".join(self.parts(path))

    # --- reading: staged content wins, so later phases see what earlier phases produced
    def read(self, rel: str | Path) -> bytes | None:
        path = self.path(rel)
        self.touched.add(path)
        if path in self.staged:
            return self.staged[path].data
        return self._disk_bytes(path)

    def exists(self, rel: str | Path) -> bool:
        return self.read(rel) is not None

    # --- the initializer's small JSON records (.higress-init/): one way to read and write them
    def read_record(self, rel: str) -> dict:
        """A record as a dict; missing or garbage reads as empty (a record only ever saves work)."""
        import json
        try:
            state = json.loads(self.read(rel) or b"{}")
        except (ValueError, RecursionError):
            return {}
        return state if isinstance(state, dict) else {}

    def stage_record(self, rel: str, state: dict) -> None:
        import json
        self.stage(rel, json.dumps(state, indent=1, sort_keys=True).encode(), private=True)  # root's

    def _disk_bytes(self, path: Path) -> bytes | None:
        if path not in self._disk:
            self._disk[path] = self.fs.read(self.parts(path)) if self.fs.exists() else None
        return self._disk[path]

    # --- staging
    def stage(self, rel: str | Path, data: bytes, private: bool = False) -> bool:
        """Stage a file; returns True when it differs from what is on disk (bytes, mode or owner)."""
        path = self.path(rel)
        self.touched.add(path)
        private = private or is_private(self.rel(path), self.private_files)
        self.staged[path] = StagedFile(path, data, PRIVATE_MODE if private else PUBLIC_MODE)
        return self._differs(self.staged[path])

    def remove(self, rel: str | Path) -> None:
        """Stage a removal; the file is copied to backup/ before it goes."""
        path = self.path(rel)
        self.staged[path] = StagedFile(path, None, 0)

    def _differs(self, staged: StagedFile) -> bool:
        st = self.fs.lstat(self.parts(staged.path)) if self.fs.exists() else None
        if st is None:
            return staged.data is not None
        check_regular(self.fs.path, self.parts(staged.path), st)
        if staged.data is None:
            return True
        return (st.st_mode & 0o7777) != staged.mode or self.owners.differs(st, self.parts(staged.path)) or \
            self._disk_bytes(staged.path) != staged.data

    def changes(self) -> list[StagedFile]:
        return [s for s in self.staged.values() if self._differs(s)]

    def ensure_dir(self, rel: str | Path, mode: int | None = None) -> str:
        """Make a directory (and its parents); with `mode`, give it that mode. Returns what that
        did to it: created, updated (mode) or kept."""
        parts = self.parts(rel)
        action = self._dir_action(parts, mode)
        self._make_root()
        fd = self.fs.open_dir(parts, create=self.owners.mkdir)
        try:
            if mode is not None and os.fstat(fd).st_mode & 0o7777 != mode:
                os.fchmod(fd, mode)  # a new folder too: it was made with the managed default
        finally:
            os.close(fd)
        self._dirs.add(parts)
        if mode is not None:
            self._dir_modes[parts] = mode
        return action

    def _dir_action(self, parts, mode: int | None) -> str:
        st = self.fs.lstat(parts) if self.fs.exists() else None
        if st is None:
            return "created"
        return "updated" if mode is not None and st.st_mode & 0o7777 != mode else "kept"

    def _make_root(self) -> None:
        if not self.root.is_dir():
            self.root.mkdir(parents=True, mode=DIR_MODE, exist_ok=True)
            os.chmod(self.root, DIR_MODE)  # whatever the umask; the root's owner stays the user's

    # --- committing
    def commit(self) -> list[Path]:
        """Write every changed staged file; returns the paths written."""
        changed = self.changes()  # refuses a link or foreign file type at any target first
        if not changed:
            self.staged.clear()
            return []
        self._make_root()
        if any(self.fs.lstat(self.parts(item.path)) is not None for item in changed):
            # replaced files are backed up: a planted backup/ link is refused before anything is renamed
            os.close(self.fs.open_dir((layout.BACKUP_DIR,), create=journal.private_mkdir))
        entries = []
        for item in changed:
            try:
                entries.append(self._write_temporary(item))
            except OSError as err:   # nothing renamed yet: drop this commit's temporaries, keep every file
                journal.undo(self.fs, entries)
                raise StateError(f"{self.rel(item.path)}: cannot be written ({err.strerror or err}): nothing of "
                                 "this commit was applied; make it writable (lsattr/chattr -i, a read-only mount, "
                                 "a full disk) and run again") from None
        journal.write(self.fs, entries)
        faults.point("commit:journal")
        journal.roll_forward(self.fs, entries, self.backup_stamp)
        self.staged.clear()
        self._disk.clear()
        self.written.extend(self.rel(item.path) for item in changed)
        return [item.path for item in changed]

    def _write_temporary(self, item: StagedFile) -> list:
        """[directory, temporary, final name]: the journal entry of one staged file."""
        parts = self.parts(item.path)
        directory = "/".join(parts[:-1])
        if item.data is None:
            return [directory, None, parts[-1]]
        dir_fd = self.fs.open_dir(parts[:-1], create=self.owners.mkdir)
        try:
            fd, tmp = create_temp(dir_fd, item.mode)
            try:
                self.owners.apply(fd, parts)
                half = len(item.data) // 2
                write_all(fd, item.data[:half])
                faults.point(f"write:{parts[-1]}")
                write_all(fd, item.data[half:])
                os.fsync(fd)
            except OSError:
                os.unlink(tmp, dir_fd=dir_fd)   # a full disk: not left for the sweep of a later run
                raise
            finally:
                os.close(fd)
        finally:
            os.close(dir_fd)
        return [directory, tmp, parts[-1]]

    def fix_owners(self) -> list[Path]:
        """Enforce mode and owner of every managed file (what this run read or staged) and of
        their directories, so a loosened mode or a changed VOLUMES_UID is repaired by a rerun."""
        if not self.fs.exists():
            return []
        staged_modes = {self.rel(p): s.mode for p, s in self.staged.items() if s.data is not None}
        files = {self.rel(p): staged_modes.get(self.rel(p)) for p in self.touched}
        changed = self.owners.enforce(files, set(self._dirs), self.private_files, self._dir_modes)
        return [self.root / rel.rstrip("/") for rel in changed]

    def recover(self) -> int:
        """Finish a commit that a killed run left half-done; drop stray temporaries."""
        if not self.fs.exists():
            return 0
        entries = journal.load(self.fs)
        done = journal.roll_forward(self.fs, entries) if entries else 0
        journal.remove(self.fs)
        journal.sweep_temporaries(self.fs)
        return done

    def close(self) -> None:
        self.fs.close()


class PlanWriter(VolumeWriter):
    """The writer of `plan`: the same run, every phase staging as usual, but the commit writes
    nothing. What a commit would have written stays readable (later phases see it, as they see
    a real commit's files), and is listed in `planned`, by volume path."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.committed: dict[Path, StagedFile] = {}   # what the run would have written so far
        self.planned: list[str] = []

    def _disk_bytes(self, path: Path) -> bytes | None:
        if path in self.committed:
            return self.committed[path].data
        return super()._disk_bytes(path)

    def _differs(self, staged: StagedFile) -> bool:
        if staged.path in self.committed:
            done = self.committed[staged.path]
            return (done.data, done.mode) != (staged.data, staged.mode if staged.data is not None else 0)
        return super()._differs(staged)

    def commit(self) -> list[Path]:
        changed = self.changes()  # the same refusals as a real commit (links, foreign file types)
        for item in changed:
            self.committed[item.path] = item
            self.planned.append(self.rel(item.path))
        self.staged.clear()
        return [item.path for item in changed]

    def ensure_dir(self, rel: str | Path, mode: int | None = None) -> str:
        parts = self.parts(rel)
        action = self._dir_action(parts, mode)
        if action != "kept":
            self.planned.append("/".join(parts) + "/")
        return action

    def fix_owners(self) -> list[Path]:
        """What a run would repair: files the run reads but does not rewrite, whose mode or
        owner (or a directory's above them) is not what a run enforces."""
        if not self.fs.exists():
            return []
        written = set(self.committed) | set(self.staged)
        return [p for p in sorted(self.touched - written)
                if problems(self.fs, self.rel(p), self.uid, self.gid, self.private_files)]

    def recover(self) -> int:
        """A run would first finish an interrupted commit: how many renames it would do."""
        if not self.fs.exists():
            return 0
        entries = journal.load(self.fs)
        if entries:
            journal.check(self.fs, entries)
        return len(entries or ())


class RunLock:
    """An exclusive lock on the volumes directory: concurrent runs queue, not interleave.
    The descriptor is close-on-exec, and keys are generated by threads of this process (see
    pki.keypool), so no process outlives a killed run holding the lock."""

    def __init__(self, root: Path, on_wait=None):
        self.root = Root(root)
        self.path = Path(root) / layout.LOCK
        self.on_wait = on_wait
        self.fd = None

    def __enter__(self):
        if not os.path.isdir(self.root.path):
            try:
                # a run started with this one may make it first
                os.makedirs(self.root.path, mode=DIR_MODE, exist_ok=True)
                os.chmod(self.root.path, DIR_MODE)
            except OSError as err:   # a read-only mount, /proc, a file on the way: the setting is wrong
                raise VolumeError(f"VOLUMES_ROOT={self.root.path}: cannot be created ({err.strerror}); expected a "
                                  "directory the initializer can write, e.g. /mnt/volumes") from None
        parts = parts_of(layout.LOCK)
        dir_fd = self.root.open_dir(parts[:-1], create=journal.private_mkdir)
        try:
            self.fd = os.open(parts[-1], os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                              0o600, dir_fd=dir_fd)
        except OSError as err:
            if err.errno not in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
                raise
            raise refuse(self.root.path, parts, os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False),
                         "a regular file") from None
        finally:
            os.close(dir_fd)
            self.root.close()
        try:
            check_regular(self.root.path, parts, os.fstat(self.fd))
            os.fchmod(self.fd, 0o600)
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if self.on_wait:
                    self.on_wait(self.path)
                fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self.fd)
            raise
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
