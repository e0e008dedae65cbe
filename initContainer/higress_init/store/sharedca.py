"""The pilot plug-in CA shared by every host of one deployment, through Nacos.

Istio in Kubernetes keeps its plug-in CA in the Secret `cacerts`; here the control-plane host
(ROLE=all) publishes the four files of `pilot/cacerts/` as that Secret in the Nacos store, stored
exactly as the apiserver stores Secrets (store/nacos/layout's encryption with the data key, listed in
`secrets.__names__`), so `kubectl -n higress-system get secret cacerts` shows it. Every other host
takes the CA from there:
- a second control-plane host adopts it (its pilot signs with the same intermediate; the root key
  stays on the host that made it, so rotations happen there);
- a gateway-only host (ROLE=gateway) issues its own gateway certificate from it in memory and keeps
  no copy of the CA key; it writes only `gateway/` files (and `pilot/config/*`, by `deliver`).

Publication is once, by compare-and-swap (expected: absent, which Nacos enforces with a unique
key), and decided by the publish answer alone: accepted, this host's CA is the deployment's;
refused, another host's is, read from the database view (a node's served copy can lag a write, or
show a refused one, for seconds) and adopted.

Nothing another host can see is ever unrecoverable here: a CA made or rotated by this run is
committed into the volumes (with the data key that encrypts its Secret) before it is published,
marked pending in the record (`.higress-init/shared-ca.json`) in that same commit. A run that ends
between the commit and the end of the publication leaves a pending CA that the next run publishes
(nothing published, or the published one is what it replaced), confirms (it was published), or,
for a first publication another host won meanwhile, discards for the winner's (into backup/).

r-nacos ignores casMd5: there (no server version), a first publication is confirmed by a second
read SETTLE seconds later; readers give a publication younger than SETTLE the same time (its
`published-at` annotation says when). A local CA that differs from the published one is never
replaced silently, nor is the published one.
"""
from __future__ import annotations

import base64
import hashlib
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from higress_init import faults
from higress_init.errors import StateError, StoreError
from higress_init.pki import artifacts, datakey, primitives
from higress_init.run.reporting import Counts, Row, status_row
from higress_init.store.base import md5
from higress_init.store.kinds import open_for_status, open_store
from higress_init.store.nacos.client import NacosConflict, NacosUnreachable
from higress_init.store.nacos.layout import decrypt, encrypt
from higress_init.store.nacos.store import NacosStore
from higress_init.versions.objects import CACERTS, BaseObject, render  # noqa: F401 (CACERTS: sharedca's name too)
from higress_init.volume import layout

# Secret key -> volume file: Istio's plug-in CA layout, as the artifacts table names the files
_ROOT, _CA, _CHAIN = artifacts.SPECS["pilot-root-ca"], artifacts.SPECS["pilot-ca"], artifacts.BUNDLES[0]
CA_FILES = {"ca-cert.pem": _CA.cert_file, "ca-key.pem": _CA.key_file, "root-cert.pem": _ROOT.cert_file,
            "cert-chain.pem": _CHAIN.file}
ROOT_KEY = _ROOT.key_file
PREVIOUS_ROOT = layout.PREVIOUS_ROOT.format(_ROOT.name)
CROSS_ROOT = layout.CROSS_ROOT.format(_ROOT.name)
PILOT_SPECS = tuple(spec.name for spec in artifacts.CERTIFICATES if spec.phase == "pilot-pki")
RECORD_FILE = layout.SHARED_CA_RECORD   # digests of the CA files as last published or adopted here
SETTLE = 2.0                                   # seconds a first publication must stay unchanged to count
PUBLISHED_AT, PUBLISHED_BY = "higress.io/published-at", "higress.io/published-by"



