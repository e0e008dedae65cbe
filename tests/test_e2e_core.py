"""End to end: run the CLI into a temp volumes dir, then check with the real consumers."""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from conftest import run_cli, snapshot
from consumers import kubectl_version, mtls_handshake, mtls_https_server, openssl_text, openssl_verify
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from higress_init.pki import primitives
from higress_init.volume import ownership

CERT_FILES = ["api/ca.crt", "api/server.crt", "pki/admin.crt", "pilot/cacerts/root-cert.pem",
              "pilot/cacerts/ca-cert.pem", "gateway/certs/cert-chain.pem"]
EVERY_FILE = CERT_FILES + [
    "api/server.key", "api/nacos.key", "kube/config", "kube/host.config", "pilot/cacerts/ca-key.pem",
    "pilot/cacerts/cert-chain.pem",
    "gateway/certs/root-cert.pem", "gateway/certs/key.pem", "gateway/podinfo/labels", "pilot/config/mesh",
    "pilot/config/meshNetworks", "data/configmaps/higress-config.yaml", "controller/kube/config", "pilot/kube/config",
    "console/kube/config",
    "data/mcpbridges/default.yaml",
    "data/configmaps/higress-console.yaml", "data/secrets/higress-console.yaml",
    "data/envoyfilters/higress-gateway-global-custom-response.yaml", "data/services/higress-gateway.yaml",
    "data/gatewayclasses/higress-gateway.yaml", "data/gateways/higress-gateway.yaml",
    "data/envoyfilters/higress-http-resolver-cluster.yaml"]


def test_cold_run_writes_every_contract_file_and_status_is_clean(volumes, fast_env):
    result = run_cli("run", volumes=volumes, env=fast_env, check=True)
    for path in EVERY_FILE:
        assert (volumes / path).is_file(), path
    lines = [line for line in result.stdout.splitlines() if not line.startswith(" ")]   # not a wrapped line's rest
    assert [line.split()[0] for line in lines if not line.startswith("volumes ")] == [
        "nacos", "apiserver-pki", "pilot-pki", "kubeconfig", "tokens", "pod-config", "write", "shared-ca",
        "writable-dirs", "seed", "deliver", "next", "done"]   # the volumes' path on a line of its own when long
    status = run_cli("status", volumes=volumes, env=fast_env)
    assert status.returncode == 0, status.stdout
    for name in ("apiserver-ca", "apiserver", "apiserver-admin", "pilot-root-ca", "pilot-ca", "gateway", "kubeconfig"):
        assert any(line.startswith(name + " ") for line in status.stdout.splitlines()), name


def test_default_key_sizes_and_lifetimes(initialized):
    def load(rel):
        return primitives.load_certs((initialized / rel).read_bytes())[0]
    now = datetime.now(UTC)
    for rel, bits, days in [("api/ca.crt", 4096, 3650), ("pilot/cacerts/root-cert.pem", 4096, 3650),
                            ("pilot/cacerts/ca-cert.pem", 4096, 730), ("api/server.crt", 2048, 365),
                            ("pki/admin.crt", 2048, 365), ("gateway/certs/cert-chain.pem", 2048, 365)]:
        cert = load(rel)
        assert isinstance(cert.public_key(), rsa.RSAPublicKey) and cert.public_key().key_size == bits, rel
        assert abs((cert.not_valid_after_utc - now) - timedelta(days=days)) < timedelta(hours=1), rel


def test_openssl_verifies_every_chain(initialized):
    v = initialized
    ok, out = openssl_verify(v / "api/ca.crt", v / "api/server.crt", purpose="sslserver")
    assert ok, out
    ok, out = openssl_verify(v / "api/ca.crt", v / "pki/admin.crt", purpose="sslclient")
    assert ok, out
    ok, out = openssl_verify(v / "pilot/cacerts/root-cert.pem", v / "pilot/cacerts/ca-cert.pem")
    assert ok, out
    # the gateway leaf, through the intermediate its chain file carries, to the root it trusts
    ok, out = openssl_verify(v / "gateway/certs/root-cert.pem", v / "gateway/certs/cert-chain.pem",
                             untrusted=v / "gateway/certs/cert-chain.pem", purpose="sslclient")
    assert ok, out
    ok, out = openssl_verify(v / "pilot/cacerts/root-cert.pem", v / "gateway/certs/cert-chain.pem",
                             untrusted=v / "pilot/cacerts/cert-chain.pem", purpose="sslserver")
    assert ok, out
    # and a wrong trust anchor fails: the check has teeth
    ok, _ = openssl_verify(v / "api/ca.crt", v / "gateway/certs/cert-chain.pem",
                           untrusted=v / "gateway/certs/cert-chain.pem")
    assert not ok


