"""Seeding every base object into real Nacos 2.5.1 and 3.0.1 (auth on) and r-nacos, in the
apiserver's data model, and delivering the stored higress-config from it."""
from __future__ import annotations

import base64
import json
import re

import pytest
import yaml
from base_objects import (
    NS,
    VERSIONS,
    assert_console_secret,
    assert_higress_config,
    assert_matches,
    expected,
    openssl_decrypt,
)
from conftest import run_cli, snapshot

UNCHANGED = "nothing the local phases read has changed"
CM = ("configmaps.higress-config", NS)
MESH, NETWORKS = "pilot/config/mesh", "pilot/config/meshNetworks"


@pytest.fixture
def node(nacos):
    return nacos


@pytest.fixture
def env(node, fast_env):
    return dict(fast_env, **node.client_env(), NACOS_WAIT_TIMEOUT="30s")


def _want(node, version=VERSIONS[0]):
    """The objects seeded for this server's settings (with credentials: the auth Secret too)."""
    env = node.client_env()
    credentials = (env["NACOS_USERNAME"], env["NACOS_PASSWORD"]) if "NACOS_USERNAME" in env else None
    return expected(nacos_host="127.0.0.1", nacos_port=node.server.http_port, credentials=credentials,
                    version=version)


def _group(plural):
    return "DEFAULT_GROUP" if plural == "gatewayclasses" else NS


def _stored(node, want) -> dict:
    return {key: node.get_config(f"{key[0]}.{key[1]}", _group(key[0])) for key in want}


def _indexes(node, want) -> dict:
    return {p: node.get_config(f"{p}.__names__", "DEFAULT_GROUP") for p in {k[0] for k in want}}


def _calls(output: str) -> int:
    return int(re.search(r"seeding made (\d+) calls", output).group(1))


def _check_every_object(node, volumes, want, version=VERSIONS[0]):
    key = (volumes / "api/nacos.key").read_bytes()
    for (plural, name), fields in want.items():
        content = node.get_config(f"{plural}.{name}", _group(plural))
        assert content is not None, (plural, name)
        if plural == "secrets":
            # stored as the apiserver stores Secrets: read back with an independent implementation
            assert content.startswith("enc|") and "data:" not in content
            content = openssl_decrypt(content, key)
        obj = assert_matches(content, fields, f"{plural}/{name}")
        if name == "higress-config":
            assert_higress_config(obj, version)
            assert obj["data"]["mesh"] == (volumes / MESH).read_text()
            assert obj["data"]["meshNetworks"] == (volumes / NETWORKS).read_text()
        if (plural, name) == ("secrets", "higress-console"):
            assert_console_secret(obj)
        # nothing in the public namespace or another group
        assert node.get_config(f"{plural}.{name}", _group(plural), tenant="") is None


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_seeded_field_by_field_and_a_rerun_changes_nothing(node, env, volumes, version):
    env = dict(env, HIGRESS_VERSION=version)
    want = _want(node, version)
    fresh = run_cli("run", volumes=volumes, env=env, check=True)
    _check_every_object(node, volumes, want, version)
    # each type's index lists its objects in the create form (cluster-scoped: `/<name>`)
    assert _indexes(node, want) == {
        "configmaps": "higress-system/higress-config\nhigress-system/higress-console\n",
        "mcpbridges": "higress-system/default\n",
        "secrets": "higress-system/cacerts\n" + ("higress-system/nacos-auth-default\n" if node.real else "")
                   + "higress-system/higress-console\n",
        "envoyfilters": "higress-system/higress-gateway-global-custom-response\n"
                        + ("higress-system/higress-http-resolver-cluster\n" if version == "2.2.4" else ""),
        "services": "higress-system/higress-gateway\n", "gatewayclasses": "/higress-gateway\n",
        "gateways": "higress-system/higress-gateway\n"}
    assert list((volumes / "data").iterdir()) == []  # the file store is not written with Nacos storage
    configs, indexes, files = _stored(node, want), _indexes(node, want), snapshot(volumes)
    rerun = run_cli("run", volumes=volumes, env=env, check=True)
    assert _stored(node, want) == configs and _indexes(node, want) == indexes and snapshot(volumes) == files
    fresh_calls, rerun_calls = _calls(fresh.stdout), _calls(rerun.stdout)
    print(f"\ncalls while seeding (HTTP and gRPC): fresh {fresh_calls}, rerun {rerun_calls}")
    # a rerun reads each object and each index once, and writes nothing
    assert rerun_calls <= len(want) + len(indexes) < fresh_calls
    status = run_cli("status", "--output", "json", volumes=volumes, env=env)
    report = json.loads(status.stdout)
    assert status.returncode == 0, status.stdout
    assert len(report["nacos"]["configs"]) == len(want) + len(indexes)
    assert all(c["present"] and c["as_seeded"] for c in report["nacos"]["configs"])


