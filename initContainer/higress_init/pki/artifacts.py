"""Every certificate and key the initializer manages, declared as data, and the one code path
that decides (keep, create, re-issue, refuse) and issues any of them.

Issue order is table order: an issuer always comes before what it issues.
"""
from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from higress_init.errors import StateError
from higress_init.pki import primitives
from higress_init.pki.keypool import KeyPool
from higress_init.run.reporting import expires_within, renewal
from higress_init.settings import Settings
from higress_init.volume import layout


def _apiserver_sans(s: Settings):
    fixed = ("apiserver", "apiserver.svc", f"apiserver.{s.namespace}", f"apiserver.{s.namespace}.svc",
             "localhost", "127.0.0.1")
    names = tuple(dict.fromkeys(fixed + s.apiserver_sans))
    ips = tuple(n for n in names if primitives.is_ip(n))
    return tuple(n for n in names if n not in ips), ips, ()


def _gateway_sans(s: Settings):
    return (), (), (s.gateway_spiffe_id,)


@dataclass(frozen=True)
class CertSpec:
    name: str
    phase: str
    cert_file: str
    key_file: str
    issuer: str | None              # None: a self-signed root
    common_name: str | None
    organizations: tuple[str, ...] = ()
    ca: bool = False
    path_length: int | None = None
    server_auth: bool = False
    client_auth: bool = False
    sans: Callable[[Settings], tuple] | None = None   # -> (dns names, ip addresses, uris)
    validity: str = "cert_validity"                   # Settings attribute
    key_algorithm: str = "leaf_key_algorithm"         # Settings attribute
    chain: bool = False                               # cert_file holds the cert, then its issuer
    name_setting: str | None = None                   # Settings attribute giving the common name (per host)

    @property
    def rotation(self) -> str:
        """Which `rotate` kind replaces it: root (a self-signed CA), intermediate (a CA under one) or leaf."""
        return ("root" if self.issuer is None else "intermediate") if self.ca else "leaf"

    def request(self, s: Settings) -> primitives.CertificateRequest:
        dns, ips, uris = self.sans(s) if self.sans else ((), (), ())
        return primitives.CertificateRequest(
            common_name=getattr(s, self.name_setting) if self.name_setting else self.common_name,
            organizations=self.organizations, is_ca=self.ca,
            path_length=self.path_length, server_auth=self.server_auth, client_auth=self.client_auth,
            dns_names=dns, ip_addresses=ips, uris=uris, validity=getattr(s, self.validity))


# Files under pki/ are the initializer's own: no component mounts that directory.
CERTIFICATES: tuple[CertSpec, ...] = (
    CertSpec("apiserver-ca", "apiserver-pki", layout.APISERVER_CA_CERT, layout.APISERVER_CA_KEY, None,
             "higress-apiserver-ca", ca=True, validity="ca_validity", key_algorithm="ca_key_algorithm"),
    CertSpec("apiserver", "apiserver-pki", layout.APISERVER_CERT, layout.APISERVER_KEY, "apiserver-ca",
             "apiserver", server_auth=True, sans=_apiserver_sans),
    CertSpec("apiserver-admin", "apiserver-pki", layout.ADMIN_CERT, layout.ADMIN_KEY, "apiserver-ca",
             "higress-admin", organizations=("system:masters",), client_auth=True),
    # One client certificate per component that calls the apiserver (kubeconfig.KUBECONFIGS): the
    # apiserver's log names the caller, and one component's credentials can be replaced alone.
    # system:masters is the only group the apiserver authorises. The controller's and pilot's sit
    # beside their kubeconfig, which names them by path (client-go re-reads them when renewed); the
    # console's kubeconfig embeds its certificate, so the files stay in pki/.
    CertSpec("apiserver-controller", "apiserver-pki", layout.CONTROLLER_CLIENT_CERT, layout.CONTROLLER_CLIENT_KEY,
             "apiserver-ca", "controller", organizations=("system:masters",), client_auth=True),
    CertSpec("apiserver-pilot", "apiserver-pki", layout.PILOT_CLIENT_CERT, layout.PILOT_CLIENT_KEY,
             "apiserver-ca", "pilot", organizations=("system:masters",), client_auth=True),
    CertSpec("apiserver-console", "apiserver-pki", layout.CONSOLE_CLIENT_CERT, layout.CONSOLE_CLIENT_KEY,
             "apiserver-ca", "console", organizations=("system:masters",), client_auth=True),
    CertSpec("pilot-root-ca", "pilot-pki", layout.PILOT_ROOT_CERT, layout.PILOT_ROOT_KEY, None,
             "Higress Root CA", organizations=("Higress",), ca=True, validity="ca_validity",
             key_algorithm="ca_key_algorithm"),
    CertSpec("pilot-ca", "pilot-pki", layout.PILOT_CA_CERT, layout.PILOT_CA_KEY, "pilot-root-ca",
             "Higress Intermediate CA", organizations=("Higress",), ca=True, path_length=0,
             validity="intermediate_validity", key_algorithm="ca_key_algorithm"),
    CertSpec("gateway", "pilot-pki", layout.GATEWAY_CERT_CHAIN, layout.GATEWAY_KEY, "pilot-ca",
             None, server_auth=True, client_auth=True, sans=_gateway_sans, chain=True, name_setting="pod_name"),
)
SPECS = {spec.name: spec for spec in CERTIFICATES}


