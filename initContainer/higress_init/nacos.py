"""Nacos: wait for it, log in, create the namespace, and seed the base config the way the
Higress apiserver reads it (one config per object, a names index per resource type).

Config reads go through nacos-sdk-python's v1 HTTP client (failover across the listed servers).
Readiness, login, namespaces and config writes, which must be compare-and-swap (casMd5) and
which that client cannot send, are plain HTTP calls, the content in the form body.
"""
from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from tenacity import (RetryError, Retrying, retry_if_exception, stop_after_attempt, stop_after_delay,
                      wait_exponential_jitter)

from .errors import StateError

DEFAULT_GROUP = "DEFAULT_GROUP"
SECRETS_INDEX = "secrets.__names__"
REQUEST_TIMEOUT = 5.0


class NacosError(Exception):
    exit_code = 7


class NacosUnreachable(NacosError):
    exit_code = 4


class NacosAuthError(NacosError):
    exit_code = 5


class NacosConflict(NacosError):
    exit_code = 6


class HttpStatusError(NacosError):
    def __init__(self, url: str, status: int, body: str):
        super().__init__(f"{url}: HTTP {status} {body[:200].strip()}")
        self.status, self.body = status, body


def _is_transient(err: BaseException) -> bool:
    if isinstance(err, HttpStatusError):
        return err.status >= 500
    from nacos.exception import NacosRequestException
    return isinstance(err, (OSError, NacosRequestException))  # resets, refusals, timeouts, all nodes down


def with_retries(call, attempts: int = 10, within: float = 30.0):
    """Transient server errors are retried with bounded backoff (long enough for a cluster to
    elect a new leader); 4xx are final."""
    try:
        for attempt in Retrying(retry=retry_if_exception(_is_transient),
                                stop=stop_after_attempt(attempts) | stop_after_delay(within),
                                wait=wait_exponential_jitter(initial=0.2, max=4.0), reraise=True):
            with attempt:
                return call()
    except NacosError:
        raise
    except Exception as err:
        if _is_transient(err):
            raise NacosError(f"Nacos request failed after {attempts} attempts: {err}") from None
        raise NacosError(f"Nacos request failed: {err}") from None


@dataclass
class Connection:
    """The servers, the one that answered, its API generation and the access token."""
    servers: tuple[str, ...]                 # scheme://host:port/nacos
    namespace: str = ""                      # the Nacos namespace (tenant) configs live in
    active: str = ""
    generation: str = ""                     # "2.x" or "3.x"
    token: str | None = None
    calls: int = 0
    _sdk: object | None = field(default=None, repr=False)
    _cache_dir: object | None = field(default=None, repr=False)

    def ordered(self) -> list[str]:
        return [self.active] + [s for s in self.servers if s != self.active] if self.active else list(self.servers)

    def http(self, method: str, path: str, params: dict | None = None, form: dict | None = None,
             server: str | None = None, timeout: float = REQUEST_TIMEOUT) -> tuple[int, str]:
        """One plain HTTP call, failing over across servers on connection errors and 5xx."""
        params = dict(params or {})
        if self.token:
            params["accessToken"] = self.token
        last = None
        for base in ([server] if server else self.ordered()):
            url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
            data = urllib.parse.urlencode(form).encode() if form is not None else None
            request = urllib.request.Request(url, data=data, method=method)
            self.calls += 1
            try:
                with urllib.request.urlopen(request, timeout=timeout) as resp:
                    return resp.status, resp.read().decode("utf-8", "replace")
            except urllib.error.HTTPError as err:
                body = err.read().decode("utf-8", "replace")
                if err.code < 500:
                    return err.code, body
                last = HttpStatusError(base + path, err.code, body)
            except (urllib.error.URLError, OSError) as err:
                reason = getattr(err, "reason", err)
                last = OSError(f"{base}: {reason}")
        raise last

    def sdk(self):
        """nacos-sdk-python's v1 client, pointed at the same servers (active first)."""
        if self._sdk is None:
            import nacos
            log = logging.getLogger("nacos")
            if not log.handlers:
                # the SDK logs access tokens at INFO into a file: keep it quiet and in memory
                log.addHandler(logging.NullHandler())
                log.propagate = False
                log.setLevel(logging.CRITICAL)
            addresses = ",".join(s.removesuffix("/nacos") for s in self.ordered())
            client = nacos.NacosClient(addresses, namespace=self.namespace,
                                       logDir=tempfile.gettempdir())
            # its local failover/snapshot caches must never answer for the server: an empty,
            # temporary directory (removed with this object) keeps them out of the way
            self._cache_dir = tempfile.TemporaryDirectory(prefix="higress-init-nacos-")
            client.set_options(no_snapshot=True, default_timeout=REQUEST_TIMEOUT,
                               failover_base=self._cache_dir.name + "/failover",
                               snapshot_base=self._cache_dir.name + "/snapshot")
            if self.token:
                # reuse our login rather than have the SDK log in again with the password in a URL
                client.username, client.password = "-", "-"
                client.token, client.token_expire_time = self.token, float("inf")
            inner = client._do_sync_req

            def counted(*args, **kwargs):
                self.calls += 1
                return inner(*args, **kwargs)
            client._do_sync_req = counted
            self._sdk = client
        return self._sdk

    # --- configs
    def get(self, data_id: str, group: str) -> str | None:
        return with_retries(lambda: self.sdk().get_config(data_id, group, no_snapshot=True))

    def compare_and_publish(self, data_id: str, group: str, content: str, expected: str | None) -> None:
        """Publish only if the config still is what was read (md5 `expected`, None: absent).

        The md5 goes to the server as casMd5 (Nacos 2.x/3.x reject the write atomically if it
        changed); the fresh read before the write also catches servers that ignore casMd5."""
        current = self.get(data_id, group)
        if _md5(current) != expected:
            raise NacosConflict(f"{group}/{data_id} in namespace {self.namespace} changed while the "
                                "initializer was writing it: nothing was overwritten; rerun to try again")
        form = {"dataId": data_id, "group": group, "content": content, "tenant": self.namespace}
        if expected is not None:
            form["casMd5"] = expected
        status, body = with_retries(lambda: self.http("POST", "/v1/cs/configs", form=form))
        if status == 409 or (status == 200 and body.strip() == "false" and expected is not None):
            raise NacosConflict(f"{group}/{data_id}: the server refused the compare-and-swap write "
                                "(changed concurrently): nothing was overwritten; rerun to try again")
        if status != 200 or body.strip() != "true":
            raise NacosError(f"publishing {group}/{data_id} failed: HTTP {status} {body[:200]}")