def test_certificate_extensions_are_what_the_contract_says(initialized):
    v = initialized
    root = openssl_text(v / "pilot/cacerts/root-cert.pem")
    assert "X509v3 Basic Constraints: critical\n                CA:TRUE" in root
    assert "X509v3 Key Usage: critical\n                Digital Signature, Certificate Sign, CRL Sign" in root
    inter = openssl_text(v / "pilot/cacerts/ca-cert.pem")
    assert "CA:TRUE, pathlen:0" in inter
    gateway = openssl_text(v / "gateway/certs/cert-chain.pem")
    assert "URI:spiffe://cluster.local/ns/higress-system/sa/higress-gateway" in gateway
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in gateway
    assert "CA:FALSE" in gateway
    server = openssl_text(v / "api/server.crt")
    for san in ("DNS:apiserver", "DNS:apiserver.svc", "DNS:localhost", "IP Address:127.0.0.1"):
        assert san in server
    assert "TLS Web Server Authentication" in server and "Client Authentication" not in server
    admin = openssl_text(v / "pki/admin.crt")
    assert "O = system:masters" in admin and "TLS Web Client Authentication" in admin
    for rel in CERT_FILES:
        text = openssl_text(v / rel)
        assert "X509v3 Subject Key Identifier" in text, rel
        assert "X509v3 Authority Key Identifier" in text, rel
    chain = primitives.load_certs((v / "pilot/cacerts/cert-chain.pem").read_bytes())
    assert chain == primitives.load_certs((v / "pilot/cacerts/ca-cert.pem").read_bytes()) + \
        primitives.load_certs((v / "pilot/cacerts/root-cert.pem").read_bytes())
    gw_chain = primitives.load_certs((v / "gateway/certs/cert-chain.pem").read_bytes())
    assert gw_chain[1] == chain[0] and len(gw_chain) == 2
    assert (v / "gateway/certs/root-cert.pem").read_bytes() == (v / "pilot/cacerts/root-cert.pem").read_bytes()


def test_extra_apiserver_sans_and_settings(volumes, fast_env):
    env = dict(fast_env, APISERVER_SANS="api.example.com, 10.1.2.3,*.apps.example.com,1password.example,fd00::1",
               TRUST_DOMAIN="corp.example",
               HIGRESS_NAMESPACE="gw", GATEWAY_SERVICE_ACCOUNT="edge")
    run_cli("run", volumes=volumes, env=env, check=True)
    server = openssl_text(volumes / "api/server.crt")
    for san in ("DNS:api.example.com", "IP Address:10.1.2.3", "DNS:*.apps.example.com", "DNS:apiserver.gw.svc",
                "DNS:1password.example", "IP Address:FD00:0:0:0:0:0:0:1"):
        assert san in server
    assert "URI:spiffe://corp.example/ns/gw/sa/edge" in openssl_text(volumes / "gateway/certs/cert-chain.pem")
    assert (volumes / "gateway/podinfo/labels").read_text() == 'app="higress-gateway"\nhigress="gw-higress-gateway"\n'
    mesh = yaml.safe_load((volumes / "pilot/config/mesh").read_text())
    assert mesh["trustDomain"] == "corp.example" and mesh["rootNamespace"] == "gw"
    # changing a SAN later (on purpose) re-issues only the server certificate
    before = snapshot(volumes)
    env["APISERVER_SANS"] = "api.example.com"
    out = run_cli("run", "--change-setting", "APISERVER_SANS", volumes=volumes, env=env, check=True).stdout
    after = snapshot(volumes)
    changed = {k for k in after if before.get(k) != after[k] and not k.startswith("backup/")}
    assert changed == {"api/server.crt", "api/server.key"}, changed
    assert "re-issued 1" in out


