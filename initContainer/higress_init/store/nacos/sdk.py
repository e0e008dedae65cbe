"""Loading nacos-sdk-python's v2 client without loading the parts this initializer never runs.

`import v2.nacos` loads the whole SDK, and half of its import time (about 0.25 s of every run
with Nacos storage, paid at every `docker compose up`) went to things no run uses:
- Client-side config encryption with Alibaba Cloud KMS: the config service imports its KMS
  handler, which imports Alibaba Cloud's KMS SDK and its Tea runtime (with requests, aiohttp and
  pycryptodome). The SDK makes a handler only when `ClientConfig.kms_config.enabled`, off unless
  set; nacos.ConfigService never sets it.
- aiohttp, which the SDK's HTTP agent imports at module level but uses only to log in with a
  password and to fetch the server list from an address server. nacos.ConfigService hands the SDK
  its own token and the servers, so neither happens.
- aiofiles, which the SDK's local config cache reads and writes files with: nacos.ConfigService
  turns that cache off and queries the server itself, so a run reads and writes no cache file.
Each is put in `sys.modules` as a stand-in before the SDK loads, and the stand-in loads the real
module on first use: the KMS handler module when a handler is made, aiohttp and aiofiles when any
of their names is read. So nothing changes should the SDK ever use them; it just costs nothing
when it does not.
(importlib.util.LazyLoader cannot do this: the import system reads `__spec__` of a module found in
`sys.modules`, and that read alone makes a lazy module load.) Nothing of the SDK itself is changed.
A process that loaded the SDK before keeps it as it is.

`connect_promptly` takes out the SDK's fixed 0.1 s wait after each gRPC connect (see there).
"""
from __future__ import annotations

import contextlib
import gc
import importlib
import sys
import threading
import types

