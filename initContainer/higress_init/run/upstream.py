"""Upstream's layout, what `migrate` takes over: volumes that upstream's own scripts prepared
(higress-standalone's compose/scripts: precheck.sh, init.sh and prepare.sh, the same layout at v2.1.2 and v2.2.4).

Their layout differs from this one in where the CA keys live (`api/ca.key` beside `api/ca.crt`,
in the folder the apiserver mounts; `pilot/cacerts/root-key.pem` in the one pilot mounts) and in
what they leave beside the mounted files (the admin client certificate and key, certificate
requests, openssl configs). Their certificates are openssl's defaults: roots without keyUsage,
version-1 apiserver certificates without names, an intermediate whose basicConstraints is not
critical, a gateway certificate without extended key usage; their kubeconfig skips TLS verification.

`adopt` moves each CA key to this layout's place and checks every CA with the validators a run
uses (plus a throwaway certificate issued under it, verified as its consumer would). A failing
root keeps its key and name and is signed again (it stays the same CA); any other failing CA is
removed, to be made anew. It removes the leftovers too. The CLI then runs the normal phases in the
same commit: they re-issue every certificate that fails validation and re-render the chains and
kubeconfigs. Every file replaced or removed goes to backup/ first; nothing leaves the volumes
root; nothing but upstream's files is touched (Nacos data under `nacos/`, logs, component folders)."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime

from higress_init.errors import StateError
from higress_init.run.reporting import expires_within
from higress_init.volume import layout
from higress_init.volume.safefs import Refused

# Files only upstream's scripts write: one of them present means upstream's layout.
MARKERS = (layout.UPSTREAM_APISERVER_CA_KEY, layout.UPSTREAM_PILOT_ROOT_KEY)

# The files upstream's scripts make that this layout keeps elsewhere (layout.UPSTREAM_FILES): the CA keys.
MOVED = tuple((theirs, ours) for theirs, ours in layout.UPSTREAM_FILES if theirs != ours)

# What upstream's scripts leave in mounted folders that nothing here reads (layout.UPSTREAM_LEFTOVERS:
# its admin client certificate and key, the certificate requests, openssl's configs and serial files,
# the gateway's certificate and key copied from pilot's folder) is removed, backed up first: a key
# in a mounted folder is readable by every container mounting it.


def found(writer) -> list[str]:
    """The files of upstream's layout present under the root (empty: not upstream's layout). Looked
    at, not read (a run's recorded inputs stay what it reads); a link on the way is no marker: what
    reads there refuses it."""
    if not writer.fs.exists():
        return []
    present = []
    for rel in MARKERS:
        try:
            if writer.fs.lstat(writer.parts(rel)) is not None:
                present.append(rel)
        except Refused:
            continue
    return present


def hint(markers: list[str]) -> str:
    """The one line run, plan and status say on such a tree."""
    return (f"these volumes were prepared by upstream's scripts ({', '.join(markers)}): run 'higress-init migrate' "
            "once; it moves their CA keys into pki/ (adopting the CAs), re-issues what fails validation, removes "
            "their leftovers, backs up everything it replaces or removes under backup/ and moves nothing out of the "
            "volumes folder")


@dataclass
class Adoption:
    """What `adopt` staged, and the digests of upstream's files before (to tell, after the run,
    which of them are still in use)."""
    before: dict            # upstream's path -> sha256 of its bytes
    moved: list             # (upstream's path, this layout's)
    failed: dict            # CA name -> why it failed validation
    resigned: list          # roots whose certificate was signed again by their adopted key
    removed: list           # leftovers removed


def adopt(settings, writer, now: datetime) -> Adoption:
    """Stage the move of each CA key, the removal of failing CAs and of the leftovers."""
    before = {}
    for theirs, _ in layout.UPSTREAM_FILES:
        data = writer.read(theirs)
        if data is not None:
            before[theirs] = hashlib.sha256(data).hexdigest()
    moved = []
    for theirs, ours in MOVED:
        data = writer.read(theirs)
        if data is None:
            continue
        _check_pair(theirs, ours, data, writer)
        existing = writer.read(ours)
        if existing is not None and existing != data:
            raise StateError(f"{theirs} and {ours} both exist and differ: keep the one that matches "
                             f"{_cert_of(ours)} (move the other out of the volumes folder), then migrate again")
        writer.stage(ours, data, private=True)
        writer.remove(theirs)
        moved.append((theirs, ours))
    failed, resigned = _check_cas(settings, writer, now)
    removed = [rel for rel in layout.UPSTREAM_LEFTOVERS if writer.exists(rel)]
    for rel in removed:
        writer.remove(rel)
    return Adoption(before, moved, failed, resigned, removed)


def _cert_of(key_file: str) -> str:
    from higress_init.pki import artifacts
    return next(s.cert_file for s in artifacts.CERTIFICATES if s.key_file == key_file)


def _check_pair(theirs: str, ours: str, key_pem: bytes, writer) -> None:
    from higress_init.pki import primitives
    cert_file = _cert_of(ours)
    cert_pem = writer.read(cert_file)
    if cert_pem is None:
        raise StateError(f"{theirs} is there without its certificate {cert_file}: restore {cert_file}, or move "
                         f"{theirs} out of the volumes folder to have a new CA made")
    try:
        cert, key = primitives.load_certs(cert_pem)[0], primitives.load_key(key_pem)
    except (ValueError, TypeError, IndexError):
        raise StateError(f"{theirs} or {cert_file} does not parse (an unencrypted PEM key and a PEM certificate "
                         "expected): restore them, or move both out of the volumes folder") from None
    if not primitives.key_matches(cert, key):
        raise StateError(f"{theirs} does not match {cert_file}: restore the matching pair")


def _check_cas(settings, writer, now: datetime) -> tuple[dict[str, str], list[str]]:
    """Judge every CA as staged (adopted keys in place) with the validators a run uses. A root
    that fails keeps its key (that is the adoption): its certificate is signed again by that key,
    under its own name, with this project's CA profile, so what it issued still chains to it. Any
    other CA that fails is removed, to be made anew (new key) by the run. Returns (CA name -> why
    it failed, the roots re-signed). A CA without its key here is externally managed: not judged."""
    from dataclasses import replace

    from higress_init.pki import artifacts, primitives
    failed, resigned, certs = {}, [], {}
    for spec in artifacts.CERTIFICATES:
        if not spec.ca:
            continue
        cert, key, problem, has_cert, has_key = artifacts.load_pair(spec, writer)
        certs[spec.name] = cert
        if not has_cert or (key is None and not problem):
            continue
        if spec.issuer is not None and spec.issuer in failed and spec.issuer not in resigned:
            failed[spec.name] = f"its issuer {artifacts.SPECS[spec.issuer].cert_file} is made anew"
            continue
        chain = artifacts.issuers(spec, certs)
        why = artifacts.ca_problem(spec, settings, now, cert, key, problem, chain)
        if why == expires_within(settings.renew_before):
            why = ""    # a warning for a run, no failure: a CA is renewed only on purpose (rotate)
        why = why or _probe(spec, settings, now, cert, key, chain)
        if not why:
            continue
        failed[spec.name] = why
        if spec.issuer is None and not problem:
            request = replace(spec.request(settings), subject_name=cert.subject)
            certs[spec.name] = primitives.issue(request, key, None, None, now)
            writer.stage(spec.cert_file, primitives.cert_to_pem(certs[spec.name]))
            resigned.append(spec.name)
        else:
            writer.remove(spec.cert_file)
            writer.remove(spec.key_file)
    return failed, resigned


def _probe(spec, settings, now: datetime, cert, key, chain: list) -> str:
    """Issue a throwaway certificate under this CA, as a run would (for a root with only CAs under
    it, a throwaway intermediate first), and verify it as its consumer does: what it issues must
    verify, or it fails. Small keys: nothing of it is kept."""
    from higress_init.pki import artifacts, primitives
    below = [s for s in artifacts.CERTIFICATES if s.issuer == spec.name]
    leaf = next((s for s in below if not s.ca), None)
    issuer_cert, issuer_key, path = cert, key, [cert, *chain]
    if leaf is None:
        middle = next((s for s in below if s.ca), None)
        leaf = next((s for s in artifacts.CERTIFICATES if middle and s.issuer == middle.name and not s.ca), None)
        if leaf is None or middle is None:   # no leaf without a middle CA
            return ""
        middle_key = primitives.generate_key("ecdsa-p256")
        issuer_cert = primitives.issue(middle.request(settings), middle_key, cert, key, now)
        issuer_key, path = middle_key, [issuer_cert, cert, *chain]
    probe = primitives.issue(leaf.request(settings), primitives.generate_key("ecdsa-p256"),
                             issuer_cert, issuer_key, now)
    failed = artifacts.verify(leaf, settings, probe, path, now)
    return f"what it issues {failed}" if failed else ""


# Upstream's files this layout renders from others (chains, the kubeconfig, the pod labels): made anew
# is "re-rendered", not "re-issued"
RENDERED = (layout.PILOT_CHAIN, layout.GATEWAY_ROOT_CERT, layout.KUBECONFIG, layout.POD_LABELS)


@dataclass
class Outcome:
    adopted: list       # upstream's files in use as they were (a moved key: at its new place)
    reissued: list      # upstream's certificates and keys made anew (they, or what they chain to, failed)
    rerendered: list    # upstream's chain files and kubeconfig rendered anew
    removed: list       # upstream's leftovers
    backed_up: int      # files copied into backup/ by the migration
    backups: list       # backup/<stamp>/ folders the migration made


def outcome(adoption: Adoption, reader, backups_before: set[str]) -> Outcome:
    """After the migration's run: which of upstream's files are still in use, which were made anew."""
    adopted: list[str] = []
    reissued: list[str] = []
    rerendered: list[str] = []
    for theirs, ours in layout.UPSTREAM_FILES:
        if theirs not in adoption.before:
            continue
        data = reader.read(ours)
        same = data is not None and hashlib.sha256(data).hexdigest() == adoption.before[theirs]
        name = theirs if theirs == ours else f"{theirs} -> {ours}"
        (adopted if same else rerendered if ours in RENDERED else reissued).append(name)
    stamps = sorted(set(backup_stamps(reader)) - backups_before)
    count = sum(len(files) for stamp in stamps
                for _, _, files in os.walk(reader.root / layout.BACKUP_DIR / stamp))  # never follows a link
    return Outcome(adopted, reissued, rerendered, adoption.removed, count,
                   [f"{layout.BACKUP_DIR}/{s}/" for s in stamps])


def backup_stamps(writer) -> list[str]:
    """The backup/<stamp>/ folders there are (backup/ is root's: a link there is not followed)."""
    root = writer.root / layout.BACKUP_DIR
    if not root.is_dir() or root.is_symlink():
        return []
    return [e.name for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]


def summary(result: Outcome) -> str:
    return (f"migrated: {len(result.adopted)} files adopted, {len(result.reissued)} re-issued, "
            f"{len(result.rerendered)} re-rendered, {len(result.removed)} leftovers removed, "
            f"{result.backed_up} files backed up" + (f" in {', '.join(result.backups)}" if result.backups else ""))


# Where upstream's compose keeps the built-in Nacos's data (./volumes/nacos at /home/nacos/data)
UPSTREAM_NACOS_DATA = "nacos"


def nacos_data_note(writer) -> str:
    """A line when upstream's Nacos data is under the root: this project's compose keeps the
    built-in Nacos in a named volume, so without a change there the stack would start on an empty one."""
    try:
        st = writer.fs.lstat(writer.parts(UPSTREAM_NACOS_DATA)) if writer.fs.exists() else None
    except Refused:
        return ""
    if st is None:
        return ""
    return (f"Nacos's data stays in {UPSTREAM_NACOS_DATA}/ (upstream's compose mounts ./volumes/nacos at "
            "/home/nacos/data); this project's compose keeps it in the volume nacos-data: mount ./volumes/nacos "
            "there instead (or copy it in) to keep what upstream stored")


def still_trusted(adoption: Adoption) -> str:
    """What an adopted CA still trusts that upstream issued under it; empty when no CA was adopted."""
    kept = [theirs for theirs, _ in adoption.moved]
    what = []
    apiserver_ca_kept = "apiserver-ca" not in adoption.failed or "apiserver-ca" in adoption.resigned
    if layout.UPSTREAM_APISERVER_CA_KEY in kept and apiserver_ca_kept:
        what.append("the apiserver CA still accepts upstream's admin client certificate (100 years, "
                    "system:masters; now in backup/)")
    if layout.UPSTREAM_PILOT_ROOT_KEY in kept and ("pilot-root-ca" not in adoption.failed
                                                  or "pilot-root-ca" in adoption.resigned):
        what.append("the pilot root still trusts upstream's intermediate (its script made ca-key.pem world-readable)")
    return ("; ".join(what) + ": to end that, higress-init rotate root") if what else ""