def test_kubectl_talks_to_a_server_with_the_generated_certificate(initialized, tmp_path):
    v = initialized
    with mtls_https_server(v / "api/server.crt", v / "api/server.key", v / "api/ca.crt") as url:
        result = kubectl_version(v / "kube/config", url)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["gitVersion"] == "v1.32.4"
        # the name components use, checked against the certificate's SANs
        result = kubectl_version(v / "kube/config", url, tls_server_name="apiserver")
        assert result.returncode == 0, result.stderr
        config = yaml.safe_load((v / "kube/config").read_text())
        assert config["clusters"][0]["cluster"]["server"] == "https://apiserver:8443"
        assert "insecure-skip-tls-verify" not in (v / "kube/config").read_text()


def test_kubectl_is_refused_with_a_client_certificate_from_another_ca(initialized, tmp_path, fast_env):
    other = tmp_path / "other"
    run_cli("run", volumes=other, env=fast_env, check=True)
    # the other installation's client identity, but our CA to verify our server
    config = yaml.safe_load((other / "kube/config").read_text())
    ours = yaml.safe_load((initialized / "kube/config").read_text())
    config["clusters"] = ours["clusters"]
    mixed = tmp_path / "mixed-config"
    mixed.write_text(yaml.safe_dump(config))
    with mtls_https_server(initialized / "api/server.crt", initialized / "api/server.key",
                           initialized / "api/ca.crt") as url:
        assert kubectl_version(initialized / "kube/config", url).returncode == 0
        result = kubectl_version(mixed, url)
        assert result.returncode != 0
        # and our client does not trust another installation's server
    with mtls_https_server(other / "api/server.crt", other / "api/server.key", initialized / "api/ca.crt") as url:
        assert kubectl_version(initialized / "kube/config", url).returncode != 0


