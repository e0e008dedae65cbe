"""Rerun to rotate: renewal, leaf/intermediate/root rotation with a trust overlap, crash safety."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import run_cli, snapshot
from consumers import kubectl_version, mtls_handshake, mtls_https_server, openssl_verify
from cryptography.hazmat.primitives.asymmetric import ec
from test_tokens import verify_joserfc, verify_pyjwt

from higress_init.pki import primitives

CA_FILES = ["api/ca.crt", "pki/apiserver-ca.key", "pilot/cacerts/root-cert.pem", "pki/pilot-root-ca.key",
            "pilot/cacerts/ca-cert.pem", "pilot/cacerts/ca-key.pem", "api/nacos.key"]


@pytest.fixture(autouse=True)
def small_keys(monkeypatch, fast_env):
    """Every CLI call in this module uses the same small keys, so no call changes algorithms."""
    for name, value in fast_env.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def stack(tmp_path, fast_env):
    volumes = tmp_path / "volumes"
    run_cli("run", volumes=volumes, env=fast_env, check=True)
    return volumes


def _copy(volumes: Path, to: Path) -> Path:
    shutil.copytree(volumes, to)
    return to


def _changed(before, after):
    return {k for k in set(before) | set(after) if before.get(k) != after.get(k) and not k.startswith("backup/")}


def _pilot_server(v: Path):
    """A serving certificate the way pilot issues one from the plug-in CA in `v`."""
    ca_cert = primitives.load_certs((v / "pilot/cacerts/ca-cert.pem").read_bytes())[0]
    ca_key = primitives.load_key((v / "pilot/cacerts/ca-key.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    request = primitives.CertificateRequest(None, server_auth=True, client_auth=True, dns_names=("pilot",),
                                     uris=("spiffe://cluster.local/ns/higress-system/sa/higress-pilot",))
    cert = primitives.issue(request, key, ca_cert, ca_key, datetime.now(UTC))
    return primitives.cert_to_pem(cert) + (v / "pilot/cacerts/cert-chain.pem").read_bytes(), primitives.key_to_pem(key)


def _handshake(server_side: Path, client_side: Path, tmp: Path) -> dict:
    """pilot (as configured in server_side) serving xDS to the gateway files in client_side."""
    chain, key = _pilot_server(server_side)
    work = tmp / f"hs-{len(list(tmp.glob('hs-*')))}"
    work.mkdir()
    return mtls_handshake(chain, key, server_side / "pilot/cacerts/root-cert.pem",
                          client_side / "gateway/certs/cert-chain.pem", client_side / "gateway/certs/key.pem",
                          client_side / "gateway/certs/root-cert.pem", "pilot", work)


def _ok(outcome) -> bool:
    return "client_error" not in outcome and "server_error" not in outcome and outcome.get("data") == b"ok"


def _verify_all_chains(v: Path):
    for cafile, cert, untrusted, purpose in [
        ("api/ca.crt", "api/server.crt", "api/server.crt", "sslserver"),
        ("api/ca.crt", "pki/admin.crt", "pki/admin.crt", "sslclient"),
        ("pilot/cacerts/root-cert.pem", "pilot/cacerts/ca-cert.pem", None, None),
        ("gateway/certs/root-cert.pem", "gateway/certs/cert-chain.pem", "gateway/certs/cert-chain.pem", "sslclient"),
    ]:
        ok, out = openssl_verify(v / cafile, v / cert, untrusted=v / untrusted if untrusted else None, purpose=purpose)
        assert ok, f"{cert}: {out}"


def test_rotate_leaf_reissues_leaves_and_tokens_from_the_same_cas(stack, tmp_path):
    before = snapshot(stack)
    old_tokens = {p: (stack / p).read_text() for p in ("console/token", "gateway/tokens/istio-token")}
    result = run_cli("rotate", volumes=stack, check=True)
    after = snapshot(stack)
    assert _changed(before, after) == {
        "api/server.crt", "api/server.key", "pki/admin.crt", "pki/admin.key", "kube/config", "kube/host.config",
        "controller/kube/client.crt", "controller/kube/client.key", "pilot/kube/client.crt", "pilot/kube/client.key",
        "pki/console.crt", "pki/console.key", "console/kube/config",
        "gateway/certs/cert-chain.pem", "gateway/certs/key.pem",
        "console/token", "controller/token", "gateway/tokens/istio-token"}
    assert "rotation: leaf" in result.stdout
    _verify_all_chains(stack)
    backups = {"/".join(p.relative_to(stack / "backup").parts[1:])  # backup/<timestamp>/<path>
               for p in (stack / "backup").rglob("*") if p.is_file()}
    assert {"api/server.crt", "pki/admin.key", "console/token"} <= backups
    jwks = json.loads((stack / "tokens/jwks.json").read_text())
    for path, old in old_tokens.items():  # same signing key: old tokens still verify too
        verify_pyjwt(old, jwks, "istio-ca")
        verify_joserfc((stack / path).read_text(), jwks, "istio-ca")
    assert run_cli("status", volumes=stack).returncode == 0


def test_rotate_leaf_through_the_environment_as_compose_does(stack):
    before = snapshot(stack)
    run_cli("run", volumes=stack, env={"ROTATE": "leaf"}, check=True)
    assert "api/server.crt" in _changed(before, snapshot(stack))


def test_rotate_intermediate_keeps_the_root(stack, tmp_path):
    old = _copy(stack, tmp_path / "old")
    before = snapshot(stack)
    run_cli("rotate", "intermediate", volumes=stack, check=True)
    changed = _changed(before, snapshot(stack))
    assert {"pilot/cacerts/ca-cert.pem", "pilot/cacerts/ca-key.pem", "pilot/cacerts/cert-chain.pem",
            "gateway/certs/cert-chain.pem", "gateway/certs/key.pem"} == changed
    _verify_all_chains(stack)
    # pilot restarted with the new intermediate, gateway not yet, and the reverse
    assert _ok(_handshake(stack, old, tmp_path)) and _ok(_handshake(old, stack, tmp_path))
    assert _ok(_handshake(stack, stack, tmp_path))


def test_root_rotation_overlap_then_finish(stack, tmp_path):
    old = _copy(stack, tmp_path / "old")
    run_cli("rotate", "root", volumes=stack, check=True)
    new = stack
    for rel in ("pki/apiserver-ca.key", "pki/pilot-root-ca.key", "pilot/cacerts/ca-key.pem", "pki/sa.key"):
        assert (new / rel).read_bytes() != (old / rel).read_bytes(), rel
    assert (new / "api/nacos.key").read_bytes() == (old / "api/nacos.key").read_bytes()
    # trust files list new and old roots
    for rel in ("api/ca.crt", "pilot/cacerts/root-cert.pem", "gateway/certs/root-cert.pem"):
        roots = primitives.load_certs((new / rel).read_bytes())
        assert len(roots) == 2 and roots[1] == primitives.load_certs((old / rel).read_bytes())[0], rel
    _verify_all_chains(new)
    # a peer that still trusts only the old root accepts the new certificates (cross-signed)
    ok, out = openssl_verify(old / "gateway/certs/root-cert.pem", new / "gateway/certs/cert-chain.pem",
                             untrusted=new / "gateway/certs/cert-chain.pem")
    assert ok, out
    ok, out = openssl_verify(old / "api/ca.crt", new / "api/server.crt", untrusted=new / "api/server.crt")
    assert ok, out
    # every pairing of old and new, with components restarted in any order
    assert _ok(_handshake(old, new, tmp_path)), "old pilot, new gateway"
    assert _ok(_handshake(new, old, tmp_path)), "new pilot, old gateway"
    assert _ok(_handshake(new, new, tmp_path))
    with mtls_https_server(new / "api/server.crt", new / "api/server.key", new / "api/ca.crt") as url:
        assert kubectl_version(new / "kube/config", url).returncode == 0
        assert kubectl_version(old / "kube/config", url).returncode == 0, "old client, new apiserver"
    with mtls_https_server(old / "api/server.crt", old / "api/server.key", old / "api/ca.crt") as url:
        result = kubectl_version(new / "kube/config", url)
        assert result.returncode == 0, "new client, old apiserver: " + result.stderr
    # tokens signed with the old key keep verifying during the overlap
    jwks = json.loads((new / "tokens/jwks.json").read_text())
    assert len(jwks["keys"]) == 2
    verify_pyjwt((old / "console/token").read_text(), jwks, "istio-ca")
    verify_joserfc((new / "console/token").read_text(), jwks, "istio-ca")
    status = json.loads(run_cli("status", "--output", "json", volumes=new).stdout)
    assert status["healthy"] and {r["root"] for r in status["rotation"]} == {"apiserver-ca", "pilot-root-ca"}
    # a second root rotation before finishing is refused
    refused = run_cli("rotate", "root", volumes=new)
    assert refused.returncode == 3 and "rotate finish" in refused.stderr

    mid = _copy(new, tmp_path / "mid")
    run_cli("rotate", "--finish", volumes=new, check=True)
    for rel in ("api/ca.crt", "pilot/cacerts/root-cert.pem", "gateway/certs/root-cert.pem"):
        assert len(primitives.load_certs((new / rel).read_bytes())) == 1, rel
    assert len(primitives.load_certs((new / "gateway/certs/cert-chain.pem").read_bytes())) == 2
    _verify_all_chains(new)
    assert not _ok(_handshake(old, new, tmp_path)), "old pilot must no longer accept the new gateway"
    assert not _ok(_handshake(new, old, tmp_path)), "an old gateway must no longer accept the new pilot"
    assert _ok(_handshake(new, new, tmp_path)) and _ok(_handshake(mid, new, tmp_path))
    with mtls_https_server(old / "api/server.crt", old / "api/server.key", old / "api/ca.crt") as url:
        assert kubectl_version(new / "kube/config", url).returncode != 0
    with mtls_https_server(new / "api/server.crt", new / "api/server.key", new / "api/ca.crt") as url:
        assert kubectl_version(new / "kube/config", url).returncode == 0
    assert len(json.loads((new / "tokens/jwks.json").read_text())["keys"]) == 1
    status = json.loads(run_cli("status", "--output", "json", volumes=new).stdout)
    assert status["healthy"] and status["rotation"] == []
    # nothing deleted: the old roots and cross certificates are in backup/
    backed_up = [p.name for p in (new / "backup").rglob("*.previous.crt")]
    assert sorted(backed_up) == ["apiserver-ca.previous.crt", "pilot-root-ca.previous.crt"]


def test_rotation_of_an_external_ca_is_refused(stack):
    (stack / "pki/apiserver-ca.key").unlink()
    before = snapshot(stack)
    result = run_cli("rotate", "root", volumes=stack)
    assert result.returncode == 3 and "externally managed" in result.stderr
    assert snapshot(stack) == before


def test_bad_rotate_setting(stack):
    result = run_cli("run", volumes=stack, env={"ROTATE": "everything"})
    assert result.returncode == 2 and "ROTATE" in result.stderr and "leaf, intermediate, root, finish" in result.stderr


def test_renewal_window_reissues_only_what_is_inside_it(tmp_path, fast_env):
    volumes = tmp_path / "v"
    run_cli("run", volumes=volumes, env=dict(fast_env, CERT_VALIDITY="40d", TOKEN_VALIDITY="400d"), check=True)
    before = snapshot(volumes)
    # leaves now have just under 40 days left: inside a 40-day window, tokens (400d) are not
    env = dict(fast_env, CERT_VALIDITY="41d", RENEW_BEFORE="40d", TOKEN_VALIDITY="400d")
    run_cli("run", "--change-setting", "CERT_VALIDITY", "--change-setting", "RENEW_BEFORE", volumes=volumes, env=env,
            check=True)
    changed = _changed(before, snapshot(volumes))
    assert changed == {"api/server.crt", "api/server.key", "pki/admin.crt", "pki/admin.key", "kube/config",
                       "kube/host.config",
                       "controller/kube/client.crt", "controller/kube/client.key", "pilot/kube/client.crt",
                       "pilot/kube/client.key", "pki/console.crt", "pki/console.key", "console/kube/config",
                       "gateway/certs/cert-chain.pem", "gateway/certs/key.pem"}, changed
    again = snapshot(volumes)
    run_cli("run", volumes=volumes, env=env, check=True)
    assert snapshot(volumes) == again


def test_nacos_key_is_never_rotated(stack):
    key = (stack / "api/nacos.key").read_bytes()
    for kind in ("leaf", "intermediate", "root"):
        run_cli("rotate", kind, volumes=stack, check=True)
        if kind == "root":
            run_cli("rotate", "--finish", volumes=stack, check=True)
    assert (stack / "api/nacos.key").read_bytes() == key


# --- crash safety: SIGKILL at one point of each distinct code path, then rerun. Before the write
# phase nothing is on disk (one case); after it, each later phase boundary; inside a file's write
# in each of the three commits (write phase, seed, deliver: every file goes through the same
# loop); after the journal is written; inside the renames.
DIE_POINTS = ["phase:write", "phase:writable-dirs", "phase:seed", "phase:deliver",
              "write:ca.crt", "write:higress-config.yaml", "write:mesh", "commit:journal", "rename:ca.crt"]


def _backup_files(volumes: Path) -> dict:
    return {k: v[0] for k, v in snapshot(volumes).items() if k.startswith("backup/")}


def _assert_whole(volumes: Path):
    """No file is partial: every PEM parses (status), and no temporary is left."""
    status = run_cli("status", volumes=volumes)
    assert status.returncode == 0, status.stdout
    assert not list(volumes.rglob(".higress-init-tmp.*"))


@pytest.mark.parametrize("point", DIE_POINTS)
def test_killed_during_a_cold_run_then_rerun(tmp_path, fast_env, point):
    volumes = tmp_path / "v"
    died = run_cli("run", volumes=volumes, env=dict(fast_env, HIGRESS_INIT_DIE_AT=point))
    assert died.returncode == -9, (point, died.stdout, died.stderr)
    partial = snapshot(volumes) if volumes.exists() else {}
    run_cli("run", volumes=volumes, env=fast_env, check=True)
    _assert_whole(volumes)
    final = snapshot(volumes)
    for rel in CA_FILES:  # a CA written before the kill is the one kept
        if rel in partial:
            assert final[rel][0] == partial[rel][0], rel


@pytest.mark.parametrize("point", ["phase:pilot-pki", "phase:write", "write:ca.crt", "commit:journal",
                                   "rename:root-cert.pem", "rename:server.crt", "rename:jwks.json"])
def test_killed_during_a_root_rotation_then_rerun(stack, fast_env, point):
    before = snapshot(stack)
    backups = _backup_files(stack)
    died = run_cli("rotate", "root", volumes=stack, env=dict(fast_env, HIGRESS_INIT_DIE_AT=point))
    assert died.returncode == -9, (point, died.stdout, died.stderr)
    run_cli("run", volumes=stack, env=fast_env, check=True)
    _assert_whole(stack)
    after = snapshot(stack)
    kept_backups = _backup_files(stack)
    assert all(kept_backups.get(k) == v for k, v in backups.items()), "a backup was lost"
    rotated = after["pki/apiserver-ca.key"] != before["pki/apiserver-ca.key"]
    # either the rotation never happened (killed before its journal) or it completed as a whole
    for rel in CA_FILES[:-1]:
        assert (after[rel][0] != before[rel][0]) == rotated, rel
    assert after["api/nacos.key"][0] == before["api/nacos.key"][0]
    _verify_all_chains(stack)


def test_a_run_and_a_rotate_started_together_both_finish(stack, fast_env):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NACOS_", "CONFIG_STORAGE"))}
    env.update(fast_env)
    procs = [subprocess.Popen([sys.executable, "-m", "higress_init", *args, "--volumes", str(stack)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for args in (["rotate", "root"], ["run"], ["rotate", "leaf"])]
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    _assert_whole(stack)
    _verify_all_chains(stack)


def test_every_rotation_ends_with_the_services_to_restart_and_the_command(stack):
    """As `watch` does: the services that read a rotated file only at start, why, and the exact
    command; never "start the stack" (it is running)."""
    everyone = ["apiserver", "controller", "pilot", "gateway", "console"]
    for kind, services in (("leaf", ["console"]), ("intermediate", ["pilot"]), ("root", everyone),
                           ("finish", everyone)):
        result = run_cli("rotate", kind, volumes=stack, check=True)
        lines = result.stdout.strip().splitlines()
        assert lines[-1].startswith("done"), lines[-1]
        start = max(i for i, line in enumerate(lines) if line.startswith("next "))
        advice = " ".join(line.strip() for line in lines[start:-1] if not line.startswith("volumes "))
        assert "start the stack" not in advice and f"restart {', '.join(services)} (" in advice, advice
        assert advice.endswith(f"in compose/: docker compose restart {' '.join(services)}"), advice
        assert ("console: its Java client never re-reads its certificate" in advice) == ("console" in services), advice
