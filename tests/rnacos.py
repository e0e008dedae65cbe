"""r-nacos, a real Nacos-compatible server, started on loopback for the tests.

`make test` builds the pinned version into a cache outside the repo and exports RNACOS_BIN.
How r-nacos differs from Nacos, and what the tests do about it: tests/README.md.

Every process started here is stopped whatever happens: by the test's fixture finalizer, by
wait_ready when the node never became ready, and at interpreter exit (atexit, also after an
interrupt or a SIGTERM) for any node still running."""
from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

DEFAULT_BIN = Path.home() / ".cache/higress-init/rnacos-0.8.8/bin/rnacos"


def rnacos_binary() -> str:
    path = os.environ.get("RNACOS_BIN") or str(DEFAULT_BIN)
    if not os.access(path, os.X_OK):
        path = shutil.which("rnacos") or ""
    if not path:
        pytest.fail("r-nacos is not installed: run `make test` (it runs `cargo install --locked rnacos "
                    "--version 0.8.8 --root ~/.cache/higress-init/rnacos-0.8.8`)", pytrace=False)
    return path


# Ports for servers are taken below the kernel's ephemeral range (outgoing connections of any
# process take ports from that range, between our pick and the server's bind) and claimed across
# processes by a lock file held for this process's life: parallel test sessions never pick the
# same port, and a port another session's server still holds is skipped by the bind check.
_PORT_LOCKS = Path(os.environ.get("TMPDIR", "/tmp")) / "higress-init-test-ports"
_held: dict[int, int] = {}   # port -> the open lock file's descriptor


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))   # gRPC and Raft ports bind every interface
        except OSError:
            return False
    return True