KMS_HANDLER = "v2.nacos.config.encryption.kms_handler"
DEFERRED = (KMS_HANDLER, "aiohttp", "aiofiles")
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

    The SDK defines some 60 pydantic models (every request and response type, naming's included)
    and a run uses about ten; pydantic builds each one's validator when the class is defined,
    about 20 ms of CPU in all. So while the SDK loads, its models are defined with pydantic's
    `defer_build` (the default of BaseModel's config for that moment only, restored after); the
    ones a run uses (USED_MODELS) are built right after, here (in the thread that loads the SDK
    while the run waits for Nacos), and any other on its first use.

    What loading it made (modules, classes, pydantic schemas: most of this process's objects)
    stays for the rest of the process, so it is moved out of the garbage collector's sight
    (gc.freeze): the full collection ConfigService.close makes (to stop gRPC's poller thread) and
    any automatic one no longer walk it. They took 0.05 to 0.2 s a run."""
    with _lock:   # held through the first load: a second caller waits for it, then finds it loaded
        if "v2.nacos" in sys.modules:
            import v2.nacos
            return v2.nacos
        for name in DEFERRED:
            if name not in sys.modules:
                stand_in = Deferred(name, f"stands in for {name} until used (higress_init.store.nacos.sdk)")
                if name == KMS_HANDLER:
                    vars(stand_in)["KMSHandler"] = KMSHandler   # a module attribute
                sys.modules[name] = stand_in
        with _models_built_on_first_use():
            import v2.nacos
        for module, names in USED_MODELS.items():
            for name in names:
                model = getattr(sys.modules.get(module), name, None)
                if model is not None and not model.__pydantic_complete__:
                    model.model_rebuild()
        gc.freeze()
        return v2.nacos


# The SDK's models a run uses (to connect, query, publish), built as the SDK loads
USED_MODELS = {
    "v2.nacos.transport.model.internal_request": ("ServerCheckRequest", "ConnectionSetupRequest", "HealthCheckRequest"),
    "v2.nacos.transport.model.internal_response": ("ServerCheckResponse", "HealthCheckResponse", "ErrorResponse"),
    "v2.nacos.config.model.config_request": ("ConfigQueryRequest", "ConfigPublishRequest"),
    "v2.nacos.config.model.config_response": ("ConfigQueryResponse", "ConfigPublishResponse"),
    "v2.nacos.config.model.config_param": ("ConfigParam",),
}


@contextlib.contextmanager
def _models_built_on_first_use():
    from pydantic import BaseModel
    config = BaseModel.model_config
    BaseModel.model_config = {**config, "defer_build": True}
    try:
        yield
    finally:
        BaseModel.model_config = config


# --- connecting without the SDK's fixed wait
UN_REGISTER = 301        # the server's answer to a request on a connection it has not registered yet
REGISTER_WAIT = 0.1      # seconds: the SDK's fixed wait for that registration
_prompt: list = []


def connect_promptly(proxy) -> None:
    """The gRPC clients `proxy` (the SDK's ConfigGRPCClientProxy) makes from now on connect without
    the SDK's fixed wait.

    After its connection-setup message (on the bidirectional stream) the SDK sleeps 0.1 s, as the
    Java client does, so that the server has registered the connection before the first request:
    a request on an unregistered connection is answered UN_REGISTER, and the SDK takes that for a
    dead server and reconnects. These clients instead ask the server on that connection (a health
    check, answered UN_REGISTER until the registration) and go on as soon as it is registered, so
    after a few milliseconds rather than 0.1 s; an answer of any other kind, or none, waits the
    rest of the 0.1 s as the SDK would. Only this proxy's factory is changed (its own attribute);
    the SDK's classes are not."""
    factory = proxy.rpc_client_manager
    create = factory.create_client

    async def create_client(*args, **kwargs):
        client = await create(*args, **kwargs)
        if type(client) is _prompt_class().__base__:
            client.__class__ = _prompt_class()
        return client
    factory.create_client = create_client


def _prompt_class():
    with _lock:
        if not _prompt:
            _prompt.append(_make_prompt_class())
        return _prompt[0]


def _make_prompt_class():
    import asyncio

    from v2.nacos.common.constants import Constants
    from v2.nacos.transport.grpc_client import GrpcClient
    from v2.nacos.transport.grpc_connection import GrpcConnection
    from v2.nacos.transport.grpc_util import GrpcUtils
    from v2.nacos.transport.grpcauto.nacos_grpc_service_pb2_grpc import BiRequestStreamStub, RequestStub
    from v2.nacos.transport.model.internal_request import ConnectionSetupRequest

    class PromptGrpcClient(GrpcClient):
        async def connect_to_server(self, server_info):
            # GrpcClient.connect_to_server of nacos-sdk-python 2.0.11 (pinned), its last
            # `await asyncio.sleep(0.1)` replaced by `registered`
            managed_channel = await self._create_new_managed_channel(server_info.server_ip, server_info.server_port)
            channel_stub = RequestStub(managed_channel)
            server_check_response = await self._server_check(server_info.server_ip, server_info.server_port,
                                                             channel_stub)
            if not server_check_response:
                await self._shunt_down_channel(managed_channel)
                return None
            connection_id = server_check_response.get_connection_id()
            grpc_conn = GrpcConnection(server_info, connection_id, managed_channel, channel_stub,
                                       BiRequestStreamStub(managed_channel))
            setup = ConnectionSetupRequest(clientVersion=Constants.CLIENT_VERSION, tenant=self.tenant,
                                           labels=self.labels)
            await grpc_conn.send_bi_request(GrpcUtils.convert_request_to_payload(setup))
            asyncio.create_task(self._server_request_watcher(grpc_conn))
            self.registered = await registered(grpc_conn)
            return grpc_conn

    return PromptGrpcClient


async def registered(conn) -> bool:
    """Until the server has registered the SDK connection `conn`, REGISTER_WAIT at most; whether it
    said so (else the whole REGISTER_WAIT was waited, as the SDK does)."""
    import asyncio

    from v2.nacos.transport.model.internal_request import HealthCheckRequest
    from v2.nacos.transport.model.internal_response import ErrorResponse, HealthCheckResponse
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REGISTER_WAIT
    pause = 0.002
    while True:
        try:
            answer = await conn.request(HealthCheckRequest(), REGISTER_WAIT * 1000)
        except Exception:  # noqa: BLE001 - no answer: wait as the SDK does
            answer = None
        if isinstance(answer, HealthCheckResponse) and answer.is_success():
            return True
        left = deadline - loop.time()
        if not (isinstance(answer, ErrorResponse) and answer.get_error_code() == UN_REGISTER) or left <= 0:
            break
        await asyncio.sleep(min(pause, left))
        pause *= 2
    await asyncio.sleep(max(0.0, deadline - loop.time()))
    return False
