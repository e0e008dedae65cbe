"""More hosts, one deployment: volume roots stand for hosts, a real three-node Nacos 2.5.1 cluster on
loopback for the Nacos cluster they share (hosts pointed at different nodes). The pilot CA travels as
the Secret `cacerts`. The races also run on a standalone Nacos 2.5.1 and 3.0.1 (whose database
swallows a losing racing insert) and on r-nacos (which ignores casMd5: the settle path)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from base_objects import openssl_decrypt
from conftest import _SETTING_VARS, run_cli, snapshot
from consumers import openssl_verify
from test_rotation import _handshake, _ok

from higress_init.pki import primitives

NS = "higress-system"
DATA_KEY = "k3yForSecretsInNacos-0123456789A"   # 32 characters: the deployment's data key
CA_FILES = ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem")


@pytest.fixture
def cluster(real_cluster):
    """The session's real cluster, every node running (a test may have stopped one)."""
    for node in real_cluster:
        if node.proc is None or node.proc.poll() is not None:
            node.start().wait_ready()
    return real_cluster


@pytest.fixture(params=["cluster-2.5.1", "nacos-3.0.1"])
def servers(request, real_nacos):
    """Where a deployment's hosts meet: the real 2.5.1 cluster (each host on another node), or
    one standalone Nacos 3.0.1 (Higress 2.2.4's)."""
    if request.param == "nacos-3.0.1":
        return [real_nacos("3.0.1")]
    return request.getfixturevalue("cluster")


_namespaces = iter(range(1, 10_000))


@pytest.fixture
def ns():
    """A fresh Nacos namespace per deployment: tests share the cluster, not the data."""
    return f"multihost-{next(_namespaces)}-{os.getpid()}"


def host_env(cluster, ns, role="all", node=0, **extra) -> dict:
    """A host's settings: it talks to `cluster[node]` first, the others listed after it."""
    ordered = cluster[node:] + cluster[:node]
    env = {"CA_KEY_ALGORITHM": "ecdsa-p256", "LEAF_KEY_ALGORITHM": "ecdsa-p256", "NACOS_WAIT_TIMEOUT": "60s",
           **ordered[0].client_env(), "NACOS_SERVER_URL": ",".join(n.url for n in ordered), "NACOS_NS": ns,
           "ROLE": role, "NACOS_DATA_ENC_KEY": DATA_KEY}
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def start(args, volumes, env) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if k not in _SETTING_VARS}
    full.update(env)
    return subprocess.Popen([sys.executable, "-m", "higress_init", *args, "--volumes", str(volumes)], env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=180)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def published(node, ns) -> dict:
    """The Secret as the apiserver would read it: decrypted by its rule with openssl, not our code."""
    raw = node.get_config("secrets.cacerts", NS, ns)
    assert raw is not None and raw.startswith("enc|")
    secret = yaml.safe_load(openssl_decrypt(raw, DATA_KEY.encode()))
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "cacerts"
    assert secret["metadata"]["namespace"] == NS and secret["type"] == "Opaque"
    import base64
    return {k: base64.b64decode(secret["data"][k]) for k in CA_FILES}


def local_ca(volumes: Path) -> dict:
    return {k: (volumes / "pilot/cacerts" / k).read_bytes() for k in CA_FILES}


def assert_gateway_joins(gateway_host: Path, control: Path, tmp: Path, pod_name: str):
    """The gateway host's certificate chains to the control plane's root and passes a mutual-TLS
    handshake with a pilot serving certificate issued from the control plane's intermediate."""
    chain = gateway_host / "gateway/certs/cert-chain.pem"
    ok, out = openssl_verify(control / "pilot/cacerts/root-cert.pem", chain, untrusted=chain, purpose="sslclient")
    assert ok, out
    leaf = primitives.load_certs(chain.read_bytes())[0]
    assert primitives.describe_name(leaf) == f"CN={pod_name}"
    assert primitives.san_values(leaf) == {f"spiffe://cluster.local/ns/{NS}/sa/higress-gateway"}
    outcome = _handshake(control, gateway_host, tmp)
    assert _ok(outcome), outcome


def assert_gateway_only_files(volumes: Path):
    """A gateway host writes gateway/ files and the delivered mesh, and keeps no CA key."""
    files = set(snapshot(volumes))
    assert files == {"gateway/certs/cert-chain.pem", "gateway/certs/key.pem", "gateway/certs/root-cert.pem",
                     "gateway/podinfo/labels", "pilot/config/mesh", "pilot/config/meshNetworks"}, files


