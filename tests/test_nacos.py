"""Nacos storage, against a real r-nacos server (single node and a three-node raft cluster)."""
from __future__ import annotations

import json
import os
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
def node(tmp_path):
    n = RNacosNode(tmp_path / "rnacos").start().wait_ready()
    yield n
    n.stop()


@pytest.fixture
def env(node, fast_env):
    return dict(fast_env, NACOS_SERVER_URL=node.url, NACOS_WAIT_TIMEOUT="30s")


def _configs(node, ns=NS) -> dict:
    return {key: node.get_config(*key, ns) for key in (CM, INDEX)}


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
    assert NS in node.namespaces()
    content = node.get_config(*CM, NS)
    cm = yaml.safe_load(content)
    assert cm["kind"] == "ConfigMap" and cm["apiVersion"] == "v1"
    assert cm["metadata"]["name"] == "higress-config" and cm["metadata"]["namespace"] == NS
    assert "creationTimestamp" in cm["metadata"]
    assert cm["data"]["mesh"] == (volumes / "pilot/config/mesh").read_text()
    assert cm["data"]["meshNetworks"] == (volumes / "pilot/config/meshNetworks").read_text()
    assert node.get_config(*INDEX, NS) == "higress-system/higress-config\nhigress-system/higress-console\n"
    # configs live in the namespace, not in the public one
    assert node.get_config(*CM, "") is None
    # in Nacos mode the file store is not written (its directory exists for the compose mount)
    assert list((volumes / "data").iterdir()) == []
    assert "seeding made" in result.stdout
    status = run_cli("status", "--output", "json", volumes=volumes, env=env)
    report = json.loads(status.stdout)
    assert status.returncode == 0 and report["nacos"]["reachable"] and report["nacos"]["version"] == "2.x"
    assert report["nacos"]["server_version"] is None  # r-nacos has no server state endpoint
    assert report["nacos"]["namespace_present"] is True
    assert all(c["present"] and c["as_seeded"] for c in report["nacos"]["configs"])


def test_plan_against_nacos_writes_nothing(node, env, volumes):
    result = run_cli("plan", volumes=volumes, env=env, check=True)
    assert "would create" in result.stdout and not volumes.exists()
    assert NS not in node.namespaces() and node.get_config(*CM, NS) is None


def test_url_without_the_context_path_works(node, env, volumes):
    env["NACOS_SERVER_URL"] = node.url.removesuffix("/nacos")
    run_cli("run", volumes=volumes, env=env, check=True)
    assert node.get_config(*CM, NS) is not None


def test_rerun_changes_nothing(node, env, volumes):
    run_cli("run", volumes=volumes, env=env, check=True)
    before, files = _configs(node), snapshot(volumes)
    result = run_cli("run", volumes=volumes, env=env, check=True)
    assert _configs(node) == before and snapshot(volumes) == files
    assert "created" not in result.stdout.splitlines()[-1]


def test_nacos_is_checked_even_when_the_volumes_are_unchanged(node, env, volumes):
    run_cli("run", volumes=volumes, env=env, check=True)
    node.delete_config(*CM, NS)
    result = run_cli("run", volumes=volumes, env=env, check=True)
    assert "nothing the local phases read has changed" in result.stdout  # the fast path, and yet:
    assert yaml.safe_load(node.get_config(*CM, NS))["metadata"]["name"] == "higress-config"


def test_user_edited_config_survives_and_status_says_so(node, env, volumes):
    run_cli("run", volumes=volumes, env=env, check=True)
    edited = node.get_config(*CM, NS).replace("dnsRefreshRate: 200s", "dnsRefreshRate: 30s")
    node.publish_config(*CM, NS, edited)
    run_cli("run", volumes=volumes, env=env, check=True)
    assert node.get_config(*CM, NS) == edited
    report = json.loads(run_cli("status", "--output", "json", volumes=volumes, env=env).stdout)
    cm = next(c for c in report["nacos"]["configs"] if c["dataId"] == CM[0])
    assert cm["present"] is True and cm["as_seeded"] is False


def test_names_index_keeps_existing_lines(node, env, volumes):
    run_cli("phase", "nacos", volumes=volumes, env=env, check=True)
    node.publish_config(*INDEX, NS, "higress-system/other-config\n")
    run_cli("run", volumes=volumes, env=env, check=True)
    assert node.get_config(*INDEX, NS) == \
        "higress-system/other-config\nhigress-system/higress-config\nhigress-system/higress-console\n"


