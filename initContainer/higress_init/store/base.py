"""What a store is to the phases: where the base objects live (the apiserver's file store, Nacos).
Seeding and delivery (seeding.py) and status talk to a store only through this protocol; what
differs between stores beyond it is a capability in kinds.py. A new store is one module
implementing it and one line in kinds.STORES."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, overload

if TYPE_CHECKING:
    from higress_init.run.reporting import Counts
    from higress_init.settings import Settings
    from higress_init.versions.objects import BaseObject


@overload
def md5(text: str) -> str: ...
@overload
def md5(text: None) -> None: ...
def md5(text: str | None) -> str | None:
    """The md5 of stored text (None: absent): what seeding records and Nacos's compare-and-swap compares."""
    return hashlib.md5(text.encode()).hexdigest() if text is not None else None


class Store(Protocol):
    label: str    # how messages name it ("Nacos", "file store")

    def where(self, obj: BaseObject) -> str:
        """Where the object lives, for messages."""

    def record_key(self, obj: BaseObject) -> str:
        """The object's key in the record of what seeding wrote (.higress-init/seeded.json)."""

    def read(self, obj: BaseObject) -> str | None:
        """The object as stored (raw: a Secret as the store keeps it), None when absent."""

    def read_all(self, objs: list[BaseObject]) -> dict[str, str | None]:
        """`read` of each object, by label (Nacos: the reads sent at once)."""

    def stored(self, obj: BaseObject) -> str | None:
        """The same, as another writer's write shows it (after a lost compare-and-swap)."""

    def text(self, obj: BaseObject, raw: str) -> str:
        """The object's YAML from its raw stored form (a Secret decrypted)."""

    def encode(self, obj: BaseObject, text: str) -> str:
        """The raw stored form of the object's YAML (a Secret encrypted)."""

    def create(self, obj: BaseObject, raw: str) -> bool:
        """Create an absent object; False when another writer created it first."""

    def replace(self, obj: BaseObject, raw: str, expected: str) -> None:
        """Compare-and-swap: replace what was read as `expected`; refused when it changed since."""

    def backup(self, obj: BaseObject, raw: str) -> str:
        """Copy the object about to be replaced into backup/; where it went."""

    def finish(self, counts: Counts, objs: list[BaseObject]) -> None:
        """After the objects are written: what the store keeps about them (Nacos: the names indexes)."""

    def commit(self) -> None:
        """Make the writes visible (the file store: the volume writer's commit)."""

    @property
    def calls(self) -> int | None:
        """Requests made to a server so far (None: no server)."""


@dataclass
class StatusContext:
    """What `status` opens a store with: read-only, like a `plan` run that writes nothing."""
    settings: Settings
    writer: object
    nacos: object | None = None
    plan: bool = True
    stored: dict = field(default_factory=dict)
    log: Callable = lambda *args, **kwargs: None
