"""The stores, and the one place where a run's store is chosen (CONFIG_STORAGE). What differs
between stores is a capability here, asked by the phases, never the store's name. Each store's
module (StoreKind.module) implements store.base.Store and offers open_store, open_for_status and
prepare (its part of the first phase). Imports nothing heavy: the warm path asks it."""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class StoreKind:
    name: str               # CONFIG_STORAGE's value
    module: str             # where its Store class lives (imported when the store is opened)
    remote: bool            # a server to wait for and log in to, with a namespace to create (the `nacos` phase)
    shares_ca: bool         # hosts share the pilot CA through it, so more gateway hosts can join (sharedca)
    registry: bool          # the gateway discovers services in it (McpBridge's registry entry)


STORES = {s.name: s for s in (
    StoreKind("file", "higress_init.store.file", remote=False, shares_ca=False, registry=False),
    StoreKind("nacos", "higress_init.store.nacos.store", remote=True, shares_ca=True, registry=True),
)}


def store_kind(settings) -> StoreKind:
    return STORES[settings.config_storage]


def _module(settings):
    return importlib.import_module(store_kind(settings).module)


def open_store(ctx):
    """The run's store (Nacos: connected once a run, ctx.nacos; staged under `plan`)."""
    return _module(ctx.settings).open_store(ctx)


def open_for_status(settings, writer):
    """(ctx, store) read-only, for status; errors.StoreError or OSError when it cannot be reached."""
    return _module(settings).open_for_status(settings, writer)


def prepare(ctx, counts) -> None:
    """The first phase's work: wait for the store's server, log in, create the namespace."""
    _module(ctx.settings).prepare(ctx, counts)