def test_a_deployment_made_for_2_1_2_upgrades_to_2_2_4_adding_only_what_is_missing(node, env, volumes):
    old = dict(env, HIGRESS_VERSION="2.1.2")
    run_cli("run", volumes=volumes, env=old, check=True)
    want_old, want_new = _want(node, "2.1.2"), _want(node, "2.2.4")
    configs, files = _stored(node, want_old), snapshot(volumes)
    assert node.get_config("envoyfilters.higress-http-resolver-cluster", NS) is None
    # the upgrade, on purpose (the deployment recorded 2.1.2)
    result = run_cli("run", "--change-setting", "HIGRESS_VERSION", volumes=volumes,
                     env=dict(env, HIGRESS_VERSION="2.2.4"), check=True)
    seed = next(line for line in result.stdout.splitlines() if line.startswith("seed "))
    assert seed.split()[1:3] == ["created", "1,"] and "updated 1" in seed, seed   # the object, its index line
    assert _stored(node, want_old) == configs and snapshot(volumes) == files   # nothing else changed
    added = node.get_config("envoyfilters.higress-http-resolver-cluster", NS)
    assert_matches(added, want_new[("envoyfilters", "higress-http-resolver-cluster")], "the EnvoyFilter")
    assert_higress_config(yaml.safe_load(configs[("configmaps", "higress-config")]), "2.1.2")   # kept as it was
    assert node.get_config("envoyfilters.__names__", "DEFAULT_GROUP") == \
        "higress-system/higress-gateway-global-custom-response\nhigress-system/higress-http-resolver-cluster\n"
    status = run_cli("status", "--output", "json", volumes=volumes, env=env)
    report = json.loads(status.stdout)
    assert status.returncode == 0 and [r["version"] for r in report["seeded_for"]] == ["2.1.2", "2.2.4"]
    assert all(c["present"] for c in report["nacos"]["configs"])


def test_with_credentials_the_auth_secret_and_the_bridge_reference_it(node, rnacos, tmp_path, fast_env):
    if not node.real:   # the real servers run with auth on; r-nacos is started with it here
        node = type(node)(node.kind, rnacos("auth", auth=True, password="s3cret-pw"), node.ns)
    volumes = tmp_path / "v"
    env = dict(fast_env, **node.client_env(), NACOS_WAIT_TIMEOUT="60s")
    password = env["NACOS_PASSWORD"]
    result = run_cli("run", volumes=volumes, env=env, check=True)
    assert password not in result.stdout + result.stderr
    want = _want(node)
    assert ("secrets", "nacos-auth-default") in want
    _check_every_object(node, volumes, want)
    stored = node.get_config("secrets.nacos-auth-default", NS)
    # neither plain nor merely base64'd
    assert password not in stored and base64.b64encode(password.encode()).decode() not in stored
    assert node.get_config("secrets.__names__", "DEFAULT_GROUP") == \
        "higress-system/cacerts\nhigress-system/nacos-auth-default\nhigress-system/higress-console\n"


