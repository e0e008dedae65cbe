"""Nacos storage, against real Nacos 2.5.1 and 3.0.1 and against r-nacos (tests/README.md says what each
stands for): each test once per server, in a namespace of its own."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import run_cli, snapshot
from rnacos import RNacosNode, free_port, start_cluster

NS = "higress-system"
CM = ("configmaps.higress-config", NS)
INDEX = ("configmaps.__names__", "DEFAULT_GROUP")


@pytest.fixture
def node(nacos):
    return nacos


@pytest.fixture
def env(node, fast_env):
    return dict(fast_env, **node.client_env(), NACOS_WAIT_TIMEOUT="30s")


def _configs(node) -> dict:
    return {key: node.get_config(*key) for key in (CM, INDEX)}


def _popen(args, env, volumes):
    full = {k: v for k, v in os.environ.items() if not k.startswith(("NACOS_", "CONFIG_STORAGE"))}
    full.update(env)
    return subprocess.Popen([sys.executable, "-m", "higress_init", *args, "--volumes", str(volumes)], env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout=60):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the initializer exited {proc.returncode} before {path.name}:\n{out}\n{err}")
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_fresh_seed_leaves_nacos_as_the_apiserver_expects(node, env, volumes):
    result = run_cli("run", volumes=volumes, env=env, check=True)
    assert node.ns in node.namespaces()
    content = node.get_config(*CM)
    cm = yaml.safe_load(content)
    assert cm["kind"] == "ConfigMap" and cm["apiVersion"] == "v1"
    assert cm["metadata"]["name"] == "higress-config" and cm["metadata"]["namespace"] == NS
    assert "creationTimestamp" in cm["metadata"]
    assert cm["data"]["mesh"] == (volumes / "pilot/config/mesh").read_text()
    assert cm["data"]["meshNetworks"] == (volumes / "pilot/config/meshNetworks").read_text()
    assert node.get_config(*INDEX) == "higress-system/higress-config\nhigress-system/higress-console\n"
    # configs live in the namespace, not in the public one
    assert node.get_config(*CM, tenant="") is None
    # in Nacos mode the file store is not written (its directory exists for the compose mount)
    assert list((volumes / "data").iterdir()) == []
    assert "seeding made" in result.stdout
    status = run_cli("status", "--output", "json", volumes=volumes, env=env)
    report = json.loads(status.stdout)
    assert status.returncode == 0 and report["nacos"]["reachable"]
    assert report["nacos"]["version"] == node.generation
    assert report["nacos"]["server_version"] == node.server_version  # r-nacos has no server state endpoint
    assert report["nacos"]["namespace_present"] is True
    assert all(c["present"] and c["as_seeded"] for c in report["nacos"]["configs"])
    table = run_cli("status", volumes=volumes, env=env).stdout   # the table names the server's version too
    assert f"API {node.generation}" in table
    assert (f"(server {node.server_version})" in table) == node.real


def test_plan_against_nacos_writes_nothing(node, env, volumes):
    result = run_cli("plan", volumes=volumes, env=env, check=True)
    assert "would create" in result.stdout and not volumes.exists()
    assert node.ns not in node.namespaces() and node.get_config(*CM) is None


def test_url_without_the_context_path_works(node, env, volumes):
    env["NACOS_SERVER_URL"] = node.url.removesuffix("/nacos")
    run_cli("run", volumes=volumes, env=env, check=True)
    assert node.get_config(*CM) is not None


def test_rerun_changes_nothing(node, env, volumes):
    run_cli("run", volumes=volumes, env=env, check=True)
    before, files = _configs(node), snapshot(volumes)
    result = run_cli("run", volumes=volumes, env=env, check=True)
    assert _configs(node) == before and snapshot(volumes) == files
    assert "created" not in result.stdout.splitlines()[-1]


def test_nacos_is_checked_even_when_the_volumes_are_unchanged(node, env, volumes):
    run_cli("run", volumes=volumes, env=env, check=True)
    node.delete_config(*CM)
    result = run_cli("run", volumes=volumes, env=env, check=True)
    assert "nothing the local phases read has changed" in result.stdout  # the fast path, and yet:
    assert yaml.safe_load(node.get_config(*CM))["metadata"]["name"] == "higress-config"


def test_user_edited_config_survives_and_status_says_so(node, env, volumes):
    run_cli("run", volumes=volumes, env=env, check=True)
    edited = node.get_config(*CM).replace("dnsRefreshRate: 200s", "dnsRefreshRate: 30s")
    node.publish_config(*CM, edited)
    run_cli("run", volumes=volumes, env=env, check=True)
    assert node.get_config(*CM) == edited
    report = json.loads(run_cli("status", "--output", "json", volumes=volumes, env=env).stdout)
    cm = next(c for c in report["nacos"]["configs"] if c["dataId"] == CM[0])
    assert cm["present"] is True and cm["as_seeded"] is False


def test_names_index_keeps_existing_lines(node, env, volumes):
    run_cli("phase", "nacos", volumes=volumes, env=env, check=True)
    node.publish_config(*INDEX, "higress-system/other-config\n")
    run_cli("run", volumes=volumes, env=env, check=True)
    assert node.get_config(*INDEX) == \
        "higress-system/other-config\nhigress-system/higress-config\nhigress-system/higress-console\n"


def test_reseed_rewrites_the_base_config(node, env, volumes):
    run_cli("run", volumes=volumes, env=env, check=True)
    node.publish_config(*CM, "user: edit\n")
    result = run_cli("run", "--reseed", volumes=volumes, env=env, check=True)
    assert yaml.safe_load(node.get_config(*CM))["kind"] == "ConfigMap"
    assert "updated" in result.stdout


def test_reseed_racing_a_concurrent_edit_never_loses_the_edit(node, env, volumes, tmp_path):
    run_cli("run", volumes=volumes, env=env, check=True)
    pause_dir = tmp_path / "pause"
    pause_dir.mkdir()
    proc = _popen(["run", "--reseed"], dict(env, HIGRESS_INIT_PAUSE_AT=f"reseed:after-read={pause_dir}"), volumes)
    _wait_for(pause_dir / "reseed_after-read.paused", proc)
    node.publish_config(*CM, "concurrent: edit\n")  # lands between the read and the write
    (pause_dir / "reseed_after-read.resume").touch()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 6, (out, err)
    assert "changed while the initializer was writing it" in err and "nothing was overwritten" in err
    assert node.get_config(*CM) == "concurrent: edit\n"


def test_a_64_kib_config_round_trips(node, env, volumes):
    from higress_init.settings import load
    from higress_init.versions import meshconfig
    mesh = volumes / "pilot/config/mesh"  # left by an earlier version: adopted into the store
    big = meshconfig.mesh_text(load(env={})) + "".join(f"# padding line {i:05d} " + "x" * 48 + "\n"
                                                       for i in range(1000))
    assert len(big) > 64 * 1024
    mesh.parent.mkdir(parents=True)
    mesh.write_text(big)
    run_cli("run", volumes=volumes, env=env, check=True)
    assert yaml.safe_load(node.get_config(*CM))["data"]["mesh"] == big


def test_auth_on_with_the_right_and_a_wrong_password(node, tmp_path, fast_env, rnacos):
    """Wrong credentials are exit 5 at once, on every server: Nacos 3.x answers a wrong password
    with HTTP 500, 2.x an unknown user (both mapped to a refused login, not retried)."""
    if not node.real:
        node = type(node)(node.kind, rnacos("auth", auth=True, password="s3cret-pw"), node.ns)
    right = node.client_env()
    base = dict(fast_env, NACOS_SERVER_URL=node.url, NACOS_NS=node.ns, NACOS_WAIT_TIMEOUT="600s")
    for user, password in ((right["NACOS_USERNAME"], "nope"), ("nobody", "nope")):
        wrong = run_cli("run", volumes=tmp_path / "v-wrong", timeout=60,
                        env=dict(base, NACOS_USERNAME=user, NACOS_PASSWORD=password))
        assert wrong.returncode == 5, (wrong.stdout, wrong.stderr)
        assert "rejected the login" in wrong.stderr and repr(user) in wrong.stderr and "nope" not in wrong.stderr
        assert len(wrong.stderr.strip().splitlines()) == 1 and "not ready" not in wrong.stdout
        assert not (tmp_path / "v-wrong/api").exists()
    secret = tmp_path / "pw"
    secret.write_text(right["NACOS_PASSWORD"] + "\n")
    ok = run_cli("run", volumes=tmp_path / "v",
                 env=dict(base, NACOS_USERNAME=right["NACOS_USERNAME"], NACOS_PASSWORD_FILE=str(secret)))
    assert ok.returncode == 0, (ok.stdout, ok.stderr)
    assert right["NACOS_PASSWORD"] not in ok.stdout + ok.stderr
    assert node.get_config(*CM) is not None


def test_nacos_started_after_the_initializer(tmp_path, fast_env):
    node = RNacosNode(tmp_path / "late")
    volumes = tmp_path / "v"
    proc = _popen(["run"], dict(fast_env, NACOS_SERVER_URL=node.url, NACOS_WAIT_TIMEOUT="60s"), volumes)
    time.sleep(3)
    node.start()
    try:
        node.wait_ready()  # restarts it if it hit its start-up panic; the initializer keeps trying
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, (out, err)
        assert "not ready (attempt 1" in out
        assert node.get_config(*CM, NS) is not None
    finally:
        node.stop()


def test_nacos_never_started(tmp_path, fast_env):
    url = f"http://127.0.0.1:{free_port()}/nacos"
    volumes = tmp_path / "v"
    result = run_cli("run", volumes=volumes, env=dict(fast_env, NACOS_SERVER_URL=url, NACOS_WAIT_TIMEOUT="2s"))
    assert result.returncode == 4, (result.stdout, result.stderr)
    assert url in result.stderr and "NACOS_WAIT_TIMEOUT" in result.stderr and "refused" in result.stderr.lower()
    assert not (volumes / "api").exists()


def test_nacos_killed_during_seeding_then_a_rerun_completes(rnacos, fast_env, volumes, tmp_path):
    """r-nacos: a server killed and started again in a second (a real one's restart is the cluster's test)."""
    node = rnacos()
    env = dict(fast_env, **node.client_env(), NACOS_WAIT_TIMEOUT="30s")
    pause_dir = tmp_path / "pause"
    pause_dir.mkdir()
    proc = _popen(["run"], dict(env, HIGRESS_INIT_PAUSE_AT=f"seed:before-write={pause_dir}"), volumes)
    _wait_for(pause_dir / "seed_before-write.paused", proc)
    node.stop()
    (pause_dir / "seed_before-write.resume").touch()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 7, (out, err)
    assert "Nacos request failed" in err and len(err.strip().splitlines()) == 1
    node.start().wait_ready()
    run_cli("run", volumes=volumes, env=env, check=True)
    assert node.get_config(*CM, NS) is not None
    assert run_cli("status", volumes=volumes, env=env).returncode == 0


def test_fresh_data_key_with_existing_secrets_is_refused(node, env, volumes, tmp_path):
    run_cli("phase", "nacos", volumes=tmp_path / "other", env=env, check=True)
    node.publish_config("secrets.some-secret", NS, "enc|c29tZQ==")
    node.publish_config("secrets.__names__", "DEFAULT_GROUP", "higress-system/some-secret\n")
    result = run_cli("run", volumes=volumes, env=env)
    assert result.returncode == 3, (result.stdout, result.stderr)
    for way in ("empty the namespace", "use another one", "supply the old key"):
        assert way in result.stderr
    assert [p.name for p in volumes.rglob("*") if p.is_file()] == ["lock"]
    assert node.get_config(*CM) is None
    # the old key supplied: fine
    run_cli("run", volumes=volumes, env=dict(env, NACOS_DATA_ENC_KEY="k" * 32), check=True)
    # another namespace: fine
    run_cli("run", volumes=tmp_path / "v2", env=dict(env, NACOS_NS=node.ns + "-other"), check=True)
    assert node.get_config(*CM, tenant=node.ns + "-other") is not None


def test_a_secrets_index_left_holding_empty_is_no_secret(node, env, volumes, tmp_path):
    """After the last Secret is deleted the apiserver leaves secrets.__names__ holding EMPTY."""
    run_cli("phase", "nacos", volumes=tmp_path / "other", env=env, check=True)
    node.publish_config("secrets.__names__", "DEFAULT_GROUP", "EMPTY")
    run_cli("run", volumes=volumes, env=env, check=True)
    assert node.get_config(*CM) is not None


def test_three_node_cluster_with_the_first_node_down(tmp_path, fast_env):
    nodes = start_cluster(tmp_path / "cluster")
    try:
        nodes[0].stop()
        urls = ",".join(n.url for n in nodes)
        result = run_cli("run", volumes=tmp_path / "v",
                         env=dict(fast_env, NACOS_SERVER_URL=urls, NACOS_WAIT_TIMEOUT="60s"))
        assert result.returncode == 0, (result.stdout, result.stderr)
        for node in nodes[1:]:
            # followers apply the raft log asynchronously: give each a bounded moment to catch up
            deadline = time.monotonic() + 20
            while node.get_config(*INDEX, NS) is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert yaml.safe_load(node.get_config(*CM, NS))["metadata"]["name"] == "higress-config"
            assert node.get_config(*INDEX, NS) == "higress-system/higress-config\nhigress-system/higress-console\n"
    finally:
        for node in nodes:
            node.stop()


# --- every HTTP status the initializer maps, where r-nacos cannot produce it: a loopback server
class _Scripted:
    """A loopback HTTP server answering each (method, path) from a script: a list of answers,
    the last one repeated; an answer is (status, body) or "drip" (a byte a second, forever)."""

    def __init__(self, script: dict):
        import http.server
        import threading
        self.script, self.seen = {k: list(v) for k, v in script.items()}, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                path = self.path.split("?")[0]
                outer.seen.append((self.command, path))
                answers = outer.script.get((self.command, path)) or [(404, b"no such endpoint")]
                answer = answers.pop(0) if len(answers) > 1 else answers[0]
                if answer == "drip":
                    for byte in b"HTTP/1.1 200 OK\r\n" * 1000:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(1)
                    return
                status, body = answer
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/nacos"

    def count(self, method: str, path: str) -> int:
        return self.seen.count((method, "/nacos" + path))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


READY = {("GET", "/nacos/v1/console/health/readiness"): [(200, b"OK")]}
NAMESPACES = ("GET", "/nacos/v1/console/namespaces")
NO_NAMESPACE = (200, b'{"code":200,"data":[{"namespace":""}]}')
CREATED = {("POST", "/nacos/v1/console/namespaces"): [(200, b"true")]}
BODY_MARKER = b"BODY-MUST-NOT-BE-SHOWN"


@pytest.fixture
def scripted():
    servers = []

    def make(script):
        servers.append(_Scripted(script))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def _phase_nacos(server, tmp_path, fast_env, **env):
    return run_cli("phase", "nacos", volumes=tmp_path / "v",
                   env=dict(fast_env, NACOS_SERVER_URL=server.url, NACOS_WAIT_TIMEOUT="60s", **env), timeout=120)


def test_409_and_5xx_are_retried_until_an_answer(scripted, tmp_path, fast_env):
    server = scripted({**READY, **CREATED, NAMESPACES: [(409, BODY_MARKER), (503, BODY_MARKER),
                                                        (500, BODY_MARKER), NO_NAMESPACE]})
    result = _phase_nacos(server, tmp_path, fast_env)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert server.count("GET", "/v1/console/namespaces") == 4
    assert server.count("POST", "/v1/console/namespaces") == 1


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_an_auth_error_at_once(scripted, tmp_path, fast_env, status):
    server = scripted({**READY, NAMESPACES: [(status, BODY_MARKER)]})
    result = _phase_nacos(server, tmp_path, fast_env)
    assert result.returncode == 5, (result.stdout, result.stderr)
    assert f"HTTP {status}" in result.stderr and "NACOS_USERNAME" in result.stderr
    assert server.count("GET", "/v1/console/namespaces") == 1  # not retried
    assert BODY_MARKER.decode() not in result.stdout + result.stderr


def test_401_on_login_is_an_auth_error_and_no_credential_is_shown(scripted, tmp_path, fast_env):
    server = scripted({**READY, ("POST", "/nacos/v1/auth/login"): [(401, BODY_MARKER)]})
    result = _phase_nacos(server, tmp_path, fast_env, NACOS_USERNAME="someone", NACOS_PASSWORD="pw-MUST-NOT-SHOW")
    assert result.returncode == 5, (result.stdout, result.stderr)
    assert "rejected the login of user 'someone'" in result.stderr
    assert server.count("POST", "/v1/auth/login") == 1
    assert "pw-MUST-NOT-SHOW" not in result.stdout + result.stderr
    assert BODY_MARKER.decode() not in result.stdout + result.stderr


@pytest.mark.parametrize("status", [400, 405, 429])
def test_other_4xx_are_final(scripted, tmp_path, fast_env, status):
    server = scripted({**READY, NAMESPACES: [(status, BODY_MARKER)]})
    result = _phase_nacos(server, tmp_path, fast_env)
    assert result.returncode == 7, (result.stdout, result.stderr)
    assert f"HTTP {status}" in result.stderr and "listing namespaces" in result.stderr
    assert server.count("GET", "/v1/console/namespaces") == 1
    assert BODY_MARKER.decode() not in result.stdout + result.stderr


@pytest.mark.parametrize("body", [b"<html>" + BODY_MARKER + b"</html>", b'{"data": 5, "x": "' + BODY_MARKER + b'"}'])
def test_an_unparsable_answer_is_a_clear_error(scripted, tmp_path, fast_env, body):
    server = scripted({**READY, NAMESPACES: [(200, body)]})
    result = _phase_nacos(server, tmp_path, fast_env)
    assert result.returncode == 7, (result.stdout, result.stderr)
    assert "namespace" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert BODY_MARKER.decode() not in result.stdout + result.stderr


def test_404_is_absent(scripted, tmp_path, fast_env):
    """The namespace exists and the data key is new, so the safety rule searches for Secrets:
    a 404 from the search means there are none."""
    present = (200, b'{"code":200,"data":[{"namespace":"higress-system"}]}')
    server = scripted({**READY, NAMESPACES: [present], ("GET", "/nacos/v1/cs/configs"): [(404, BODY_MARKER)]})
    result = _phase_nacos(server, tmp_path, fast_env)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert server.count("GET", "/v1/cs/configs") == 2  # secrets.* and secrets. (see data_ids)
    assert server.count("POST", "/v1/console/namespaces") == 0


def test_a_server_dripping_a_byte_a_second_does_not_outlast_the_wait(scripted, tmp_path, fast_env):
    server = scripted({("GET", "/nacos/v1/console/health/readiness"): ["drip"]})
    # the server never finishes its answer: without one deadline for the whole wait this run would
    # never end (the subprocess timeout below would fail the test)
    result = run_cli("phase", "nacos", volumes=tmp_path / "v", timeout=120,
                     env=dict(fast_env, NACOS_SERVER_URL=server.url, NACOS_WAIT_TIMEOUT="3s"))
    assert result.returncode == 4, (result.stdout, result.stderr)
    assert "NACOS_WAIT_TIMEOUT" in result.stderr and "timed out" in result.stderr


def test_no_nacos_api_at_the_url_is_final(scripted, tmp_path, fast_env):
    server = scripted({})  # 404 for everything
    result = _phase_nacos(server, tmp_path, fast_env)
    assert result.returncode == 7, (result.stdout, result.stderr)
    assert "no Nacos API there" in result.stderr and "NACOS_SERVER_URL" in result.stderr


# --- the SDK in process: absent and empty, compare-and-swap, a clean end
def _connect(node, tmp_path, **env):
    from higress_init import settings
    from higress_init.store.nacos import client
    s = settings.load(env={**node.client_env(), "VOLUMES_ROOT": str(tmp_path / "v"), **env})
    lines = []
    return client.connect(s, lambda text, **fields: lines.append(text)), lines


def _namespace(node, tmp_path):
    run_cli("phase", "nacos", volumes=tmp_path / "other", env=node.client_env(), check=True)


def test_absent_configs_are_none_and_content_comes_back_exactly(node, tmp_path):
    """The SDK's get_config answers an absent config with "" (so did the run that created a config
    without compare-and-swap); the initializer reads None. Every server refuses an empty config;
    r-nacos takes whitespace (the nearest present-but-blank content), Nacos refuses that too."""
    import urllib.error
    _namespace(node, tmp_path)
    if node.real:
        with pytest.raises(urllib.error.HTTPError, match="400"):
            node.publish_config("blank", "g", " ")
    else:
        node.publish_config("blank", "g", " ")
    node.publish_config("with-content", "g", "x: 1\n")
    node.publish_config("deleted", "g", "gone soon")
    node.delete_config("deleted", "g")
    conn, _ = _connect(node, tmp_path)
    try:
        assert conn.get("never-written", "g") is None and conn.get_stored("never-written", "g") is None
        assert conn.get("deleted", "g") is None and conn.get_stored("deleted", "g") is None
        assert conn.get("blank", "g") == (None if node.real else " ")
        assert conn.get("with-content", "g") == conn.get_stored("with-content", "g") == "x: 1\n"
        assert conn.get("with-content", "other-group") is None
        assert conn.server_version == node.server_version and conn.cas_enforced == node.real
    finally:
        conn.close()


def test_data_ids_finds_configs_by_prefix(node, tmp_path):
    """Nacos 3.x answers the v1 search with 410 (its admin API serves it); r-nacos takes `*` literally."""
    _namespace(node, tmp_path)
    for data_id, group in [("secrets.a", NS), ("secrets.b", "other-group"), ("secretsX", NS),
                           ("other.secrets.c", NS), ("secrets.__names__", "DEFAULT_GROUP")]:
        node.publish_config(data_id, group, "x")
    node.publish_config("secrets.in-public", NS, "x", tenant="")  # another namespace: not seen
    conn, _ = _connect(node, tmp_path)
    try:
        assert conn.data_ids(None, "secrets.") == ["secrets.__names__", "secrets.a", "secrets.b"]
        assert conn.data_ids(NS, "secrets.") == ["secrets.a"]
        assert conn.data_ids(None, "nothing.") == []
    finally:
        conn.close()


@pytest.fixture
def grpc_requests(monkeypatch):
    """What the SDK sends over gRPC, recorded on its way to the real server (not answered here)."""
    from v2.nacos.transport.grpc_connection import GrpcConnection
    sent = []
    real = GrpcConnection.request

    async def recorded(self, request, timeout_millis):
        sent.append(request)
        return await real(self, request, timeout_millis)

    monkeypatch.setattr(GrpcConnection, "request", recorded)
    return sent


def test_compare_and_swap_is_decided_by_the_server(node, tmp_path, grpc_requests):
    """On Nacos the server refuses a stale casMd5 and a creation of what exists (casMd5 CREATE_ONLY):
    no read comes before a write, the answer decides. r-nacos accepts both (it ignores casMd5), so
    there a read just before each write is the guard. Either way nothing is overwritten."""
    from higress_init.store.base import md5
    from higress_init.store.nacos.client import CREATE_ONLY, NacosConflict
    _namespace(node, tmp_path)
    conn, lines = _connect(node, tmp_path)
    try:
        conn.compare_and_publish("cas-test", "g", "one\n", None)
        conn.compare_and_publish("cas-test", "g", "two\n", md5("one\n"))
        assert conn.get("cas-test", "g") == "two\n"   # this run's write, as written (no lagging read)
        assert node.get_config("cas-test", "g") == "two\n"
        sent = [(type(r).__name__, getattr(r, "casMd5", None)) for r in grpc_requests
                if getattr(r, "dataId", "") == "cas-test"]
        publishes = [("ConfigPublishRequest", CREATE_ONLY), ("ConfigPublishRequest", md5("one\n"))]
        if node.real:
            assert sent == publishes, sent
        else:
            assert sent == [("ConfigQueryRequest", None), publishes[0], ("ConfigQueryRequest", None), publishes[1]]
        assert all(r.tenant == node.ns for r in grpc_requests if getattr(r, "dataId", "") == "cas-test")
        node.publish_config("cas-test", "g", "changed by someone else\n")
        conn.written.clear()   # what another run would know
        with pytest.raises(NacosConflict, match="nothing was overwritten"):
            conn.compare_and_publish("cas-test", "g", "three\n", md5("two\n"))
        assert node.get_config("cas-test", "g") == "changed by someone else\n"
        with pytest.raises(NacosConflict):  # creating what meanwhile exists
            conn.compare_and_publish("cas-test", "g", "four\n", None)
        assert node.get_config("cas-test", "g") == "changed by someone else\n"
    finally:
        conn.close()
    assert lines[-1].startswith("nacos: ") and "gRPC calls" in lines[-1]


def test_a_write_overwritten_since_is_not_read_back_from_memory(node, tmp_path):
    """This run's writes are read back from memory (Nacos's reads lag), until the database view
    shows another write over one (r-nacos accepts a create over a create): from then on the
    stored content is the truth. The shared CA's lost-race path on r-nacos depends on it."""
    _namespace(node, tmp_path)
    conn, _ = _connect(node, tmp_path)
    try:
        conn.compare_and_publish("overwritten", "g", "mine\n", None)
        assert conn.get("overwritten", "g") == "mine\n"
        node.publish_config("overwritten", "g", "theirs\n")
        assert conn.get_stored("overwritten", "g") == "theirs\n"
        assert conn.get("overwritten", "g") == "theirs\n"
    finally:
        conn.close()


