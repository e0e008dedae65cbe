"""`status` checks every file the product writes, with the validators the run decides with."""
from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime

import pytest
from conftest import run_cli
from cryptography.hazmat.primitives.asymmetric import ec

from higress_init.pki import primitives
from higress_init.volume import layout

ENV = {"CA_KEY_ALGORITHM": "ecdsa-p256", "LEAF_KEY_ALGORITHM": "ecdsa-p256"}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("status") / "volumes"
    run_cli("run", volumes=root, env=ENV, check=True)
    return root


@pytest.fixture
def v(template, tmp_path):
    target = tmp_path / "volumes"
    shutil.copytree(template, target, symlinks=True)
    return target


def _report(v) -> dict:
    result = run_cli("status", "--output", "json", volumes=v, env=ENV)
    report = json.loads(result.stdout)
    assert (result.returncode == 0) == report["healthy"]
    return report


def _failing(v) -> dict[str, str]:
    return {r["file"]: r["state"] for r in _report(v)["files"] if r["state"] != "ok"}


def test_a_fresh_run_is_healthy(v):
    assert _failing(v) == {}


@pytest.mark.parametrize("rel", [layout.TOKEN_PUBLIC_KEY, layout.OIDC_DISCOVERY, layout.JWKS_WELL_KNOWN,
                                 "data/configmaps/higress-config.yaml", "data/secrets/higress-console.yaml",
                                 layout.MESH_NETWORKS, layout.POD_LABELS, layout.PILOT_CHAIN,
                                 layout.CONTROLLER_KUBECONFIG, layout.DATA_KEY, layout.CONSOLE_TOKEN])
def test_each_deleted_file_is_named(v, rel):
    (v / rel).unlink()
    assert _failing(v).get(rel) == "missing"


def test_a_loosened_mode_is_named(v):
    os.chmod(v / layout.GATEWAY_KEY, 0o644)
    assert _failing(v)[layout.GATEWAY_CERT_CHAIN] == f"{layout.GATEWAY_KEY}: mode 0644, want 0600"


def test_a_mesh_pilot_cannot_parse_is_named(v):
    (v / layout.MESH).write_text("defaultConfig: [unclosed\n")
    assert "pilot falls back" in _failing(v)[layout.MESH]


