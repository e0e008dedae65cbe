"""The commit journal and backups: how a batch of renames survives a crash.

The journal lists the planned renames as [directory, temporary name, final name], the directory
relative to the volumes root, so recovery works wherever the volumes are mounted now. It is
input like any other file in the volumes: validated before use, and only ever acted on through
no-follow descriptors under the root.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from datetime import UTC, datetime

from higress_init import faults
from higress_init.errors import StateError
from higress_init.volume import layout
from higress_init.volume.safefs import (
    TMP_PREFIX,
    MakeDir,
    Refused,
    Root,
    check_regular,
    create_temp,
    lstat_at,
    not_roots,
    parts_of,
    read_capped,
    show,
    write_all,
)

KEEP_SUFFIX = ".kept"


def private_mkdir(dir_fd: int, name: str, parts: tuple[str, ...]) -> None:
    """Directories only root uses (.higress-init/, backup/): 0700 whatever the umask, not chowned."""
    os.mkdir(name, layout.PRIVATE_DIR_MODE, dir_fd=dir_fd)
    os.chmod(name, layout.PRIVATE_DIR_MODE, dir_fd=dir_fd, follow_symlinks=False)


def write_atomic(root: Root, rel: str, data: bytes, mode: int = 0o600, mkdir: MakeDir = private_mkdir) -> None:
    """Write one file whole (temporary, fsync, rename), never through a link."""
    parts = parts_of(rel)
    dir_fd = root.open_dir(parts[:-1], create=mkdir)
    try:
        st = lstat_at(dir_fd, parts[-1])
        if st is not None:
            check_regular(root.path, parts, st)
        fd, tmp = create_temp(dir_fd, mode)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, parts[-1], src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class UnkeptJournal(list):
    """A journal an older release wrote (a bare list): it kept nothing aside, so it can be rolled
    forward but not undone."""


def write(root: Root, entries: list) -> None:
    write_atomic(root, layout.JOURNAL, json.dumps({"kept": True, "renames": entries}).encode())


def load(root: Root) -> list | None:
    """The journal's entries; None when there is none or it was torn before its renames began.
    Anything else that is not a list of renames inside the root is refused."""
    data = root.read(parts_of(layout.JOURNAL))
    if data is None:
        return None
    name = show(root.path, parts_of(layout.JOURNAL))
    # the journal renames CA keys: root's alone, or not obeyed
    for parts in ((layout.STATE_DIR,), parts_of(layout.JOURNAL)):
        if why := not_roots(root, parts):
            raise Refused(f"{name}: not the initializer's ({why}): a journal is followed only when root owns it and "
                          "its folder; remove it and run again")
    try:
        entries = json.loads(data)
    except ValueError:
        return None  # torn while being written: written whole before any rename, so none began
    except RecursionError:
        raise Refused(f"{name}: nested too deeply to be a list of renames: refused; remove it and run again") from None
    if isinstance(entries, dict) and entries.get("kept") is True:
        entries = entries.get("renames")
    elif isinstance(entries, list):
        entries = UnkeptJournal(entries)
    if not isinstance(entries, list):
        raise Refused(f"{name}: not a list of renames: refused; remove it and run again")
    for entry in entries:
        if not _valid(entry):
            raise Refused(f"{name}: entry {str(entry)[:200]!r} is not a rename inside the volumes directory: "
                          "refused; remove the journal and run again")
    return entries


def _valid(entry) -> bool:
    if not (isinstance(entry, list) and len(entry) == 3 and all(isinstance(e, (str, type(None))) for e in entry)):
        return False
    directory, tmp, final = entry
    if directory is None or not _plain_name(final):
        return False
    if directory:
        try:
            parts_of(directory)
        except Refused:
            return False
    return tmp is None or (_plain_name(tmp) and tmp.startswith(TMP_PREFIX))


def _plain_name(name) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\0" not in name


def remove(root: Root) -> None:
    dir_fd = root.open_dir(parts_of(layout.STATE_DIR))
    if dir_fd is None:
        return
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink("journal.json", dir_fd=dir_fd)
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def check(root: Root, entries: list) -> None:
    """Refuse, before any rename, a journal whose directories, temporaries or targets are links
    or anything but regular files."""
    for directory, tmp, final in entries:
        if any(len(name.encode()) > NAME_MAX for name in [*(directory or "").split("/"), final]):
            raise StateError(f"{layout.JOURNAL}: an interrupted commit names {directory}/{final}, longer than "
                             f"{NAME_MAX} bytes: it can never be written (an old setting made it). Remove "
                             f"{layout.JOURNAL} and rerun: "
                             "the rerun writes again whatever that commit did not")
        dir_parts = parts_of(directory) if directory else ()
        dir_fd = root.open_dir(dir_parts)  # a link on the way is refused here
        if dir_fd is None:
            continue
        try:
            keep = keep_name([directory, tmp, final])
            for name, other in ((tmp, None), (final, keep), (keep, final)):
                st = lstat_at(dir_fd, name) if name is not None else None
                if st is not None:
                    _check_ours(root, dir_parts, dir_fd, name, st, other)
        finally:
            os.close(dir_fd)


def backup_stamp() -> str:
    """The name of one run's folder under backup/: its UTC start, sortable."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