def _md5(content: str | None) -> str | None:
    return hashlib.md5(content.encode()).hexdigest() if content is not None else None


def wait_ready(conn: Connection, timeout: float, log) -> None:
    """Wait for any listed server to be ready; exponential backoff with jitter, one line an attempt."""
    started = time.monotonic()
    last_error = ["no attempt made"]

    def attempt():
        for server in conn.servers:
            try:
                status, body = conn.http("GET", "/v1/console/health/readiness", server=server, timeout=3)
                if status == 200 or (status in (401, 403) and "readiness" in body):
                    # 2.x answers even with auth on; a 401/403 naming the path is a server that is up
                    conn.active, conn.generation = server, "2.x"
                    return
                if status == 410 or (status == 404 and "No endpoint" in body):
                    status, body = conn.http("GET", "/v3/admin/core/state", server=server, timeout=3)
                    if status == 200:
                        conn.active, conn.generation = server, "3.x"
                        return
                last_error[0] = f"{server}: HTTP {status}"
            except (OSError, NacosError) as err:
                last_error[0] = str(err)
        raise NacosUnreachable(last_error[0])

    def before_sleep(state):
        log(f"nacos: not ready (attempt {state.attempt_number}, {time.monotonic() - started:.1f}s): "
            f"{last_error[0]}")

    try:
        for retry in Retrying(stop=stop_after_delay(timeout), wait=wait_exponential_jitter(initial=0.5, max=5.0),
                              retry=retry_if_exception(lambda e: isinstance(e, NacosUnreachable)),
                              before_sleep=before_sleep):
            with retry:
                attempt()
    except RetryError:
        raise NacosUnreachable(f"Nacos at {', '.join(conn.servers)} was not ready within {timeout:g}s "
                               f"(NACOS_WAIT_TIMEOUT); last error: {last_error[0]}") from None


def login(conn: Connection, username: str, password: str) -> None:
    status, body = with_retries(lambda: conn.http("POST", "/v1/auth/login",
                                                  form={"username": username, "password": password}))
    if status in (401, 403) or (status == 200 and "accessToken" not in body):
        raise NacosAuthError(f"Nacos rejected the login of user {username!r} (NACOS_USERNAME/NACOS_PASSWORD): "
                             f"HTTP {status}")
    if status != 200:
        raise NacosError(f"Nacos login failed: HTTP {status} {body[:200]}")
    conn.token = json.loads(body)["accessToken"]


def namespace_exists(conn: Connection, namespace: str) -> bool:
    if conn.generation == "3.x":
        status, body = with_retries(lambda: conn.http("GET", "/v3/admin/core/namespace/list"))
    else:
        status, body = with_retries(lambda: conn.http("GET", "/v1/console/namespaces"))
    _check(status, body, "listing namespaces")
    return any(item.get("namespace") == namespace for item in json.loads(body).get("data") or [])


