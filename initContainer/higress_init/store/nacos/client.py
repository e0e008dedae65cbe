"""Nacos: wait for it, log in, create the namespace, and seed the base config the way the
Higress apiserver reads it (one config per object, a names index per resource type).

Every config read and write goes through nacos-sdk-python's v2 config service: gRPC on the HTTP
port + 1000, as the apiserver's own Go SDK, with compare-and-swap (casMd5) and failover across the
listed servers. What that SDK has no API for (the readiness probe, namespaces, server state, the
config search) and the login (the SDK's sends the password in the URL and cannot tell a wrong
password from a dead server) go through `HttpClient`, one small plain-HTTP client that maps every
status explicitly. Neither ever puts a response body or a credential into a message.
"""
from __future__ import annotations

import atexit
import contextlib
import gc
import http.client
import json
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from tenacity import AsyncRetrying, Retrying, retry_if_exception_type, wait_exponential, wait_random

from higress_init.errors import (
    EXIT_NACOS_AUTH,
    EXIT_NACOS_CONFLICT,
    EXIT_NACOS_REQUEST,
    EXIT_NACOS_UNREACHABLE,
    StateError,
    StoreError,
)
from higress_init.store.base import md5
from higress_init.store.nacos import layout as nacos_layout
from higress_init.store.nacos import sdk
from higress_init.versions.objects import DEFAULT_GROUP
from higress_init.volume import layout

REQUEST_TIMEOUT = 5.0       # one HTTP request or gRPC call
REQUEST_BUDGET = 30.0       # one operation with its retries (long enough for a cluster to elect a leader)
MAX_BODY = 16 * 1024 * 1024  # the largest HTTP answer read (a page of config search results)
SEARCH_PAGE_SIZE = 50


class NacosError(StoreError):
    exit_code = EXIT_NACOS_REQUEST


class NacosUnreachable(NacosError):
    exit_code = EXIT_NACOS_UNREACHABLE


class NacosAuthError(NacosError):
    exit_code = EXIT_NACOS_AUTH


class NacosConflict(NacosError):
    exit_code = EXIT_NACOS_CONFLICT


class _Transient(Exception):
    """Worth another try: a refused or reset connection, a timeout, HTTP 409 or 5xx, a gRPC failure."""


def _retrying(deadline: float, cls=Retrying, **kwargs):
    """Retry transient failures with jittered exponential backoff, never past `deadline`."""
    backoff = wait_exponential(multiplier=0.2, max=4.0) + wait_random(0, 0.2)
    return cls(retry=retry_if_exception_type(_Transient), reraise=True,
               stop=lambda state: time.monotonic() >= deadline,
               wait=lambda state: max(0.0, min(backoff(state), deadline - time.monotonic())), **kwargs)


# --- plain HTTP: readiness, login, namespaces, server state, config search
class _DeadlineSocket(socket.socket):
    """A socket whose every send and receive is bounded by one deadline for the whole request: a
    server that answers a byte a second cannot stretch a call (or a wait) past it."""
    deadline = 0.0

    def _arm(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        self.settimeout(min(left, REQUEST_TIMEOUT))

    def recv_into(self, *args, **kwargs):
        self._arm()
        return super().recv_into(*args, **kwargs)

    def recv(self, *args, **kwargs):
        self._arm()
        return super().recv(*args, **kwargs)

    def sendall(self, *args, **kwargs):
        self._arm()
        return super().sendall(*args, **kwargs)


class _DeadlineConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int | None, deadline: float):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        super().__init__(host, port, timeout=min(left, REQUEST_TIMEOUT))
        self.deadline = deadline

    def connect(self) -> None:
        super().connect()
        plain = self.sock
        self.sock = _DeadlineSocket(plain.family, plain.type, plain.proto, fileno=plain.detach())
        self.sock.deadline = self.deadline