_STAMP = re.compile(r"[0-9]{8}T[0-9]{6}\.[0-9]{6}Z")


def prune_backups(root: Root, keep: int) -> list[str]:
    """Remove all but the newest `keep` runs' folders backup/<stamp>/ (0: keep all); returns the
    stamps removed, oldest first. Only folders named as a run names them are touched; each is
    removed through descriptors, never following a link (shutil.rmtree with dir_fd)."""
    import shutil
    if keep <= 0:
        return []
    dir_fd = root.open_dir((layout.BACKUP_DIR,))   # a link in its place is refused
    if dir_fd is None:
        return []
    try:
        runs = sorted(name for name in os.listdir(dir_fd) if _STAMP.fullmatch(name)
                      and stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode))
        pruned = runs[:-keep] if len(runs) > keep else []
        for name in pruned:
            shutil.rmtree(name, dir_fd=dir_fd)
        return pruned
    finally:
        os.close(dir_fd)


def _check_ours(root: Root, dir_parts, dir_fd: int, name: str, st, kept_as: str | None) -> None:
    """A regular file with one name; or, between a commit's kept link and its end, exactly two: its
    own and `kept_as`, the other name this commit gave the same file."""
    if kept_as is not None and st.st_nlink == 2 and stat.S_ISREG(st.st_mode):
        other = lstat_at(dir_fd, kept_as)
        if other is not None and (other.st_ino, other.st_dev) == (st.st_ino, st.st_dev):
            return
    check_regular(root.path, dir_parts + (name,), st)


def keep_name(entry) -> str:
    """Where the file an entry replaces or removes is kept (a hard link: same bytes, mode and owner)
    until the whole commit is done, so a commit that cannot finish is undone, never left torn."""
    directory, tmp, final = entry
    if tmp is not None:
        return tmp + KEEP_SUFFIX
    return TMP_PREFIX + hashlib.sha256(f"{directory}/{final}".encode()).hexdigest()[:24] + KEEP_SUFFIX


def roll_forward(root: Root, entries: list, stamp: str | None = None) -> int:
    """Do the journaled renames and removals not done yet; each replaced file is backed up, into
    backup/<stamp>/ (one folder per run: every commit of a run passes the same stamp).

    A commit is all or nothing: a crash leaves the journal, which the next run rolls forward; an
    error (a file that cannot be replaced: immutable, read-only, a full disk at its backup) undoes
    every rename of the commit, so a key and its certificate are never left from different runs."""
    check(root, entries)
    stamp = stamp or backup_stamp()
    done = 0
    for entry in entries:
        try:
            done += _apply(root, entry, stamp)
        except OSError as err:
            if isinstance(entries, UnkeptJournal):
                raise
            undone = undo(root, entries)
            directory, _, final = entry
            raise StateError(f"{'/'.join(filter(None, (directory, final)))}: cannot be replaced "
                             f"({err.strerror or err}): the commit was undone ({undone} file(s) put back), every "
                             "file is as before; make it writable (lsattr/chattr -i, a read-only mount) and run "
                             "again") from None
    remove(root)
    _drop_kept(root, entries)
    return done


