"""Nacos as a store (store.base.Store): each object a config in the deployment's namespace, laid
out as the apiserver reads it (layout.py); `plan` sees it staged (StagedNacos: nothing published)."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from higress_init.pki import datakey
from higress_init.store.base import StatusContext, md5
from higress_init.store.nacos import client
from higress_init.store.nacos import layout as nacos_layout
from higress_init.store.nacos.client import NacosConflict
from higress_init.versions.objects import DEFAULT_GROUP, BaseObject
from higress_init.volume import journal, layout


class NacosStore:
    label = "Nacos"

    def __init__(self, ctx, conn):
        self.ctx, self.settings, self.conn = ctx, ctx.settings, conn
        self._key = None

    def where(self, obj: BaseObject) -> str:
        return f"Nacos namespace {self.settings.nacos_namespace}, group {obj.group(self.settings)}, " \
               f"dataId {obj.data_id}"

    def record_key(self, obj: BaseObject) -> str:
        return nacos_layout.record_key(self.settings.nacos_namespace, obj.group(self.settings), obj)

    @property
    def calls(self) -> int:
        return getattr(self.conn, "calls", 0)

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = datakey.load(self.ctx.writer, self.settings, missing=f"Secrets in Nacos are encrypted with "
                                     f"{layout.DATA_KEY}, which is missing: run phase apiserver-pki first")
        return self._key

    def read(self, obj: BaseObject) -> str | None:
        return self.conn.get(obj.data_id, obj.group(self.settings))

    def read_all(self, objs) -> dict[str, str | None]:
        """`read` of each object (by label), the reads sent at once."""
        contents = self.conn.get_many([(obj.data_id, obj.group(self.settings)) for obj in objs])
        return {obj.label: content for obj, content in zip(objs, contents, strict=True)}  # one answer an object

    def stored(self, obj: BaseObject) -> str | None:
        """What another writer made, from the database view: a node's copy may not show it yet."""
        return self.conn.get_stored(obj.data_id, obj.group(self.settings))

    def text(self, obj: BaseObject, raw: str) -> str:
        return nacos_layout.decrypt(raw, self.key) if obj.secret else raw

    def encode(self, obj: BaseObject, text: str) -> str:
        return nacos_layout.encrypt(text, self.key) if obj.secret else text

    def create(self, obj: BaseObject, raw: str) -> bool:
        """Create an absent object; False when another writer (a second control-plane host starting
        at the same moment) created it first."""
        try:
            self.conn.compare_and_publish(obj.data_id, obj.group(self.settings), raw, None)
        except NacosConflict:
            return False   # refused: it exists (the answer, not a read, says so)
        return True

    def replace(self, obj: BaseObject, raw: str, expected: str) -> None:
        self.conn.compare_and_publish(obj.data_id, obj.group(self.settings), raw, md5(expected))

    def backup(self, obj: BaseObject, raw: str) -> str:
        """Copy the stored object --reseed is about to replace (as stored: a Secret stays encrypted)
        to backup/<stamp>/nacos/<namespace>/<group>/<dataId>, root's, before Nacos is written."""
        writer = self.ctx.writer
        rel = "/".join((layout.BACKUP_DIR, writer.backup_stamp, "nacos", self.settings.nacos_namespace,
                        obj.group(self.settings), obj.data_id))
        if not self.ctx.plan:
            journal.write_atomic(writer.fs, rel, raw.encode(), 0o600)
        return rel

    def finish(self, counts, objs) -> None:
        """Each type's names index lists every seeded object: one read per type, one write when a line
        is missing (the apiserver's refresh is triggered by a change of it)."""
        by_plural: dict[str, list[BaseObject]] = {}
        for obj in objs:
            by_plural.setdefault(obj.plural, []).append(obj)
        indexes = [(nacos_layout.names_index(p), DEFAULT_GROUP) for p in by_plural]
        first = dict(zip(by_plural, self.conn.get_many(indexes), strict=True))   # one answer an index
        for plural, members in by_plural.items():
            data_id = nacos_layout.names_index(plural)
            for attempt in range(5):
                # after a refused write, the database view: a node's copy may lag the winner's
                index = first[plural] if attempt == 0 else self.conn.get_stored(data_id, DEFAULT_GROUP)
                wanted = nacos_layout.index_with(index, [(o.group(self.settings), o) for o in members])
                if wanted is None:
                    counts.add("kept", data_id)
                    break
                try:
                    self.conn.compare_and_publish(data_id, DEFAULT_GROUP, wanted, md5(index))
                    counts.add("updated" if index else "created", data_id)
                    break
                except NacosConflict:
                    if attempt == 4:
                        raise  # the apiserver rewrites this index too: re-read and merge, a few times

    def commit(self) -> None:
        pass  # each publication is its own commit


class StagedNacos:
    """Nacos as `plan` sees it: reads go to the server unless this run published the config;
    publishing is kept here and never sent (the file store is staged by the PlanWriter)."""

    staged = True   # nothing published: no race to wait out

    def __init__(self, conn):
        self.conn, self.published = conn, {}

    def close(self) -> None:
        self.conn.close()

    def __getattr__(self, name):  # the connection's other attributes (generation, active, ...)
        return getattr(self.conn, name)

    @property
    def calls(self) -> int:
        return getattr(self.conn, "calls", 0)

    def get(self, data_id: str, group: str) -> str | None:
        key = (data_id, group)
        return self.published[key] if key in self.published else self.conn.get(data_id, group)

    def get_many(self, keys: list[tuple[str, str]]) -> list[str | None]:
        unread = [k for k in keys if k not in self.published]
        read = dict(zip(unread, self.conn.get_many(unread) if unread else [], strict=True))  # one answer a key
        return [self.published[k] if k in self.published else read[k] for k in keys]

    def get_stored(self, data_id: str, group: str) -> str | None:
        key = (data_id, group)
        return self.published[key] if key in self.published else self.conn.get_stored(data_id, group)

    @property
    def written(self) -> dict:
        return self.published

    def compare_and_publish(self, data_id: str, group: str, content: str, expected_md5) -> None:
        if md5(self.get(data_id, group)) != expected_md5:
            raise NacosConflict(f"{group}/{data_id} changed since it was read")
        self.published[(data_id, group)] = content


def open_store(ctx) -> NacosStore:
    ctx.nacos = ctx.nacos or client.connect(ctx.settings, ctx.log)
    if ctx.plan and not isinstance(ctx.nacos, StagedNacos):
        ctx.nacos = StagedNacos(ctx.nacos)  # plan writes nothing, Nacos included
    return NacosStore(ctx, ctx.nacos)


def open_for_status(settings, writer):
    """Nacos gets a short wait here, not the run's NACOS_WAIT_TIMEOUT."""
    ctx = StatusContext(settings, writer)
    ctx.nacos = client.connect(replace(settings, nacos_wait_timeout=timedelta(seconds=2)), ctx.log)
    return ctx, NacosStore(ctx, ctx.nacos)


def prepare(ctx, counts) -> None:
    """The `nacos` phase: wait for Nacos, log in, create the namespace."""
    client.prepare(ctx, counts)