def race(servers, tmp: Path, ns: str, controls: int, gateway: bool = True, held: bool = True):
    """`controls` control-plane hosts on fresh volumes (host i talks to servers[i % len]) and a
    gateway host, started at once; with `held`, every control plane is held just before it
    publishes its CA, then all are released together. Returns the control planes' volumes and
    results, and the gateway host's."""
    hosts = [tmp / f"cp{i}" for i in range(controls)]
    procs, pauses = [], []
    for i, volumes in enumerate(hosts):
        extra = {}
        if held:
            pause = tmp / f"pause{i}"
            pause.mkdir(parents=True)
            pauses.append(pause)
            extra["HIGRESS_INIT_PAUSE_AT"] = f"shared-ca:before-publish={pause}"
        procs.append(start(["run"], volumes, host_env(servers, ns, node=i % len(servers), **extra)))
    gw = tmp / "gw"
    gw_proc = start(["run"], gw, host_env(servers, ns, role="gateway", node=(controls) % len(servers),
                                          POD_NAME="gateway-c")) if gateway else None
    for proc, pause in zip(procs, pauses, strict=False):   # no pauses unless held
        _paused(proc, pause, "shared-ca:before-publish")
    for pause in pauses:
        _resume(pause, "shared-ca:before-publish")
    results = [finish(p) for p in procs]
    return hosts, results, gw, (finish(gw_proc) if gw_proc else None)


def assert_one_ca(servers, hosts, results, ns, tmp: Path, gw=None, gw_result=None):
    """Every host exited 0 with no rerun; exactly one published and holds the root key; every
    host's CA is the published one; the gateway host's certificate works with every pilot."""
    for r in results + ([gw_result] if gw_result else []):
        assert r.returncode == 0, r.stdout + r.stderr
    publishers = [h for h, r in zip(hosts, results, strict=True) if "published this host's pilot CA" in r.stdout]
    assert len(publishers) == 1, [r.stdout for r in results]
    winner = publishers[0]
    secret = published(servers[-1], ns)
    for host, r in zip(hosts, results, strict=True):
        assert local_ca(host) == secret, host
        if host != winner:
            assert "discarded the one generated here" in r.stdout or "took the CA" in r.stdout, r.stdout
    assert [h for h in hosts if (h / "pki/pilot-root-ca.key").exists()] == [winner]
    if gw is not None:
        assert (gw / "gateway/certs/root-cert.pem").read_bytes() == secret["root-cert.pem"]
        assert_gateway_joins(gw, winner, tmp, "gateway-c")
        assert_gateway_only_files(gw)
    index = servers[0].get_config("secrets.__names__", "DEFAULT_GROUP", ns)
    assert "higress-system/cacerts" in index.split()   # where the apiserver looks when kubectl lists Secrets
    return winner


def test_two_hosts_held_at_the_publication_on_the_cluster(cluster, tmp_path):
    """20 races of two control planes on different nodes, both released at the moment of publishing,
    with a gateway host on the third node: one CA, one root key, every run and rerun exit 0."""
    for round_ in range(20):
        ns = f"race2-{round_}-{os.getpid()}"
        hosts, results, gw, gw_result = race(cluster, tmp_path / f"r{round_}", ns, controls=2)
        winner = assert_one_ca(cluster, hosts, results, ns, tmp_path, gw, gw_result)
        other = next(h for h in hosts if h != winner)
        assert_gateway_joins(winner, other, tmp_path, "higress-gateway")
        for i, host in enumerate(hosts):
            before = snapshot(host)
            rerun = run_cli("run", volumes=host, env=host_env(cluster, ns, node=i))
            assert rerun.returncode == 0 and snapshot(host) == before, rerun.stdout + rerun.stderr


def test_three_hosts_held_at_the_publication_on_the_cluster(cluster, tmp_path):
    for round_ in range(10):
        ns = f"race3-{round_}-{os.getpid()}"
        hosts, results, gw, gw_result = race(cluster, tmp_path / f"r{round_}", ns, controls=3)
        assert_one_ca(cluster, hosts, results, ns, tmp_path, gw, gw_result)