def _pilot_serving_cert(v):
    """What pilot does for xDS: a serving certificate issued from the plug-in intermediate."""
    ca_cert = primitives.load_certs((v / "pilot/cacerts/ca-cert.pem").read_bytes())[0]
    ca_key = primitives.load_key((v / "pilot/cacerts/ca-key.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    request = primitives.CertificateRequest(common_name=None, server_auth=True, client_auth=True, dns_names=("pilot",),
                                     uris=("spiffe://cluster.local/ns/higress-system/sa/higress-pilot",))
    cert = primitives.issue(request, key, ca_cert, ca_key, datetime.now(UTC))
    chain = primitives.cert_to_pem(cert) + (v / "pilot/cacerts/cert-chain.pem").read_bytes()
    return chain, primitives.key_to_pem(key)


def test_mutual_tls_between_pilot_and_the_gateway(initialized, tmp_path):
    v = initialized
    chain, key = _pilot_serving_cert(v)
    outcome = mtls_handshake(chain, key, v / "pilot/cacerts/root-cert.pem",
                             v / "gateway/certs/cert-chain.pem", v / "gateway/certs/key.pem",
                             v / "gateway/certs/root-cert.pem", "pilot", tmp_path)
    assert "client_error" not in outcome and "server_error" not in outcome, outcome
    assert outcome["data"] == b"ok"
    assert ("URI", "spiffe://cluster.local/ns/higress-system/sa/higress-gateway") in \
        outcome["server_peer"]["subjectAltName"]


def test_mutual_tls_fails_against_another_installations_root(initialized, tmp_path, fast_env):
    other = tmp_path / "other"
    run_cli("run", volumes=other, env=fast_env, check=True)
    chain, key = _pilot_serving_cert(other)
    outcome = mtls_handshake(chain, key, other / "pilot/cacerts/root-cert.pem",
                             initialized / "gateway/certs/cert-chain.pem", initialized / "gateway/certs/key.pem",
                             initialized / "gateway/certs/root-cert.pem", "pilot", tmp_path)
    assert "client_error" in outcome


def test_rerun_rewrites_nothing(initialized):
    before = snapshot(initialized)
    result = run_cli("run", volumes=initialized, check=True)
    assert snapshot(initialized) == before
    summary = result.stdout.splitlines()[-1]
    # kept 40: the operator's kube/host.config and 2.2.4's ninth object too
    assert "created" not in summary and "re-issued" not in summary and "kept 40" in summary, summary


def test_permissions(initialized):
    for path in initialized.rglob("*"):
        if ".higress-init" in path.parts:
            continue
        mode = path.stat().st_mode & 0o777
        rel = str(path.relative_to(initialized))
        if path.is_dir():
            assert mode == (0o700 if rel in ("pki", "controller/log/nacos") else 0o755), rel
        elif (rel.endswith((".key", "key.pem", "kube/config", "kube/host.config", "token", "istio-token"))
              or rel.startswith("data/secrets/")):
            assert mode == 0o600, rel
        else:
            assert mode == 0o644, rel


def test_owner_is_settable(volumes, fast_env):
    if os.geteuid() != 0:
        pytest.fail("this test chowns files and must run as root (CI does)")
    run_cli("run", volumes=volumes, env=dict(fast_env, VOLUMES_UID="1337", VOLUMES_GID="1338"), check=True)
    for rel in EVERY_FILE:
        st = (volumes / rel).stat()
        # the keys no component running as VOLUMES_UID needs stay root's (pki/, the data key)
        want = (0, 0) if ownership.root_owned(tuple(rel.split("/"))) else (1337, 1338)
        assert (st.st_uid, st.st_gid) == want, rel
    # changing only the owner (on purpose) is a change a rerun applies
    run_cli("run", "--change-setting", "VOLUMES_UID", volumes=volumes, env=dict(fast_env, VOLUMES_UID="1400"),
            check=True)
    assert (volumes / "api/server.key").stat().st_uid == 1400


def _issue_leaf(v, days_valid=365, not_before_days=0, other_ca=False, sans=("apiserver",)):
    ca_cert = primitives.load_certs((v / "api/ca.crt").read_bytes())[0]
    ca_key = primitives.load_key((v / "pki/apiserver-ca.key").read_bytes())
    if other_ca:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = primitives.issue(primitives.CertificateRequest("higress-apiserver-ca", is_ca=True), ca_key,
                                   None, None, datetime.now(UTC))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC) - timedelta(days=not_before_days)
    cert = primitives.issue(primitives.CertificateRequest("apiserver", server_auth=True, dns_names=sans,
                                            validity=timedelta(days=days_valid)), key, ca_cert, ca_key, now)
    return primitives.cert_to_pem(cert), primitives.key_to_pem(key)


def _break_missing(v):
    (v / "api/server.crt").unlink()


def _break_garbage(v):
    (v / "api/server.crt").write_text("not a certificate\n")


def _break_expired(v):
    cert, key = _issue_leaf(v, days_valid=10, not_before_days=20)
    (v / "api/server.crt").write_bytes(cert)
    (v / "api/server.key").write_bytes(key)


def _break_expiring(v):
    cert, key = _issue_leaf(v, days_valid=5)
    (v / "api/server.crt").write_bytes(cert)
    (v / "api/server.key").write_bytes(key)


def _break_key_mismatch(v):
    (v / "api/server.key").write_bytes((v / "pki/admin.key").read_bytes())


def _break_key_missing(v):
    (v / "api/server.key").unlink()


def _break_other_ca(v):
    cert, key = _issue_leaf(v, other_ca=True)
    (v / "api/server.crt").write_bytes(cert)
    (v / "api/server.key").write_bytes(key)


@pytest.mark.parametrize("breaker", [_break_missing, _break_garbage, _break_expired, _break_expiring,
                                     _break_key_mismatch, _break_key_missing, _break_other_ca],
                         ids=lambda f: f.__name__[7:])