def _claim(port: int) -> bool:
    if port in _held:
        return False
    _PORT_LOCKS.mkdir(mode=0o777, exist_ok=True)
    fd = os.open(_PORT_LOCKS / str(port), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _held[port] = fd
    return True


def _release(port: int) -> None:
    os.close(_held.pop(port))


def claim_ports(offsets: tuple[int, ...] = (0,)) -> int:
    """A port p with p + each offset free and claimed by this process for its life."""
    low, high = 10000 + max(0, -min(offsets)), _ephemeral_start() - max(offsets) - 1
    for _ in range(1000):
        port = random.randrange(low, high)
        wanted = [port + o for o in offsets]
        claimed = []
        for p in wanted:
            if not _claim(p):
                break
            claimed.append(p)
        if len(claimed) == len(wanted) and all(_bindable(p) for p in wanted):
            return port
        for p in claimed:
            _release(p)
    raise RuntimeError("no free set of loopback ports below the ephemeral range")


def free_port() -> int:
    return claim_ports()


def free_port_pair(offset: int = 1000) -> int:
    """A free port p with p + offset free too: Nacos clients reach gRPC on the HTTP port + 1000."""
    return claim_ports((0, offset))


_RUNNING: set = set()   # every node started and not yet stopped


def _stop_all() -> None:
    for node in list(_RUNNING):
        node.stop()


atexit.register(_stop_all)
def _terminated(*_):
    # as Ctrl-C: pytest stops the session and runs every fixture's finalizer, then atexit runs (a
    # SystemExit would be taken for one test's failure, and the session would go on)
    raise KeyboardInterrupt("SIGTERM")


if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
    # a SIGTERM would otherwise end the test process without running atexit
    signal.signal(signal.SIGTERM, _terminated)


class RNacosNode:
    def __init__(self, workdir: Path, node_id: int = 1, auth: bool = False, join: str | None = None,
                 password: str = "admin"):
        self.workdir = workdir
        self.http_port = free_port_pair()
        self.grpc_port, self.console_port = self.http_port + 1000, free_port()
        self.node_id, self.join, self.auth, self.password = node_id, join, auth, password
        self.proc: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/nacos"

    @property
    def raft_addr(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def env(self) -> dict:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "RNACOS_HTTP_PORT": str(self.http_port),
            "RNACOS_GRPC_PORT": str(self.grpc_port),
            "RNACOS_HTTP_CONSOLE_PORT": str(self.console_port),
            "RNACOS_SDK_HOST": "127.0.0.1",
            "RNACOS_CONSOLE_HOST": "127.0.0.1",
            "RNACOS_CONFIG_DB_DIR": str(self.workdir / "db"),
            "RNACOS_DATA_DIR": str(self.workdir / "db"),
            "RNACOS_RAFT_NODE_ID": str(self.node_id),
            "RNACOS_RAFT_NODE_ADDR": self.raft_addr,
            "RNACOS_RAFT_AUTO_INIT": "true" if self.join is None else "false",
            "RNACOS_ENABLE_OPEN_API_AUTH": "true" if self.auth else "false",
            "RNACOS_INIT_ADMIN_USERNAME": "admin",
            "RNACOS_INIT_ADMIN_PASSWORD": self.password,
            "RNACOS_ENV_FILE": str(self.workdir / "none.env"),
            "RUST_LOG": os.environ.get("RNACOS_LOG", "warn"),
            "RNACOS_ENABLE_NO_AUTH_CONSOLE": "true",
        }
        if self.join:
            env["RNACOS_RAFT_JOIN_ADDR"] = self.join
        return env

    def start(self) -> RNacosNode:
        with open(self.workdir / "rnacos.log", "ab") as log:
            self.proc = subprocess.Popen([rnacos_binary()], env=self.env(), cwd=self.workdir, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        _RUNNING.add(self)
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/v1/console/health/readiness", timeout=1) as r:
                return r.status == 200
        except urllib.error.HTTPError as err:
            return err.code == 403 and self.auth  # up, and guarding even its readiness probe
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 180) -> RNacosNode:
        """Wait until the node serves reads and writes. r-nacos 0.8.8 sometimes panics while
        starting (more often under load, several times in a row): start it again on a fresh data
        directory as often as the deadline allows. A node that never got ready is stopped."""
        deadline = time.monotonic() + timeout
        restarts = 0
        try:
            while time.monotonic() < deadline:
                if self._crashed_at_start() or self.proc.poll() is not None:
                    self.stop()
                    restarts += 1
                    shutil.rmtree(self.workdir / "db", ignore_errors=True)
                    (self.workdir / "rnacos.log").rename(self.workdir / f"rnacos-failed-start-{restarts}.log")
                    self.start()
                    continue
                if self.ready() and self._admin_ready() and self._writable():
                    return self
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        self.stop()
        tail = (self.workdir / "rnacos.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"r-nacos on {self.url} not ready after {timeout}s and {restarts} restarts:\n{tail}")

    def _admin_ready(self) -> bool:
        """With auth on, r-nacos creates its admin user shortly after it answers: wait for it."""
        if not self.auth:
            return True
        try:
            return bool(self.token())
        except (urllib.error.URLError, OSError, KeyError, ValueError):
            return False

    def _writable(self) -> bool:
        """r-nacos answers its readiness probe before its raft group takes writes: wait for both
        kinds of write (configs, and namespaces, which go through its raft state machine)."""
        try:
            self.publish_config("startup-probe", "DEFAULT_GROUP", "", "ok")
            data = urllib.parse.urlencode(self._params(customNamespaceId="startup-probe",
                                                       namespaceName="startup-probe")).encode()
            with urllib.request.urlopen(f"{self.url}/v1/console/namespaces", data=data, timeout=5) as r:
                return r.read() == b"true"
        except (urllib.error.URLError, OSError, AssertionError):
            return False

    def _crashed_at_start(self) -> bool:
        """r-nacos 0.8.8 sometimes panics in its raft state machine while starting (an unwrap on a
        manager not yet set); the process lives on but every namespace write then fails."""
        log = self.workdir / "rnacos.log"
        return log.exists() and "panicked" in log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: anything it started too
            self.proc.wait(30)
        _RUNNING.discard(self)

    def client_env(self) -> dict:
        """The initializer's settings to reach this node."""
        env = {"NACOS_SERVER_URL": self.url}
        if self.auth:
            env.update(NACOS_USERNAME="admin", NACOS_PASSWORD=self.password)
        return env

    # --- a client independent of the initializer's own, for checking what it left behind
    def token(self) -> str | None:
        if not self.auth:
            return None
        import json
        data = urllib.parse.urlencode({"username": "admin", "password": self.password}).encode()
        with urllib.request.urlopen(self.url + "/v1/auth/login", data=data, timeout=5) as r:
            return json.loads(r.read())["accessToken"]

    def _params(self, **params) -> dict:
        token = self.token()
        return {**params, **({"accessToken": token} if token else {})}

    def get_config(self, data_id: str, group: str, tenant: str) -> str | None:
        query = urllib.parse.urlencode(self._params(dataId=data_id, group=group, tenant=tenant))
        try:
            with urllib.request.urlopen(f"{self.url}/v1/cs/configs?{query}", timeout=5) as r:
                return r.read().decode()
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise

    def publish_config(self, data_id: str, group: str, tenant: str, content: str) -> None:
        data = urllib.parse.urlencode(self._params(dataId=data_id, group=group, tenant=tenant,
                                                   content=content)).encode()
        with urllib.request.urlopen(f"{self.url}/v1/cs/configs", data=data, timeout=5) as r:
            assert r.read() == b"true"

    def delete_config(self, data_id: str, group: str, tenant: str) -> None:
        query = urllib.parse.urlencode(self._params(dataId=data_id, group=group, tenant=tenant))
        request = urllib.request.Request(f"{self.url}/v1/cs/configs?{query}", method="DELETE")
        with urllib.request.urlopen(request, timeout=5) as r:
            assert r.read() == b"true"

    def namespaces(self) -> list[str]:
        import json
        query = urllib.parse.urlencode(self._params())
        with urllib.request.urlopen(f"{self.url}/v1/console/namespaces?{query}", timeout=5) as r:
            return [n["namespace"] for n in json.loads(r.read())["data"]]


def _replicated(nodes: list[RNacosNode], probe: str, timeout: float = 60) -> None:
    """Wait until a write on the first node is readable on every node."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            nodes[0].publish_config("cluster-probe", "DEFAULT_GROUP", "", probe)
            if all(n.get_config("cluster-probe", "DEFAULT_GROUP", "") == probe for n in nodes):
                return
        except (urllib.error.URLError, OSError, AssertionError):
            pass
        time.sleep(0.2)
    raise RuntimeError("the r-nacos cluster did not form within 60s")


def start_cluster(workdir: Path, size: int = 3) -> list[RNacosNode]:
    """A raft cluster on loopback. Members join one at a time: r-nacos 0.8 applies concurrent
    joins as competing membership changes, and one of them is lost."""
    nodes: list[RNacosNode] = []
    try:
        first = RNacosNode(workdir / "node1", node_id=1)
        nodes.append(first)
        first.start().wait_ready()
        for i in range(2, size + 1):
            node = RNacosNode(workdir / f"node{i}", node_id=i, join=first.raft_addr)
            nodes.append(node)
            node.start().wait_ready()
            _replicated(nodes, f"members:{i}")
            time.sleep(1)  # the membership change commits after the node has caught up
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


@pytest.fixture
def rnacos(tmp_path):
    """Start ready r-nacos nodes on loopback, `rnacos("name", auth=True, ...)`; every one is
    stopped when the test ends, however it ends."""
    started: list[RNacosNode] = []

    def start(name: str = "rnacos", **options) -> RNacosNode:
        node = RNacosNode(tmp_path / name, **options)
        started.append(node)
        return node.start().wait_ready()

    yield start
    for node in started:
        node.stop()