@pytest.mark.parametrize("server", ["nacos-2.5.1", "nacos-3.0.1", "rnacos"])
def test_hosts_racing_on_one_standalone_server(server, real_nacos, rnacos, tmp_path):
    """Standalone Nacos answers the loser of two racing inserts "success" and keeps the winner's
    row: the database view decides. r-nacos ignores casMd5: its settle wait decides (3 races)."""
    node = rnacos() if server == "rnacos" else real_nacos(server.removeprefix("nacos-"))
    for round_ in range(3 if server == "rnacos" else 10):
        ns = f"race-{round_}-{os.getpid()}"
        hosts, results, gw, gw_result = race([node], tmp_path / f"r{round_}", ns, controls=2,
                                             held=server != "rnacos")
        assert_one_ca([node], hosts, results, ns, tmp_path, gw, gw_result)


def _paused(proc, pause: Path, point: str) -> None:
    """Wait (bounded) until the run `proc` holds at a HIGRESS_INIT_PAUSE_AT point."""
    marker = pause / (point.replace(":", "_") + ".paused")
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None and marker.exists(), finish(proc)


def _resume(pause: Path, point: str) -> None:
    (pause / (point.replace(":", "_") + ".resume")).touch()


def test_the_host_that_loses_the_first_publication_discards_its_ca(servers, tmp_path, ns):
    """A generated and committed its CA (pending) and found none published, then B (on another
    node) publishes: A's creation is refused, A takes B's CA from the database view, and its own
    (never published, never used) goes to backup/ with its root key."""
    point = "shared-ca:before-publish"
    a, b = tmp_path / "a", tmp_path / "b"
    pause = tmp_path / "pause"
    pause.mkdir()
    proc = start(["run"], a, host_env(servers, ns, HIGRESS_INIT_PAUSE_AT=f"{point}={pause}"))
    _paused(proc, pause, point)
    run_cli("run", volumes=b, env=host_env(servers, ns, node=1), check=True)
    _resume(pause, point)
    result = finish(proc)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "discarded the one generated here" in result.stdout
    assert local_ca(a) == local_ca(b) == published(servers[-1], ns)
    assert not (a / "pki/pilot-root-ca.key").exists()
    backed_up = {p.name for p in (a / "backup").rglob("*") if p.is_file()}
    assert {"pilot-root-ca.key", "root-cert.pem", "ca-key.pem"} <= backed_up, backed_up
    assert_gateway_joins(a, b, tmp_path, "higress-gateway")


@pytest.fixture
def deployment(servers, tmp_path, ns):
    """Host A, the control plane, after its first run."""
    a = tmp_path / "a"
    run_cli("run", volumes=a, env=host_env(servers, ns), check=True)
    return a


def test_gateway_host_with_the_copied_key_file(servers, deployment, tmp_path, ns):
    b = tmp_path / "b"
    (b / "api").mkdir(parents=True)
    shutil.copy(deployment / "api/nacos.key", b / "api/nacos.key")   # what to copy once
    env = host_env(servers, ns, role="gateway", NACOS_DATA_ENC_KEY=None, POD_NAME="gateway-b")
    result = run_cli("run", volumes=b, env=env, check=True)
    for phase in ("apiserver-pki", "kubeconfig", "tokens", "shared-ca", "seed"):   # the control plane's: not run here
        assert not re.search(rf"^{phase} ", result.stdout, re.M), result.stdout
    for phase in ("nacos", "pilot-pki", "pod-config", "write", "writable-dirs", "deliver"):   # its own list
        assert re.search(rf"^{phase} ", result.stdout, re.M), result.stdout
    assert "shared CA: using the deployment's pilot CA, which the control-plane host published in Nacos" in \
        result.stdout
    assert_gateway_joins(b, deployment, tmp_path, "gateway-b")
    assert (b / "pilot/config/mesh").read_text() == (deployment / "pilot/config/mesh").read_text()
    assert not (b / "pilot/cacerts").exists() and not (b / "pki").exists()
    before = snapshot(b)
    run_cli("run", volumes=b, env=env, check=True)
    assert snapshot(b) == before, "a rerun with nothing changed keeps every file"
    status = json.loads(run_cli("status", "--output", "json", volumes=b, env=env).stdout)
    rows = {r["name"]: r for r in status["files"]}
    assert status["healthy"], status
    assert rows["ca-in-use"]["chain_verified"] and rows["gateway (this host)"]["subject"] == "CN=gateway-b"
    assert rows["shared-ca"]["subject"] == rows["ca-in-use"]["subject"]
    a_status = json.loads(run_cli("status", "--output", "json", volumes=deployment,
                                  env=host_env(servers, ns)).stdout)
    assert a_status["healthy"] and {r["name"]: r for r in a_status["files"]}["ca-in-use"]["state"] == "ok"