@pytest.mark.parametrize("version", ["2.5.1", "3.0.1"])
def test_racing_creations_exactly_one_wins(real_nacos, version, tmp_path):
    """Two clients create the same absent config at the same instant, 10 times: exactly one is
    told it won, and the database holds its content. (A standalone Nacos answers the loser of a
    racing insert "success" and drops its content: the initializer checks the database view.)"""
    import threading

    from nacos_server import Target, fresh_namespace

    from higress_init.store.nacos.client import NacosConflict
    node = Target(f"nacos-{version}", real_nacos(version), fresh_namespace("race"))
    _namespace(node, tmp_path)
    conns = [_connect(node, tmp_path)[0] for _ in range(2)]
    try:
        for conn in conns:
            conn.get("warm-up", "g")   # both connected before the race
        for i in range(10):
            barrier, outcome = threading.Barrier(2), {}

            def create(k, barrier=barrier, i=i, outcome=outcome):
                barrier.wait()
                try:
                    conns[k].compare_and_publish(f"race-{i}", "g", f"from {k}\n", None)
                    outcome[k] = "won"
                except NacosConflict:
                    outcome[k] = "lost"

            threads = [threading.Thread(target=create, args=(k,)) for k in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            assert sorted(outcome.values()) == ["lost", "won"], (i, outcome)
            winner = next(k for k, v in outcome.items() if v == "won")
            assert node.get_config(f"race-{i}", "g") == f"from {winner}\n"
    finally:
        for conn in conns:
            conn.close()


def test_closing_ends_the_sdk_client_completely(node, tmp_path):
    import threading

    import psutil
    threads_before = set(threading.enumerate())
    conn, _ = _connect(node, tmp_path)
    assert conn.get("anything", "g") is None
    sdk_dir = Path(conn.configs.tmp.name)  # the SDK's log and cache directories live in it
    assert sdk_dir.is_dir()
    grpc_port = int(node.url.split(":")[2].split("/")[0]) + 1000
    me = psutil.Process()
    assert any(c.raddr and c.raddr.port == grpc_port for c in me.net_connections())
    conn.close()
    assert not any(c.raddr and c.raddr.port == grpc_port and c.status == "ESTABLISHED" for c in me.net_connections())
    assert [t for t in threading.enumerate() if t not in threads_before] == []  # gRPC's poller included
    assert not sdk_dir.exists()
    conn.close()  # twice is fine


def test_a_file_store_run_never_imports_the_sdk(tmp_path, fast_env):
    code = ("import sys; from higress_init.cli import main as cli; rc = cli.main(['run', '--volumes', sys.argv[1]]); "
            "loaded = [m for m in ('v2.nacos', 'grpc', 'nacos', 'aiohttp') if m in sys.modules]; "
            "print(rc, loaded)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NACOS_", "CONFIG_STORAGE"))}
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "v")], env={**env, **fast_env},
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.splitlines()[-1] == "0 []", (result.stdout, result.stderr)