def _as_the_apiserver_rewrites(node, want):
    """What the apiserver's refresh loop leaves: every index as `<group>/<plural>.<name>` lines,
    listing what a blur search for `<plural>.*` finds (on Nacos that includes the index itself)."""
    for plural in {k[0] for k in want}:
        lines = [f"{_group(p)}/{p}.{n}" for p, n in want if p == plural] + [f"DEFAULT_GROUP/{plural}.__names__"]
        if plural == "secrets":   # the pilot CA every Nacos deployment shares (sharedca) is a Secret too
            lines.append(f"{NS}/secrets.cacerts")
        node.publish_config(f"{plural}.__names__", "DEFAULT_GROUP", "\n".join(lines) + "\n")


def test_a_rerun_against_a_store_the_apiserver_wrote_into_changes_nothing(node, env, volumes):
    want = _want(node)
    run_cli("run", volumes=volumes, env=env, check=True)
    _as_the_apiserver_rewrites(node, want)
    node.publish_config("ingresses.__names__", "DEFAULT_GROUP", "EMPTY")  # a type with no objects
    configs, indexes = _stored(node, want), _indexes(node, want)
    result = run_cli("run", volumes=volumes, env=env, check=True)
    assert _stored(node, want) == configs and _indexes(node, want) == indexes
    assert node.get_config("ingresses.__names__", "DEFAULT_GROUP") == "EMPTY"
    seed = next(line for line in result.stdout.splitlines() if line.startswith("seed "))
    assert seed.split()[1:3] == ["kept", str(len(want) + len(indexes))], seed
    assert "every base object is present" in result.stdout  # and says so
    assert run_cli("status", volumes=volumes, env=env).returncode == 0


def test_an_empty_index_counts_as_no_lines(node, env, volumes):
    run_cli("run", volumes=volumes, env=env, check=True)
    # the user deleted the Service through the apiserver: it wrote EMPTY into the index
    node.delete_config("services.higress-gateway", NS)
    node.publish_config("services.__names__", "DEFAULT_GROUP", "EMPTY")
    run_cli("run", volumes=volumes, env=env, check=True)
    assert yaml.safe_load(node.get_config("services.higress-gateway", NS))["kind"] == "Service"
    assert node.get_config("services.__names__", "DEFAULT_GROUP") == "higress-system/higress-gateway\n"


def _edit_stored_mesh(node, change):
    cm = yaml.safe_load(node.get_config(*CM))
    cm["data"]["mesh"] = change(cm["data"]["mesh"])
    node.publish_config(*CM, yaml.safe_dump(cm))
    return cm["data"]["mesh"]


def test_an_edit_in_nacos_reaches_the_mesh_files_even_on_the_fast_path(node, env, volumes):
    run_cli("run", volumes=volumes, env=env, check=True)
    new = _edit_stored_mesh(node, lambda m: m.replace("dnsRefreshRate: 200s", "dnsRefreshRate: 30s"))
    result = run_cli("run", volumes=volumes, env=env, check=True)
    assert UNCHANGED in result.stdout  # the local phases were skipped, delivery was not
    assert (volumes / MESH).read_text() == new
    assert run_cli("status", volumes=volumes, env=env).returncode == 0


def test_a_broken_mesh_in_nacos_is_refused_and_the_files_keep_their_text(node, env, volumes):
    run_cli("run", volumes=volumes, env=env, check=True)
    files = {rel: (volumes / rel).read_bytes() for rel in (MESH, NETWORKS)}
    _edit_stored_mesh(node, lambda m: m.replace("  discoveryAddress: pilot:15012\n", ""))
    result = run_cli("run", volumes=volumes, env=env)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "configmaps/higress-config" in result.stderr and "discoveryAddress" in result.stderr
    assert f"dataId {CM[0]}" in result.stderr
    assert {rel: (volumes / rel).read_bytes() for rel in files} == files
    status = run_cli("status", volumes=volumes, env=env)
    assert status.returncode == 1 and "discoveryAddress" in status.stdout