def test_broken_leaf_is_reissued_from_the_existing_ca(initialized, breaker):
    before = snapshot(initialized)
    breaker(initialized)
    result = run_cli("run", volumes=initialized, check=True)
    after = snapshot(initialized)
    assert {k for k in after if before.get(k) != after[k] and not k.startswith("backup/")} == \
        {"api/server.crt", "api/server.key"}
    assert after["api/ca.crt"] == before["api/ca.crt"]
    ok, out = openssl_verify(initialized / "api/ca.crt", initialized / "api/server.crt", purpose="sslserver")
    assert ok, out
    assert "re-issued 1" in result.stdout or "created 1" in result.stdout
    assert run_cli("status", volumes=initialized).returncode == 0


def test_broken_gateway_leaf_is_reissued_and_the_rest_kept(initialized):
    before = snapshot(initialized)
    (initialized / "gateway/certs/key.pem").write_bytes((initialized / "api/server.key").read_bytes())
    run_cli("run", volumes=initialized, check=True)
    after = snapshot(initialized)
    assert {k for k in after if before.get(k) != after[k] and not k.startswith("backup/")} == \
        {"gateway/certs/cert-chain.pem", "gateway/certs/key.pem"}


def test_replaced_files_are_backed_up(initialized):
    old = (initialized / "api/server.crt").read_bytes()
    _break_expiring(initialized)
    expiring = (initialized / "api/server.crt").read_bytes()
    run_cli("run", volumes=initialized, check=True)
    backups = list((initialized / "backup").rglob("server.crt"))
    assert len(backups) == 1 and backups[0].read_bytes() == expiring != old


def test_deleted_admin_certificate_is_reissued_into_the_kubeconfig(initialized):
    old_config = (initialized / "kube/config").read_bytes()
    (initialized / "pki/admin.crt").unlink()
    run_cli("run", volumes=initialized, check=True)
    assert (initialized / "kube/config").read_bytes() != old_config
    with mtls_https_server(initialized / "api/server.crt", initialized / "api/server.key",
                           initialized / "api/ca.crt") as url:
        assert kubectl_version(initialized / "kube/config", url).returncode == 0


def _assert_refused(volumes, *needles, env=None):
    before = snapshot(volumes)
    result = run_cli("run", volumes=volumes, env=env)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr
    assert snapshot(volumes) == before
    return result


def test_ca_key_without_its_certificate_is_refused(initialized):
    (initialized / "api/ca.crt").unlink()
    _assert_refused(initialized, "pki/apiserver-ca.key", "api/ca.crt")


def test_ca_with_the_wrong_key_is_refused(initialized):
    (initialized / "pki/pilot-root-ca.key").write_bytes((initialized / "pki/apiserver-ca.key").read_bytes())
    _assert_refused(initialized, "pki/pilot-root-ca.key", "does not match")


def test_unparsable_ca_is_refused_not_replaced(initialized):
    (initialized / "pilot/cacerts/ca-cert.pem").write_text("garbage")
    _assert_refused(initialized, "pilot/cacerts/ca-cert.pem", "never replaced")


def test_intermediate_missing_its_root_key_and_cert_is_refused(initialized):
    # a new root would have to be made, and the existing intermediate would not chain to it
    (initialized / "pilot/cacerts/root-cert.pem").unlink()
    (initialized / "pki/pilot-root-ca.key").unlink()
    _assert_refused(initialized, "pilot/cacerts/ca-cert.pem", "not issued by")


def test_external_ca_without_key_is_accepted_when_everything_it_issued_is_valid(initialized):
    (initialized / "pki/apiserver-ca.key").unlink()
    (initialized / ".higress-init/ca-keys.json").unlink()   # never here: a key that was is a loss (test_status)
    before = snapshot(initialized)
    result = run_cli("run", volumes=initialized, check=True)
    assert snapshot(initialized) == before
    assert "created" not in result.stdout.splitlines()[-1]
    assert run_cli("status", volumes=initialized).returncode == 0


def test_external_ca_without_key_and_a_missing_leaf_is_an_error_naming_the_file(initialized):
    (initialized / "pki/apiserver-ca.key").unlink()
    (initialized / "api/server.crt").unlink()
    _assert_refused(initialized, "api/server.crt", "externally managed")