def test_a_client_certificate_without_client_use_fails_verification(v):
    """Signed by the right CA, right names, but a serving certificate in a client's place: the
    verifier (extended key usage) refuses it, as the apiserver would; the run re-issues it."""
    ca = primitives.load_certs((v / layout.APISERVER_CA_CERT).read_bytes())[0]
    ca_key = primitives.load_key((v / layout.APISERVER_CA_KEY).read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    request = primitives.CertificateRequest("console", organizations=("system:masters",), server_auth=True)
    cert = primitives.issue(request, key, ca, ca_key, datetime.now(UTC))
    (v / layout.CONSOLE_CLIENT_CERT).write_bytes(primitives.cert_to_pem(cert))
    (v / layout.CONSOLE_CLIENT_KEY).write_bytes(primitives.key_to_pem(key))
    assert _failing(v)[layout.CONSOLE_CLIENT_CERT].startswith("does not verify")
    result = run_cli("run", volumes=v, env=ENV, check=True)
    assert "re-issued 1" in result.stdout
    assert _failing(v) == {}


def test_a_token_whose_key_is_not_published_fails(v):
    jwks = json.loads((v / layout.JWKS).read_text())
    (v / layout.JWKS).write_text(json.dumps({"keys": [dict(jwks["keys"][0], kid="someone-else")]}))
    failing = _failing(v)
    assert all("not in tokens/jwks.json" in failing[rel] for rel in (layout.CONSOLE_TOKEN, layout.GATEWAY_TOKEN))


def _reissue_backdated(v, spec_name: str, days_ago: int) -> None:
    """Re-issue one leaf as if it had been made `days_ago` days ago, under its real CA."""
    from datetime import timedelta

    from higress_init import settings as settings_mod
    from higress_init.pki import artifacts
    spec = artifacts.SPECS[spec_name]
    issuer = artifacts.SPECS[spec.issuer]
    ca_cert = primitives.load_certs((v / issuer.cert_file).read_bytes())[0]
    ca_key = primitives.load_key((v / issuer.key_file).read_bytes())
    key = primitives.load_key((v / spec.key_file).read_bytes())
    request = spec.request(settings_mod.load(env={**ENV, "VOLUMES_ROOT": str(v)}))
    request = primitives.CertificateRequest(**{**request.__dict__, "validity": timedelta(days=2)})
    cert = primitives.issue(request, key, ca_cert, ca_key, datetime.now(UTC) - timedelta(days=days_ago))
    (v / spec.cert_file).write_bytes(primitives.cert_to_pem(cert))


def _column(table: str, header: str) -> dict[str, str]:
    lines = table.splitlines()
    start = lines[0].index(header)
    end = start + len(header)
    following = lines[0][end:].lstrip()
    end = lines[0].index(following, end) if following else None
    return {line.split()[0] + (" " + line.split()[1] if line.startswith("token ") else ""):
            line[start:end].strip() for line in lines[1:] if line.strip() and not line.startswith(("details", "  "))}


def test_remaining_time_is_in_kubeadms_words_for_certificates_and_tokens_never_0_or_minus_1(tmp_path):
    v = tmp_path / "volumes"
    short = {**ENV, "CERT_VALIDITY": "2d", "TOKEN_VALIDITY": "2d", "RENEW_BEFORE": "1h"}
    run_cli("run", volumes=v, env=short, check=True)
    _reissue_backdated(v, "apiserver-admin", days_ago=5)  # expired three days ago
    result = run_cli("status", volumes=v, env=short)
    assert result.returncode == 1, result.stdout
    column = _column(result.stdout, "REMAINING")
    assert column["apiserver"] == "47h" and column["token gateway"] == "47h", column
    assert column["apiserver-ca"] == "3649d" and column["pilot-ca"] == "729d", column
    assert column["apiserver-admin"] == "expired 3d ago", column
    assert not {"0", "-1", "0d"} & set(column.values()), column
    report = json.loads(run_cli("status", "-o", "json", volumes=v, env=short).stdout)
    by_name = {r["name"]: r for r in report["files"]}
    assert by_name["token console"]["remaining"] == by_name["apiserver-pilot"]["remaining"] == "47h"
    # plan (and run, and watch) say why they renew in the same words, certificates and tokens alike
    later = {**ENV, "CERT_VALIDITY": "10d", "TOKEN_VALIDITY": "10d", "RENEW_BEFORE": "3d"}
    changed = [arg for name in ("CERT_VALIDITY", "TOKEN_VALIDITY", "RENEW_BEFORE")
               for arg in ("--change-setting", name)]
    plan = run_cli("plan", *changed, volumes=v, env=later, check=True).stdout
    for line in ("apiserver: would re-issue: expires within 3d (47h left)",
                 "token gateway: would re-issue: expires within 3d (47h left)",
                 "apiserver-admin: would re-issue: expired 3d ago"):
        assert line in plan.splitlines(), plan
    run = run_cli("run", *changed, volumes=v, env=later, check=True).stdout
    assert "token console: re-issued: expires within 3d (47h left)" in run.splitlines(), run


def test_short_duration_follows_kubeadm():
    from datetime import timedelta

    from higress_init.run.reporting import remaining
    now = datetime(2026, 1, 1, tzinfo=UTC)
    cases = {timedelta(days=364, hours=5): "364d", timedelta(hours=23, minutes=59): "23h",
             timedelta(hours=47): "47h", timedelta(minutes=5): "5m", timedelta(seconds=30): "30s",
             timedelta(days=-3, hours=-1): "expired 3d ago", timedelta(hours=-1): "expired 1h ago",
             timedelta(0): "expired 0s ago"}
    assert {remaining(now + d, now) for d in cases} == set(cases.values())
    assert [remaining(now + d, now) for d in cases] == list(cases.values())


def test_a_ca_key_that_was_here_and_is_gone_fails_status_and_watch(v):
    table = run_cli("status", volumes=v, env=ENV)
    assert table.returncode == 0, table.stdout
    assert _column(table.stdout, "EXTERNALLY MANAGED")["pilot-root-ca"] == "no"
    (v / "pki/pilot-root-ca.key").unlink()
    result = run_cli("status", volumes=v, env=ENV)
    assert result.returncode == 1, result.stdout
    assert "pki/pilot-root-ca.key is gone (this CA's key was here)" in result.stdout, result.stdout
    assert _column(result.stdout, "EXTERNALLY MANAGED")["pilot-root-ca"] == "no"
    watch = run_cli("watch", "--once", volumes=v, env=ENV)
    assert watch.returncode == 1 and "cannot renew pilot-root-ca" in watch.stderr, watch.stderr


def test_a_ca_given_without_its_key_is_externally_managed_and_healthy(template, tmp_path):
    """The operator's own apiserver CA: its certificate and the leaves it issued, never its key."""
    v = tmp_path / "volumes"
    shutil.copytree(template, v, symlinks=True)
    (v / "pki/apiserver-ca.key").unlink()
    (v / layout.CA_KEYS_RECORD).unlink()   # this host never held that key
    result = run_cli("status", volumes=v, env=ENV)
    assert result.returncode == 0, result.stdout
    column = _column(result.stdout, "EXTERNALLY MANAGED")
    assert column["apiserver-ca"] == "yes" and column["pilot-root-ca"] == "no", column
    assert column["apiserver"] == "", column
    report = json.loads(run_cli("status", "-o", "json", volumes=v, env=ENV).stdout)
    assert {r["name"]: r["externally_managed"] for r in report["files"]}["apiserver-ca"] is True
    # and a run keeps it as it is
    rerun = run_cli("run", volumes=v, env=ENV)
    assert rerun.returncode == 0, rerun.stderr
    assert not (v / "pki/apiserver-ca.key").exists()