@dataclass(frozen=True)
class Bundle:
    """A file made of other certificates, re-rendered whenever they change. Entries name a
    certificate, `roots:<ca>` (the trusted roots of a root CA: during a rotation overlap, new and
    old) or `cross:<ca>` (during an overlap, the new root cross-signed by the old one)."""
    file: str
    phase: str
    parts: tuple[str, ...]


BUNDLES: tuple[Bundle, ...] = (
    Bundle(layout.PILOT_CHAIN, "pilot-pki", ("pilot-ca", "cross:pilot-root-ca", "roots:pilot-root-ca")),
    Bundle(layout.GATEWAY_ROOT_CERT, "pilot-pki", ("roots:pilot-root-ca",)),
)

# During a root rotation the previous root and the cross-signed new root live beside the key
# (layout.PREVIOUS_ROOT, layout.CROSS_ROOT).


@dataclass
class Decision:
    spec: CertSpec
    action: str                  # keep | create | reissue | rotate | external
    reason: str = ""
    cert: x509.Certificate | None = None
    key: object | None = None
    old_cert: x509.Certificate | None = None   # rotate: what is being replaced
    old_key: object | None = None

    @property
    def new_key(self) -> bool:
        """Whether carrying it out issues the certificate with a new key."""
        return self.action in ("create", "reissue", "rotate")


def _read(writer, rel):
    data = writer.read(rel)
    return data if data else None


def load_pair(spec: CertSpec, writer):
    """(cert, key, problem, has cert, has key) as found on disk, checked as every reader of them checks
    (run, plan, status, migrate); problem names what is unusable."""
    cert_pem, key_pem = _read(writer, spec.cert_file), _read(writer, spec.key_file)
    cert = key = None
    problem = ""
    if cert_pem:
        try:
            cert = primitives.load_certs(cert_pem)[0]
        except ValueError:
            problem = f"{spec.cert_file} is not a PEM certificate"
    if key_pem:
        try:
            key = primitives.load_key(key_pem)
        except (ValueError, TypeError):
            problem = problem or f"{spec.key_file} is not an unencrypted PEM private key"
    return cert, key, problem, bool(cert_pem), bool(key_pem)


def overlap(writer, root: str) -> tuple[x509.Certificate, x509.Certificate] | None:
    """(previous root, cross-signed new root) while a rotation of `root` is in progress."""
    files = layout.PREVIOUS_ROOT.format(root), layout.CROSS_ROOT.format(root)
    previous, cross = (_read(writer, f) for f in files)
    if previous is None or cross is None:
        return None
    certs = []
    for rel, pem in zip(files, (previous, cross), strict=True):
        try:
            certs.append(primitives.load_certs(pem)[0])
        except (ValueError, IndexError):
            raise StateError(f"{rel} is not a PEM certificate: restore it, or end the rotation with "
                             "'higress-init rotate finish'") from None
    return certs[0], certs[1]


def top_root(spec: CertSpec) -> str:
    while spec.issuer:
        spec = SPECS[spec.issuer]
    return spec.name