def test_existing_data_key_is_kept_and_a_different_setting_refused(initialized):
    key = (initialized / "api/nacos.key").read_bytes()
    assert len(key) == 32 and key.decode().isalnum()
    _assert_refused(initialized, "NACOS_DATA_ENC_KEY", "api/nacos.key", env={"NACOS_DATA_ENC_KEY": "x" * 32})
    run_cli("run", volumes=initialized, env={"NACOS_DATA_ENC_KEY": key.decode()}, check=True)
    assert (initialized / "api/nacos.key").read_bytes() == key


def test_data_key_from_a_docker_secret_file(volumes, tmp_path, fast_env):
    secret = tmp_path / "enc-key"
    secret.write_text("0123456789abcdef0123456789abcdef\n")
    run_cli("run", volumes=volumes, env=dict(fast_env, NACOS_DATA_ENC_KEY_FILE=str(secret)), check=True)
    assert (volumes / "api/nacos.key").read_bytes() == b"0123456789abcdef0123456789abcdef"


def test_user_edited_file_store_configmap_and_mesh_survive(initialized):
    cm = initialized / "data/configmaps/higress-config.yaml"
    edited = cm.read_text().replace("dnsRefreshRate: 200s", "dnsRefreshRate: 60s")
    cm.write_text(edited)
    run_cli("run", volumes=initialized, check=True)
    assert cm.read_text() == edited  # the store's copy is the user's; the mesh file follows it
    assert "dnsRefreshRate: 60s" in (initialized / "pilot/config/mesh").read_text()
    (initialized / "pilot/config/mesh").write_text("trustDomain: cluster.local\n")
    assert run_cli("run", volumes=initialized).returncode == 3  # an edit of the file itself is never overwritten
    assert cm.read_text() == edited
    assert (initialized / "pilot/config/mesh").read_text() == "trustDomain: cluster.local\n"


def test_file_store_configmap_matches_the_mesh_files(initialized):
    cm = yaml.safe_load((initialized / "data/configmaps/higress-config.yaml").read_text())
    assert cm["apiVersion"] == "v1" and cm["kind"] == "ConfigMap"
    assert cm["metadata"]["name"] == "higress-config" and cm["metadata"]["namespace"] == "higress-system"
    datetime.strptime(cm["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
    assert cm["data"]["mesh"] == (initialized / "pilot/config/mesh").read_text()
    assert cm["data"]["meshNetworks"] == (initialized / "pilot/config/meshNetworks").read_text()
    mesh = yaml.safe_load(cm["data"]["mesh"])
    assert mesh["configSources"] == [{"address": "xds://controller:15051"}, {"address": "k8s://"}]
    assert mesh["defaultConfig"]["discoveryAddress"] == "pilot:15012"
    assert mesh["ingressControllerMode"] == "OFF" and mesh["enableAutoMtls"] is False
    json.loads(mesh["accessLogFormat"])
    assert yaml.safe_load(cm["data"]["meshNetworks"]) == {"networks": {}}


def test_file_root_dir_setting(volumes, tmp_path, fast_env):
    store = volumes / "store"  # inside the volumes root (a path outside it is refused: #12)
    run_cli("run", volumes=volumes, env=dict(fast_env, FILE_ROOT_DIR=str(store)), check=True)
    assert (store / "configmaps/higress-config.yaml").is_file()
    assert not (volumes / "data").exists()


def test_plan_writes_nothing_and_says_what_run_would_do(tmp_path, initialized):
    fresh = tmp_path / "fresh"
    result = run_cli("plan", volumes=fresh, check=True)
    assert not fresh.exists()
    assert "would create" in result.stdout and "would be written" in result.stdout
    (initialized / "api/server.crt").unlink()
    before = snapshot(initialized)
    result = run_cli("plan", volumes=initialized, check=True)
    assert snapshot(initialized) == before
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("apiserver-pki"))
    assert "would create 1" in line and "kept 6" in line


def test_phases_list_and_single_phase(volumes, fast_env):
    listing, gateway = run_cli("phases", check=True).stdout.split("\n\n")
    names = [ln.split()[0] for ln in listing.splitlines() if not ln.startswith(" ")]
    assert names == ["nacos", "apiserver-pki", "pilot-pki", "kubeconfig", "tokens", "pod-config", "write", "shared-ca",
                     "writable-dirs", "seed", "deliver"]
    assert gateway.split(": ", 1)[1].split() == ["nacos,", "pilot-pki,", "pod-config,", "write,", "writable-dirs,",
                                                   "deliver"], gateway
    run_cli("phase", "pilot-pki", volumes=volumes, env=fast_env, check=True)
    assert (volumes / "gateway/certs/cert-chain.pem").is_file() and not (volumes / "api").exists()
    result = run_cli("phase", "kubeconfig", volumes=volumes, env=fast_env)
    assert result.returncode == 3 and "apiserver-pki" in result.stderr
    run_cli("phase", "apiserver-pki", volumes=volumes, env=fast_env, check=True)
    run_cli("phase", "kubeconfig", volumes=volumes, env=fast_env, check=True)
    assert (volumes / "kube/config").is_file()


def test_json_log_format_and_no_key_material_in_output(volumes, fast_env):
    result = run_cli("run", "--log-format", "json", volumes=volumes, env=fast_env, check=True)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["phase"] for e in events if e["event"] == "phase"][:2] == ["nacos", "apiserver-pki"]
    assert events[-1]["event"] == "summary"
    output = result.stdout + result.stderr
    assert "PRIVATE KEY" not in output and "BEGIN" not in output
    assert (volumes / "api/nacos.key").read_text() not in output
    status = run_cli("status", "--output", "json", volumes=volumes, env=fast_env)
    assert json.loads(status.stdout)["healthy"] is True
    assert "PRIVATE" not in status.stdout


