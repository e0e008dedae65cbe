"""Garbage, non-UTF-8 and not-yet-valid content in the files a run or `status` reads: a file the
run derives is re-made, a CA or state it must not replace silently is refused with one line,
and neither `run` nor `status` ever ends in a traceback."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from conftest import run_cli
from cryptography.hazmat.primitives.asymmetric import ec
from hostile import make_victim, one_line_error, state_of, status

from higress_init.pki import primitives

NOT_UTF8 = b"\xff\xfe\xfd garbage \x00\x80"
PEM_GARBAGE = b"-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n"
REFUSED = 3
DEEP = b"[" * 100_000 + b"]" * 100_000

# (file, content, exit code of the run, words of its one-line error or of its output)
CASES = [
    ("api/ca.crt", b"garbage", REFUSED, ["api/ca.crt", "not a PEM certificate"]),
    ("api/ca.crt", NOT_UTF8, REFUSED, ["api/ca.crt", "not a PEM certificate"]),
    ("pilot/cacerts/root-cert.pem", PEM_GARBAGE, REFUSED, ["root-cert.pem", "not a PEM certificate"]),
    ("pki/apiserver-ca.key", NOT_UTF8, REFUSED, ["pki/apiserver-ca.key", "not an unencrypted PEM private key"]),
    ("pilot/cacerts/ca-key.pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", REFUSED,
     ["ca-key.pem", "private key"]),
    ("pki/sa.key", NOT_UTF8, REFUSED, ["pki/sa.key", "not an unencrypted PEM private key"]),
    ("pki/sa-retired.json", NOT_UTF8, REFUSED, ["pki/sa-retired.json"]),
    ("pki/sa-retired.json", b'[{"jwk": 1}]', REFUSED, ["pki/sa-retired.json"]),
    ("console/token", NOT_UTF8, 0, ["re-issued 1"]),
    ("gateway/tokens/istio-token", b"a.b.c", 0, ["re-issued 1"]),
    ("tokens/jwks.json", b"{garbage", 0, ["updated"]),
    ("tokens/jwks.json", b'{"keys": [1, "x"]}', 0, ["updated"]),
    # nesting without end (JSON and YAML flow): each was "input nested too deeply" without a name
    ("pki/sa-retired.json", DEEP, REFUSED, ["pki/sa-retired.json"]),
    ("tokens/jwks.json", DEEP, 0, ["updated"]),
    ("kube/config", DEEP, 0, ["updated"]),
    ("data/configmaps/higress-config.yaml", DEEP, REFUSED, ["configmaps/higress-config", "nested too deeply"]),
    ("tokens/jwks.json", b"[]", 0, ["updated"]),     # JSON, but no JWKS: status crashed on these
    ("tokens/jwks.json", b"null", 0, ["updated"]),
    ("kube/config", b"\x00\x01garbage", 0, ["updated"]),
    ("kube/config", b"apiVersion: v1\nclusters: [[[\n", 0, ["updated"]),
    ("gateway/podinfo/labels", NOT_UTF8, 0, ["updated"]),
    ("pki/admin.crt", PEM_GARBAGE, 0, ["re-issued 1"]),
    ("api/server.crt", NOT_UTF8, 0, ["re-issued 1"]),
    ("gateway/certs/cert-chain.pem", b"", 0, ["created 1"]),  # empty: as if missing
    ("gateway/certs/root-cert.pem", NOT_UTF8, 0, ["updated"]),
    ("pilot/cacerts/cert-chain.pem", PEM_GARBAGE, 0, ["updated"]),
]


@pytest.mark.parametrize("rel,content,code,words", CASES, ids=[f"{c[0]}:{c[1][:8]!r}" for c in CASES])
def test_garbage_in_a_file_the_run_reads(rel, content, code, words, initialized, tmp_path):
    victim = make_victim(tmp_path)
    before = state_of(victim)
    (initialized / rel).write_bytes(content)
    checked = status(initialized)
    assert checked.returncode in (1, REFUSED) and "Traceback" not in checked.stderr
    assert not re.search(r"error: \w+(Error|Exception)\b", checked.stderr), checked.stderr   # no raw Python error
    result = run_cli("run", volumes=initialized)
    assert result.returncode == code, result.stdout + result.stderr
    if code:
        one_line_error(result, *words)
        assert (initialized / rel).read_bytes() == content  # refused: nothing replaced
    else:
        assert all(w in result.stdout for w in words), result.stdout
        assert "Traceback" not in result.stderr
        assert status(initialized).returncode == 0
    assert state_of(victim) == before


def test_garbage_rotation_state_is_refused_by_run_and_status(initialized):
    (initialized / "pki/pilot-root-ca.previous.crt").write_bytes(NOT_UTF8)
    (initialized / "pki/pilot-root-ca.cross.crt").write_bytes(PEM_GARBAGE)
    result = run_cli("run", volumes=initialized)
    assert result.returncode == REFUSED
    line = one_line_error(result, "pki/pilot-root-ca.previous.crt", "rotate finish")
    checked = status(initialized)
    assert checked.returncode == REFUSED and one_line_error(checked) == line


def test_a_leaf_not_valid_yet_is_reissued(initialized):
    """A leaf dated in the future (a clock far ahead when it was made) fails every TLS peer."""
    ca = primitives.load_certs((initialized / "api/ca.crt").read_bytes())[0]
    ca_key = primitives.load_key((initialized / "pki/apiserver-ca.key").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    future = datetime.now(UTC) + timedelta(days=10)
    old = primitives.load_certs((initialized / "api/server.crt").read_bytes())[0]
    request = primitives.CertificateRequest("apiserver", server_auth=True, dns_names=tuple(
        n.value for n in old.extensions.get_extension_for_class(primitives.x509.SubjectAlternativeName).value
        if isinstance(n, primitives.x509.DNSName)), validity=timedelta(days=365))
    cert = primitives.issue(request, key, ca, ca_key, future)
    (initialized / "api/server.crt").write_bytes(primitives.cert_to_pem(cert))
    (initialized / "api/server.key").write_bytes(primitives.key_to_pem(key))
    checked = status(initialized)
    assert checked.returncode == 1 and "not yet valid" in checked.stdout
    result = run_cli("run", volumes=initialized, check=True)
    assert "re-issued 1" in result.stdout
    fresh = primitives.load_certs((initialized / "api/server.crt").read_bytes())[0]
    assert fresh.not_valid_before_utc <= datetime.now(UTC)
    assert status(initialized).returncode == 0


def test_a_mesh_file_that_is_not_text_is_refused_never_overwritten(initialized):
    """The mesh files follow the stored higress-config; one that is garbage differs from the store
    and from the last delivery, so it may be a user's edit: refused in one line, never replaced."""
    (initialized / "pilot/config/mesh").write_bytes(NOT_UTF8)
    checked = status(initialized)
    assert checked.returncode == 1 and "not UTF-8" in checked.stdout
    result = run_cli("run", volumes=initialized)
    assert result.returncode == REFUSED
    one_line_error(result, "pilot/config/mesh", "--push-mesh")
    assert (initialized / "pilot/config/mesh").read_bytes() == NOT_UTF8
    result = run_cli("run", "--push-mesh", volumes=initialized)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert (initialized / "pilot/config/mesh").read_bytes() == NOT_UTF8


