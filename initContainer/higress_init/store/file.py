"""The apiserver's file store (`--storage file`, the embedded default): `<FILE_ROOT_DIR>/<plural>/<name>.yaml`,
every object as plain YAML (Secrets too, with base64 data); the namespace is not part of the path."""
from __future__ import annotations

from higress_init.errors import StateError
from higress_init.store.base import StatusContext
from higress_init.versions.objects import BaseObject
from higress_init.volume import layout


class FileStore:
    """The apiserver's `--storage file` root. Writes go through the volume writer (staged,
    journaled, renamed into place), so no partial object ever carries a `.yaml` name."""

    label = "file store"
    calls = None   # no server

    def __init__(self, ctx):
        self.ctx, self.settings, self.writer = ctx, ctx.settings, ctx.writer

    def path(self, obj: BaseObject):
        return self.settings.file_root_dir / obj.plural / f"{obj.name}.yaml"

    def where(self, obj: BaseObject) -> str:
        return str(self.path(obj))

    def record_key(self, obj: BaseObject) -> str:
        return f"file:{obj.label}"

    def read(self, obj: BaseObject) -> str | None:
        data = self.writer.read(self.path(obj))
        return None if data is None else data.decode("utf-8", "replace")

    stored = read   # what another writer made: the file is its own truth

    def read_all(self, objs) -> dict[str, str | None]:
        return {obj.label: self.read(obj) for obj in objs}

    def text(self, obj: BaseObject, raw: str) -> str:
        return raw

    def encode(self, obj: BaseObject, text: str) -> str:
        return text

    def create(self, obj: BaseObject, raw: str) -> bool:
        self.writer.stage(self.path(obj), raw.encode(), private=obj.secret)  # committed with the rest by finish()
        return True

    def replace(self, obj: BaseObject, raw: str, expected: str) -> None:
        # compare-and-swap as far as a file allows: what is on disk now must be what was read
        data = self.writer.fs.read(self.writer.parts(self.path(obj)))  # fresh, no-follow, capped
        current = None if data is None else data.decode("utf-8", "replace")
        if current != expected:
            raise StateError(f"{self.where(obj)} changed while the initializer was writing it: nothing was "
                             "overwritten; rerun to try again")
        self.writer.stage(self.path(obj), raw.encode(), private=obj.secret)

    def finish(self, counts, objs) -> None:
        pass  # no index: the apiserver lists the folder

    def backup(self, obj: BaseObject, raw: str) -> str:
        """Where the object replaced by --reseed is kept: the commit copies every file it replaces
        to backup/<stamp>/<its volume path>."""
        return f"{layout.BACKUP_DIR}/{self.writer.backup_stamp}/{self.writer.rel(self.path(obj))}"

    def commit(self) -> None:
        self.writer.commit()


def open_store(ctx) -> FileStore:
    return FileStore(ctx)


def open_for_status(settings, writer):
    ctx = StatusContext(settings, writer)
    return ctx, FileStore(ctx)


def prepare(ctx, counts) -> None:
    counts.add("skipped", "file storage")