# --- Nacos 3 as upstream's 2.2.4 deployment runs it, and its admin API without credentials
def test_nacos_3_as_upstream_runs_it(real_nacos, tmp_path, fast_env):
    """Auth off (its admin API's too), the v1 compatibility switches on: a cold run, a rerun that
    writes nothing, a clean status naming the version, a second control-plane host taking the CA."""
    from nacos_server import UPSTREAM
    server = real_nacos(UPSTREAM)
    env = dict(fast_env, NACOS_SERVER_URL=server.url, NACOS_NS="upstream", NACOS_WAIT_TIMEOUT="30s")
    a, b = tmp_path / "a", tmp_path / "b"
    run_cli("run", volumes=a, env=env, check=True)
    files = snapshot(a)
    rerun = run_cli("run", volumes=a, env=env, check=True)
    assert snapshot(a) == files and " 0 files written" in rerun.stdout.splitlines()[-1]
    report = json.loads(run_cli("status", "--output", "json", volumes=a, env=env).stdout)
    assert report["healthy"] and report["nacos"]["server_version"] == "3.0.1", report["nacos"]
    shutil.copy(a / "api/nacos.key", tmp_path / "key")
    second = run_cli("run", volumes=b, env=dict(env, NACOS_DATA_ENC_KEY_FILE=str(tmp_path / "key")), check=True)
    assert "took the CA" in second.stdout
    assert (b / "pilot/cacerts/ca-cert.pem").read_bytes() == (a / "pilot/cacerts/ca-cert.pem").read_bytes()


