"""The stores, and the one place where a run's store is chosen (CONFIG_STORAGE). What differs
between stores is a capability here, asked by the phases, never the store's name. Imports nothing
heavy: the warm path asks it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StoreKind:
    name: str               # CONFIG_STORAGE's value
    label: str              # how messages name it
    module: str             # where its Store class lives (imported when the store is opened)
    remote: bool            # a server to wait for and log in to, with a namespace to create (the `nacos` phase)
    shares_ca: bool         # hosts share the pilot CA through it, so more gateway hosts can join (sharedca)
    registry: bool          # the gateway discovers services in it (McpBridge's registry entry)


STORES = {s.name: s for s in (
    StoreKind("file", "file store", "higress_init.store.stores", remote=False, shares_ca=False, registry=False),
    StoreKind("nacos", "Nacos", "higress_init.store.stores", remote=True, shares_ca=True, registry=True),
)}


def store_kind(settings) -> StoreKind:
    return STORES[settings.config_storage]