def _refused(result, volumes: Path, before: dict, code: int, *words):
    assert result.returncode == code, (result.stdout, result.stderr)
    assert all(w in result.stderr for w in words), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert (snapshot(volumes) if volumes.exists() else {}) == before


def test_refusals_write_nothing(servers, deployment, tmp_path, ns):
    secret_before = servers[0].get_config("secrets.cacerts", NS, ns)
    b = tmp_path / "b"
    other_key = "another-key-0123456789abcdefghij"
    result = run_cli("run", volumes=b, env=host_env(servers, ns, role="gateway", NACOS_DATA_ENC_KEY=other_key))
    _refused(result, b, {}, 3, "does not decrypt", "api/nacos.key")
    result = run_cli("run", volumes=b, env=host_env(servers, ns, role="gateway", NACOS_DATA_ENC_KEY=None))
    _refused(result, b, {}, 2, "NACOS_DATA_ENC_KEY", "ROLE=gateway")
    # settings that make no sense for a gateway-only host
    for extra in ({"CONFIG_STORAGE": "file"}, {"ROTATE": "root"}, {"APISERVER_SANS": "gw.example"},
                  {"ROLE": "edge"}):
        result = run_cli("run", volumes=b, env={**host_env(servers, ns, role="gateway"), **extra})
        _refused(result, b, {}, 2, next(iter(extra)))

    # a host with its own, older CA (it ran alone, on the file store): it is given the deployment's
    # data key (it never stored a Secret in Nacos), then refused as a gateway host and as a control plane
    run_cli("run", volumes=b, env={"CA_KEY_ALGORITHM": "ecdsa-p256", "LEAF_KEY_ALGORITHM": "ecdsa-p256"}, check=True)
    shutil.copy(deployment / "api/nacos.key", b / "api/nacos.key")
    before = snapshot(b)
    # joining Nacos is a change of the settings it was made with: asked for on purpose
    changes = [arg for name in ("CONFIG_STORAGE", "NACOS_SERVER_URL", "NACOS_NS", "ROLE")
               for arg in ("--change-setting", name)]
    for role in ("gateway", "all"):
        result = run_cli("run", *changes, volumes=b,
                         env=host_env(servers, ns, role=role, NACOS_DATA_ENC_KEY=None, CONFIG_STORAGE="nacos"))
        _refused(result, b, before, 3, "differs from the one", "secrets/cacerts", "pilot/cacerts", "NACOS_NS")
    assert servers[0].get_config("secrets.cacerts", NS, ns) == secret_before, "the published CA is never replaced"


def test_rotation_on_the_control_plane_reaches_the_gateway_host(servers, deployment, tmp_path, ns):
    a = deployment
    b, a2 = tmp_path / "b", tmp_path / "a2"
    gateway = host_env(servers, ns, role="gateway", POD_NAME="gateway-b")
    control = host_env(servers, ns)
    run_cli("run", volumes=b, env=gateway, check=True)
    second = run_cli("run", volumes=a2, env=control, check=True)   # a second control-plane host adopts
    assert "took the CA" in second.stdout and local_ca(a2) == local_ca(a)
    refused = run_cli("rotate", "intermediate", volumes=a2, env=control)
    assert refused.returncode == 3 and "rotate on the host that holds it" in refused.stderr

    def rotate(*args) -> Path:
        """Rotate on A (which republishes), keep a copy of B as it was, rerun B and A2."""
        old_b = tmp_path / f"b-before-{'-'.join(args)}"
        shutil.copytree(b, old_b)
        run_cli("rotate", *args, volumes=a, env=control, check=True)
        assert published(servers[-1], ns) == local_ca(a)
        # pilot restarted with the new files, the gateway host not yet rerun: still talking
        assert _ok(_handshake(a, old_b, tmp_path)), f"after rotate {args}: new pilot, gateway host not rerun"
        rerun = run_cli("run", volumes=b, env=gateway, check=True)
        # a new intermediate: its gateway certificate re-issued; --finish: same certificate, fewer roots
        picked_up = r"updated 2, kept 1" if args == ("--finish",) else r"re-issued 1,"
        assert re.search(rf"^pilot-pki +{picked_up}", rerun.stdout, re.M), rerun.stdout
        assert_gateway_joins(b, a, tmp_path, "gateway-b")
        run_cli("run", volumes=a2, env=control, check=True)
        assert local_ca(a2) == local_ca(a), "the second control-plane host follows the rotation"
        assert _ok(_handshake(a2, b, tmp_path))
        status = json.loads(run_cli("status", "--output", "json", volumes=b, env=gateway).stdout)
        assert status["healthy"], [r for r in status["files"] if r["state"] != "ok"]
        return old_b

    before_intermediate = rotate("intermediate")
    first_intermediate = primitives.load_certs((before_intermediate / "gateway/certs/cert-chain.pem").read_bytes())[1]
    assert primitives.load_certs((b / "gateway/certs/cert-chain.pem").read_bytes())[1] != first_intermediate

    old_a = tmp_path / "a-before-root"
    shutil.copytree(a, old_a)
    rotate("root")
    roots = primitives.load_certs((b / "gateway/certs/root-cert.pem").read_bytes())
    assert len(roots) == 2, "during the overlap the gateway host trusts the new and the old root"
    assert _ok(_handshake(old_a, b, tmp_path)), "a pilot still on the old root accepts the rerun gateway host"
    rotate("--finish")
    assert len(primitives.load_certs((b / "gateway/certs/root-cert.pem").read_bytes())) == 1
    assert not _ok(_handshake(old_a, b, tmp_path)), "after --finish the old root is no longer trusted"


