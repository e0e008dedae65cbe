"""`status` checks every file the product writes, with the validators the run decides with."""
from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import run_cli
from higress_init import layout, pki


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
    ca = pki.load_certs((v / layout.APISERVER_CA_CERT).read_bytes())[0]
    ca_key = pki.load_key((v / layout.APISERVER_CA_KEY).read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = pki.issue(pki.CertificateRequest("console", organizations=("system:masters",), server_auth=True),
                     key, ca, ca_key, datetime.now(timezone.utc))
    (v / layout.CONSOLE_CLIENT_CERT).write_bytes(pki.cert_to_pem(cert))
    (v / layout.CONSOLE_CLIENT_KEY).write_bytes(pki.key_to_pem(key))
    assert _failing(v)[layout.CONSOLE_CLIENT_CERT].startswith("does not verify")
    result = run_cli("run", volumes=v, env=ENV, check=True)
    assert "re-issued 1" in result.stdout
    assert _failing(v) == {}


def test_a_token_whose_key_is_not_published_fails(v):
    jwks = json.loads((v / layout.JWKS).read_text())
    (v / layout.JWKS).write_text(json.dumps({"keys": [dict(jwks["keys"][0], kid="someone-else")]}))
    failing = _failing(v)
    assert all("not in tokens/jwks.json" in failing[rel] for rel in (layout.CONSOLE_TOKEN, layout.GATEWAY_TOKEN))