def test_reseed_rewrites_the_base_config(node, env, volumes):
    run_cli("run", volumes=volumes, env=env, check=True)
    node.publish_config(*CM, NS, "user: edit\n")
    result = run_cli("run", "--reseed", volumes=volumes, env=env, check=True)
    assert yaml.safe_load(node.get_config(*CM, NS))["kind"] == "ConfigMap"
    assert "updated" in result.stdout


def test_reseed_racing_a_concurrent_edit_never_loses_the_edit(node, env, volumes, tmp_path):
    run_cli("run", volumes=volumes, env=env, check=True)
    pause_dir = tmp_path / "pause"
    pause_dir.mkdir()
    proc = _popen(["run", "--reseed"], dict(env, HIGRESS_INIT_PAUSE_AT=f"reseed:after-read={pause_dir}"), volumes)
    _wait_for(pause_dir / "reseed_after-read.paused", proc)
    node.publish_config(*CM, NS, "concurrent: edit\n")  # lands between the read and the write
    (pause_dir / "reseed_after-read.resume").touch()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 6, (out, err)
    assert "changed while the initializer was writing it" in err and "nothing was overwritten" in err
    assert node.get_config(*CM, NS) == "concurrent: edit\n"


def test_a_64_kib_config_round_trips(node, env, volumes):
    from higress_init import meshconfig
    from higress_init.settings import load
    mesh = volumes / "pilot/config/mesh"  # left by an earlier version: adopted into the store
    big = meshconfig.mesh_text(load(env={})) + "".join(f"# padding line {i:05d} " + "x" * 48 + "\n"
                                                       for i in range(1000))
    assert len(big) > 64 * 1024
    mesh.parent.mkdir(parents=True)
    mesh.write_text(big)
    run_cli("run", volumes=volumes, env=env, check=True)
    assert yaml.safe_load(node.get_config(*CM, NS))["data"]["mesh"] == big


def test_auth_on_with_the_right_and_a_wrong_password(tmp_path, fast_env):
    node = RNacosNode(tmp_path / "auth", auth=True, password="s3cret-pw").start().wait_ready()
    try:
        base = dict(fast_env, NACOS_SERVER_URL=node.url, NACOS_USERNAME="admin", NACOS_WAIT_TIMEOUT="600s")
        wrong = run_cli("run", volumes=tmp_path / "v-wrong", env=dict(base, NACOS_PASSWORD="nope"), timeout=60)
        assert wrong.returncode == 5, (wrong.stdout, wrong.stderr)
        assert "rejected the login" in wrong.stderr and "admin" in wrong.stderr and "nope" not in wrong.stderr
        assert not (tmp_path / "v-wrong/api").exists()
        secret = tmp_path / "pw"
        secret.write_text("s3cret-pw\n")
        ok = run_cli("run", volumes=tmp_path / "v", env=dict(base, NACOS_PASSWORD_FILE=str(secret)))
        assert ok.returncode == 0, (ok.stdout, ok.stderr)
        assert "s3cret-pw" not in ok.stdout + ok.stderr
        assert node.get_config(*CM, NS) is not None
    finally:
        node.stop()


def test_nacos_started_after_the_initializer(tmp_path, fast_env):
    node = RNacosNode(tmp_path / "late")
    volumes = tmp_path / "v"
    proc = _popen(["run"], dict(fast_env, NACOS_SERVER_URL=node.url, NACOS_WAIT_TIMEOUT="60s"), volumes)
    time.sleep(3)
    node.start()
    try:
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


def test_nacos_killed_during_seeding_then_a_rerun_completes(node, env, volumes, tmp_path):
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
    node.publish_config("secrets.__names__", "DEFAULT_GROUP", NS, "higress-system/some-secret\n")
    result = run_cli("run", volumes=volumes, env=env)
    assert result.returncode == 3, (result.stdout, result.stderr)
    for way in ("empty the namespace", "use another one", "supply the old key"):
        assert way in result.stderr
    assert [p.name for p in volumes.rglob("*") if p.is_file()] == ["lock"]
    assert node.get_config(*CM, NS) is None
    # the old key supplied: fine
    run_cli("run", volumes=volumes, env=dict(env, NACOS_DATA_ENC_KEY="k" * 32), check=True)
    # another namespace: fine
    run_cli("run", volumes=tmp_path / "v2", env=dict(env, NACOS_NS="other-ns"), check=True)
    assert node.get_config(*CM, "other-ns") is not None


def test_three_node_cluster_with_the_first_node_down(tmp_path, fast_env):
    nodes = start_cluster(tmp_path / "cluster")
    try:
        nodes[0].stop()
        urls = ",".join(n.url for n in nodes)
        result = run_cli("run", volumes=tmp_path / "v", env=dict(fast_env, NACOS_SERVER_URL=urls, NACOS_WAIT_TIMEOUT="60s"))
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