def decide(settings: Settings, writer, now: datetime, rotate: AbstractSet[str] = frozenset()) -> dict[str, Decision]:
    """Decide, for every certificate in the table, what this run does with it. `rotate` names
    certificates to replace on purpose (rotation); nothing else that exists is replaced but a
    leaf that is missing, broken, expiring or no longer issued by its CA."""
    decisions: dict[str, Decision] = {}
    for spec in CERTIFICATES:
        cert, key, problem, has_cert, has_key = load_pair(spec, writer)
        issuer = decisions.get(spec.issuer) if spec.issuer else None
        if spec.ca:
            decisions[spec.name] = _decide_ca(spec, settings, now, cert, key, problem, has_cert, has_key, issuer,
                                              forced=spec.name in rotate, writer=writer)
        else:
            decisions[spec.name] = _decide_leaf(spec, settings, now, cert, key, problem, issuer, decisions,
                                                forced=spec.name in rotate)
    return decisions


def _decide_ca(spec, settings, now, cert, key, problem, has_cert, has_key, issuer, forced, writer) -> Decision:
    if not has_cert and not has_key:
        if issuer is not None and issuer.action == "external":
            raise StateError(f"{spec.cert_file} is missing and its issuer {issuer.spec.cert_file} has no key "
                             f"here ({issuer.spec.key_file}) to issue it: supply both files of this CA")
        return Decision(spec, "create", "missing")
    if problem:
        raise StateError(f"{problem}: a CA is never replaced silently; restore the file, or move both "
                         f"{spec.cert_file} and {spec.key_file} away to create a new CA")
    if has_key and not has_cert:
        raise StateError(f"{spec.key_file} exists without its certificate {spec.cert_file}: restore "
                         f"{spec.cert_file}, or move {spec.key_file} away to create a new CA")
    unusable = cannot_issue(spec, cert, now)
    if unusable and not forced:
        raise StateError(f"{spec.cert_file} {unusable}: a CA is never replaced silently; fix it, or replace it with "
                         f"'higress-init rotate {'root' if spec.issuer is None else 'intermediate'}'")
    if key is not None and not primitives.key_matches(cert, key):
        raise StateError(f"{spec.key_file} does not match {spec.cert_file}: restore the matching pair")
    replaced_issuer = issuer is not None and issuer.action == "rotate"
    if forced or replaced_issuer:
        if issuer is not None and issuer.action == "external":
            # e.g. a host that adopted the CA another host published (its root key stays there)
            raise StateError(f"{spec.cert_file} can't be re-issued here: its issuer {issuer.spec.cert_file} has no "
                             f"key on this host ({issuer.spec.key_file}); rotate on the host that holds it")
        if key is None:
            raise StateError(f"{spec.cert_file} is externally managed (no {spec.key_file}): rotate it where it "
                             "is managed, then put the new files in place")
        if forced and spec.issuer is None and overlap(writer, spec.name):
            raise StateError(f"a rotation of {spec.cert_file} is still in progress: finish it first with "
                             "'higress-init rotate finish'")
        return Decision(spec, "rotate", "rotation" if forced else "new issuer", cert, key, cert, key)
    if primitives.expires(cert) <= now:
        raise StateError(f"{spec.cert_file} expired on {primitives.expires(cert):%Y-%m-%d}: "
                         f"replace it with 'higress-init rotate root' or 'rotate intermediate'")
    if issuer is not None and not primitives.issued_by(cert, issuer.cert if issuer.cert else cert):
        raise StateError(f"{spec.cert_file} was not issued by {issuer.spec.cert_file}: restore the matching "
                         f"CA, or use 'higress-init rotate intermediate'")
    if key is None:
        return Decision(spec, "external", f"no {spec.key_file}: externally managed CA", cert)
    return Decision(spec, "keep", "", cert, key)


NOT_BEFORE_LEEWAY = timedelta(minutes=5)  # clocks of hosts sharing the volumes differ a little