@dataclass
class Published:
    raw: str                       # as stored in Nacos (encrypted)
    obj: dict                      # the Secret
    files: dict[str, bytes]        # Secret key -> PEM

    @property
    def md5(self) -> str:
        return md5(self.raw)

    @property
    def intermediate(self):
        return primitives.load_certs(self.files["ca-cert.pem"])[0]

    @property
    def roots(self) -> list:
        return primitives.load_certs(self.files["root-cert.pem"])

    @property
    def by(self) -> str:
        return (self.obj["metadata"].get("annotations") or {}).get(PUBLISHED_BY, "another host")

    def age(self) -> float | None:
        stamp = (self.obj["metadata"].get("annotations") or {}).get(PUBLISHED_AT)
        if not isinstance(stamp, str):
            return None   # none (made elsewhere, e.g. kubectl), or not a timestamp
        try:
            return (datetime.now(UTC) - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds()
        except (TypeError, ValueError):   # not ISO 8601, or no time zone (naive minus aware)
            return None   # made elsewhere (e.g. kubectl): no publication window to wait out


def where(s) -> str:
    return f"secrets/cacerts (Nacos namespace {s.nacos_namespace}, group {CACERTS.group(s)})"


def fingerprint(cert) -> str:
    from cryptography.hazmat.primitives import hashes
    return cert.fingerprint(hashes.SHA256()).hex()[:16]


# --- the data key, reading and checking the Secret
def data_key(ctx) -> bytes:
    """NACOS_DATA_ENC_KEY or api/nacos.key (both: they must agree)."""
    return datakey.load(ctx.writer, ctx.settings, missing="the shared CA is encrypted with the deployment's data key: "
                        f"set NACOS_DATA_ENC_KEY or copy the control-plane host's {layout.DATA_KEY}")


def parse(s, raw: str, key: bytes) -> Published:
    import yaml
    wrong_key = (f"{where(s)} does not decrypt with this host's data key (NACOS_DATA_ENC_KEY or {layout.DATA_KEY}): "
                 "it is not the deployment's key. Use the control-plane host's api/nacos.key; nothing was written")
    try:
        obj = yaml.safe_load(decrypt(raw, key))
    except (ValueError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        raise StateError(wrong_key) from None
    if not isinstance(obj, dict) or obj.get("kind") != "Secret" or not isinstance(obj.get("data"), dict):
        raise StateError(wrong_key)
    obj.setdefault("metadata", {})
    try:
        files = {k: base64.b64decode(obj["data"][k], validate=True) for k in CA_FILES}
        published = Published(raw, obj, files)
        intermediate, roots = published.intermediate, published.roots
        key_ok = primitives.key_matches(intermediate, primitives.load_key(files["ca-key.pem"]))
    except (KeyError, TypeError, ValueError) as err:
        raise StateError(f"{where(s)} is not a usable plug-in CA ({type(err).__name__}: needs ca-cert.pem, "
                         "ca-key.pem, root-cert.pem and cert-chain.pem as PEM): nothing was written") from None
    if not key_ok or not primitives.issued_by(intermediate, roots[0]):
        raise StateError(f"{where(s)}: ca-key.pem does not match ca-cert.pem, or ca-cert.pem was not issued by "
                         "root-cert.pem: nothing was written")
    return published


def read(ctx, conn) -> Published | None:
    """The published CA as the database holds it (never a lagging or refused copy)."""
    s = ctx.settings
    key = (CACERTS.data_id, CACERTS.group(s))
    raw = conn.written[key] if key in conn.written else conn.get_stored(*key)   # this run's own write, as written
    return None if raw is None else parse(s, raw, data_key(ctx))


def read_settled(ctx, conn) -> Published | None:
    """The published CA, once no concurrent first publication can still replace it: at once where
    the server enforces compare-and-swap (an accepted first publication is final)."""
    published = read(ctx, conn)
    if conn.cas_enforced:
        return published
    for _ in range(10):   # each round waits out one publication; more than a few means someone keeps writing
        if published is None:
            return None
        age = published.age()
        if age is None or age >= SETTLE:
            return published
        wait = min(SETTLE - age, SETTLE) if age >= 0 else SETTLE
        ctx.log(f"shared CA: {where(ctx.settings)} was published {max(age, 0):.1f}s ago by {published.by}; "
                f"waiting {wait:.1f}s for any concurrent publication to settle")
        time.sleep(wait)
        again = read(ctx, conn)
        if again is not None and again.raw == published.raw:
            return again
        published = again
    return published


# --- the files of the published CA, and the local ones
def files_from(published: Published) -> dict[str, bytes | None]:
    """The volume files the published CA stands for: the four plug-in CA files, plus, during a root
    rotation overlap, the previous root and the cross-signed new root (as a rotation here keeps them)."""
    files: dict[str, bytes | None] = {rel: published.files[k] for k, rel in CA_FILES.items()}
    roots = published.roots
    chain = primitives.load_certs(published.files["cert-chain.pem"])
    cross = [c for c in chain if c != published.intermediate and c not in roots]
    files[PREVIOUS_ROOT] = primitives.cert_to_pem(roots[1]) if len(roots) > 1 else None
    files[CROSS_ROOT] = primitives.cert_to_pem(cross[0]) if cross and len(roots) > 1 else None
    return files


def local_files(writer) -> dict[str, bytes | None]:
    return {k: writer.read(rel) for k, rel in CA_FILES.items()}


def _digests(files: dict) -> dict[str, str | None]:
    return {k: hashlib.sha256(v).hexdigest() if v is not None else None for k, v in files.items()}


def recorded(writer) -> dict:
    return writer.read_record(RECORD_FILE)


def record(ctx, published_md5: str) -> None:
    """This host's CA files are the published ones (md5 of the Secret as stored): nothing pending."""
    entry = {"files": _digests(local_files(ctx.writer)), "published_md5": published_md5}
    if recorded(ctx.writer) != entry:
        ctx.writer.stage_record(RECORD_FILE, entry)


def pending(writer, local: dict) -> dict | None:
    """The record's pending entry when it stands for exactly these local files: a CA this host made
    (`replaces`: None) or rotated (`replaces`: the md5 of the Secret it replaces) and has not
    published yet."""
    entry = recorded(writer).get("pending")
    if isinstance(entry, dict) and entry.get("files") == _digests(local):
        return entry
    return None


def stage_pending(ctx) -> None:
    """After pilot-pki, with Nacos storage: when this run made or rotated the CA (the local files
    differ from the published ones), mark it pending, in the commit that writes it."""
    local = local_files(ctx.writer)
    published = ctx.shared_ca
    if None in local.values() or (published is not None and all(local[k] == published.files[k] for k in CA_FILES)):
        return
    if pending(ctx.writer, local):
        return
    if published is not None and ctx.writer.read(ROOT_KEY) is None:
        raise StateError(f"this run changed pilot/cacerts, but this host did not publish the deployment's CA (no "
                         f"{ROOT_KEY}): rotate on the host that holds the root key; this host takes the result on "
                         "its next run. Nothing was written")
    entry = dict(recorded(ctx.writer))
    entry["pending"] = {"files": _digests(local), "replaces": published.md5 if published else None}
    ctx.writer.stage_record(RECORD_FILE, entry)


def _roots_of(files: dict) -> list:
    try:
        return primitives.load_certs(files["root-cert.pem"]) if files.get("root-cert.pem") else []
    except ValueError:
        return []


def verdict(writer, local: dict, published: Published) -> str:
    """adopt (nothing here yet) | same | follow (what this host last took from Nacos, and the
    published CA is its rotation: a root in common) | differs."""
    if all(v is None for v in local.values()):
        return "adopt"
    if all(local[k] == published.files[k] for k in CA_FILES):
        return "same"
    if recorded(writer).get("files") == _digests(local) and set(_roots_of(local)) & set(published.roots):
        return "follow"
    return "differs"


def refusal(s, local: dict, published: Published) -> StateError:
    mine = _roots_of(local)
    here = f"this host's CA (pilot/cacerts, root {fingerprint(mine[0]) if mine else 'unreadable'})"
    return StateError(
        f"{here} differs from the one {published.by} published as {where(s)} (root {fingerprint(published.roots[0])}); "
        "neither is overwritten. Ways out: take the published CA here (move pilot/cacerts/ and pki/pilot-root-ca.key "
        "away, then rerun); or make this host's CA the deployment's (`kubectl -n "
        f"{s.namespace} delete secret cacerts`, rerun here, then every other host must take it the same way); or "
        "keep them apart with another Nacos namespace (NACOS_NS)")


def stage_published(ctx, published: Published) -> None:
    for rel, data in files_from(published).items():
        if data is None:
            if ctx.writer.exists(rel):
                ctx.writer.remove(rel)
        else:
            ctx.writer.stage(rel, data, private=rel == _CA.key_file)


def _redecide(ctx) -> None:
    """After the pilot CA files changed under a run: decide the pilot certificates again."""
    ctx.pki.redecide(PILOT_SPECS)


# --- the control-plane host (ROLE=all)
def adopt(ctx, counts: Counts) -> None:
    """Before the pilot CA is decided: take the published CA when this host has none, follow its
    rotation when this host's files are what it last took from Nacos, refuse when they differ."""
    open_store(ctx)
    published = ctx.shared_ca = read_settled(ctx, ctx.nacos)
    if published is None:
        return
    local = local_files(ctx.writer)
    outcome = verdict(ctx.writer, local, published)
    mine = pending(ctx.writer, local) if outcome == "differs" else None
    if mine is not None and mine["replaces"] == published.md5:
        return      # this host's rotation of the published CA, committed, not yet published: shared-ca does
    if mine is not None and mine["replaces"] is None:
        outcome = "lost"   # this host's first CA, committed; another host published first meanwhile
    if outcome == "differs":
        raise refusal(ctx.settings, local, published)
    if outcome == "same":
        return
    if outcome == "lost":
        _discard_root_key(ctx)
    stage_published(ctx, published)
    _redecide(ctx)
    counts.add({"adopt": "created", "lost": "discarded"}.get(outcome, "updated"),
               f"pilot CA from {where(ctx.settings)}")
    ctx.log(f"shared CA: {'took' if outcome in ('adopt', 'lost') else 'followed the rotation of'} the CA "
            f"{published.by} published (intermediate {fingerprint(published.intermediate)}); "
            "its root key stays on that host"
            + ("; the CA this host made before and never published is in backup/" if outcome == "lost" else ""))


def _discard_root_key(ctx) -> None:
    """The root key of a CA this host made and lost the first publication with: removed (a
    committed one goes to backup/ with the commit), never used."""
    if ctx.writer.exists(ROOT_KEY):
        ctx.writer.remove(ROOT_KEY)


def _secret_text(ctx, files: dict, published: Published | None) -> str:
    from dataclasses import replace

    from higress_init.versions import meshconfig
    s = ctx.settings
    data = {k: files[k].decode() for k in CA_FILES}
    if published is None:
        obj = render(replace(CACERTS, make=lambda *_: {"data": data, "type": "Opaque"}), s, ctx.now)
    else:
        obj = dict(published.obj, data={k: base64.b64encode(v.encode()).decode() for k, v in data.items()})
    obj["metadata"] = dict(obj["metadata"], annotations={
        **(obj["metadata"].get("annotations") or {}),
        PUBLISHED_AT: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        PUBLISHED_BY: socket.gethostname()})
    return meshconfig.dump(obj)


def publish(ctx, counts: Counts) -> None:
    """The `shared-ca` phase (ROLE=all, Nacos storage), after `write`: publish this host's pilot CA
    when Nacos has none, or when this run rotated it (both committed here, pending, first); list it
    in secrets.__names__; record what is published. A lost first publication takes the winner's CA."""
    open_store(ctx)
    conn = ctx.nacos
    if not ctx.pki.decided:      # the warm fast path kept the local files without deciding anything
        adopt(ctx, counts)
        if ctx.writer.changes():    # following a rotation published meanwhile: issue under it now
            artifacts.certificates("pilot-pki", ctx, counts)
        ctx.writer.commit()
    published = ctx.shared_ca
    local = local_files(ctx.writer)
    if None in local.values():
        raise StateError("the pilot CA files are missing: run phase pilot-pki first")
    if published is not None and all(local[k] == published.files[k] for k in CA_FILES):
        counts.add("kept", "secrets/cacerts")
    else:
        published = _publish(ctx, conn, counts, local, published)
    faults.pause("shared-ca:published")
    faults.point("shared-ca:published")
    NacosStore(ctx, conn).finish(counts, [CACERTS])   # the index kubectl lists Secrets by
    record(ctx, published.md5)
    ctx.writer.commit()


def _publish(ctx, conn, counts, local, published) -> Published:
    s = ctx.settings
    raw = encrypt(_secret_text(ctx, local, published), data_key(ctx))
    group = CACERTS.group(s)
    try:
        faults.pause("shared-ca:before-publish")
        faults.point("shared-ca:before-publish")
        conn.compare_and_publish(CACERTS.data_id, group, raw, published.md5 if published else None)
        current = raw   # accepted: ours
        if not conn.cas_enforced and published is None and not getattr(conn, "staged", False):
            # r-nacos accepts a stale create too: read again after SETTLE (plan: no race)
            time.sleep(SETTLE)    # a competing first write that passed its absent-check lands by now
            current = conn.get_stored(CACERTS.data_id, group)
    except NacosConflict:
        if published is not None:
            raise NacosConflict(f"{where(s)} changed while this host was publishing its rotation: the rotated CA stays "
                                "here, pending, unpublished; see which host changed it before you rerun") from None
        current = None   # refused: another host's publication is the deployment's
    if current == raw:
        counts.add("created" if published is None else "updated", "secrets/cacerts")
        ctx.log(f"shared CA: published this host's pilot CA as {where(s)}")
        return parse(s, raw, data_key(ctx))
    winner = read_settled(ctx, conn)
    if winner is None or published is not None or pending(ctx.writer, local) is None:
        raise refusal(s, local, winner) if winner else StateError(f"{where(s)} vanished while publishing: rerun")
    # lost the race for the first publication: take the winner's CA; the one made here (committed,
    # never published, never used by a component yet) goes to backup/ with its root key
    faults.pause("shared-ca:adopting")
    faults.point("shared-ca:adopting")
    _discard_root_key(ctx)
    stage_published(ctx, winner)
    ctx.shared_ca = winner
    _redecide(ctx)
    artifacts.apply("pilot-pki", s, ctx.writer, ctx.pki.decisions, ctx.pki.keys, ctx.now, Counts())
    counts.add("discarded", "the pilot CA generated here")
    counts.add("re-issued", "gateway (under the published CA)")
    ctx.log(f"shared CA: {winner.by} published its CA first; discarded the one generated here (kept in backup/) and "
            f"took that one (intermediate {fingerprint(winner.intermediate)})", lost_race=True)
    return winner


# --- a gateway-only host (ROLE=gateway)
class SharedView:
    """The volumes as a gateway host's certificate code sees them: the pilot CA files come from the
    published Secret, in memory; writes to them are dropped (a gateway host keeps no CA)."""

    def __init__(self, writer, files: dict[str, bytes | None]):
        self.writer, self.files = writer, {str(k): v for k, v in files.items()}

    def read(self, rel):
        return self.files[str(rel)] if str(rel) in self.files else self.writer.read(rel)

    def exists(self, rel) -> bool:
        return self.read(rel) is not None

    def stage(self, rel, data: bytes, private: bool = False) -> bool:
        if str(rel) in self.files:
            return False
        return self.writer.stage(rel, data, private=private)

    def __getattr__(self, name):   # everything else (records, paths) is the writer's
        return getattr(self.writer, name)


def connect(ctx, counts: Counts) -> None:
    """The `nacos` phase of a gateway host: wait for Nacos and log in; the namespace and everything
    in it are the control-plane host's to create."""
    open_store(ctx)
    counts.add("connected", f"nacos {ctx.nacos.generation} at {ctx.nacos.active}")
    faults.pause("gateway:connected")


def _wait_published(ctx) -> Published:
    """The published CA and the stored higress-config, waited for (the control-plane host may be
    starting at the same moment), within NACOS_WAIT_TIMEOUT."""
    from higress_init.versions.objects import HIGRESS_CONFIG
    s = ctx.settings
    deadline = time.monotonic() + s.nacos_wait_timeout.total_seconds()
    pause = 0.2
    while True:
        published = read_settled(ctx, ctx.nacos)
        config = ctx.nacos.get(HIGRESS_CONFIG.data_id, HIGRESS_CONFIG.group(s)) if published else None
        if published is not None and config is not None:
            ctx.stored[HIGRESS_CONFIG.label] = config
            return published
        missing = where(s) if published is None else f"configmaps/higress-config (namespace {s.nacos_namespace})"
        if time.monotonic() + pause > deadline:
            raise NacosUnreachable(f"{missing} is not in Nacos after {s.nacos_wait_timeout.total_seconds():g}s "
                                   "(NACOS_WAIT_TIMEOUT): start the control-plane host (ROLE=all) first, with the same "
                                   "NACOS_SERVER_URL and NACOS_NS")
        ctx.log(f"shared CA: waiting for the control-plane host to publish {missing}")
        time.sleep(pause)
        pause = min(pause * 2, 5.0)


def gateway_pki(ctx, counts: Counts) -> None:
    """The `pilot-pki` phase of a gateway host: its own gateway certificate (CN = POD_NAME) from the
    published CA, whose key stays in memory; trusted roots as published (both during an overlap)."""
    from higress_init.pki.artifacts import ROTATIONS
    if ctx.finish_rotation or ctx.rotate & (ROTATIONS["intermediate"] | ROTATIONS["root"]):
        raise StateError("ROLE=gateway: intermediate and root rotations (and --finish) run on the control-plane "
                         "host (ROLE=all); this host takes the result on its next run. Nothing was written")
    data_key(ctx)
    published = ctx.shared_ca = _wait_published(ctx)
    local = local_files(ctx.writer)
    if verdict(ctx.writer, local, published) == "differs":
        raise refusal(ctx.settings, local, published)
    view = SharedView(ctx.writer, files_from(published))
    s = ctx.settings
    ctx.pki.decide_from(view, ctx.rotate & {"gateway"})
    done = Counts()
    artifacts.apply("pilot-pki", s, view, ctx.pki.decisions, ctx.pki.keys, ctx.now, done)
    for action, names in done.by_action.items():   # the CA's own files are not this host's: not counted
        for name in names:
            if name not in ("pilot-root-ca", "pilot-ca", _CHAIN.file):
                counts.add(action, name)
    counts.add("kept", f"pilot CA from {where(s)} (in memory only)")
    ctx.log(f"shared CA: using the deployment's pilot CA, which the control-plane host published in Nacos as "
            f"{where(s)} (from {published.by}; intermediate {fingerprint(published.intermediate)}, "
            f"{len(published.roots)} trusted root{'s' if len(published.roots) > 1 else ''})")


# --- status, on any host
def status_rows(settings, writer) -> list[Row]:
    """Which CA this host uses, whether it is the published one, and this host's own gateway
    certificate checked against the published CA."""
    rows = []
    gateway = settings.role == "gateway"
    ctx = None
    try:
        ctx, _ = open_for_status(settings, writer)
        published = read(ctx, ctx.nacos)
    except (StoreError, StateError, OSError) as err:
        return [status_row("shared-ca", "secrets/cacerts", state=f"cannot read the published CA: {err}")]
    finally:
        if ctx is not None and ctx.nacos is not None:
            ctx.nacos.close()
    if published is None:
        rows.append(status_row("shared-ca", "secrets/cacerts",
                               state="not published (the control-plane host publishes it)"))
    else:
        rows.append(status_row("shared-ca", "secrets/cacerts", subject=_describe(published.intermediate),
                               issuer=f"published by {published.by}", not_after=_not_after(published.intermediate),
                               chain_verified=True, key_matches=True, state="ok"))
    # the CA this host uses: its pilot/cacerts (control plane), or the issuer in its gateway chain
    if gateway:
        chain = writer.read(layout.GATEWAY_CERT_CHAIN)
        certs = primitives.load_certs(chain) if chain else []
        in_use = certs[1] if len(certs) > 1 else None
        file = f"{layout.GATEWAY_CERT_CHAIN} (issuer)"
    else:
        ca = writer.read(_CA.cert_file)
        in_use = primitives.load_certs(ca)[0] if ca else None
        file = _CA.cert_file
    if in_use is None:
        rows.append(status_row("ca-in-use", file, state="missing"))
    else:
        same = published is not None and in_use == published.intermediate
        state = "ok" if same else ("not published yet" if published is None else
                                   "differs from the published CA: rerun to take its rotation, or see `run`'s message")
        rows.append(status_row("ca-in-use", file, subject=_describe(in_use),
                               issuer=primitives.describe_name(in_use, "issuer"), not_after=_not_after(in_use),
                               chain_verified=same, state=state))
    if gateway and published is not None:
        view = SharedView(writer, files_from(published))
        spec = artifacts.SPECS["gateway"]
        cert, key, problem, has_cert, _ = artifacts.load_pair(spec, view)
        chain = [published.intermediate, published.roots[0]]   # the published CA, up to its root
        state = artifacts.leaf_problem(spec, settings, primitives.utcnow(), cert, key, problem, chain) or "ok"
        if cert is None:
            rows.append(status_row("gateway (this host)", spec.cert_file, state=state))
        else:
            rows.append(status_row("gateway (this host)", spec.cert_file, subject=primitives.describe_name(cert),
                                   issuer=primitives.describe_name(cert, "issuer"), not_after=_not_after(cert),
                                   chain_verified=primitives.issued_by(cert, published.intermediate),
                                   key_matches=key is not None and primitives.key_matches(cert, key), state=state))
        trust = writer.read(layout.GATEWAY_ROOT_CERT)
        trusted = primitives.load_certs(trust) if trust else []
        rows.append(status_row("root-cert.pem", layout.GATEWAY_ROOT_CERT,
                               subject=f"{len(trusted)} root(s)", chain_verified=trusted == published.roots,
                               state="ok" if trusted == published.roots else "differs from the published roots: rerun"))
    return rows




def _describe(cert) -> str:
    return f"{primitives.describe_name(cert)} sha256:{fingerprint(cert)}"


def _not_after(cert) -> str:
    return f"{primitives.expires(cert):%Y-%m-%dT%H:%M:%SZ}"