def _apply(root: Root, entry, stamp: str) -> int:
    directory, tmp, final = entry
    dir_parts = parts_of(directory) if directory else ()
    dir_fd = root.open_dir(dir_parts)
    if dir_fd is None:
        return 0
    try:
        keep = keep_name(entry)
        final_st = lstat_at(dir_fd, final)
        if final_st is not None:
            _check_ours(root, dir_parts, dir_fd, final, final_st, keep)
        if tmp is None:  # a removal: the file is moved aside until the commit is done
            if final_st is None:
                return 0
            _backup(root, dir_parts, dir_fd, final, stamp, keep)
            os.replace(final, keep, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.fsync(dir_fd)
            return 1
        tmp_st = lstat_at(dir_fd, tmp)
        if tmp_st is None:
            return 0  # renamed before the crash
        check_regular(root.path, dir_parts + (tmp,), tmp_st)
        if final_st is not None:
            _backup(root, dir_parts, dir_fd, final, stamp, keep)
            if lstat_at(dir_fd, keep) is None:
                os.link(final, keep, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        faults.point(f"rename:{final}")
        faults.pause(f"rename:{final}")
        os.replace(tmp, final, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
        return 1
    finally:
        os.close(dir_fd)


def undo(root: Root, entries: list) -> int:
    """Put back what the entries replaced or removed, newest first, and drop the temporaries of those not
    applied; then no journal is left."""
    undone = 0
    for entry in reversed(entries):
        directory, tmp, final = entry
        dir_fd = root.open_dir(parts_of(directory) if directory else ())
        if dir_fd is None:
            continue
        try:
            keep = keep_name(entry)
            kept = lstat_at(dir_fd, keep) is not None
            if tmp is not None and lstat_at(dir_fd, tmp) is not None:
                os.unlink(tmp, dir_fd=dir_fd)   # never renamed: its temporary to drop, and its kept link if made
                if kept:
                    os.unlink(keep, dir_fd=dir_fd)
                continue
            if kept:
                os.replace(keep, final, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                undone += 1
            elif tmp is not None and lstat_at(dir_fd, final) is not None:
                os.unlink(final, dir_fd=dir_fd)   # new in this commit: there was nothing before it
                undone += 1
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    remove(root)
    return undone


def _drop_kept(root: Root, entries: list) -> None:
    """After the journal is gone the kept files are plain temporaries (a crash here leaves them to the sweep)."""
    for entry in entries:
        dir_fd = root.open_dir(parts_of(entry[0]) if entry[0] else ())
        if dir_fd is None:
            continue
        try:
            os.unlink(keep_name(entry), dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        finally:
            os.close(dir_fd)


def _backup(root: Root, dir_parts, dir_fd: int, name: str, stamp: str, kept_as: str | None = None) -> None:
    """Copy the bytes of a file about to be replaced to backup/<stamp>/<its path> (0600)."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        _check_ours(root, dir_parts, dir_fd, name, os.fstat(fd), kept_as)
        data = read_capped(fd, 1 << 26, show(root.path, dir_parts + (name,)))
    finally:
        os.close(fd)
    target = (layout.BACKUP_DIR, stamp, *dir_parts, name)
    target_fd = root.open_dir(target[:-1], create=private_mkdir)
    try:
        if lstat_at(target_fd, name) is not None:
            return
        out, tmp = create_temp(target_fd, 0o600)
        try:
            write_all(out, data)
            os.fsync(out)
        finally:
            os.close(out)
        os.replace(tmp, name, src_dir_fd=target_fd, dst_dir_fd=target_fd)
    finally:
        os.close(target_fd)


# Where temporaries are never looked for: the folders components write into (theirs, whatever they
# put there), and anything deeper than any folder the initializer writes (backup/<stamp>/ included).
COMPONENT_DIRS = frozenset(rel for rel, _ in layout.WRITABLE_DIRS)
SWEEP_DEPTH = 8
NAME_MAX = 255   # bytes: a longer file name can never be written on Linux


def sweep_temporaries(root: Root) -> int:
    """Unlink temporaries a killed run left (unlink never follows a link), in the folders the
    initializer writes; a folder a component owns is not entered, and nothing found on the way
    (a name that turned into a folder, a folder gone) stops the sweep."""
    removed = 0
    for top, dirs, files, dir_fd in os.fwalk(".", dir_fd=root.fd(), follow_symlinks=False):
        rel = os.path.normpath(top)
        depth = 0 if rel == "." else rel.count("/") + 1
        names = files + dirs   # a link named like a temporary is listed with the folders
        dirs[:] = [d for d in dirs if depth + 1 < SWEEP_DEPTH
                   and (d if rel == "." else f"{rel}/{d}") not in COMPONENT_DIRS]
        for name in names:
            if name.startswith(TMP_PREFIX):
                try:
                    st = lstat_at(dir_fd, name)
                    if st is not None and not stat.S_ISDIR(st.st_mode):
                        os.unlink(name, dir_fd=dir_fd)
                        removed += 1
                except OSError:
                    continue   # changed under the sweep: not ours to fight over
    return removed