@dataclass
class HttpClient:
    """Plain HTTP to the listed servers (NACOS_SERVER_URL is http only: the apiserver refuses https,
    so no call of either client uses TLS). Each answer is mapped here: 200 the body; 404 absent
    (None); 409, 5xx and connection errors or timeouts retried, the next server first; 401/403 an
    auth error at once (exit 5); any other status final (exit 7)."""
    servers: tuple[str, ...]                 # http://host:port/nacos
    active: str = ""                         # the server that answered last
    token: str | None = None
    calls: int = 0

    def ordered(self) -> list[str]:
        return [self.active] + [s for s in self.servers if s != self.active] if self.active else list(self.servers)

    def send(self, server: str, method: str, path: str, deadline: float, params: dict | None = None,
             form: dict | None = None) -> tuple[int, bytes]:
        """One request to one server: (status, body). Raises _Transient when no answer came."""
        parts = urlsplit(server)
        query = urlencode(params or {})
        body = urlencode(form).encode() if form is not None else None
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
        if self.token:
            headers["accessToken"] = self.token  # a header, not a query parameter: kept out of access logs
        where = f"{server}{path}"
        if time.monotonic() >= deadline:
            raise _Transient("")  # no time left for this try; the last real error stays the one told
        self.calls += 1
        assert parts.hostname   # settings: every NACOS_SERVER_URL names a host
        conn = None
        try:
            conn = _DeadlineConnection(parts.hostname, parts.port, deadline)
            conn.request(method, parts.path + path + (f"?{query}" if query else ""), body=body, headers=headers)
            response = conn.getresponse()
            data = response.read(MAX_BODY + 1)
        except OSError as err:
            raise _Transient(f"{where}: {err.strerror or err or type(err).__name__}") from None
        except http.client.HTTPException as err:  # not HTTP at all; its text may quote the answer: not shown
            raise _Transient(f"{where}: not an HTTP answer ({type(err).__name__})") from None
        finally:
            if conn is not None:
                conn.close()
        if len(data) > MAX_BODY:
            raise NacosError(f"{where}: the answer is larger than {MAX_BODY // 2**20} MiB")
        return response.status, data

    def request(self, method: str, path: str, what: str, params: dict | None = None, form: dict | None = None,
                within: float = REQUEST_BUDGET) -> bytes | None:
        """`what` names the operation in messages. Returns the body of a 200, None for a 404."""
        return self.exchange(method, path, what, params, form, within)[1]

    def exchange(self, method: str, path: str, what: str, params: dict | None = None, form: dict | None = None,
                 within: float = REQUEST_BUDGET, accept: tuple[int, ...] = ()) -> tuple[int, bytes | None]:
        """(status, body) of a 200, a 404 (body None) or a status in `accept` (the caller's to read:
        some Nacos answers need their body to tell what they mean); every other status as mapped above."""
        deadline = time.monotonic() + within
        last = ["no answer"]

        def attempt():
            for server in self.ordered():
                try:
                    status, body = self.send(server, method, path, deadline, params, form)
                except _Transient as err:
                    last[0] = str(err) or last[0]
                    continue
                if status == 200 or status in accept:
                    self.active = server
                    return status, body
                if status == 404:
                    return status, None
                if status in (401, 403) and not self.token and path.startswith("/v3/admin/"):
                    raise NacosAuthError(f"Nacos 3's admin API needs credentials for {what} (HTTP {status} from "
                                         f"{server}{path}): set NACOS_USERNAME and NACOS_PASSWORD (a user with the "
                                         "admin role), or turn its admin API's auth off "
                                         "(nacos.core.auth.admin.enabled=false)")
                if status in (401, 403) and not self.token:
                    raise NacosAuthError(f"Nacos requires credentials for {what} (HTTP {status} from {server}{path}): "
                                         "set NACOS_USERNAME and NACOS_PASSWORD, or turn its auth off")
                if status in (401, 403):
                    raise NacosAuthError(f"Nacos denied {what} (HTTP {status} from {server}{path}): check "
                                         "NACOS_USERNAME/NACOS_PASSWORD and that user's permissions")
                if status == 409 or status >= 500:
                    last[0] = f"{server}{path}: HTTP {status}"
                    continue
                raise NacosError(f"Nacos refused {what}: HTTP {status} from {server}{path}")
            raise _Transient(last[0])

        try:
            for retry in _retrying(deadline):
                with retry:
                    return attempt()
            raise AssertionError("unreachable: _retrying ends in an answer or an exception")
        except _Transient:
            raise NacosError(f"Nacos request failed: {what} did not succeed within {within:g}s; "
                             f"last error: {last[0]}") from None

    def json(self, method: str, path: str, what: str, **kwargs):
        body = self.request(method, path, what, **kwargs)
        return None if body is None else _parse(body, what)


def _parse(body: bytes, what: str):
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # the body itself is not shown: it may hold anything
        raise NacosError(f"Nacos answered {what} with a body that is not JSON") from None


# --- the SDK: every config read and write
class _IssuedToken:
    """Stands in for the SDK's own login (see the module docstring): hands it our token."""

    def __init__(self, token: str):
        self.token = token

    async def get_access_token(self, force_refresh: bool = False) -> str:
        return self.token


# gRPC result codes (Nacos's ResponseCode / the SDK's NacosException codes)
_NOT_FOUND = 300                    # ConfigQueryResponse.CONFIG_NOT_FOUND
_AUTH = (401, 403)
_RETRIED = (400, 409, 500, 502, 503, -401, -500, -503)  # 400 on a query: "being modified concurrently"