def cannot_issue(spec: CertSpec, cert, now: datetime) -> str:
    """Why this CA certificate cannot validly issue what it must (empty when it can): every
    verifier would refuse what it signs, so a run refuses it rather than re-issue under it forever."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "has no basicConstraints: it is not a CA certificate"
    except ValueError:
        return "has extensions that do not parse"
    if not constraints.ca:
        return "is not a CA certificate (basicConstraints CA:false)"
    issues_cas = any(child.ca and child.issuer == spec.name for child in CERTIFICATES)
    if issues_cas and constraints.path_length == 0:
        return "has pathlen 0: it cannot issue the intermediate CA under it"
    unknown = [e.oid.dotted_string for e in cert.extensions
               if e.critical and isinstance(e.value, x509.UnrecognizedExtension)]
    if unknown:
        return f"carries an unknown critical extension ({', '.join(unknown)}): verifiers refuse what it signs"
    if cert.not_valid_before_utc > now + NOT_BEFORE_LEEWAY:
        return (f"is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (the clock was ahead when it was "
                "made, or is behind now)")
    return ""


def ca_problem(spec: CertSpec, settings: Settings, now: datetime, cert, key, problem: str, chain: list) -> str:
    """What is wrong with an existing CA certificate (empty when nothing): a run refuses the
    first ones (a CA is never replaced silently), and warns of the last."""
    if problem:
        return problem
    unusable = cannot_issue(spec, cert, now)
    if unusable:
        return unusable
    if key is not None and not primitives.key_matches(cert, key):
        return "key does not match"
    if spec.issuer and not chain:
        return f"its issuer {SPECS[spec.issuer].cert_file} is missing"
    if not primitives.issued_by(cert, chain[0] if spec.issuer else cert):
        return "chain does not verify" if spec.issuer else "not self-signed"
    if primitives.expires(cert) <= now:
        return "expired"
    if primitives.expires(cert) - now <= settings.renew_before:
        return expires_within(settings.renew_before)
    return ""


def issuers(spec: CertSpec, certs: dict) -> list:
    """The CA certificates above `spec`, its issuer first, the root last (`certs`: by name; a
    missing one ends the list)."""
    chain = []
    while spec.issuer and certs.get(spec.issuer) is not None:
        chain.append(certs[spec.issuer])
        spec = SPECS[spec.issuer]
    return chain


def verify(spec: CertSpec, settings: Settings, cert, chain: list, now: datetime) -> str:
    """The certificate as its consumer verifies it: to its root, at `now`, for its purpose
    (a server by the first of its names, a client by its client EKU)."""
    dns, ips, _ = spec.sans(settings) if spec.sans else ((), (), ())
    server_name = (dns + ips)[0] if spec.server_auth and (dns or ips) else None
    return primitives.verify_chain(cert, chain[:-1], chain[-1:], now, server_name)


def leaf_problem(spec: CertSpec, settings: Settings, now: datetime, cert, key, problem: str,
                 chain: list | None) -> str:
    """Why an existing leaf certificate can't be kept (empty when it can). `chain`: the current
    CA certificates above it (issuers()), None when its CA is being replaced."""
    if problem:
        return problem
    if cert is None:
        return "missing"
    if key is None:
        return f"{spec.key_file} missing"
    if not primitives.key_matches(cert, key):
        return "key does not match"
    if primitives.expires(cert) <= now:
        return "expired"
    if cert.not_valid_before_utc > now + NOT_BEFORE_LEEWAY:
        return "not yet valid"
    if primitives.expires(cert) - now <= settings.renew_before:
        return expires_within(settings.renew_before)
    if not chain or not primitives.issued_by(cert, chain[0]):
        return "not issued by the current CA"
    failed = verify(spec, settings, cert, chain, now)
    if failed:
        return failed
    wanted = spec.request(settings)
    have, want = primitives.san_values(cert), wanted.san_values()
    if have != want:   # which names, so that a dropped SAN is seen for what it is
        return "; ".join([f"SAN {n} missing" for n in sorted(want - have)]
                         + [f"SAN {n} not wanted" for n in sorted(have - want)])
    if cert.subject != wanted.subject():
        return f"subject {cert.subject.rfc4514_string()}, want {wanted.subject().rfc4514_string()}"
    if primitives.key_algorithm(key) != getattr(settings, spec.key_algorithm):
        return "key algorithm changed"
    return ""


def _decide_leaf(spec, settings, now, cert, key, problem, issuer, decisions, forced=False) -> Decision:
    chain = issuers(spec, {n: d.cert for n, d in decisions.items()}) if issuer.action in ("keep", "external") \
        else None
    reason = leaf_problem(spec, settings, now, cert, key, problem, chain)
    if issuer.action not in ("keep", "external") and reason != "missing":
        reason = "new CA"
    if forced and not reason:
        reason = "rotation"
    if not reason:
        return Decision(spec, "keep", "", cert, key)
    if issuer.action == "external":
        raise StateError(f"{spec.cert_file}: {reason}, and its CA {issuer.spec.cert_file} is externally "
                         f"managed (no {issuer.spec.key_file}): supply a valid certificate and key")
    return Decision(spec, "create" if cert is None and reason == "missing" else "reissue", reason, old_cert=cert)


def apply(phase: str, settings: Settings, writer, decisions: dict[str, Decision], keys: KeyPool,
          now: datetime, counts) -> None:
    """Issue what the decisions ask for, in table order, and stage the files of one phase."""
    for spec in CERTIFICATES:
        if spec.phase != phase:
            continue
        d = decisions[spec.name]
        if d.new_key:
            issuer = decisions[spec.issuer] if spec.issuer else None
            # in table order: an issuer's certificate is there (kept, or issued above) before its leaves
            issuer_cert = _issued(issuer) if issuer is not None else None
            d.key = keys.get(spec.name)
            request = spec.request(settings)
            if issuer_cert is not None and primitives.expires(issuer_cert) - now < request.validity:
                # never outlive the issuer: a certificate past its CA's end fails verification anyway
                validity = primitives.expires(issuer_cert) - now
                request = primitives.CertificateRequest(**{**request.__dict__, "validity": validity})
            d.cert = primitives.issue(request, d.key, issuer.cert if issuer else None,
                               issuer.key if issuer else None, now)
            if d.action == "rotate" and issuer is None and primitives.expires(_replaced(d)) > now:
                # an expired old root verifies nothing any more: no overlap to keep it trusted through
                _start_overlap(spec, d, settings, writer, now)
            writer.stage(spec.key_file, primitives.key_to_pem(d.key), private=True)
            d.action = {"reissue": "reissued", "create": "created", "rotate": "reissued"}[d.action]
            writer.stage(spec.cert_file, cert_file_pem(spec, decisions, writer))
            counts.add("re-issued" if d.action == "reissued" else d.action, spec.name)
        elif d.action != "external" and writer.stage(spec.cert_file, cert_file_pem(spec, decisions, writer)):
            counts.add("updated", spec.name)  # same certificate; its chain or trusted roots changed
        else:
            counts.add("kept", spec.name)
    _record_ca_keys(phase, writer, decisions)
    for bundle in BUNDLES:
        if bundle.phase == phase:
            existed = writer.exists(bundle.file)
            if writer.stage(bundle.file, render_bundle(bundle.parts, decisions, writer)):
                counts.add("updated" if existed else "created", bundle.file)
            else:
                counts.add("kept", bundle.file)


def ca_fingerprint(cert) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _record_ca_keys(phase: str, writer, decisions: dict[str, Decision]) -> None:
    """Remember which CA certificates had their key here: when such a key is later gone, that is a
    loss status fails on at once, not a CA managed elsewhere (a certificate given without its key,
    which a run keeps as "external")."""
    record = writer.read_record(layout.CA_KEYS_RECORD)
    held = {d.spec.name: ca_fingerprint(d.cert) for d in decisions.values()
            if d.spec.ca and d.spec.phase == phase and d.key is not None and d.cert is not None}
    if any(record.get(name) != digest for name, digest in held.items()):
        writer.stage_record(layout.CA_KEYS_RECORD, {**record, **held})


def key_was_here(writer, spec: CertSpec, cert) -> bool:
    """The CA certificate `cert` had its key on this host once (see _record_ca_keys)."""
    return writer.read_record(layout.CA_KEYS_RECORD).get(spec.name) == ca_fingerprint(cert)


def _issued(d: Decision) -> x509.Certificate:
    """The certificate of an issuer decided earlier in the table (kept, or issued by then)."""
    assert d.cert is not None, f"{d.spec.name}: an issuer without its certificate"
    return d.cert


def _replaced(d: Decision) -> x509.Certificate:
    """The certificate a rotation replaces (decided with the rotation)."""
    assert d.old_cert is not None, f"{d.spec.name}: a rotation without the certificate it replaces"
    return d.old_cert


def _start_overlap(spec: CertSpec, d: Decision, settings: Settings, writer, now: datetime) -> None:
    """Keep the old root trusted, and cross-sign the new one with it, so peers that still trust
    only the old root accept certificates issued under the new one until `rotate finish`."""
    request = spec.request(settings)
    # a certificate can't outlive its issuer
    old_cert = _replaced(d)
    remaining = primitives.expires(old_cert) - now
    cross_request = primitives.CertificateRequest(**{**request.__dict__, "validity": min(request.validity, remaining)})
    cross = primitives.issue(cross_request, d.key, old_cert, d.old_key, now)
    writer.stage(layout.PREVIOUS_ROOT.format(spec.name), primitives.cert_to_pem(old_cert))
    writer.stage(layout.CROSS_ROOT.format(spec.name), primitives.cert_to_pem(cross))


def trusted_roots(root: str, decisions, writer) -> list[x509.Certificate]:
    current = decisions[root].cert
    state = overlap(writer, root)
    return [current] + ([state[0]] if state else [])


def cert_file_pem(spec: CertSpec, decisions, writer) -> bytes:
    """A certificate file: a root lists the trusted roots (new first); a leaf is followed by its
    issuer when the spec asks, and during a root overlap by the cross-signed new root."""
    if spec.issuer is None:
        return b"".join(primitives.cert_to_pem(c) for c in trusted_roots(spec.name, decisions, writer))
    certs = [decisions[spec.name].cert]
    if spec.chain:
        certs.append(decisions[spec.issuer].cert)
    state = overlap(writer, top_root(spec))
    if state and not spec.ca:
        certs.append(state[1])
    return b"".join(primitives.cert_to_pem(c) for c in certs)


def render_bundle(parts, decisions, writer) -> bytes:
    certs = []
    for part in parts:
        kind, _, name = part.rpartition(":")
        if kind == "roots":
            certs += trusted_roots(name, decisions, writer)
        elif kind == "cross":
            state = overlap(writer, name)
            certs += [state[1]] if state else []
        else:
            certs.append(decisions[name].cert)
    return b"".join(primitives.cert_to_pem(c) for c in certs)


def finish_rotation(writer) -> list[str]:
    """Drop the old roots and cross-signed certificates (copied to backup/ first)."""
    finished = []
    for spec in CERTIFICATES:
        if spec.issuer is None and overlap(writer, spec.name):
            writer.remove(layout.PREVIOUS_ROOT.format(spec.name))
            writer.remove(layout.CROSS_ROOT.format(spec.name))
            finished.append(spec.name)
    return finished


# What each rotation replaces (`rotate leaf|intermediate|root`), derived from the table: a
# certificate's kind is its place in its chain; everything issued under a replaced CA follows it.
# The tokens rotate with the leaves, their signing key with the roots.
ROTATIONS = {kind: {spec.name for spec in CERTIFICATES if spec.rotation == kind} | tokens
             for kind, tokens in (("leaf", {"tokens"}), ("intermediate", set()), ("root", {"token-key"}))}


def certificates(phase: str, ctx, counts) -> None:
    """The certificates of one phase (apiserver-pki, pilot-pki): decided, issued, staged."""
    ctx.pki.start()  # every key the run needs, generated in parallel, before signing
    apply(phase, ctx.settings, ctx.writer, ctx.pki.decisions, ctx.pki.keys, ctx.now, counts)
    for d in ctx.pki.decisions.values():   # renewed for its expiry: said with the time it had left
        if d.spec.phase == phase and d.old_cert is not None and d.reason.startswith("expire"):
            ctx.log(renewal(d.spec.name, d.reason, primitives.expires(d.old_cert), ctx.now, ctx.plan))
    for d in ctx.pki.decisions.values():
        if d.spec.phase == phase and d.cert is not None:
            lead = timedelta(0) if d.spec.ca else ctx.settings.renew_before
            ctx.renew_by.append(d.cert.not_valid_after_utc - lead)
            ctx.valid_from.append(d.cert.not_valid_before_utc)
