"""`status`: every certificate, key and generated file, checked the way its consumer would."""
from __future__ import annotations

from datetime import datetime

from . import artifacts, kubeconfig, phases, pki, tokens
from .settings import Settings


def _row(name, file, **fields) -> dict:
    row = {"name": name, "file": file, "subject": "", "issuer": "", "not_after": "", "days_left": None,
           "chain_verified": None, "key_matches": None, "state": "ok"}
    row.update(fields)
    return row


def certificate_rows(settings: Settings, writer, now: datetime) -> list[dict]:
    if settings.role == "gateway":
        return gateway_host_rows(settings, writer)
    rows, loaded = [], {}
    for spec in artifacts.CERTIFICATES:
        cert, key, problem, has_cert, has_key = artifacts._load(spec, writer)
        loaded[spec.name] = cert
        if not has_cert or cert is None:
            rows.append(_row(spec.name, spec.cert_file, state=problem or "missing"))
            continue
        issuer_cert = loaded.get(spec.issuer) if spec.issuer else cert
        chain_ok = issuer_cert is not None and pki.issued_by(cert, issuer_cert)
        key_ok = pki.key_matches(cert, key) if key is not None else None
        left = pki.expires(cert) - now
        if not spec.ca:  # what the next run would re-issue, for the same reason
            state = artifacts.leaf_problem(spec, settings, now, cert, key, problem, issuer_cert) or "ok"
        elif problem or not chain_ok or key_ok is False:
            state = problem or ("chain does not verify" if not chain_ok else "key does not match")
        elif left.total_seconds() <= 0:
            state = "expired"
        elif left <= settings.renew_before:
            state = f"expires within {settings.renew_before.days}d"
        else:
            state = "ok"
        if spec.chain and state == "ok":
            chain = pki.load_certs(writer.read(spec.cert_file))
            if len(chain) < 2 or chain[1] != loaded.get(spec.issuer):
                state = "chain file does not end with the current issuer"
        rows.append(_row(spec.name, spec.cert_file, subject=pki.describe_name(cert),
                         issuer=pki.describe_name(cert, "issuer"), not_after=f"{pki.expires(cert):%Y-%m-%dT%H:%M:%SZ}",
                         days_left=left.days, chain_verified=chain_ok,
                         key_matches=key_ok if spec.ca or key_ok is not None else False,
                         state=state))
    rows.extend(_bundle_rows(writer, loaded))
    rows.extend(_kubeconfig_row(spec, writer, loaded) for spec in kubeconfig.KUBECONFIGS)
    key = writer.read(phases.DATA_KEY_FILE)
    rows.append(_row("nacos.key", phases.DATA_KEY_FILE, state="missing" if key is None else
                     ("ok" if phases.data_key_problem(key) is None else phases.data_key_problem(key))))
    rows.append(_file_row("podinfo/labels", phases.LABELS_FILE, writer, _text, "empty or not UTF-8 text"))
    rows.extend(config_rows(settings, writer))
    rows.extend(tokens.status_rows(settings, writer, now))
    if writer.exists(tokens.RETIRED_KEYS_FILE):
        rows.append(_file_row("retired token keys", tokens.RETIRED_KEYS_FILE, writer, _json_list, "not a JSON list"))
    for rel in (tokens.PUBLIC_KEY_FILE, *tokens.JWKS_FILES, tokens.DISCOVERY_FILE):
        rows.append(_file_row(rel.rsplit("/", 1)[-1], rel, writer, lambda d: bool(d.strip()), "empty"))
    rows.extend(shared_ca_rows(settings, writer))
    _check_permissions(settings, writer, rows)
    rows.extend(_journal_rows(writer))
    return rows


def gateway_host_rows(settings: Settings, writer) -> list[dict]:
    """A gateway-only host has its gateway files and the delivered mesh; its CA is the published one."""
    rows = shared_ca_rows(settings, writer)
    rows.append(_file_row("podinfo/labels", phases.LABELS_FILE, writer, lambda d: bool(d.strip()), "empty"))
    rows.extend(config_rows(settings, writer))
    return rows


def shared_ca_rows(settings: Settings, writer) -> list[dict]:
    """With Nacos storage: the CA this host uses, whether it is the deployment's published one
    (Secret cacerts), and, on a gateway host, its own certificate checked against that CA."""
    if settings.config_storage != "nacos":
        return []
    from . import sharedca
    return sharedca.status_rows(settings, writer)


def config_rows(settings: Settings, writer) -> list[dict]:
    """The base objects in the file store, and pilot's mesh files against the stored higress-config
    (where to edit: the store; the files follow it on every run)."""
    from . import configstore
    return [_row(r["name"], r["file"], subject=r.get("subject", ""), state=r["state"])
            for r in configstore.status_rows(settings, writer)]


def _journal_rows(writer) -> list[dict]:
    """A commit an interrupted run left: validated as a run would (a bad journal is refused)."""
    from . import journal
    from .safefs import check_regular, parts_of
    if not writer.fs.exists():
        return []
    for rel in (journal.STATE_DIR + "/lock", journal.JOURNAL):  # what the next run opens first
        st = writer.fs.lstat(parts_of(rel))  # a link on the way is refused
        if st is not None:
            check_regular(writer.fs.path, parts_of(rel), st)
    entries = journal.load(writer.fs)
    if not entries:
        return []
    journal.check(writer.fs, entries)
    return [_row("journal", journal.JOURNAL, state=f"interrupted commit of {len(entries)} files: the next run "
                                                   "finishes it")]