class ConfigService:
    """nacos-sdk-python's v2 NacosConfigService on a private event loop, with plain calls.

    The SDK is async; its background tasks (reconnection after a failed call included) run while
    one of our calls runs, which is also when our backoff sleeps. Imported here, on first use: the
    SDK and its dependencies take about 0.2 s to import (nacossdk: without the parts never used),
    which a run without Nacos never pays; `connect` loads them while it waits for the server."""

    def __init__(self, servers: tuple[str, ...], namespace: str, token: str | None):
        import asyncio
        import logging
        _sdk_loaded()
        self.namespace, self.token, self.calls, self.connections = namespace, token, 0, 0
        self.addresses = ",".join(urlsplit(s).netloc for s in servers)  # host:port; gRPC is port + 1000
        # its log and cache directories (it creates both) live only as long as this object
        self.tmp = tempfile.TemporaryDirectory(prefix="higress-init-nacos-")
        self.loop = asyncio.new_event_loop()
        self.service: Any | None = None   # the SDK's NacosConfigService (untyped), once _open made it
        # the SDK logs requests (contents, tokens) and, on reconnects, to the root logger: keep all
        # of it out of our output while it is open
        self.quiet = logging.NullHandler()
        logging.getLogger().addHandler(self.quiet)
        atexit.register(self.close)

    def _run(self, coro, what: str, retried=_RETRIED):
        """Run one SDK operation with retries until REQUEST_BUDGET is spent."""
        return self.loop.run_until_complete(self._retried(coro, what, retried))

    async def _retried(self, make, what: str, retried):
        import asyncio

        from v2.nacos import NacosException
        deadline = time.monotonic() + REQUEST_BUDGET
        last = ["no answer"]
        try:
            async for attempt in _retrying(deadline, AsyncRetrying, sleep=asyncio.sleep):
                with attempt:
                    try:
                        if self.service is None:
                            await self._open()
                        self.calls += 1
                        return await asyncio.wait_for(make(), REQUEST_TIMEOUT * 2)
                    except NacosException as err:
                        code = err.error_code
                        if code in _AUTH:
                            raise NacosAuthError(f"Nacos denied {what} (code {code}): check "
                                                 "NACOS_USERNAME/NACOS_PASSWORD and that user's permissions") from None
                        if code in retried:
                            last[0] = f"code {code}"
                            raise _Transient() from None
                        raise NacosError(f"Nacos refused {what}: code {code}") from None
                    except TimeoutError:
                        last[0] = "timed out"
                        raise _Transient() from None
        except _Transient:
            raise NacosError(f"Nacos request failed: {what} did not succeed within {REQUEST_BUDGET:g}s "
                             f"(gRPC to {self.addresses}); last error: {last[0]}") from None

    async def _open(self) -> None:
        import logging

        from v2.nacos import ClientConfig, NacosConfigService
        config = ClientConfig(server_addresses=self.addresses, namespace_id=self.namespace,
                              log_dir=self.tmp.name + "/log", log_level=logging.CRITICAL)
        config.set_cache_dir(self.tmp.name + "/cache")
        config.disable_use_config_cache = True    # never answer from a local copy
        config.grpc_config.grpc_timeout = int(REQUEST_TIMEOUT * 1000)
        service = NacosConfigService(config)
        sdk.connect_promptly(service.grpc_client_proxy)   # without the SDK's fixed 0.1 s wait
        for handler in list(service.logger.handlers):  # the log file it opened: closed, not written
            service.logger.removeHandler(handler)
            handler.close()
        if self.token:
            # our login's token rather than a second login with the password in a URL
            service.grpc_client_proxy.nacos_server_connector.auth_client = _IssuedToken(self.token)
            config.username, config.password = "higress-init", "token"
        try:
            self.connections += 1
            await service.grpc_client_proxy.start()
        except BaseException:
            await self._shutdown(service)
            raise
        self.service = service

    def get(self, data_id: str, group: str) -> str | None:
        """The config's content; None when absent ("" is a config that exists and is empty).

        The query is the SDK's own, sent without its get_config wrapper, which answers an absent
        config as "" and a config being modified as its local cache."""
        return self._run(self._query(data_id, group), f"reading {group}/{data_id}")

    def get_many(self, keys: list[tuple[str, str]]) -> list[str | None]:
        """`get` of each (dataId, group), the queries sent at once on the one connection: the time
        of about one round trip rather than one each. Each is retried on its own, as `get`; the
        first that fails (in the order given) is raised once all have ended."""
        import asyncio
        keys = list(keys)
        first = [self.get(*keys.pop(0))] if keys and self.service is None else []   # it connects, once

        async def every():
            return await asyncio.gather(*(self._retried(self._query(d, g), f"reading {g}/{d}", _RETRIED)
                                          for d, g in keys), return_exceptions=True)
        answers = self.loop.run_until_complete(every()) if keys else []
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
        return first + answers

    def _query(self, data_id: str, group: str):
        async def query():
            from v2.nacos import NacosException
            from v2.nacos.config.model.config_request import ConfigQueryRequest
            from v2.nacos.config.model.config_response import ConfigQueryResponse
            proxy = self.service.grpc_client_proxy
            request = ConfigQueryRequest(group=group, dataId=data_id, tenant=self.namespace)
            request.put_header("notify", "false")
            try:
                response = await proxy.request_config_server(await proxy.fetch_rpc_client(), request,
                                                             ConfigQueryResponse)
            except NacosException as err:
                if err.error_code == _NOT_FOUND:
                    return None
                raise
            return response.content or ""
        return query

    def publish(self, data_id: str, group: str, content: str, cas_md5: str | None) -> bool:
        """Publish; with cas_md5 the server applies it only if the config's md5 still is that."""
        from v2.nacos import ConfigParam
        param = ConfigParam(data_id=data_id, group=group, content=content, cas_md5=cas_md5 or "")

        def publish_config():
            assert self.service is not None   # _retried opens it before each attempt
            return self.service.publish_config(param.model_copy())
        # not retried here: the caller re-reads to learn what a failed or lost write did
        return self._run(publish_config, f"publishing {group}/{data_id}", retried=())

    def pause(self, seconds: float) -> None:
        """Sleep, letting the SDK's background work (reconnecting) go on meanwhile."""
        import asyncio
        self.loop.run_until_complete(asyncio.sleep(seconds))

    async def _shutdown(self, service) -> None:
        import asyncio
        # Why shutdown() took 5 s: it sets a stop flag and then awaits the config-listen task, which
        # sits in a 5-second wait on its queue before it looks at that flag again. An item in the
        # queue wakes it at once, it sees the flag and ends; then every gRPC client closes its channel.
        service.grpc_client_proxy.execute_config_listen_channel.put_nowait(None)
        await service.shutdown()
        # what the SDK starts and does not stop: each connection's stream watcher, our own timeouts
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        import logging
        try:
            if self.service is not None:
                self.loop.run_until_complete(self._shutdown(self.service))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()
            self.service = None
            # gRPC stops its poller thread when the last of its channel objects is freed: free them now
            gc.collect()
            # The SDK's imports leave so many objects that the interpreter's collections at exit took
            # 0.2 s more; what is left needs no collecting before this one-shot process ends.
            gc.freeze()
            logging.getLogger().removeHandler(self.quiet)
            self.tmp.cleanup()
            atexit.unregister(self.close)


