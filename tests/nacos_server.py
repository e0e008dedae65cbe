"""Real Alibaba Nacos (2.5.1 and 3.0.1) on loopback for the tests: one JVM per version per test
session (a fresh Nacos namespace per test), and a real three-node 2.5.1 cluster.

`make test` builds each server jar once from the upstream release source into
`$NACOS_CACHE/nacos-<version>/` (beside r-nacos) and reuses it. Every JVM runs in its own process
group and is killed by its PID when its fixture ends, at interpreter exit and after a SIGTERM
(rnacos's atexit hook stops both kinds). What each server stands for: tests/README.md.
"""
from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import rnacos
from rnacos import _RUNNING

VERSIONS = ("2.5.1", "3.0.1")
USERNAME, PASSWORD = "nacos", "Real-nacos-pw-1"
CACHE = Path(os.environ.get("NACOS_CACHE") or Path.home() / ".cache/higress-init")


def server_jar(version: str) -> Path:
    jar = CACHE / f"nacos-{version}" / "nacos-server.jar"
    if not jar.is_file():
        pytest.fail(f"Nacos {version} is not built: run `make test` (it builds {jar} once from "
                    f"../shared/nacos/nacos-{version}-src.tar.gz with Maven and a JDK 17)", pytrace=False)
    if not shutil.which("java"):
        pytest.fail("java is not installed: install a JDK 17 (apt-get install openjdk-17-jdk-headless)", pytrace=False)
    return jar


def nacos_ports() -> int:
    """An HTTP port p with p - 1000 (Raft), p + 1000 (SDK gRPC), p + 1001 (cluster gRPC) free too."""
    return rnacos.claim_ports((-1000, 0, 1000, 1001))


