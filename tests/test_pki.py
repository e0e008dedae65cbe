"""pki: keys, issuing, and the checks every later decision relies on."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from higress_init.pki import primitives

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def ca():
    key = primitives.generate_key("ecdsa-p256")
    cert = primitives.issue(primitives.CertificateRequest("test-ca", is_ca=True), key, None, None, NOW)
    return cert, key


@pytest.mark.parametrize("algorithm,kind,size", [("rsa-2048", rsa.RSAPrivateKey, 2048),
                                                 ("ecdsa-p256", ec.EllipticCurvePrivateKey, 256),
                                                 ("ecdsa-p384", ec.EllipticCurvePrivateKey, 384)])
def test_generate_key(algorithm, kind, size):
    key = primitives.generate_key(algorithm)
    assert isinstance(key, kind) and key.key_size == size
    assert primitives.key_algorithm(key) == algorithm
    assert primitives.key_algorithm(primitives.load_key(primitives.key_to_pem(key))) == algorithm


def test_self_signed_ca(ca):
    cert, key = ca
    assert primitives.issued_by(cert, cert) and primitives.key_matches(cert, key)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert cert.not_valid_before_utc <= NOW - primitives.BACKDATE + timedelta(seconds=1)


def test_leaf_issue_and_checks(ca):
    ca_cert, ca_key = ca
    key = primitives.generate_key("ecdsa-p256")
    request = primitives.CertificateRequest("svc", server_auth=True, dns_names=("a.example",),
                                            ip_addresses=("10.0.0.1",), validity=timedelta(days=2))
    leaf = primitives.issue(request, key, ca_cert, ca_key, NOW)
    assert primitives.issued_by(leaf, ca_cert) and not primitives.issued_by(leaf, leaf)
    assert primitives.key_matches(leaf, key) and not primitives.key_matches(leaf, ca_key)
    assert primitives.san_values(leaf) == {"a.example", "10.0.0.1"} == request.san_values()
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki == ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert abs(primitives.expires(leaf) - (NOW + timedelta(days=2))) < timedelta(seconds=1)


def test_issuer_is_told_apart_by_key_not_by_name(ca):
    """Two roots with the same name (a rotation): only the one that signed verifies."""
    ca_cert, ca_key = ca
    twin_key = primitives.generate_key("ecdsa-p256")
    twin = primitives.issue(primitives.CertificateRequest("test-ca", is_ca=True), twin_key, None, None, NOW)
    assert twin.subject == ca_cert.subject
    leaf = primitives.issue(primitives.CertificateRequest("x", client_auth=True), primitives.generate_key("ecdsa-p256"),
                            ca_cert, ca_key, NOW)
    assert primitives.issued_by(leaf, ca_cert) and not primitives.issued_by(leaf, twin)


def test_empty_subject_makes_the_san_critical(ca):
    ca_cert, ca_key = ca
    leaf = primitives.issue(primitives.CertificateRequest(None, uris=("spiffe://td/ns/n/sa/s",)),
                            primitives.generate_key("ecdsa-p256"), ca_cert, ca_key, NOW)
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    assert primitives.describe_name(leaf) == "spiffe://td/ns/n/sa/s"


def test_pem_round_trip(ca):
    cert, key = ca
    assert primitives.load_certs(primitives.cert_to_pem(cert) * 2) == [cert, cert]
    assert primitives.key_matches(cert, primitives.load_key(primitives.key_to_pem(key)))


def test_a_verification_failure_names_no_python_object(tmp_path):
    """A version-1 certificate (what `openssl x509 -req` makes without extensions, as upstream's
    precheck.sh does): the reason says so, without the repr cryptography appends."""
    import subprocess

    from conftest import require_tool
    openssl = require_tool("openssl", "apt-get install openssl")
    for args in (["req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-days", "2",
                  "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=test-root"],
                 ["req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-keyout", "l.key",
                  "-out", "l.csr", "-subj", "/CN=leaf"],
                 ["x509", "-req", "-in", "l.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", "1", "-days",
                  "1", "-out", "l.crt"]):
        subprocess.run([openssl, *args], cwd=tmp_path, check=True, capture_output=True)
    leaf = x509.load_pem_x509_certificate((tmp_path / "l.crt").read_bytes())
    root = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    assert leaf.version == x509.Version.v1
    reason = primitives.verify_chain(leaf, [], [root], NOW)
    assert reason == "does not verify (validation failed: certificate must be an X509v3 certificate)", reason