def test_nacos_3_admin_api_without_credentials_says_they_are_needed(real_nacos, tmp_path, fast_env):
    server = real_nacos("3.0.1")   # auth on: its admin API (namespaces) wants a login
    volumes = tmp_path / "v"
    result = run_cli("run", volumes=volumes, env=dict(fast_env, NACOS_SERVER_URL=server.url, NACOS_NS="no-login"))
    assert result.returncode == 5, (result.stdout, result.stderr)
    assert "admin API needs credentials" in result.stderr and "NACOS_USERNAME and NACOS_PASSWORD" in result.stderr
    assert "nacos.core.auth.admin.enabled=false" in result.stderr and "rejected" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (volumes / "api").exists()


def test_nacos_3_with_the_v1_search_off_is_refused_with_the_switch_to_set(tmp_path, fast_env):
    """Nacos 3.0.1 as it ships (v1 console compatibility off): the apiserver's v1 blur search answers
    410. The run needs no v1 API itself, yet stops (exit 7) with the switch to set, before writing
    anything; plan and status say the same."""
    from nacos_server import NacosServer
    server = NacosServer("3.0.1", tmp_path / "nacos").start().wait_ready()
    try:
        env = dict(fast_env, **server.client_env(), NACOS_NS="v1-off", NACOS_WAIT_TIMEOUT="30s")
        volumes = tmp_path / "v"
        for command in ("run", "plan"):
            result = run_cli(command, volumes=volumes, env=env)
            assert result.returncode == 7, (command, result.stdout, result.stderr)
            line, = result.stderr.strip().splitlines()
            assert "HTTP 410" in line and "nacos.core.api.compatibility.console.enabled=true" in line
            assert "NACOS_CORE_API_COMPATIBILITY_CONSOLE_ENABLED=true" in line
        assert [p.name for p in volumes.rglob("*") if p.is_file()] == ["lock"]
        assert "v1-off" not in server.namespaces()
        status = run_cli("status", volumes=volumes, env=env)
        assert status.returncode == 1 and "nacos.core.api.compatibility.console.enabled=true" in status.stdout
    finally:
        server.stop()