# The casMd5 of a creation: no content has this md5, so Nacos's compare-and-swap path inserts the
# config when it is absent (a unique key makes exactly one of two racing inserts succeed) and
# refuses it when it exists. An empty casMd5 would be a plain publish, which overwrites.
CREATE_ONLY = "0" * 32


@dataclass
class Connection:
    """One run's way to Nacos: the HTTP client (found the server, logged in) and, opened on first
    use, the SDK's config service.

    Real Nacos does not read its own writes at once: for up to ~100 ms after an acknowledged
    publish, a query still answers "not found" or the old content (on a cluster, after a refused
    write, a node can serve the refused content for seconds). So what this run published is
    remembered and read back from memory, every decision is taken from the publish answer, and
    what another host wrote is read from the database view (`get_stored`)."""
    servers: tuple[str, ...]                 # http://host:port/nacos
    namespace: str = ""                      # the Nacos namespace (tenant) configs live in
    generation: str = ""                     # "2.x" or "3.x"
    log: Callable[..., None] | None = None
    http: HttpClient = None  # type: ignore[assignment]  # None only until __post_init__ makes one
    server_version: str | None = None        # Nacos tells it; r-nacos has no state endpoint
    _configs: ConfigService | None = field(default=None, repr=False)
    probed_state: tuple[str, bytes] | None = field(default=None, repr=False)   # 3.x: (server, its state answer)
    written: dict = field(default_factory=dict)   # (dataId, group) -> content this run published

    def __post_init__(self):
        if self.http is None:
            self.http = HttpClient(self.servers)

    @property
    def active(self) -> str:
        return self.http.active

    @property
    def cas_enforced(self) -> bool:
        """Nacos 2.x/3.x refuse a stale casMd5 atomically; r-nacos (no version) accepts it."""
        return self.server_version is not None

    @property
    def calls(self) -> int:
        """Requests made so far, HTTP and gRPC."""
        return self.http.calls + (self._configs.calls if self._configs else 0)

    @property
    def configs(self) -> ConfigService:
        if self._configs is None:
            self._configs = ConfigService(self.servers, self.namespace, self.http.token)
        return self._configs

    # --- configs
    def get(self, data_id: str, group: str) -> str | None:
        """The config's content (None: absent); what this run published, as published."""
        key = (data_id, group)
        return self.written[key] if key in self.written else self.configs.get(data_id, group)

    def get_many(self, keys: list[tuple[str, str]]) -> list[str | None]:
        """`get` of each (dataId, group), those not published by this run read at once."""
        unread = list(dict.fromkeys(k for k in keys if k not in self.written))
        read = dict(zip(unread, self.configs.get_many(unread) if unread else [], strict=True))  # one answer a key
        return [self.written[k] if k in self.written else read[k] for k in keys]

    def get_stored(self, data_id: str, group: str) -> str | None:
        """The config as the database holds it: the one view that never lags or shows a refused
        write (the SDK's query answers from a node's local copy). HTTP: 3.x's admin API, 2.x's
        exact config search (r-nacos serves it too). Where it no longer holds what this run wrote
        (r-nacos lets a later write overwrite an accepted creation), this run's copy is forgotten."""
        stored = self._stored(data_id, group)
        if self.written.get((data_id, group), stored) != stored:
            del self.written[(data_id, group)]
        return stored

    def _stored(self, data_id: str, group: str) -> str | None:
        what = f"reading {group}/{data_id} from the database view"
        if self.generation == "3.x":
            answer = self.http.json("GET", "/v3/admin/cs/config", what,
                                    params={"dataId": data_id, "groupName": group, "namespaceId": self.namespace})
            try:
                return None if answer is None else answer["data"]["content"]
            except (KeyError, TypeError):
                raise NacosError(f"Nacos answered {what} with unexpected JSON") from None
        params = {"search": "accurate", "dataId": data_id, "group": group, "tenant": self.namespace,
                  "pageNo": 1, "pageSize": 10}
        answer = self.http.json("GET", "/v1/cs/configs", what, params=params)
        try:
            items = [] if answer is None else answer.get("pageItems") or []
            found = [i for i in items if i["dataId"] == data_id and i["group"] == group]
            return found[0]["content"] if found else None
        except (AttributeError, KeyError, TypeError):
            raise NacosError(f"Nacos answered {what} with unexpected JSON") from None

    def compare_and_publish(self, data_id: str, group: str, content: str, expected: str | None) -> None:
        """Publish only if the config still is what was read (md5 `expected`; None: absent).

        Nacos decides atomically: casMd5 `expected` (or CREATE_ONLY) makes it refuse a write to a
        config that changed (or exists). Its answer decides: accepted, this run wrote it; refused,
        or no answer, the database view tells whether ours landed (the answer was lost), someone
        else's did (a conflict: nothing overwritten), or neither (tried again, bounded).
        r-nacos ignores casMd5: there, a read just before the write is the only guard."""
        key = (data_id, group)
        if not self.cas_enforced and md5(self.configs.get(data_id, group)) != expected:   # the server's, not memory
            raise self._conflict(data_id, group)
        deadline = time.monotonic() + REQUEST_BUDGET
        for attempt in range(1, 1000):
            try:
                accepted = self.configs.publish(data_id, group, content, expected or CREATE_ONLY)
                failure = NacosError(f"Nacos did not accept {group}/{data_id}")
            except NacosAuthError:
                raise
            except NacosError as err:
                accepted, failure = False, err
            if not accepted:
                now = self.get_stored(data_id, group)
                if now != content and md5(now) != expected:
                    raise self._conflict(data_id, group)
                accepted = now == content   # ours landed, the answer was lost
            if accepted and expected is None:
                self._confirm_created(data_id, group, content)
            if accepted:
                self.written[key] = content
                return
            if time.monotonic() >= deadline:
                raise failure
            self.configs.pause(min(0.2 * 2 ** attempt, 4.0))

    def _confirm_created(self, data_id: str, group: str, content: str) -> None:
        """A standalone Nacos (embedded Derby) answers the loser of two racing creations "success"
        and drops its content (the duplicate key is swallowed), so an accepted creation counts only
        once the database holds this content: someone else's there is a conflict. The database view
        may not show a write for a moment (a follower applying the log): waited for, bounded."""
        deadline = time.monotonic() + REQUEST_BUDGET
        pause = 0.05
        while (now := self.get_stored(data_id, group)) is None and time.monotonic() < deadline:
            self.configs.pause(pause)
            pause = min(pause * 2, 1.0)
        if now != content:
            raise self._conflict(data_id, group)

    def _conflict(self, data_id: str, group: str) -> NacosConflict:
        return NacosConflict(f"{group}/{data_id} in namespace {self.namespace} changed while the initializer was "
                             "writing it: nothing was overwritten; rerun to try again")

    def data_ids(self, group: str | None, prefix: str) -> list[str]:
        """The data ids in the namespace (in `group`, or any group) that start with `prefix`.

        The SDK cannot search, so this is the HTTP config search (3.x: its admin API; the v1 one
        answers 410 there). Nacos's blur search wants the wildcard (`secrets.*`); r-nacos matches
        `*` literally and wants the bare prefix: both are asked, the answers filtered here."""
        found: set[str] = set()
        v3 = self.generation == "3.x"
        for pattern in (prefix + "*",) if v3 else (prefix + "*", prefix):
            for page in range(1, 10_000):
                params: dict[str, str | int]
                if v3:
                    path, params = "/v3/admin/cs/config/list", {"search": "blur", "dataId": pattern,
                                                                "groupName": group or "", "namespaceId": self.namespace}
                else:
                    path, params = "/v1/cs/configs", {"search": "blur", "dataId": pattern, "group": group or "",
                                                      "tenant": self.namespace}
                params.update(pageNo=page, pageSize=SEARCH_PAGE_SIZE)
                answer = self.http.json("GET", path, f"searching configs {pattern!r}", params=params)
                try:
                    if v3 and answer is not None:
                        answer = answer["data"]
                    items = [] if answer is None else answer.get("pageItems") or []
                    found.update(i["dataId"] for i in items if i["dataId"].startswith(prefix))
                    pages = int(answer.get("pagesAvailable") or 0) if answer is not None else 0
                except (AttributeError, KeyError, TypeError, ValueError):
                    raise NacosError(f"Nacos answered the config search {pattern!r} with unexpected JSON") from None
                if page >= pages or not items:
                    break
        return sorted(found)

    def close(self) -> None:
        """End the SDK's client (at once) and say how many requests this run made."""
        if self._configs is not None:
            self._configs.close()
        if self.log:
            grpc = self._configs.calls if self._configs else 0
            self.log(f"nacos: {self.http.calls} HTTP calls, {grpc} gRPC calls", http_calls=self.http.calls,
                     grpc_calls=grpc)
        self.log = None