def create_namespace(conn: Connection, namespace: str) -> None:
    if conn.generation == "3.x":
        form = {"namespaceId": namespace, "namespaceName": namespace, "namespaceDesc": "Higress"}
        status, body = with_retries(lambda: conn.http("POST", "/v3/admin/core/namespace", form=form))
    else:
        form = {"customNamespaceId": namespace, "namespaceName": namespace, "namespaceDesc": "Higress"}
        status, body = with_retries(lambda: conn.http("POST", "/v1/console/namespaces", form=form))
    _check(status, body, f"creating namespace {namespace}")


def _check(status: int, body: str, what: str) -> None:
    if status in (401, 403):
        raise NacosAuthError(f"Nacos denied {what}: HTTP {status} (check NACOS_USERNAME/NACOS_PASSWORD)")
    if status != 200:
        raise NacosError(f"Nacos failed {what}: HTTP {status} {body[:200]}")


def connect(settings, log) -> Connection:
    conn = Connection(settings.nacos_servers, settings.nacos_namespace)
    wait_ready(conn, settings.nacos_wait_timeout.total_seconds(), log)
    if settings.nacos_username:
        login(conn, settings.nacos_username, settings.nacos_password)
    return conn


# --- phases
def prepare(ctx, counts) -> None:
    s = ctx.settings
    conn = connect(s, ctx.log)
    ctx.nacos = conn
    present = namespace_exists(conn, s.nacos_namespace)
    fresh_key = s.nacos_data_key is None and not ctx.writer.exists("api/nacos.key")
    if present and fresh_key and conn.get(SECRETS_INDEX, DEFAULT_GROUP) is not None:
        raise StateError(
            f"Nacos namespace {s.nacos_namespace} already holds Higress Secrets ({SECRETS_INDEX}), and a new data "
            "key would make them unreadable: empty the namespace, use another one (NACOS_NS), or supply the old "
            "key (NACOS_DATA_ENC_KEY or api/nacos.key)")
    if present:
        counts.add("kept", f"namespace {s.nacos_namespace}")
    elif ctx.dry_run:
        counts.add("would create", f"namespace {s.nacos_namespace}")
    else:
        create_namespace(conn, s.nacos_namespace)
        counts.add("created", f"namespace {s.nacos_namespace}")
    counts.add("connected", f"nacos {conn.generation} at {conn.active}")


def status(settings, writer) -> dict:
    report = {"servers": list(settings.nacos_servers), "reachable": False, "version": None,
              "namespace": settings.nacos_namespace, "namespace_present": False, "configs": [], "healthy": False}
    conn = Connection(settings.nacos_servers, settings.nacos_namespace)
    try:
        wait_ready(conn, 0.1, lambda *_: None)
        report["reachable"], report["version"], report["server"] = True, conn.generation, conn.active
        if settings.nacos_username:
            login(conn, settings.nacos_username, settings.nacos_password)
        report["server_version"] = _server_version(conn)
        report["namespace_present"] = namespace_exists(conn, settings.nacos_namespace)
        report["configs"] = _config_report(settings, conn, writer)
        report["healthy"] = report["namespace_present"] and all(c["present"] for c in report["configs"])
    except NacosError as err:
        report["error"] = str(err)
    return report


def _config_report(settings, conn, writer) -> list[dict]:
    """Each seeded object and each type's names index: present, and still as seeded (the md5 of
    what the initializer wrote; an index: lists every seeded object in one of its forms)."""
    from .configstore import SEEDED_FILE, index_lines, md5
    from .objects import applicable
    try:
        seeded = json.loads(writer.read(SEEDED_FILE) or b"{}")  # no-follow, capped
    except (ValueError, StateError):
        seeded = {}
    if not isinstance(seeded, dict):
        seeded = {}
    configs, by_plural = [], {}
    for obj in applicable(settings):
        group = obj.group(settings)
        by_plural.setdefault(obj.plural, []).append((group, obj))
        content = conn.get(obj.data_id, group)
        record = seeded.get(f"nacos:{settings.nacos_namespace}/{group}/{obj.data_id}")
        configs.append({"group": group, "dataId": obj.data_id, "present": content is not None,
                        "as_seeded": None if record is None or content is None else md5(content) == record})
    for plural, members in by_plural.items():
        content = conn.get(f"{plural}.__names__", DEFAULT_GROUP)
        lines = set((content or "").split())
        configs.append({"group": DEFAULT_GROUP, "dataId": f"{plural}.__names__", "present": content is not None,
                        "as_seeded": None if content is None else
                        all(index_lines(obj, group) & lines for group, obj in members)})
    return configs


def _server_version(conn: Connection) -> str | None:
    """The server's own version where it tells it (Nacos 2.x/3.x state endpoints; r-nacos does not)."""
    path = "/v3/admin/core/state" if conn.generation == "3.x" else "/v1/console/server/state"
    try:
        status, body = conn.http("GET", path)
        return json.loads(body).get("version") if status == 200 else None
    except (NacosError, OSError, ValueError, AttributeError):
        return None


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
