"""Modes and owners of managed files and directories, enforced on every run, checked by `status`.

Everything is done on descriptors opened without following links (fchmod/fchown), so a link or
hard link planted where a managed file belongs can never hand root's chmod/chown to a host file.
"""
from __future__ import annotations

import os
import stat

from higress_init.volume import layout
from higress_init.volume.layout import DIR_MODE, PRIVATE_MODE, PUBLIC_MODE
from higress_init.volume.safefs import Root, check_regular, parts_of, refuse

# The layout's file policy, by what it decides
ROOT_OWNED_DIRS = tuple(rel for rel, _, owner in layout.FOLDER_POLICY if owner == "root")
ROOT_ONLY_DIRS = tuple(rel for rel, _, owner in layout.FOLDER_POLICY if owner == "kept")
FOLDER_MODES = {rel: mode for rel, mode, _ in layout.FOLDER_POLICY}


def root_owned(parts) -> bool:
    return parts[0] in ROOT_OWNED_DIRS or "/".join(parts) in layout.ROOT_OWNED_FILES


def dir_mode(parts) -> int:
    """A top folder with a policy gives its mode to everything under it; any other folder has its own or DIR_MODE."""
    if parts[0] in FOLDER_MODES:
        return FOLDER_MODES[parts[0]]
    return FOLDER_MODES.get("/".join(parts), DIR_MODE)


def is_private(rel: str, private_files=()) -> bool:
    # the initializer's own bookkeeping is root's alone, like the folder it is in
    return rel.endswith(layout.PRIVATE_NAMES) or rel in private_files or rel.startswith(layout.STATE_DIR + "/")


def file_mode_ok(mode: int, rel: str, private_files=(), staged_mode: int | None = None) -> tuple[bool, int]:
    """(acceptable, the mode to set). A file this run staged gets its staged mode; any other
    managed file loses what its kind must not have (never loosened: 0600 stays 0600)."""
    mode &= 0o7777
    if staged_mode is not None:
        wanted = PRIVATE_MODE if is_private(rel, private_files) else staged_mode
        return mode == wanted, wanted
    ceiling = PRIVATE_MODE if is_private(rel, private_files) else PUBLIC_MODE
    return mode & ~ceiling == 0, mode & ceiling


class Owners:
    """Applies VOLUMES_UID/VOLUMES_GID (when set) and the modes above."""

    def __init__(self, root: Root, uid: int | None, gid: int | None):
        self.root, self.uid, self.gid = root, uid, gid

    def wanted(self, parts) -> tuple[int | None, int | None]:
        """The owner a managed path must have (None: whatever it has)."""
        if root_owned(parts) and (self.uid is not None or self.gid is not None):
            return os.geteuid(), os.getegid()   # the initializer's own (root in the image)
        return self.uid, self.gid

    def differs(self, st, parts) -> bool:
        uid, gid = self.wanted(parts)
        return (uid is not None and st.st_uid != uid) or (gid is not None and st.st_gid != gid)

    def apply(self, fd: int, parts) -> None:
        uid, gid = self.wanted(parts)
        if parts[0] not in ROOT_ONLY_DIRS and (uid is not None or gid is not None):
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)

    def mkdir(self, dir_fd: int, name: str, parts) -> None:
        """Create one managed directory: its mode whatever the umask, its owner as configured."""
        mode = dir_mode(parts)
        os.mkdir(name, mode, dir_fd=dir_fd)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            os.fchmod(fd, mode)
            self.apply(fd, parts)
        finally:
            os.close(fd)

    def enforce(self, files: dict[str, int | None], dirs: set[tuple[str, ...]], private_files=(),
                dir_modes: dict | None = None) -> list[str]:
        """Set mode and owner of each existing managed file (rel -> staged mode or None) and
        directory (`dir_modes`: a folder a component writes into keeps the mode it needs);
        returns the relative paths changed. The volumes root itself is the user's."""
        dir_modes = dir_modes or {}
        changed = []
        for rel, staged_mode in sorted(files.items()):
            parts = parts_of(rel)
            dirs.update(parts[:i] for i in range(1, len(parts)))
            if self._fix_file(parts, rel, staged_mode, private_files):
                changed.append(rel)
        for parts in sorted(dirs):
            if parts[0] in ROOT_ONLY_DIRS:
                continue
            fd = self.root.open_dir(parts)
            if fd is None:
                continue
            try:
                st = os.fstat(fd)
                wanted = dir_modes.get(parts, dir_mode(parts))
                if st.st_mode & 0o7777 != wanted or self.differs(st, parts):
                    try:
                        os.fchmod(fd, wanted)
                        self.apply(fd, parts)
                    except PermissionError as err:
                        raise PermissionError(err.errno, f"{err.strerror} (setting the mode or owner; run as root)",
                                              os.path.join(self.root.path, *parts)) from None
                    changed.append("/".join(parts) + "/")
            finally:
                os.close(fd)
        return changed

    def _fix_file(self, parts, rel, staged_mode, private_files) -> bool:
        dir_fd = self.root.open_dir(parts[:-1])
        if dir_fd is None:
            return False
        try:
            try:
                fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
            except FileNotFoundError:
                return False
            except OSError:
                raise refuse(self.root.path, parts, os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False),
                             "a regular file") from None
        finally:
            os.close(dir_fd)
        try:
            st = os.fstat(fd)
            check_regular(self.root.path, parts, st)
            ok, wanted = file_mode_ok(st.st_mode, rel, private_files, staged_mode)
            if ok and not self.differs(st, parts):
                return False
            try:
                os.fchmod(fd, wanted)
                self.apply(fd, parts)
            except PermissionError as err:  # not root, and not the file's owner: say which file
                raise PermissionError(err.errno, f"{err.strerror} (setting the mode or owner; run as root)",
                                      os.path.join(self.root.path, *parts)) from None
            return True
        finally:
            os.close(fd)


def problems(root: Root, rel: str, uid, gid, private_files=()) -> str:
    """What `status` says about a managed file's mode, owner and directories ('' when fine)."""
    parts = parts_of(rel)
    owners = Owners(root, uid, gid)
    for i in range(1, len(parts)):
        st = root.lstat(parts[:i])
        if st is None:
            return ""
        if not stat.S_ISDIR(st.st_mode):
            raise refuse(root.path, parts[:i], st, "a directory")
        if parts[0] not in ROOT_ONLY_DIRS and st.st_mode & 0o7777 != dir_mode(parts[:i]):
            return f"directory {'/'.join(parts[:i])} has mode {st.st_mode & 0o7777:04o}, want {dir_mode(parts[:i]):04o}"
        if owners.differs(st, parts[:i]):
            return f"directory {'/'.join(parts[:i])} is owned by {st.st_uid}:{st.st_gid}"
    st = root.lstat(parts)
    if st is None:
        return ""
    check_regular(root.path, parts, st)
    ok, wanted = file_mode_ok(st.st_mode, rel, private_files)
    if not ok:
        return f"mode {st.st_mode & 0o7777:04o}, want {wanted:04o}"
    if owners.differs(st, parts):
        want_uid, want_gid = owners.wanted(parts)
        return f"owned by {st.st_uid}:{st.st_gid}, want {want_uid if want_uid is not None else st.st_uid}:" \
               f"{want_gid if want_gid is not None else st.st_gid}" + (" (root's alone)" if root_owned(parts) else "")
    return ""