def _probe(conn: Connection, server: str, deadline: float, last: list[str]) -> str | None:
    """`wait_ready`'s probe of one server: the API generation if `server` is up, else None (last[0]
    says why)."""
    http_ = conn.http
    status, _ = http_.send(server, "GET", "/v1/console/health/readiness", deadline)
    if status in (200, 401, 403):  # 2.x; r-nacos with auth guards even this probe: it is up
        return "2.x"
    if status in (404, 410):       # 3.x moved it
        status, body = http_.send(server, "GET", "/v3/admin/core/state", deadline)
        if status == 200:           # it tells the server version too (_server_version)
            conn.probed_state = (server, body)
        if status in (200, 401, 403):
            return "3.x"
        if status == 404:
            raise NacosError(f"{server}: no Nacos API there (HTTP 404 on the 2.x and the 3.x readiness "
                             "endpoints); check NACOS_SERVER_URL")
    if status == 409 or status >= 500:
        last[0] = f"{server}: HTTP {status}"
        return None
    raise NacosError(f"{server}: the readiness probe answered HTTP {status}; check NACOS_SERVER_URL")


def wait_ready(conn: Connection, timeout: float, log) -> None:
    """Wait for any listed server to be ready, within one deadline for the whole wait; exponential
    backoff with jitter, one line an attempt."""
    started = time.monotonic()
    deadline = started + timeout
    last = ["no attempt made"]
    http_ = conn.http

    def attempt():
        final = []
        for server in conn.servers:
            try:
                generation = _probe(conn, server, deadline, last)
            except _Transient as err:
                last[0] = str(err) or last[0]
                continue
            except NacosError as err:  # not a Nacos, or a status that will not change: try the others
                final.append(err)
                last[0] = str(err) or last[0]
                continue
            if generation:
                http_.active, conn.generation = server, generation
                return
        if len(final) == len(conn.servers):
            raise final[0]
        raise _Transient(last[0])

    def before_sleep(state):
        log(f"nacos: not ready (attempt {state.attempt_number}, {time.monotonic() - started:.1f}s): {last[0]}")

    try:
        for retry in _retrying(deadline, before_sleep=before_sleep):
            with retry:
                attempt()
    except _Transient:
        raise NacosUnreachable(f"Nacos at {', '.join(conn.servers)} was not ready within {timeout:g}s "
                               f"(NACOS_WAIT_TIMEOUT); last error: {last[0]}") from None