@pytest.mark.parametrize("version", VERSIONS)
def test_a_stored_mesh_passes_its_release_field_list_and_an_unknown_field_is_refused(node, env, volumes, version):
    env = dict(env, HIGRESS_VERSION=version)
    run_cli("run", volumes=volumes, env=env, check=True)
    istio_1_27 = "inboundTrafficPolicy:\n  mode: LOCALHOST\nserviceScopeConfigs:\n- scope: GLOBAL\n"
    new = _edit_stored_mesh(node, lambda m: m + istio_1_27)
    result = run_cli("run", volumes=volumes, env=env)
    if version == "2.2.4":   # Istio 1.27's fields: delivered
        assert result.returncode == 0, result.stderr
        assert (volumes / MESH).read_text() == new
    else:
        assert result.returncode == 3 and "inboundTrafficPolicy, serviceScopeConfigs" in result.stderr, result.stderr
        assert istio_1_27 not in (volumes / MESH).read_text()
    _edit_stored_mesh(node, lambda m: m + "notAMeshField: 1\n")
    result = run_cli("run", volumes=volumes, env=env)
    assert result.returncode == 3 and "unknown top-level key(s)" in result.stderr, result.stderr
    assert "notAMeshField" in result.stderr and f"Higress {version}" in result.stderr


def test_a_mesh_file_edited_here_is_refused_then_pushed_into_nacos(node, env, volumes):
    run_cli("run", volumes=volumes, env=env, check=True)
    edited = (volumes / MESH).read_text().replace("dnsRefreshRate: 200s", "dnsRefreshRate: 45s")
    (volumes / MESH).write_text(edited)
    stored = node.get_config(*CM)
    result = run_cli("run", volumes=volumes, env=env)
    assert result.returncode == 3 and "--push-mesh" in result.stderr and "remove the file" in result.stderr
    assert node.get_config(*CM) == stored and (volumes / MESH).read_text() == edited
    run_cli("run", "--push-mesh", volumes=volumes, env=env, check=True)
    assert yaml.safe_load(node.get_config(*CM))["data"]["mesh"] == edited
    before = (node.get_config(*CM), snapshot(volumes))
    run_cli("run", volumes=volumes, env=env, check=True)
    assert (node.get_config(*CM), snapshot(volumes)) == before


def test_reseed_remakes_the_objects_but_never_the_random_console_secret(node, env, volumes):
    run_cli("run", volumes=volumes, env=env, check=True)
    console_secret = node.get_config("secrets.higress-console", NS)
    node.publish_config("services.higress-gateway", NS, "user: edit\n")
    result = run_cli("run", "--reseed", volumes=volumes, env=env, check=True)
    assert yaml.safe_load(node.get_config("services.higress-gateway", NS))["kind"] == "Service"
    assert node.get_config("secrets.higress-console", NS) == console_secret
    seed = next(line for line in result.stdout.splitlines() if line.startswith("seed "))
    remade = len(_want(node)) - 1   # all but the random console Secret (with credentials: the auth Secret too)
    assert f"updated {remade}," in seed and "kept 8" in seed, seed  # the console Secret and 7 indexes kept


def test_plan_writes_nothing_into_nacos_and_lists_what_run_does(node, env, volumes):
    from test_plan import _actions, _events
    plan = _events(run_cli("plan", "--log-format", "json", volumes=volumes, env=env, check=True))
    assert node.ns not in node.namespaces() and not volumes.exists()
    done = _events(run_cli("run", "--log-format", "json", volumes=volumes, env=env, check=True))
    assert _actions(plan) == _actions(done)
    assert ("seed", "created", "configmaps/higress-config") in _actions(plan)
    node.delete_config("mcpbridges.default", NS)
    plan = _events(run_cli("plan", "--log-format", "json", volumes=volumes, env=env, check=True))
    assert node.get_config("mcpbridges.default", NS) is None
    done = _events(run_cli("run", "--log-format", "json", volumes=volumes, env=env, check=True))
    assert _actions(plan) == _actions(done) == {("seed", "created", "mcpbridges/default")}
