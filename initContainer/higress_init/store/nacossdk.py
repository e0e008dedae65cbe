"""Loading nacos-sdk-python's v2 client without loading the parts this initializer never runs.

`import v2.nacos` loads the whole SDK, and half of its import time (about 0.25 s of every run
with Nacos storage, paid at every `docker compose up`) went to two things no run uses:
- Client-side config encryption with Alibaba Cloud KMS: the config service imports its KMS
  handler, which imports Alibaba Cloud's KMS SDK and its Tea runtime (with requests, aiohttp and
  pycryptodome). The SDK makes a handler only when `ClientConfig.kms_config.enabled`, off unless
  set; nacos.ConfigService never sets it.
- aiohttp, which the SDK's HTTP agent imports at module level but uses only to log in with a
  password and to fetch the server list from an address server. nacos.ConfigService hands the SDK
  its own token and the servers, so neither happens.
Each is put in `sys.modules` as a stand-in before the SDK loads, and the stand-in loads the real
module on first use: the KMS handler module when a handler is made, aiohttp when any of its names
is read. So nothing changes should the SDK ever use them; it just costs nothing when it does not.
(importlib.util.LazyLoader cannot do this: the import system reads `__spec__` of a module found in
`sys.modules`, and that read alone makes a lazy module load.) Nothing of the SDK itself is changed.
A process that loaded the SDK before keeps it as it is.
"""
from __future__ import annotations

import gc
import importlib
import sys
import threading
import types

KMS_HANDLER = "v2.nacos.config.encryption.kms_handler"
DEFERRED = (KMS_HANDLER, "aiohttp")
_lock = threading.RLock()


class Deferred(types.ModuleType):
    """Stands in for a module until one of its names is read; then the real one is loaded in its
    place in `sys.modules` and answers (the dunder names the import system reads do not count)."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(real(self.__name__), name)


class KMSHandler:
    """The SDK's KMS handler, its module loaded when one is made (`from ... import KMSHandler` reads
    the name when the config service is imported, so the name itself must be here)."""

    def __new__(cls, *args, **kwargs):
        return real(KMS_HANDLER).KMSHandler(*args, **kwargs)


def real(name: str) -> types.ModuleType:
    """The real module `name`, loaded now in place of its stand-in."""
    with _lock:
        module = sys.modules.get(name)
        if isinstance(module, Deferred):
            del sys.modules[name]
            module = importlib.import_module(name)
        return module if module is not None else importlib.import_module(name)


def load() -> types.ModuleType:
    """The SDK's v2 package, with the modules in DEFERRED not loaded until used.

    What loading it made (modules, classes, pydantic schemas: most of this process's objects)
    stays for the rest of the process, so it is moved out of the garbage collector's sight
    (gc.freeze): the full collection ConfigService.close makes (to stop gRPC's poller thread) and
    any automatic one no longer walk it. They took 0.05 to 0.2 s a run."""
    with _lock:
        first = "v2.nacos" not in sys.modules
        if first:
            for name in DEFERRED:
                if name not in sys.modules:
                    stand_in = Deferred(name, f"stands in for {name} until used (higress_init.store.nacossdk)")
                    if name == KMS_HANDLER:
                        stand_in.KMSHandler = KMSHandler
                    sys.modules[name] = stand_in
    import v2.nacos
    if first:
        gc.freeze()
    return v2.nacos