def login(conn: Connection, username: str, password: str) -> None:
    """Log in over HTTP (3.x: its v3 endpoint). A refused login is exit 5 at once, whatever status
    says so: 401/403, or 500, which Nacos 3.x answers for a wrong password and 2.x for an unknown
    user (the server answered its readiness probe just before, so a 500 here is the login's)."""
    path = "/v3/auth/user/login" if conn.generation == "3.x" else "/v1/auth/login"
    rejected = f"Nacos rejected the login of user {username!r} (NACOS_USERNAME/NACOS_PASSWORD)"
    try:
        status, body = conn.http.exchange("POST", path, "the login", form={"username": username, "password": password},
                                          accept=(500,))
    except NacosAuthError:
        raise NacosAuthError(rejected) from None
    if status == 500:
        raise NacosAuthError(f"{rejected}: HTTP 500, Nacos's answer to a wrong password or an unknown user")
    if body is None:
        raise NacosError(f"Nacos has no login endpoint (HTTP 404 on {path}) though NACOS_USERNAME is set")
    answer = _parse(body, "the login")
    token = answer.get("accessToken") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token:
        # a 200 that carries no token is no login either
        raise NacosAuthError(rejected)
    conn.http.token = token


def namespace_exists(conn: Connection, namespace: str) -> bool:
    path = "/v3/admin/core/namespace/list" if conn.generation == "3.x" else "/v1/console/namespaces"
    answer = conn.http.json("GET", path, "listing namespaces")
    try:
        return any(item["namespace"] == namespace for item in answer["data"] or [])
    except (KeyError, TypeError):
        raise NacosError("Nacos answered the namespace list with unexpected JSON") from None


NAMESPACE_EXISTS = 22002   # Nacos 3.x's code (in an HTTP 400) for creating a namespace that exists


