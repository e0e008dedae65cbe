"""X.509 primitives over `cryptography`: make keys, issue certificates, read and check them."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Backdating covers small clock skew between the host that issues and the one that verifies.
BACKDATE = timedelta(minutes=5)


# The elliptic curves the settings allow: settings name -> (curve, JWS algorithm of a token signed with it).
CURVES = {"ecdsa-p256": (ec.SECP256R1, "ES256"), "ecdsa-p384": (ec.SECP384R1, "ES384")}


def generate_key(algorithm: str):
    """A new private key for an algorithm name from settings.KEY_ALGORITHMS."""
    if algorithm.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(algorithm.removeprefix("rsa-")))
    return ec.generate_private_key(CURVES[algorithm][0]())


def key_algorithm(key) -> str:
    """The settings name of a (private or public) key's algorithm."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return f"rsa-{key.key_size}"
    return next((name for name, (curve, _) in CURVES.items() if curve.name == key.curve.name), key.curve.name)


def jws_algorithm(key) -> str:
    """The JWS algorithm a token signed with this key declares."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "RS256"
    return CURVES[key_algorithm(key)][1]


def is_ip(name: str) -> bool:
    """An IP address (a SAN of type IP), not a DNS name."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def key_to_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_key(pem: bytes):
    # The full RSA consistency check (primality tests) costs ~0.25 s per key and would dominate
    # a warm rerun; every key read here is checked against its certificate's public key instead.
    return serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)


def cert_to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_certs(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def public_key_bytes(key) -> bytes:
    public = key.public_key() if hasattr(key, "private_bytes") else key
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_matches(cert: x509.Certificate, key) -> bool:
    return public_key_bytes(cert.public_key()) == public_key_bytes(key)


def verify_chain(cert: x509.Certificate, intermediates: list, roots: list, now: datetime,
                 server_name: str | None = None) -> str:
    """Verify a certificate as its consumer would (cryptography's X.509 path validation: chain
    to one of `roots`, validity at `now` of every certificate on the path, extended key usage,
    and, for a server, `server_name`). Returns why it fails ('' when it verifies).
    A client certificate needs no subjectAltName (the apiserver reads CN and O)."""
    from cryptography.x509 import verification as v
    if not roots:
        return "no trusted root to verify it against"
    builder = v.PolicyBuilder().store(v.Store(list(roots))).time(now)
    try:
        if server_name is not None:
            subject = v.IPAddress(ipaddress.ip_address(server_name)) if is_ip(server_name) \
                else v.DNSName(server_name)
            builder.build_server_verifier(subject).verify(cert, list(intermediates))
        else:
            ee = v.ExtensionPolicy.webpki_defaults_ee().may_be_present(
                x509.SubjectAlternativeName, v.Criticality.AGNOSTIC, None)
            builder.extension_policies(ca_policy=v.ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee) \
                .build_client_verifier().verify(cert, list(intermediates))
    except v.VerificationError as err:
        return f"does not verify ({_verification_reason(err)})"
    return ""


def _verification_reason(err) -> str:
    """cryptography's reason, without the Python repr of the certificate it may append
    ("(encountered processing <Certificate(subject=...)>)"): a user's message names files, not objects."""
    text = str(err).splitlines()[0] if str(err) else "no reason given"
    cut = text.find(" (encountered processing <")
    return (text[:cut] if cut >= 0 else text)[:160]


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when `issuer` signed `cert` (names, key identifiers and signature all agree)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return True
    return aki.key_identifier in (None, ski.digest)


@dataclass(frozen=True)
class CertificateRequest:
    """What to put into one certificate; built from an artifacts.CertSpec and the settings."""
    common_name: str | None
    organizations: tuple[str, ...] = ()
    is_ca: bool = False
    path_length: int | None = None
    server_auth: bool = False
    client_auth: bool = False
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    validity: timedelta = timedelta(days=365)
    subject_name: x509.Name | None = None   # a name kept as it was (migrate re-signs an adopted root under its own)

    def subject(self) -> x509.Name:
        if self.subject_name is not None:
            return self.subject_name
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in self.organizations]
        if self.common_name:
            attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, self.common_name))
        return x509.Name(attrs)

    def san_values(self) -> set[str]:
        return {*self.dns_names, *self.ip_addresses, *self.uris}


def issue(request: CertificateRequest, key, issuer_cert: x509.Certificate | None, issuer_key,
          now: datetime) -> x509.Certificate:
    """Sign a certificate for `key`; self-signed when issuer_cert is None."""
    subject = request.subject()
    public_key = key.public_key()
    signer_key = issuer_key if issuer_cert is not None else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + request.validity)
        .add_extension(x509.BasicConstraints(ca=request.is_ca, path_length=request.path_length), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), critical=False)
    )
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    if request.is_ca:
        usage = dict(key_cert_sign=True, crl_sign=True, digital_signature=True, key_encipherment=False)
    else:
        usage = dict(key_cert_sign=False, crl_sign=False, digital_signature=True, key_encipherment=is_rsa)
    builder = builder.add_extension(
        x509.KeyUsage(content_commitment=False, data_encipherment=False, key_agreement=False,
                      encipher_only=False, decipher_only=False, **usage), critical=True)
    purposes = ([ExtendedKeyUsageOID.SERVER_AUTH] if request.server_auth else []) + \
               ([ExtendedKeyUsageOID.CLIENT_AUTH] if request.client_auth else [])
    if purposes:
        builder = builder.add_extension(x509.ExtendedKeyUsage(purposes), critical=False)
    names = [x509.DNSName(d) for d in request.dns_names] + \
            [x509.IPAddress(ipaddress.ip_address(i)) for i in request.ip_addresses] + \
            [x509.UniformResourceIdentifier(u) for u in request.uris]
    if names:
        # An empty subject (Istio workload style) makes the SAN the identity: RFC 5280 wants it critical.
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=not subject)
    return builder.sign(signer_key, hashes.SHA256())


def san_values(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {*san.get_values_for_type(x509.DNSName),
            *(str(ip) for ip in san.get_values_for_type(x509.IPAddress)),
            *san.get_values_for_type(x509.UniformResourceIdentifier)}


def describe_name(cert: x509.Certificate, which: str = "subject") -> str:
    name = getattr(cert, which)
    text = name.rfc4514_string()
    if not text and which == "subject":
        uris = sorted(v for v in san_values(cert) if "://" in v)
        return uris[0] if uris else "(empty)"
    return text or "(empty)"


def expires(cert: x509.Certificate) -> datetime:
    return cert.not_valid_after_utc


def utcnow() -> datetime:
    return datetime.now(UTC)