def test_timing_of_a_gateway_host_run(servers, deployment, tmp_path, ns):
    """For the record (no assertion on speed): a gateway-only host's cold and warm run."""
    env = host_env(servers, ns, role="gateway", POD_NAME="gateway-t", CA_KEY_ALGORITHM=None,
                   LEAF_KEY_ALGORITHM=None)
    times = {"cold": [], "warm": []}
    for i in range(3):
        volumes = tmp_path / f"t{i}"
        for kind in ("cold", "warm"):
            started = time.perf_counter()
            run_cli("run", volumes=volumes, env=env, check=True)
            times[kind].append(time.perf_counter() - started)
    print(f"\ngateway-host run against {len(servers)} node(s) (default key sizes): "
          + ", ".join(f"{k} {min(v):.2f}/{sorted(v)[1]:.2f}/{max(v):.2f}s" for k, v in times.items()))


def test_a_nacos_node_killed_during_the_gateway_run_then_restarted(cluster, tmp_path, ns):
    """The node the gateway host's run talks to is killed mid-run: the run goes on through the
    others; the node comes back, and a rerun through it changes nothing."""
    deployment = tmp_path / "a"
    run_cli("run", volumes=deployment, env=host_env(cluster, ns, node=1), check=True)
    b = tmp_path / "b"
    pause = tmp_path / "pause"
    pause.mkdir()
    env = host_env(cluster, ns, role="gateway", POD_NAME="gateway-b",
                   HIGRESS_INIT_PAUSE_AT=f"gateway:connected={pause}")
    proc = start(["run"], b, env)
    _paused(proc, pause, "gateway:connected")
    cluster[0].stop()   # the server the run found first, and talks to
    _resume(pause, "gateway:connected")
    result = finish(proc)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert_gateway_joins(b, deployment, tmp_path, "gateway-b")
    cluster[0].start().wait_ready()
    before = snapshot(b)
    rerun = run_cli("run", volumes=b, env=host_env(cluster, ns, role="gateway", POD_NAME="gateway-b"))
    assert rerun.returncode == 0 and snapshot(b) == before, rerun.stdout + rerun.stderr