def create_namespace(conn: Connection, namespace: str) -> None:
    """Create it; one that exists (another host made it meanwhile) is what was wanted: 2.x answers
    200 `false`, 3.x HTTP 400 with code 22002."""
    if conn.generation == "3.x":
        form = {"namespaceId": namespace, "namespaceName": namespace, "namespaceDesc": "Higress"}
        path = "/v3/admin/core/namespace"
    else:
        form = {"customNamespaceId": namespace, "namespaceName": namespace, "namespaceDesc": "Higress"}
        path = "/v1/console/namespaces"
    what = f"creating namespace {namespace}"
    status, body = conn.http.exchange("POST", path, what, form=form, accept=(400,))
    if status == 400:
        assert body is not None   # exchange: no body only for a 404
        answer = _parse(body, what)
        if isinstance(answer, dict) and answer.get("code") == NAMESPACE_EXISTS:
            return
        raise NacosError(f"Nacos refused {what}: HTTP 400 from {conn.active}{path}"
                         + (f" (code {answer['code']})" if isinstance(answer, dict) and "code" in answer else ""))
    if body is None or not _true(body):
        if namespace_exists(conn, namespace):  # created meanwhile by someone else: what we wanted
            return
        raise NacosError(f"Nacos did not create namespace {namespace}"
                         + (" (HTTP 404)" if body is None else ""))


def _true(body: bytes) -> bool:
    """2.x answers `true`; 3.x a JSON result whose data is true."""
    if body.strip() == b"true":
        return True
    try:
        answer = json.loads(body)
    except ValueError:
        raise NacosError("Nacos answered the namespace creation with a body that is neither true nor JSON") from None
    return isinstance(answer, dict) and answer.get("data") is True


V1_SEARCH_SWITCH = "nacos.core.api.compatibility.console.enabled=true"
V1_SEARCH_ENV = "NACOS_CORE_API_COMPATIBILITY_CONSOLE_ENABLED=true"


def check_apiserver_search(conn: Connection, namespace: str) -> None:
    """The Higress apiserver lists objects through the v1 blur config search (`/v1/cs/configs`,
    `search=blur`), which Nacos 3.x serves only with its v1 console compatibility on: off, it
    answers 410, and the apiserver fails later, silently for this run. This run needs no v1 API
    itself (3.x's admin API serves it), so it asks on the apiserver's behalf."""
    if conn.generation != "3.x":
        return
    params = {"search": "blur", "dataId": "configmaps.*", "group": "", "tenant": namespace, "pageNo": 1,
              "pageSize": 1}
    status, _ = conn.http.exchange("GET", "/v1/cs/configs", "the v1 config search (the apiserver lists with it)",
                                   params=params, accept=(410,))
    if status == 410:
        raise NacosError(f"Nacos 3 at {conn.active} answers the v1 config search the Higress apiserver lists objects "
                         f"with by HTTP 410 (its v1 console API is off): set {V1_SEARCH_SWITCH} in its "
                         f"application.properties (in the nacos-server image: env {V1_SEARCH_ENV}) and restart it")


_sdk_loading: list = []     # the thread loading the SDK while `connect` waits for the server


def _preload() -> None:
    with contextlib.suppress(Exception):  # told by the load on first use, in the main thread
        sdk.load()


def _preloaded() -> None:
    while _sdk_loading:
        _sdk_loading.pop().join()


def _sdk_loaded() -> None:
    """The SDK is loaded (by the thread `connect` started, or now)."""
    _preloaded()
    sdk.load()


def connect(settings, log) -> Connection:
    """Find a ready server and log in. Meanwhile a thread loads the SDK (nearly all of it CPU
    work, while this waits on the network: Nacos checks a password with bcrypt); it is done before
    this returns, so no import ever runs beside the caller's own."""
    if "v2.nacos" not in sys.modules and not _sdk_loading:
        _sdk_loading.append(threading.Thread(target=_preload, name="nacos-sdk-import", daemon=True))
        _sdk_loading[0].start()
    try:
        conn = Connection(settings.nacos_servers, settings.nacos_namespace, log=log)
        wait_ready(conn, settings.nacos_wait_timeout.total_seconds(), log)
        if settings.nacos_username:
            login(conn, settings.nacos_username, settings.nacos_password)
        conn.server_version = _server_version(conn)
    finally:
        _preloaded()
    return conn


