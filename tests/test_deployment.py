"""deployment: one set of settings per deployment. What a deployment was made with is recorded;
a later run, rotate, status or watch that leaves a setting out keeps it, and one that changes it
is refused unless asked for (--change-setting NAME). Every case runs the CLI as the operator would."""
from __future__ import annotations

import json
import os
import subprocess

from conftest import run_cli, snapshot

RECORD = ".higress-init/settings.json"


def _sans(cert) -> str:
    out = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-ext", "subjectAltName"],
                         capture_output=True, text=True, check=True)
    return out.stdout


def test_the_settings_are_recorded_root_only_and_without_secrets(volumes, fast_env):
    run_cli("run", volumes=volumes, env={**fast_env, "APISERVER_SANS": "10.0.0.9", "NACOS_DATA_ENC_KEY": "k" * 32},
            check=True)
    record = volumes / RECORD
    assert record.stat().st_mode & 0o777 == 0o600 and record.stat().st_uid == os.geteuid()
    recorded = json.loads(record.read_text())["settings"]
    assert recorded["APISERVER_SANS"] == "10.0.0.9" and recorded["CONFIG_STORAGE"] == "file"
    assert recorded["LEAF_KEY_ALGORITHM"] == "ecdsa-p256"
    # secrets and what may change from run to run are not recorded
    for name in ("NACOS_DATA_ENC_KEY", "NACOS_PASSWORD", "LOG_FORMAT", "NACOS_WAIT_TIMEOUT", "ROTATE", "VOLUMES_ROOT"):
        assert name not in recorded
    assert "k" * 32 not in record.read_text()


def test_rotate_leaf_without_the_first_runs_sans_keeps_them(volumes, fast_env):
    run_cli("run", volumes=volumes, env={**fast_env, "APISERVER_SANS": "10.0.0.9,api.example.com"}, check=True)
    result = run_cli("rotate", "leaf", volumes=volumes, check=True)   # no setting given at all
    assert "re-issued" in result.stdout
    sans = _sans(volumes / "api/server.crt")
    assert "IP Address:10.0.0.9" in sans and "DNS:api.example.com" in sans
    assert run_cli("status", volumes=volumes).returncode == 0