def _self_signed_ca(key, now, not_before=None, ca=True, path_length=None, constraints=True, unknown_critical=False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hostile CA")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(not_before or now - timedelta(days=1))
               .not_valid_after(now + timedelta(days=3650)))
    if constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    if unknown_critical:
        builder = builder.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"),
                                                                   b"\x05\x00"), critical=True)
    return builder.sign(key, hashes.SHA256())


CA_DEFECTS = {
    "not yet valid": (dict(not_before=datetime.now(UTC) + timedelta(days=30)), "is not valid before"),
    "unknown critical extension": (dict(unknown_critical=True), "unknown critical extension"),
    "pathlen 0": (dict(path_length=0), "pathlen 0"),
    "no basicConstraints": (dict(constraints=False), "no basicConstraints"),
}


@pytest.mark.parametrize("defect", list(CA_DEFECTS))
def test_a_root_that_cannot_validly_issue_is_refused_never_reissued_under(defect, initialized):
    """The pilot root (same key) made unusable: the run refuses with one line naming the CA (it was
    kept, and everything under it re-issued on every run, while status failed); status says why."""
    options, words = CA_DEFECTS[defect]
    key = primitives.load_key((initialized / "pki/pilot-root-ca.key").read_bytes())
    root = _self_signed_ca(key, datetime.now(UTC), **options)
    (initialized / "pilot/cacerts/root-cert.pem").write_bytes(primitives.cert_to_pem(root))
    before = state_of(initialized)
    result = run_cli("run", volumes=initialized)
    assert result.returncode == REFUSED, result.stdout + result.stderr
    one_line_error(result, "pilot/cacerts/root-cert.pem", words, "rotate root")
    assert state_of(initialized) == before
    checked = status(initialized)
    assert checked.returncode in (1, REFUSED) and words in checked.stdout + checked.stderr


def test_rotate_root_replaces_an_expired_root(initialized):
    """What the refusal of an expired root tells the user to run works."""
    key = primitives.load_key((initialized / "pki/pilot-root-ca.key").read_bytes())
    now = datetime.now(UTC)
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    old = primitives.load_certs((initialized / "pilot/cacerts/root-cert.pem").read_bytes())[0]
    builder = x509.CertificateBuilder().subject_name(old.subject).issuer_name(old.subject).public_key(key.public_key())
    builder = builder.serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=400))
    builder = builder.not_valid_after(now - timedelta(days=1))
    for ext in old.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    forged = builder.sign(key, hashes.SHA256())
    (initialized / "pilot/cacerts/root-cert.pem").write_bytes(primitives.cert_to_pem(forged))
    refused = run_cli("run", volumes=initialized)
    assert refused.returncode == REFUSED and "rotate root" in refused.stderr
    rotated = run_cli("rotate", "root", volumes=initialized)
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert "Traceback" not in rotated.stderr
    assert run_cli("run", volumes=initialized).returncode == 0