# --- phases
def prepare(ctx, counts) -> None:
    s = ctx.settings
    conn = connect(s, ctx.log)
    ctx.nacos = conn
    present = namespace_exists(conn, s.nacos_namespace)
    check_apiserver_search(conn, s.nacos_namespace)
    fresh_key = s.nacos_data_key is None and not ctx.writer.exists(layout.DATA_KEY)
    # Secrets are `secrets.<name>` configs; the index `secrets.__names__` may outlive the last of
    # them (holding just EMPTY), so it alone does not count. Asked even when the namespace is
    # absent: deleting a namespace in Nacos leaves its configs behind, readable again once a
    # namespace of that id exists.
    if fresh_key and any(d != nacos_layout.SECRETS_INDEX for d in conn.data_ids(None, "secrets.")):
        raise StateError(
            f"Nacos namespace {s.nacos_namespace} already holds Higress Secrets (secrets.* configs), and a new data "
            "key would make them unreadable: empty the namespace, use another one (NACOS_NS), or supply the old "
            "key (NACOS_DATA_ENC_KEY or api/nacos.key)")
    if present:
        counts.add("kept", f"namespace {s.nacos_namespace}")
    else:
        if not ctx.plan:   # plan leaves it to the commit, and reports what run does, in run's words
            create_namespace(conn, s.nacos_namespace)
        counts.add("created", f"namespace {s.nacos_namespace}")
    counts.add("connected", f"nacos {conn.generation} at {conn.active}")


def status(settings, writer) -> dict:
    report = {"servers": list(settings.nacos_servers), "reachable": False, "version": None,
              "namespace": settings.nacos_namespace, "namespace_present": False, "configs": [], "healthy": False}
    conn = Connection(settings.nacos_servers, settings.nacos_namespace)
    try:
        wait_ready(conn, REQUEST_TIMEOUT, lambda *_: None)  # a look, not a wait
        report["reachable"], report["version"], report["server"] = True, conn.generation, conn.active
        if settings.nacos_username:
            login(conn, settings.nacos_username, settings.nacos_password)
        report["server_version"] = conn.server_version = _server_version(conn)
        report["namespace_present"] = namespace_exists(conn, settings.nacos_namespace)
        check_apiserver_search(conn, settings.nacos_namespace)
        report["configs"] = _config_report(settings, conn, writer)
        report["healthy"] = report["namespace_present"] and all(c["present"] for c in report["configs"])
    except NacosError as err:
        report["error"] = str(err)
    finally:
        conn.close()
    return report


def _config_report(settings, conn, writer) -> list[dict]:
    """Each seeded object and each type's names index: present, and still as seeded (the md5 of
    what the initializer wrote; an index: lists every seeded object in one of its forms)."""
    from higress_init.versions.objects import applicable
    try:
        seeded = writer.read_record(layout.SEEDED)   # no-follow, capped; garbage reads as nothing seeded
    except StateError:   # a link or another file type planted there
        seeded = {}
    objects = [(obj.group(settings), obj) for obj in applicable(settings)]
    by_plural: dict[str, list] = {}   # plural -> [(group, object)]
    for group, obj in objects:
        by_plural.setdefault(obj.plural, []).append((group, obj))
    # every object and names index in one round of queries, as a run reads them
    contents = conn.get_many([(obj.data_id, group) for group, obj in objects]
                             + [(nacos_layout.names_index(plural), DEFAULT_GROUP) for plural in by_plural])
    configs: list[dict] = []
    for (group, obj), content in zip(objects, contents[:len(objects)], strict=True):
        record = seeded.get(nacos_layout.record_key(settings.nacos_namespace, group, obj))
        configs.append({"group": group, "dataId": obj.data_id, "present": content is not None,
                        "as_seeded": None if record is None or content is None else md5(content) == record})
    for (plural, members), content in zip(by_plural.items(), contents[len(objects):], strict=True):
        lines = set((content or "").split())
        configs.append({"group": DEFAULT_GROUP, "dataId": nacos_layout.names_index(plural),
                        "present": content is not None,
                        "as_seeded": None if content is None else
                        all(nacos_layout.index_lines(obj, group) & lines for group, obj in members)})
    return configs


def _server_version(conn: Connection) -> str | None:
    """The server's own version where it tells it (Nacos 2.x/3.x state endpoints; r-nacos has none)."""
    path = "/v3/admin/core/state" if conn.generation == "3.x" else "/v1/console/server/state"
    if conn.generation == "3.x" and conn.probed_state and conn.probed_state[0] == conn.active:
        answer = _parse(conn.probed_state[1], "the server state")   # the readiness probe asked it already
    else:
        answer = conn.http.json("GET", path, "the server state")
    if conn.generation == "3.x" and isinstance(answer, dict):
        answer = answer.get("data")   # 3.x wraps it
    version = answer.get("version") if isinstance(answer, dict) else None
    return version if isinstance(version, str) else None


def format_status(report: dict) -> str:
    lines = [f"NACOS  {', '.join(report['servers'])}  reachable: {'yes' if report['reachable'] else 'no'}"
             + (f"  API {report['version']}" if report["version"] else "")
             + (f" (server {report['server_version']})" if report.get("server_version") else "")
             + f"  namespace {report['namespace']}: {'present' if report['namespace_present'] else 'missing'}"]
    for c in report["configs"]:
        seeded = {None: "-", True: "yes", False: "no (changed since seeding)"}[c["as_seeded"]]
        lines.append(f"  {c['group']}/{c['dataId']}  present: {'yes' if c['present'] else 'no'}  as seeded: {seeded}")
    if "error" in report:
        lines.append(f"  error: {report['error']}")
    return "\n".join(lines)