def test_a_changed_setting_is_refused_in_one_line_and_nothing_is_written(volumes, fast_env):
    run_cli("run", volumes=volumes, env=fast_env, check=True)
    before = snapshot(volumes)
    for command in (["run"], ["rotate", "leaf"], ["plan"], ["status"], ["watch", "--once"]):
        result = run_cli(*command, "--trust-domain", "example.org", volumes=volumes)
        assert result.returncode == 2, (command, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert "TRUST_DOMAIN=example.org" in lines[0] and "TRUST_DOMAIN=cluster.local" in lines[0]
        assert "--change-setting TRUST_DOMAIN" in lines[0]
    assert snapshot(volumes) == before
    # the same value given again is no change
    assert run_cli("run", "--trust-domain", "cluster.local", volumes=volumes, env=fast_env).returncode == 0
    bad = run_cli("run", "--change-setting", "NACOS_PASSWORD", volumes=volumes)
    assert bad.returncode == 2 and "--change-setting NACOS_PASSWORD: not a recorded setting" in bad.stderr


def test_a_new_trust_domain_asked_for_reaches_the_certificate_and_the_stored_mesh(volumes, fast_env):
    run_cli("run", volumes=volumes, env=fast_env, check=True)
    result = run_cli("run", "--change-setting", "TRUST_DOMAIN", volumes=volumes,
                     env={"TRUST_DOMAIN": "example.org"}, check=True)
    assert "mesh trustDomain cluster.local -> example.org" not in result.stdout   # counted, not listed
    assert "URI:spiffe://example.org/ns/higress-system/sa/higress-gateway" in \
        _sans(volumes / "gateway/certs/cert-chain.pem")
    stored = (volumes / "data/configmaps/higress-config.yaml").read_text()
    assert "trustDomain: example.org" in stored and "cluster.local\n" not in stored.split("trustDomain:")[1][:30]
    assert "trustDomain: example.org" in (volumes / "pilot/config/mesh").read_text()
    # from now on the new value is the deployment's: leaving it out keeps it
    assert json.loads((volumes / RECORD).read_text())["settings"]["TRUST_DOMAIN"] == "example.org"
    assert run_cli("status", volumes=volumes).returncode == 0
    again = run_cli("rotate", "leaf", volumes=volumes, check=True)
    assert "URI:spiffe://example.org/" in _sans(volumes / "gateway/certs/cert-chain.pem"), again.stdout


def test_a_trust_domain_the_operator_set_otherwise_in_the_mesh_is_not_overwritten(volumes, fast_env):
    run_cli("run", volumes=volumes, env=fast_env, check=True)
    stored = volumes / "data/configmaps/higress-config.yaml"
    stored.write_text(stored.read_text().replace("trustDomain: cluster.local", "trustDomain: mine.example"))
    run_cli("run", volumes=volumes, check=True)   # delivered to pilot/config/mesh
    result = run_cli("run", "--change-setting", "TRUST_DOMAIN", volumes=volumes, env={"TRUST_DOMAIN": "example.org"})
    assert result.returncode == 3
    assert "stored mesh's trustDomain is mine.example" in result.stderr and "edit configmap higress-config" in \
        result.stderr
    assert "trustDomain: mine.example" in stored.read_text()


def test_status_names_the_san_that_differs(volumes, fast_env):
    """A deployment recorded before this record existed (or whose record was removed): status
    given other names says which SAN differs, not just that names changed."""
    run_cli("run", volumes=volumes, env={**fast_env, "APISERVER_SANS": "10.0.0.9"}, check=True)
    (volumes / RECORD).unlink()
    result = run_cli("status", "-o", "json", volumes=volumes, env={"APISERVER_SANS": "10.0.0.8"})
    assert result.returncode == 1
    row = next(r for r in json.loads(result.stdout)["files"] if r["file"] == "api/server.crt")
    assert row["state"] == "SAN 10.0.0.8 missing; SAN 10.0.0.9 not wanted", row
    table = run_cli("status", volumes=volumes, env={"APISERVER_SANS": "10.0.0.8"}).stdout
    assert "SAN 10.0.0.8 missing" in table


def test_status_names_the_owner_that_differs(volumes, fast_env):
    run_cli("run", volumes=volumes, env={**fast_env, "VOLUMES_UID": "1337", "VOLUMES_GID": "1337"}, check=True)
    os.chown(volumes / "controller/kube/client.key", 0, 0)
    result = run_cli("status", "-o", "json", volumes=volumes)   # the owners come from the record
    assert result.returncode == 1
    states = [r["state"] for r in json.loads(result.stdout)["files"] if "controller/kube/client" in r["file"]]
    assert any("controller/kube/client.key owned by 0:0, want 1337:1337" in s or "owned by 0:0, want 1337:1337" in s
               for s in states), states


def test_a_record_someone_else_could_have_written_is_refused(volumes, fast_env):
    run_cli("run", volumes=volumes, env=fast_env, check=True)
    record = volumes / RECORD
    os.chown(record, 4242, 4242)
    result = run_cli("rotate", "leaf", volumes=volumes)
    assert result.returncode == 3 and len(result.stderr.strip().splitlines()) == 1
    assert "owned by uid 4242" in result.stderr
    os.chown(record, 0, 0)
    record.write_text("[1, 2]")
    result = run_cli("status", volumes=volumes)
    assert result.returncode == 3 and "not a record of settings" in result.stderr


def test_rotate_without_the_compose_environment_keeps_nacos_storage_and_the_owners(rnacos, tmp_path, fast_env):
    """`make rotate` on the host after a compose run: no CONFIG_STORAGE, NACOS_SERVER_URL or
    VOLUMES_UID in its environment. Nacos stays the store (no file store appears) and every
    rotated key stays with uid 1337, which the controller and pilot run as."""
    node = rnacos()
    volumes = tmp_path / "volumes"
    compose_env = {**fast_env, "CONFIG_STORAGE": "nacos", "NACOS_SERVER_URL": node.url,
                   "VOLUMES_UID": "1337", "VOLUMES_GID": "1337"}
    run_cli("run", volumes=volumes, env=compose_env, check=True)
    key = volumes / "controller/kube/client.key"
    before = key.read_bytes()
    result = run_cli("rotate", "leaf", volumes=volumes, check=True)
    assert key.read_bytes() != before
    assert "Nacos: every base object is present" in result.stdout
    assert not any((volumes / "data").rglob("*.yaml")), "the file store was seeded"
    for rel in ("controller/kube/client.key", "pilot/kube/client.key", "pilot/cacerts/ca-key.pem"):
        st = (volumes / rel).stat()
        assert (st.st_uid, st.st_gid) == (1337, 1337), rel
    status = run_cli("status", volumes=volumes)
    assert status.returncode == 0, status.stdout
    assert "nacos" in status.stdout.lower()