def test_the_gateway_host_compose_file(tmp_path):
    """compose/docker-compose.gateway.yml: valid compose, the initializer (ROLE=gateway), its `watch`
    and the gateway, which mounts exactly what a gateway host's run writes and reaches pilot by its name."""
    import compose_schema

    from higress_init import settings
    path = compose_schema.REPO / "compose/docker-compose.gateway.yml"
    env = compose_schema.parse_env_file(compose_schema.COMPOSE_ENV)
    env.update(NACOS_SERVER_URL="http://10.0.0.5:8848/nacos", PILOT_ADDRESS="10.0.0.5", POD_NAME="gateway-2")
    doc = yaml.safe_load(compose_schema.interpolate(path.read_text(), env))
    for document in (yaml.safe_load(path.read_text()), doc):
        result = compose_schema.validate(document)
        assert result.returncode == 0, result.stdout + result.stderr
    services = doc["services"]
    assert set(services) == {"initializer", "watch", "gateway", "plugin-server"}   # plugin server: its profile
    assert services["plugin-server"]["profiles"] == ["plugin-server"]
    init, gateway = services["initializer"], services["gateway"]
    assert gateway["depends_on"] == {"initializer": {"condition": "service_completed_successfully"},
                                     "plugin-server": {"condition": "service_healthy", "required": False}}
    # the gateway's certificate is renewed too: `watch` with the initializer's image and settings
    watch = services["watch"]
    assert watch["command"][0] == "watch" and watch["environment"] == init["environment"]
    assert watch["volumes"] == init["volumes"] and watch["image"] == init["image"] and watch["init"] is True
    assert watch["depends_on"] == {"initializer": {"condition": "service_completed_successfully"}}
    assert init["environment"]["POD_NAME"] == gateway["environment"]["POD_NAME"] == "gateway-2"
    assert "pilot:10.0.0.5" in gateway["extra_hosts"]
    mounted = {spec.split(":")[0].replace("../volumes/", "") for spec in gateway["volumes"]}
    assert mounted == {"gateway/certs", "gateway/podinfo", "pilot/config"}
    # the initializer's settings as compose passes them are a valid gateway-only host (key file copied)
    (tmp_path / "api").mkdir()
    (tmp_path / "api/nacos.key").write_text(DATA_KEY)
    compose_env = {k: "" if v is None else str(v) for k, v in init["environment"].items()}   # as compose passes them
    loaded = settings.load(env={**compose_env, "VOLUMES_ROOT": str(tmp_path)})
    assert loaded.role == "gateway" and loaded.pod_name == "gateway-2" and loaded.config_storage == "nacos"
    assert loaded.higress_version == env["HIGRESS_VERSION"] == "2.2.4"


def test_a_pod_name_that_is_no_kubernetes_name_is_bad_input(tmp_path):
    result = run_cli("run", volumes=tmp_path / "v", env={"POD_NAME": "Gateway_2"})
    assert result.returncode == 2 and "POD_NAME" in result.stderr and not (tmp_path / "v").exists()


def test_a_gateway_host_speaks_of_its_compose_file_and_watch_renews_its_certificate(rnacos, tmp_path):
    """On a gateway-only host the run's next step is the gateway-host compose file, status finds its
    files (no "nothing is present"), and `watch` (its compose file runs one) renews its certificate,
    naming no control-plane service to restart."""
    node = rnacos()
    ns = f"gateway-host-{os.getpid()}"
    control, gateway_host = tmp_path / "control", tmp_path / "gateway"
    run_cli("run", volumes=control, env=host_env([node], ns), check=True)
    env = host_env([node], ns, role="gateway", POD_NAME="gateway-b")
    result = run_cli("run", volumes=gateway_host, env=env, check=True)
    lines = result.stdout.strip().splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("next "))
    done = " ".join(line.strip() for line in lines[start:])   # the next step, wrapped, then the summary
    assert "in compose/: docker compose -f docker-compose.gateway.yml up -d" in done, done
    assert "docker compose up -d" not in done
    assert "the control-plane host published in Nacos as secrets/cacerts" in result.stdout
    # status, as the gateway-host compose file runs it: the recorded settings, the data key from the environment
    status = run_cli("status", volumes=gateway_host, env={"NACOS_DATA_ENC_KEY": DATA_KEY})
    assert status.returncode == 0, status.stdout + status.stderr
    assert "nothing is present" not in status.stdout and "not in" not in status.stdout
    empty = run_cli("status", volumes=tmp_path / "elsewhere", env=env)
    assert empty.returncode == 1
    assert "this gateway host's files are not in" in empty.stdout and "docker-compose.gateway.yml" in empty.stdout
    # the certificate comes within RENEW_BEFORE: watch renews it; the gateway re-reads it, pilot is not here
    before = (gateway_host / "gateway/certs/cert-chain.pem").read_bytes()
    longer = {"CERT_VALIDITY": "500d", "TOKEN_VALIDITY": "500d", "RENEW_BEFORE": "370d"}
    changes = [arg for name in longer for arg in ("--change-setting", name)]
    watch = run_cli("watch", "--once", *changes, volumes=gateway_host, env={"NACOS_DATA_ENC_KEY": DATA_KEY, **longer})
    assert watch.returncode == 0, watch.stdout + watch.stderr
    assert (gateway_host / "gateway/certs/cert-chain.pem").read_bytes() != before
    assert "gateway pick up their renewed files without a restart" in watch.stdout
    assert "restart" not in watch.stdout.replace("without a restart", "")
    assert_gateway_joins(gateway_host, control, tmp_path, "gateway-b")