class NacosServer:
    """One Nacos JVM, and a small HTTP client of its own (independent of the initializer's) for
    checking what a run left behind. `cluster` lists every member's HTTP port (None: standalone)."""

    username = USERNAME

    def __init__(self, version: str, workdir: Path, auth: bool = True, password: str = PASSWORD,
                 cluster: list[int] | None = None, port: int | None = None, secret: str | None = None,
                 properties: dict | None = None):
        self.version, self.workdir, self.auth, self.password = version, workdir, auth, password
        self.generation = "3.x" if version.startswith("3.") else "2.x"
        self.http_port = port or nacos_ports()
        self.cluster = cluster
        self.extra_properties = properties or {}
        self.proc: subprocess.Popen | None = None
        self._token: tuple[float, str] | None = None
        # the token signing key: a cluster's members share it (a token from one is valid on all)
        self.secret = secret or base64.b64encode(os.urandom(32)).decode()
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/nacos"

    def _properties(self) -> str:
        if self.generation == "3.x":   # server.port would be the console's too: it fails, and with it the dumps
            ports = {"nacos.server.main.port": self.http_port, "nacos.server.contextPath": "/nacos",
                     "nacos.console.port": rnacos.free_port(), "nacos.ai.mcp.registry.port": rnacos.free_port()}
        else:
            ports = {"server.port": self.http_port, "server.servlet.contextPath": "/nacos"}
        props = {
            "server.address": "127.0.0.1", **ports,
            "nacos.core.auth.enabled": str(self.auth).lower(), "nacos.core.auth.system.type": "nacos",
            "nacos.core.auth.plugin.nacos.token.secret.key": self.secret,
            "nacos.core.auth.server.identity.key": "test-identity", "nacos.core.auth.server.identity.value": "x",
            "nacos.inetutils.ip-address": "127.0.0.1", "server.tomcat.accesslog.enabled": "false",
            "nacos.core.member.lookup.type": "file",
            **self.extra_properties,
        }
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def start(self) -> NacosServer:
        home = self.workdir
        conf = home / "conf"
        if not conf.exists():
            shutil.copytree(server_jar(self.version).parent / "conf", conf)
        (conf / "application.properties").write_text(self._properties())
        if self.cluster:
            (conf / "cluster.conf").write_text("".join(f"127.0.0.1:{p}\n" for p in self.cluster))
        command = ["java", "-Xms128m", "-Xmx384m" if self.cluster else "-Xmx512m", "-XX:+UseSerialGC",
                   "-XX:TieredStopAtLevel=1", "-Xss512k", f"-Dnacos.home={home}", "-Dnacos.preferHostnameOverIp=false",
                   f"-Dnacos.standalone={'false' if self.cluster else 'true'}", "-Dnacos.member.list=",
                   *(["-DembeddedStorage=true"] if self.cluster else []),
                   "-jar", str(server_jar(self.version)),
                   f"--spring.config.additional-location=file:{conf}/",
                   f"--logging.config={conf}/nacos-logback.xml"]
        with open(home / "stdout.log", "ab") as log:
            self.proc = subprocess.Popen(command, cwd=home, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        _RUNNING.add(self)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        _RUNNING.discard(self)
        self._token = None

    def restart(self) -> NacosServer:
        self.stop()
        return self.start()

    # --- readiness: up, the first admin set, a login and a write that work
    def _up(self) -> bool:
        path = "/v3/admin/core/state" if self.generation == "3.x" else "/v1/console/health/readiness"
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as r:
                return r.status == 200
        except urllib.error.HTTPError as err:
            return err.code in (401, 403)
        except (urllib.error.URLError, OSError):
            return False

    def _init_admin(self) -> None:
        path = "/v3/auth/user/admin" if self.generation == "3.x" else "/v1/auth/users/admin"
        data = urllib.parse.urlencode({"password": self.password}).encode()
        try:
            urllib.request.urlopen(self.url + path, data=data, timeout=5).close()
        except urllib.error.HTTPError as err:
            if err.code not in (409, 400):   # set already (a restart): fine
                raise

    def wait_ready(self, timeout: float = 240) -> NacosServer:
        deadline = time.monotonic() + timeout
        admin = not self.auth
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None or self._failed():
                    raise RuntimeError(f"Nacos {self.version} failed to start:\n{self.log_tail()}")
                try:
                    if self._up():
                        if not admin:
                            self._init_admin()
                            admin = True
                        self._token = None
                        self.publish_config("startup-probe", "DEFAULT_GROUP", "", "ok")
                        return self
                except (urllib.error.URLError, OSError, KeyError, ValueError, AssertionError):
                    pass
                time.sleep(0.5)
        except BaseException:
            self.stop()
            raise
        self.stop()
        raise RuntimeError(f"Nacos {self.version} on {self.url} not ready after {timeout}s:\n{self.log_tail()}")

    def started(self) -> bool:
        """Nacos says it started (its log); the process must still run."""
        log = self.workdir / "logs/nacos.log"
        return (self.proc is not None and self.proc.poll() is None and log.exists()
                and "started successfully" in log.read_text(errors="replace")[-200_000:])

    def _failed(self) -> bool:
        """Nacos 3.x serves on after one of its contexts failed, half-dead (no config dumps)."""
        log = self.workdir / "logs/nacos.log"
        return log.exists() and "Nacos failed to start" in log.read_text(errors="replace")

    def log_tail(self) -> str:
        parts = []
        for name in ("stdout.log", "logs/nacos.log"):
            path = self.workdir / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-1500:])
        return "\n".join(parts)

    # --- a client of its own
    def token(self) -> str | None:
        if not self.auth:
            return None
        if self._token and time.monotonic() - self._token[0] < 600:
            return self._token[1]
        data = urllib.parse.urlencode({"username": USERNAME, "password": self.password}).encode()
        with urllib.request.urlopen(self.url + "/v1/auth/login", data=data, timeout=5) as r:
            token = json.loads(r.read())["accessToken"]
        self._token = (time.monotonic(), token)
        return token

    def _call(self, method: str, path: str, params: dict, form: bool = False):
        token = self.token()
        params = {**params, **({"accessToken": token} if token else {})}
        query = urllib.parse.urlencode(params)
        if form:
            request = urllib.request.Request(self.url + path, data=query.encode(), method=method)
        else:
            request = urllib.request.Request(f"{self.url}{path}?{query}", method=method)
        deadline = time.monotonic() + 30
        while True:   # 409: the config is being modified (a write the server has not finished): again, as clients do
            try:
                with urllib.request.urlopen(request, timeout=10) as r:
                    return r.read()
            except urllib.error.HTTPError as err:
                if err.code != 409 or time.monotonic() > deadline:
                    raise
            time.sleep(0.1)

    def get_config(self, data_id: str, group: str, tenant: str) -> str | None:
        """The config as the database holds it (3.x: the admin API; 2.x: the exact config search).
        A plain read (`served_config`) lags an acknowledged write by up to ~100 ms, or shows a
        refused one on a cluster node for seconds: what a test asserts is what was stored."""
        try:
            if self.generation == "3.x":
                answer = json.loads(self._call("GET", "/v3/admin/cs/config",
                                               {"dataId": data_id, "groupName": group, "namespaceId": tenant}))
                return answer["data"]["content"]
            answer = json.loads(self._call("GET", "/v1/cs/configs", {
                "search": "accurate", "dataId": data_id, "group": group, "tenant": tenant, "pageNo": 1,
                "pageSize": 10}))
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise
        found = [i["content"] for i in answer["pageItems"] if i["dataId"] == data_id and i["group"] == group]
        return found[0] if found else None

    def served_config(self, data_id: str, group: str, tenant: str) -> str | None:
        """A plain read, as a client's query sees it (it may lag the database)."""
        try:
            return self._call("GET", "/v1/cs/configs", {"dataId": data_id, "group": group, "tenant": tenant}).decode()
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise

    def publish_config(self, data_id: str, group: str, tenant: str, content: str) -> None:
        """Publish, then wait (bounded) until the served copy shows it: a test's own set-up is
        visible before the initializer runs (Nacos's reads lag its writes)."""
        answer = self._call("POST", "/v1/cs/configs", {"dataId": data_id, "group": group, "tenant": tenant,
                                                        "content": content}, form=True)
        assert answer == b"true", answer
        self._served(data_id, group, tenant, content)

    def delete_config(self, data_id: str, group: str, tenant: str) -> None:
        assert self._call("DELETE", "/v1/cs/configs", {"dataId": data_id, "group": group, "tenant": tenant}) == b"true"
        self._served(data_id, group, tenant, None)

    def _served(self, data_id: str, group: str, tenant: str, content: str | None, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.served_config(data_id, group, tenant) != content:
            assert time.monotonic() < deadline, f"{group}/{data_id} not served as written after {timeout}s"
            time.sleep(0.02)

    def namespaces(self) -> list[str]:
        if self.generation == "3.x":
            answer = json.loads(self._call("GET", "/v3/admin/core/namespace/list", {}))
        else:
            answer = json.loads(self._call("GET", "/v1/console/namespaces", {}))
        return [n["namespace"] for n in answer["data"]]

    def delete_namespace(self, namespace: str) -> None:
        """Delete the namespace (its configs stay behind: Nacos does not delete them)."""
        path = "/v3/admin/core/namespace" if self.generation == "3.x" else "/v1/console/namespaces"
        self._call("DELETE", path, {"namespaceId": namespace})

    def client_env(self) -> dict:
        """The initializer's settings to reach this server."""
        env = {"NACOS_SERVER_URL": self.url}
        if self.auth:
            env.update(NACOS_USERNAME=USERNAME, NACOS_PASSWORD=self.password)
        return env


def start_cluster(workdir: Path, version: str = "2.5.1", size: int = 3) -> list[NacosServer]:
    """A real Nacos cluster on loopback: embedded storage (Raft), membership from cluster.conf.

    Started all at once, a member sometimes hangs in its start for good (waiting in its config
    dump for the Raft leader's data while the leader cannot reach it); one started again once the
    others serve joins at once. So a member not up after START_WAIT is started again, a few times."""
    ports = [nacos_ports() for _ in range(size)]
    secret = base64.b64encode(os.urandom(32)).decode()
    nodes = [NacosServer(version, workdir / f"node{i + 1}", cluster=ports, port=port, secret=secret)
             for i, port in enumerate(ports)]
    try:
        for node in nodes:
            node.start()
        for _attempt in range(4):
            deadline = time.monotonic() + CLUSTER_START_WAIT
            while time.monotonic() < deadline and not all(n.started() for n in nodes):
                time.sleep(0.5)
            stuck = [n for n in nodes if not n.started()]
            if not stuck:
                break
            for node in stuck:
                node.restart()
        for node in nodes:
            node.wait_ready(120)
        _cluster_up(nodes)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


CLUSTER_START_WAIT = 90   # seconds; a healthy member starts in 15-45 s on a loaded 2-core machine


def _cluster_up(nodes: list[NacosServer], timeout: float = 240) -> None:
    """Every member UP in every member's view, and a write on one node readable on the others."""
    deadline = time.monotonic() + timeout
    probe = f"cluster-{time.monotonic()}"
    while time.monotonic() < deadline:
        try:
            views = [json.loads(n._call("GET", "/v1/core/cluster/nodes", {})) for n in nodes]
            up = all(sum(m["state"] == "UP" for m in v["data"]) == len(nodes) for v in views)
            if up:
                nodes[0].publish_config("cluster-probe", "DEFAULT_GROUP", "", probe)
                time.sleep(0.2)
                if all(n.get_config("cluster-probe", "DEFAULT_GROUP", "") == probe for n in nodes):
                    return
        except (urllib.error.URLError, OSError, KeyError, ValueError, AssertionError):
            pass
        time.sleep(0.5)
    raise RuntimeError("the Nacos cluster did not come up:\n" + nodes[0].log_tail())


_namespaces = itertools.count(1)


def fresh_namespace(prefix: str = "t") -> str:
    return f"{prefix}-{next(_namespaces)}-{os.getpid()}"


SERVERS = tuple(f"nacos-{v}" for v in VERSIONS) + ("rnacos",)
# Nacos 3.0.1 as upstream's Higress 2.2.4 deployment runs it: auth off (the admin API's too), the v1
# compatibility switches on
UPSTREAM = "3.0.1-upstream"
UPSTREAM_PROPERTIES = {"nacos.core.api.compatibility.console.enabled": "true",
                       "nacos.core.api.compatibility.core.enabled": "true",
                       "nacos.core.api.compatibility.admin.enabled": "true",
                       "nacos.core.auth.admin.enabled": "false", "nacos.core.auth.console.enabled": "false"}


# What a Nacos 3 serving the Higress apiserver needs besides auth: its v1 console compatibility (the
# apiserver lists through the v1 blur search; off, that answers 410 and the initializer refuses)
FOR_THE_APISERVER = {"3.0.1": {"nacos.core.api.compatibility.console.enabled": "true"}}


def start_all(servers: dict) -> dict:
    """Start every server at once (one wait for all), then wait for each; a failure stops them all."""
    try:
        for server in servers.values():
            server.start()
        for server in servers.values():
            server.wait_ready()
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers


@pytest.fixture(scope="session")
def real_nacos(tmp_path_factory):
    """`real_nacos("2.5.1")`: the session's server of that version, auth on. On first use every
    version starts at once (one wait for all); all are stopped when the session ends."""
    servers: dict[str, NacosServer] = {}

    def get(version: str) -> NacosServer:
        if version == UPSTREAM:   # started on its own, only when a test asks for it
            if version not in servers:
                servers[version] = NacosServer("3.0.1", tmp_path_factory.mktemp("nacos-upstream"), auth=False,
                                               properties=UPSTREAM_PROPERTIES).start().wait_ready()
            return servers[version]
        if not servers.keys() & set(VERSIONS):
            servers.update(start_all({v: NacosServer(v, tmp_path_factory.mktemp(f"nacos-{v}"),
                                                     properties=FOR_THE_APISERVER.get(v)) for v in VERSIONS}))
        return servers[version]

    yield get
    for server in servers.values():
        server.stop()


class Target:
    """One test's Nacos: a server (a session's real Nacos, or this test's own r-nacos) and a fresh
    namespace in it. Reads show what the server stored."""

    def __init__(self, kind: str, server, ns: str):
        self.kind, self.server, self.ns = kind, server, ns

    def __repr__(self) -> str:
        return f"<{self.kind} {self.ns}>"

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def real(self) -> bool:
        return self.kind != "rnacos"

    @property
    def generation(self) -> str:
        return "3.x" if self.kind == "nacos-3.0.1" else "2.x"

    @property
    def server_version(self) -> str | None:
        return self.kind.removeprefix("nacos-") if self.real else None   # r-nacos tells none

    def client_env(self, **extra) -> dict:
        return {**self.server.client_env(), "NACOS_NS": self.ns, **extra}

    def get_config(self, data_id: str, group: str, tenant: str | None = None) -> str | None:
        return self.server.get_config(data_id, group, self.ns if tenant is None else tenant)

    def publish_config(self, data_id: str, group: str, content: str, tenant: str | None = None) -> None:
        self.server.publish_config(data_id, group, self.ns if tenant is None else tenant, content)

    def delete_config(self, data_id: str, group: str, tenant: str | None = None) -> None:
        self.server.delete_config(data_id, group, self.ns if tenant is None else tenant)

    def namespaces(self) -> list[str]:
        return self.server.namespaces()


@pytest.fixture(params=SERVERS)
def nacos(request, real_nacos, rnacos):
    """The test once per server: real Nacos 2.5.1 and 3.0.1 (auth on, shared by the session) and
    r-nacos (this test's own); a fresh namespace each time."""
    kind = request.param
    server = real_nacos(kind.removeprefix("nacos-")) if kind != "rnacos" else rnacos()
    return Target(kind, server, fresh_namespace(kind.replace(".", "")))


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory):
    """A real three-node Nacos 2.5.1 cluster (auth on), started once per session on first use."""
    nodes = start_cluster(tmp_path_factory.mktemp("nacos-cluster"))
    try:
        yield nodes
    finally:
        for node in nodes:
            node.stop()