@pytest.mark.parametrize("version", ("2.5.1", "3.0.1"))
def test_a_deleted_namespace_still_holding_secrets_refuses_a_fresh_data_key(real_nacos, version, tmp_path, fast_env):
    """Deleting a namespace leaves its configs behind (they reappear with a namespace of that id): the
    data-key rule is checked even when the namespace does not exist."""
    from nacos_server import Target, fresh_namespace
    node = Target(f"nacos-{version}", real_nacos(version), fresh_namespace("deleted"))
    env = dict(fast_env, **node.client_env(), NACOS_WAIT_TIMEOUT="30s")
    run_cli("phase", "nacos", volumes=tmp_path / "first", env=env, check=True)
    node.publish_config("secrets.some-secret", NS, "enc|c29tZQ==")
    node.publish_config("secrets.__names__", "DEFAULT_GROUP", "higress-system/some-secret\n")
    node.server.delete_namespace(node.ns)
    assert node.ns not in node.namespaces() and node.get_config("secrets.some-secret", NS) is not None
    volumes = tmp_path / "v"
    result = run_cli("run", volumes=volumes, env=env)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "already holds Higress Secrets" in result.stderr
    for way in ("empty the namespace", "use another one", "supply the old key"):
        assert way in result.stderr
    assert [p.name for p in volumes.rglob("*") if p.is_file()] == ["lock"] and node.ns not in node.namespaces()
    run_cli("run", volumes=volumes, env=dict(env, NACOS_DATA_ENC_KEY="k" * 32), check=True)
    assert node.ns in node.namespaces()