def _check_permissions(settings: Settings, writer, rows) -> None:
    """The mode and owner each managed file and its directories must have (what a run enforces)."""
    from . import ownership
    keys = {spec.cert_file: spec.key_file for spec in artifacts.CERTIFICATES}
    for row in rows:
        if row["state"] != "ok":
            continue
        for rel in (row["file"], keys.get(row["file"])):
            if rel is None:
                continue
            problem = ownership.problems(writer.fs, rel, settings.volumes_uid, settings.volumes_gid,
                                         writer.private_files)
            if problem:
                row["state"] = f"{rel}: {problem}" if rel != row["file"] else problem
                break


def _bundle_rows(writer, loaded) -> list[dict]:
    rows = []
    for bundle in artifacts.BUNDLES:
        data = writer.read(bundle.file)
        if data is None:
            rows.append(_row(bundle.file.rsplit("/", 1)[-1], bundle.file, state="missing"))
            continue
        try:
            certs = pki.load_certs(data)
        except ValueError:
            rows.append(_row(bundle.file.rsplit("/", 1)[-1], bundle.file, state="unparsable"))
            continue
        wanted = [loaded.get(part.rpartition(":")[2]) for part in bundle.parts if not part.startswith("cross:")]
        ok = all(w is not None and w in certs for w in wanted)
        rows.append(_row(bundle.file.rsplit("/", 1)[-1], bundle.file, subject=pki.describe_name(certs[0]),
                         chain_verified=ok, state="ok" if ok else "does not hold the current CA certificates"))
    return rows


def rotation_rows(writer) -> list[dict]:
    """One row per root CA whose rotation overlap is in progress: which roots are trusted where."""
    rows = []
    for spec in artifacts.CERTIFICATES:
        state = artifacts.overlap(writer, spec.name) if spec.issuer is None else None
        if state:
            previous, cross = state
            trusted_in = [spec.cert_file] + [b.file for b in artifacts.BUNDLES if f"roots:{spec.name}" in b.parts]
            if spec.name == "apiserver-ca":
                trusted_in += [k.file for k in kubeconfig.KUBECONFIGS]
            rows.append({"root": spec.name, "state": "overlap in progress",
                         "old_root_not_after": f"{pki.expires(previous):%Y-%m-%dT%H:%M:%SZ}",
                         "cross_signed_until": f"{pki.expires(cross):%Y-%m-%dT%H:%M:%SZ}",
                         "trusted_in": trusted_in,
                         "next": "restart every component, then: higress-init rotate --finish"})
    return rows


def _kubeconfig_row(spec, writer, loaded) -> dict:
    data = writer.read(spec.file)
    if data is None:
        return _row(spec.name, spec.file, state="missing")

    def open_path(path):  # a file named by its path inside the reader's container
        rel = spec.volume_path(path)
        found = writer.read(rel) if rel else None
        if found is None:
            raise ValueError(f"{path} is not a file of {spec.file}'s folder")
        return found

    try:
        parts = kubeconfig.parse(data, open_path)
        cert = pki.load_certs(parts["cert"])[0]
        key = pki.load_key(parts["key"])
        cas = pki.load_certs(parts["ca"])
    except (ValueError, KeyError, TypeError, StopIteration):
        return _row(spec.name, spec.file, state="unparsable")
    chain_ok = any(pki.issued_by(cert, ca) for ca in cas) and loaded.get("apiserver-ca") in cas
    key_ok = pki.key_matches(cert, key)
    state = "ok" if chain_ok and key_ok else ("chain does not verify" if not chain_ok else "key does not match")
    if state == "ok" and cert != loaded.get(spec.client):
        state = f"not the current {spec.client} certificate"
    return _row(spec.name, spec.file, subject=pki.describe_name(cert),
                issuer=pki.describe_name(cert, "issuer"), not_after=f"{pki.expires(cert):%Y-%m-%dT%H:%M:%SZ}",
                days_left=(pki.expires(cert) - pki.utcnow()).days, chain_verified=chain_ok, key_matches=key_ok,
                state=state)


def _file_row(name, rel, writer, check, complaint) -> dict:
    data = writer.read(rel)
    if data is None:
        return _row(name, rel, state="missing")
    return _row(name, rel, state="ok" if check(data) else complaint)


def _json_list(data: bytes) -> bool:
    import json
    try:
        entries = json.loads(data)
        return isinstance(entries, list) and all(
            isinstance(e, dict) and isinstance(e.get("jwk"), dict) and isinstance(e.get("keep_until"), str)
            for e in entries)
    except ValueError:
        return False


def healthy(rows) -> bool:
    return all(r["state"] == "ok" for r in rows)


def format_table(rows) -> str:
    yes_no = lambda v: "-" if v is None else ("yes" if v else "no")  # noqa: E731
    header = ("NAME", "FILE", "SUBJECT", "ISSUER", "NOT AFTER", "DAYS", "CHAIN", "KEY", "STATE")
    table = [header] + [
        (r["name"], r["file"], r["subject"], r["issuer"], r["not_after"],
         "" if r["days_left"] is None else str(r["days_left"]), yes_no(r["chain_verified"]),
         yes_no(r["key_matches"]), r["state"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table)


def _text(data: bytes) -> bool:
    try:
        return bool(data.decode("utf-8").strip())
    except UnicodeDecodeError:
        return False