def test_status_fails_on_missing_and_expiring(initialized):
    _break_expiring(initialized)
    result = run_cli("status", volumes=initialized)
    assert result.returncode == 1 and "expires within 30d" in result.stdout
    (initialized / "gateway/certs/key.pem").unlink()
    report = json.loads(run_cli("status", "--output", "json", volumes=initialized).stdout)
    gateway = next(r for r in report["files"] if r["name"] == "gateway")
    assert report["healthy"] is False and "missing" in gateway["state"]


def test_concurrent_runs_take_turns_on_the_lock(initialized):
    lock = initialized / ".higress-init/lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    (initialized / "api/server.crt").unlink()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NACOS_", "CONFIG_STORAGE"))}
    proc = subprocess.Popen([sys.executable, "-m", "higress_init", "run", "--volumes", str(initialized)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        waited_line = ""
        while time.monotonic() < deadline and "waiting for the lock" not in waited_line:
            waited_line += proc.stdout.readline()
        assert "waiting for the lock" in waited_line
        assert proc.poll() is None and not (initialized / "api/server.crt").exists()
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    assert proc.wait(60) == 0
    assert (initialized / "api/server.crt").exists()


def test_two_runs_started_together_both_finish_with_a_valid_state(volumes, fast_env):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NACOS_", "CONFIG_STORAGE"))}
    env.update(fast_env)
    procs = [subprocess.Popen([sys.executable, "-m", "higress_init", "run", "--volumes", str(volumes)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for _ in range(2)]
    assert [p.wait(120) for p in procs] == [0, 0]
    assert run_cli("status", volumes=volumes, env=fast_env).returncode == 0
    outputs = [p.stdout.read().decode() for p in procs]
    assert sum("created" in o.splitlines()[-1] for o in outputs) == 1


def test_a_gateway_host_refuses_a_control_plane_phase(tmp_path, fast_env):
    """ROLE=gateway runs its own phase list: a control-plane phase asked by name is refused, exit 2,
    before anything is made."""
    env = dict(fast_env, ROLE="gateway", NACOS_SERVER_URL="http://127.0.0.1:1/nacos", NACOS_DATA_ENC_KEY="k" * 32,
               POD_NAME="gateway-b")
    result = run_cli("phase", "apiserver-pki", volumes=tmp_path / "v", env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "does not run on a gateway-only host" in result.stderr
    assert not (tmp_path / "v").exists()
