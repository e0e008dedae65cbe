"""No-follow file access under one root directory.

The volumes are shared with the components, so anything in them may have been planted: a
symlink where a file or directory belongs, a hard link to a host file, a FIFO. Every access
here starts from a descriptor of the root and opens one path component at a time with
O_NOFOLLOW, working relative to the directory descriptors it opened, so no path is ever
resolved through a link, whatever changes between two calls. A link or a file of an unexpected
type where a managed file or directory belongs is refused (exit 3), naming the path.
"""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable
from typing import overload

from higress_init.errors import StateError

TMP_PREFIX = ".higress-init-tmp."
# makes the missing directory `name` in dir_fd (parts: its path under the root), for Root.open_dir
MakeDir = Callable[[int, str, tuple[str, ...]], object]
TMP_SUFFIX = ".tmp"          # never .yaml: the apiserver's file store loads every *.yaml in data/
READ_CAP = 4 * 1024 * 1024   # no file the initializer reads is anywhere near this

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO can't hang open()


class Refused(StateError):
    """A link, a hard link or a foreign file type where a managed file or directory belongs."""


def parts_of(rel) -> tuple[str, ...]:
    """The components of a path relative to the root; anything that could leave it is refused."""
    text = os.fspath(rel)
    parts = tuple(p for p in text.split("/") if p not in ("", "."))
    if text.startswith("/") or not parts or ".." in parts or "\0" in text:
        raise Refused(f"{text!r}: not a path inside the volumes directory")
    return parts


def show(root, parts) -> str:
    return os.path.join(os.fspath(root), *parts)


def _kind(st) -> str:
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a regular file"


def refuse(root, parts, st, wanted: str) -> Refused:
    what = _kind(st)
    if what == "a regular file" and st.st_nlink > 1:
        what = f"a hard link ({st.st_nlink} names)"
    return Refused(f"{show(root, parts)} is {what}, not {wanted}: refused (never followed); "
                   "remove it and run again")


def check_regular(root, parts, st) -> None:
    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
        raise refuse(root, parts, st, "a regular file")


def not_roots(root: Root, parts) -> str | None:
    """Why the initializer's own bookkeeping at `parts` cannot be trusted (another owner, or writable
    by others, could have planted it); None when root owns it, or it is absent."""
    st = root.lstat(parts)
    if st is not None and (st.st_uid != os.geteuid() or st.st_mode & 0o022):
        return f"{'/'.join(parts)} is owned by uid {st.st_uid} or writable by others"
    return None


def lstat_at(dir_fd: int, name: str):
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


class Root:
    """A directory every path is resolved under, link by link, never across a link."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._fd: int | None = None

    def fd(self) -> int:
        if self._fd is None:
            # the root itself is the user's setting: a link there (e.g. a mount alias) is theirs
            self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return self._fd

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @overload
    def open_dir(self, parts: tuple[str, ...], create: None = None) -> int | None: ...

    @overload
    def open_dir(self, parts: tuple[str, ...], create: MakeDir) -> int: ...

    def open_dir(self, parts: tuple[str, ...], create: MakeDir | None = None) -> int | None:
        """A descriptor of the directory root/parts (the caller closes it); None when a component
        is missing and `create` is None, else create(dir_fd, name, parts) makes it."""
        fd = os.dup(self.fd())
        try:
            for i, name in enumerate(parts):
                try:
                    try:
                        nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
                    except FileNotFoundError:
                        if create is None:
                            os.close(fd)
                            return None
                        # a run started with this one may have made it first (e.g. .higress-init/ before the lock)
                        with contextlib.suppress(FileExistsError):
                            create(fd, name, parts[:i + 1])
                        nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)   # no-follow, whoever made it
                except OSError as err:
                    if err.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise refuse(self.path, parts[:i + 1], os.stat(name, dir_fd=fd, follow_symlinks=False),
                                     "a directory") from None
                    raise
                os.close(fd)
                fd = nxt
            return fd
        except BaseException:
            os.close(fd)
            raise

    def lstat(self, parts: tuple[str, ...]):
        """The lstat of root/parts, or None when it or a directory above it is missing."""
        if not parts:
            return os.fstat(self.fd())
        dir_fd = self.open_dir(parts[:-1])
        if dir_fd is None:
            return None
        try:
            return lstat_at(dir_fd, parts[-1])
        finally:
            os.close(dir_fd)

    def read(self, parts: tuple[str, ...], cap: int = READ_CAP) -> bytes | None:
        """The bytes of a regular file, or None when it is missing; anything else is refused."""
        dir_fd = self.open_dir(parts[:-1])
        if dir_fd is None:
            return None
        try:
            try:
                fd = os.open(parts[-1], _READ_FLAGS, dir_fd=dir_fd)
            except FileNotFoundError:
                return None
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
                    raise refuse(self.path, parts, os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False),
                                 "a regular file") from None
                raise
        finally:
            os.close(dir_fd)
        try:
            check_regular(self.path, parts, os.fstat(fd))
            return read_capped(fd, cap, show(self.path, parts))
        finally:
            os.close(fd)


def read_capped(fd: int, cap: int, name: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = os.read(fd, min(1 << 16, cap + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            raise Refused(f"{name} is larger than {cap} bytes: refused")


def create_temp(dir_fd: int, mode: int) -> tuple[int, str]:
    """A new file under a random name no one can have planted (O_EXCL|O_NOFOLLOW)."""
    while True:
        name = f"{TMP_PREFIX}{secrets.token_hex(8)}{TMP_SUFFIX}"
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                         dir_fd=dir_fd)
        except FileExistsError:
            continue
        os.fchmod(fd, mode)  # whatever the umask
        return fd, name


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fsync_dir(dir_fd: int) -> None:
    os.fsync(dir_fd)


def read_secret_file(path: str, cap: int = 64 * 1024) -> bytes:
    """A <NAME>_FILE secret: a regular file (links allowed: the path is the user's own, and
    Kubernetes mounts secrets through links), never a FIFO or device, read with a bound."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{_kind(st)}, not a regular file")
        return read_capped(fd, cap, path)
    finally:
        os.close(fd)
