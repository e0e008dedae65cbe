"""`status`: every certificate, key and generated file, checked the way its consumer would."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import jwt

from higress_init.errors import EXIT_FAILED, EXIT_OK, StateError
from higress_init.pki import artifacts, datakey, kubeconfig, primitives, tokens
from higress_init.run import runner, upstream
from higress_init.run.reporting import WIDTH, Row, remaining, say, status_row, timestamp, wrap
from higress_init.settings import Settings
from higress_init.store.kinds import store_kind
from higress_init.volume import journal, layout, ownership
from higress_init.volume.safefs import Refused, check_regular, parts_of

# Rows are named by artifact (certificates by their table name; these files by what they are).
FILE_NAMES = {
    layout.PILOT_CHAIN: "pilot CA chain", layout.GATEWAY_ROOT_CERT: "gateway trusted roots",
    layout.DATA_KEY: "data key", layout.POD_LABELS: "pod labels",
    layout.TOKEN_PUBLIC_KEY: "token public key", layout.JWKS: "JWKS", layout.JWKS_WELL_KNOWN: "JWKS (well-known)",
    layout.OIDC_DISCOVERY: "OIDC discovery", layout.TOKEN_RETIRED_KEYS: "retired token keys",
}


def certificate_rows(settings: Settings, writer, now: datetime) -> list[Row]:
    if settings.role == "gateway":
        return _with_remaining(gateway_host_rows(settings, writer), now)
    rows, loaded = [], {}
    for spec in artifacts.CERTIFICATES:
        cert, key, problem, has_cert, has_key = artifacts.load_pair(spec, writer)
        loaded[spec.name] = cert
        if not has_cert or cert is None:
            rows.append(status_row(spec.name, spec.cert_file, state=problem or "missing"))
            continue
        issuer_cert = loaded.get(spec.issuer) if spec.issuer else cert
        chain_ok = issuer_cert is not None and primitives.issued_by(cert, issuer_cert)
        key_ok = primitives.key_matches(cert, key) if key is not None else None
        left = primitives.expires(cert) - now
        # the validators the run decides with: what a run would re-issue or refuse, for the same reason
        check = artifacts.leaf_problem if not spec.ca else artifacts.ca_problem
        state = check(spec, settings, now, cert, key, problem, artifacts.issuers(spec, loaded)) or "ok"
        # a CA certificate without its key: managed elsewhere, unless its key was here once (lost)
        external = spec.ca and not has_key and not problem
        if external and artifacts.key_was_here(writer, spec, cert):
            external, state = False, (f"{spec.key_file} is gone (this CA's key was here): restore it from a copy; "
                                      "without it nothing under this CA can be renewed")
        if spec.chain and state == "ok":
            chain = primitives.load_certs(writer.read(spec.cert_file))
            current_issuer = loaded.get(spec.issuer) if spec.issuer is not None else None
            if len(chain) < 2 or chain[1] != current_issuer:
                state = "chain file does not end with the current issuer"
        rows.append(status_row(spec.name, spec.cert_file, subject=primitives.describe_name(cert),
                               issuer=primitives.describe_name(cert, "issuer"),
                               not_after=timestamp(primitives.expires(cert)),
                               not_before=timestamp(cert.not_valid_before_utc), days_left=left.days,
                               chain_verified=chain_ok,
                               key_matches=key_ok if spec.ca or key_ok is not None else False,
                               externally_managed=external if spec.ca else None, state=state))
    rows.extend(_bundle_rows(writer, loaded))
    rows.extend(_kubeconfig_row(spec, writer, loaded) for spec in kubeconfig.KUBECONFIGS)
    key = writer.read(layout.DATA_KEY)
    key_state = "missing" if key is None else datakey.problem(key) or "ok"
    rows.append(status_row(FILE_NAMES[layout.DATA_KEY], layout.DATA_KEY, state=key_state))
    rows.append(_labels_row(settings, writer))
    rows.extend(config_rows(settings, writer))
    rows.extend(token_rows(settings, writer, now))
    if writer.exists(layout.TOKEN_RETIRED_KEYS):
        rows.append(_file_row(FILE_NAMES[layout.TOKEN_RETIRED_KEYS], layout.TOKEN_RETIRED_KEYS, writer, _json_list,
                              "not a JSON list"))
    for rel in (layout.TOKEN_PUBLIC_KEY, *tokens.JWKS_FILES, layout.OIDC_DISCOVERY):
        rows.append(_file_row(FILE_NAMES[rel], rel, writer, lambda d: bool(d.strip()), "empty"))
    rows.extend(shared_ca_rows(settings, writer))
    _check_permissions(settings, writer, rows)
    rows.extend(_journal_rows(writer))
    return _with_remaining(rows, now)


def _with_remaining(rows: list[Row], now: datetime) -> list[Row]:
    """Each row that expires says how long it has left in kubeadm's words (364d, 23h, expired 3d
    ago): certificates and tokens alike, in the table, in JSON and in watch's messages."""
    for row in rows:
        expires = datetime.fromisoformat(row["not_after"].replace("Z", "+00:00")) if row["not_after"] else None
        row["remaining"] = remaining(expires, now) if expires else ""
    return rows


def state_and_time(row: Row) -> str:
    """A row's state with its time left, in the table's words: `expired 3d ago`, `expires within 30d
    (12d left)`."""
    if not row.get("remaining"):
        return row["state"]
    if row["remaining"].startswith("expired"):
        return row["remaining"] if row["state"] == "expired" else f"{row['state']} ({row['remaining']})"
    return f"{row['state']} ({row['remaining']} left)"


def gateway_host_rows(settings: Settings, writer) -> list[Row]:
    """A gateway-only host has its gateway files and the delivered mesh; its CA is the published one."""
    rows = shared_ca_rows(settings, writer)
    rows.append(_labels_row(settings, writer))
    rows.extend(config_rows(settings, writer))
    return rows


def _labels_row(settings: Settings, writer) -> Row:
    """The labels file is derived from the settings alone: anything else is re-made by the next run."""
    from higress_init.versions import meshconfig
    wanted = meshconfig.pod_labels(settings).encode()
    return _file_row(FILE_NAMES[layout.POD_LABELS], layout.POD_LABELS, writer, lambda d: d == wanted,
                     "not the labels the settings give (the next run re-makes it)")


def shared_ca_rows(settings: Settings, writer) -> list[Row]:
    """With Nacos storage: the CA this host uses, whether it is the deployment's published one
    (Secret cacerts), and, on a gateway host, its own certificate checked against that CA."""
    if not store_kind(settings).shares_ca:
        return []
    from higress_init.store import sharedca
    return sharedca.status_rows(settings, writer)


def config_rows(settings: Settings, writer) -> list[Row]:
    """The base objects in the file store, and pilot's mesh files against the stored higress-config
    (where to edit: the store; the files follow it on every run)."""
    from higress_init.store import seeding
    return seeding.status_rows(settings, writer)


def token_rows(settings, writer, now) -> list:
    """The signing key, published in the JWKS; each token verified through the published JWKS."""
    try:
        key = tokens.load_signing_key(writer)
        state = "ok" if key is not None else "missing"
    except Refused:
        raise  # a link or foreign file: refused, as the next run refuses it
    except StateError:
        key, state = None, "unparsable (the next run refuses it)"
    public = key.public_key() if key is not None else None
    rows = [status_row(tokens.SIGNING_KEY, layout.TOKEN_SIGNING_KEY, state=state,
                       key_matches=None if public is None else _published(writer, public))]
    if public is not None and not rows[0]["key_matches"]:
        rows[0]["state"] = "not published in tokens/jwks.json"
    kid = tokens.public_jwk(public)["kid"] if public else ""
    jwks = writer.read(layout.JWKS)
    for identity in settings.token_identities:
        data = writer.read(identity.file)
        if data is None:
            rows.append(status_row(f"token {identity.name}", identity.file, state="missing"))
            continue
        token = data.decode("utf-8", "replace").strip()
        problem = tokens.token_problem(settings, identity, token, jwks, kid, now) if public else "no signing key"
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
            exp = datetime.fromtimestamp(claims["exp"], tz=now.tzinfo)
        except (jwt.PyJWTError, KeyError):
            rows.append(status_row(f"token {identity.name}", identity.file, state="unparsable"))
            continue
        audience = claims.get("aud")
        audience = ",".join(audience) if isinstance(audience, list) else str(audience)
        rows.append(status_row(f"token {identity.name}", identity.file,
                               subject=f"{claims.get('sub', '')} aud={audience}",
                               issuer=str(claims.get("iss", "")),
                               not_after=timestamp(exp), days_left=(exp - now).days,
                               not_before=timestamp(datetime.fromtimestamp(claims["iat"], tz=now.tzinfo))
                               if isinstance(claims.get("iat"), (int, float)) else "",
                               chain_verified=not problem.startswith(("does not verify", "signed by", "no signing")),
                               state=problem or "ok"))
    return rows


def _published(writer, public) -> bool:
    data = writer.read(layout.JWKS)
    if data is None:
        return False
    kid = tokens.public_jwk(public)["kid"]
    try:
        return any(isinstance(k, dict) and k.get("kid") == kid for k in json.loads(data).get("keys", []))
    except (ValueError, AttributeError, TypeError, RecursionError):
        return False


def _journal_rows(writer) -> list[Row]:
    """A commit an interrupted run left: validated as a run would (a bad journal is refused)."""
    if not writer.fs.exists():
        return []
    for rel in (layout.STATE_DIR + "/lock", layout.JOURNAL):  # what the next run opens first
        st = writer.fs.lstat(parts_of(rel))  # a link on the way is refused
        if st is not None:
            check_regular(writer.fs.path, parts_of(rel), st)
    entries = journal.load(writer.fs)
    if not entries:
        return []
    journal.check(writer.fs, entries)
    return [status_row("journal", layout.JOURNAL, state=f"interrupted commit of {len(entries)} files: the next run "
                                                   "finishes it")]


def _check_permissions(settings: Settings, writer, rows) -> None:
    """The mode and owner each managed file and its directories must have (what a run enforces)."""
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


def _bundle_rows(writer, loaded) -> list[Row]:
    rows = []
    for bundle in artifacts.BUNDLES:
        data = writer.read(bundle.file)
        if data is None:
            rows.append(status_row(FILE_NAMES[bundle.file], bundle.file, state="missing"))
            continue
        try:
            certs = primitives.load_certs(data)
        except ValueError:
            rows.append(status_row(FILE_NAMES[bundle.file], bundle.file, state="unparsable"))
            continue
        wanted = [loaded.get(part.rpartition(":")[2]) for part in bundle.parts if not part.startswith("cross:")]
        ok = all(w is not None and w in certs for w in wanted)
        rows.append(status_row(FILE_NAMES[bundle.file], bundle.file, subject=primitives.describe_name(certs[0]),
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
                         "old_root_not_after": timestamp(primitives.expires(previous)),
                         "cross_signed_until": timestamp(primitives.expires(cross)),
                         "trusted_in": trusted_in,
                         "next": "restart every component, then: higress-init rotate finish"})
    return rows


def _kubeconfig_row(spec, writer, loaded) -> Row:
    data = writer.read(spec.file)
    if data is None:
        return status_row(spec.name, spec.file, state="missing")

    def open_path(path):  # a file named by its path inside the reader's container
        rel = spec.volume_path(path)
        found = writer.read(rel) if rel else None
        if found is None:
            raise ValueError(f"{path} is not a file of {spec.file}'s folder")
        return found

    try:
        parts = kubeconfig.parse(data, open_path)
        cert = primitives.load_certs(parts["cert"])[0]
        key = primitives.load_key(parts["key"])
        cas = primitives.load_certs(parts["ca"])
    except (ValueError, KeyError, TypeError, StopIteration):
        return status_row(spec.name, spec.file, state="unparsable")
    chain_ok = any(primitives.issued_by(cert, ca) for ca in cas) and loaded.get("apiserver-ca") in cas
    key_ok = primitives.key_matches(cert, key)
    state = "ok" if chain_ok and key_ok else ("chain does not verify" if not chain_ok else "key does not match")
    if state == "ok" and cert != loaded.get(spec.client):
        state = f"not the current {spec.client} certificate"
    return status_row(spec.name, spec.file, subject=primitives.describe_name(cert),
                      issuer=primitives.describe_name(cert, "issuer"), not_after=timestamp(primitives.expires(cert)),
                      not_before=timestamp(cert.not_valid_before_utc),
                      days_left=(primitives.expires(cert) - primitives.utcnow()).days, chain_verified=chain_ok,
                      key_matches=key_ok, state=state)


def _file_row(name, rel, writer, check, complaint) -> Row:
    data = writer.read(rel)
    if data is None:
        return status_row(name, rel, state="missing")
    return status_row(name, rel, state="ok" if check(data) else complaint)


def _json_list(data: bytes) -> bool:
    try:
        entries = json.loads(data)
        return isinstance(entries, list) and all(
            isinstance(e, dict) and isinstance(e.get("jwk"), dict) and isinstance(e.get("keep_until"), str)
            for e in entries)
    except (ValueError, RecursionError):
        return False


def healthy(rows) -> bool:
    return all(r["state"] == "ok" for r in rows)


def nothing_present(rows) -> bool:
    """No certificate at all: most likely the wrong folder (the hint names --volumes). A gateway
    host's rows name its own certificate (and the CA it was issued by) among the shared CA's."""
    files = {spec.cert_file for spec in artifacts.CERTIFICATES}
    mine = [r for r in rows if r["file"].split(" ")[0] in files]
    return bool(mine) and all(r["state"] == "missing" for r in mine)




def format_table(rows, wide: bool = False) -> str:
    """One row per artifact, within WIDTH columns: NAME, FILE, REMAINING, EXTERNALLY MANAGED, STATE;
    what is cut is shown in full below. Wide: below, every artifact's SUBJECT, ISSUER, NOT AFTER,
    CHAIN and KEY (checked) and STATE, wrapped, never cut."""
    yes_no = lambda v: "-" if v is None else ("yes" if v else "no")  # noqa: E731
    external = lambda r: "" if r.get("externally_managed") is None else yes_no(r["externally_managed"])  # noqa: E731
    # EXTERNALLY MANAGED, as kubeadm names it: a CA whose key is kept elsewhere (yes) or here (no)
    header = ("NAME", "FILE", "REMAINING", "EXTERNALLY MANAGED", "STATE")
    table = [header] + [(r["name"], r["file"], r["remaining"], external(r), r["state"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    # what does not fit 120 columns is shortened, then shown in full under "details:"
    for i, least in ((1, 36), (0, 28)):
        over = sum(widths) + 2 * (len(widths) - 1) - WIDTH
        if over > 0:
            widths[i] = max(min(widths[i], least), widths[i] - over)
    widths[-1] = max(10, min(widths[-1], WIDTH - sum(widths[:-1]) - 2 * (len(widths) - 1)))
    lines = []
    for row in table:
        cells = [_shorten(cell, w) for cell, w in zip(row, widths, strict=True)]
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip())
    cut = [r for r, cells in zip(rows, table[1:], strict=True)
           if wide or any(len(c) > w for c, w in zip(cells, widths, strict=True))]
    if cut:  # in full, below the table: one paragraph per artifact, wrapped (wide: every artifact)
        lines += ["", "details:"] + [wrap(_details(r, wide, yes_no), indent="  ", hang="    ") for r in cut]
    return "\n".join(lines)


def _details(row: Row, wide: bool, yes_no) -> str:
    if not wide:
        return f"{row['name']} ({row['file']}): {state_and_time(row)}"
    fields = [("SUBJECT", row["subject"]), ("ISSUER", row["issuer"]), ("NOT AFTER", row["not_after"]),
              ("REMAINING", row["remaining"]), ("CHAIN", yes_no(row["chain_verified"])),
              ("KEY", yes_no(row["key_matches"])), ("STATE", row["state"])]
    return f"{row['name']} ({row['file']}): " + "; ".join(f"{k} {v}" for k, v in fields if v not in ("", "-"))


def _shorten(cell: str, width: int) -> str:
    """Cut in the middle: both the start and the end of a name tell it apart from its neighbours
    (envoyfilters/higress-gateway-global-custom-response vs ...-http-resolver-cluster)."""
    if len(cell) <= width:
        return cell
    head = (width - 1) // 2
    return cell[:head] + "…" + cell[len(cell) - (width - 1 - head):]





def command(settings, output: str) -> int:
    writer = runner.writer_for(settings, owners=False)  # status reads; it compares owners, never sets them
    rows = certificate_rows(settings, writer, runner.utcnow())
    report: dict[str, Any] = {"volumes": str(settings.volumes_root), "healthy": healthy(rows), "files": rows,
              "rotation": rotation_rows(writer)}
    markers = upstream.found(writer)
    if markers:
        report["healthy"], report["upstream_layout"] = False, {"files": markers, "next": upstream.hint(markers)}
    if store_kind(settings).remote:
        from higress_init.store.nacos import client
        report["nacos"] = client.status(settings, writer)
        report["healthy"] = report["healthy"] and report["nacos"]["healthy"]
    if settings.role == "all":   # the host that seeds the store: for which Higress release(s) it did
        from higress_init.store import seeding
        report["seeded_for"] = seeding.seeded_releases(writer)
    if output == "json":
        say(json.dumps(report, indent=2))
    else:
        say(format_table(rows, wide=output == "wide"))
        if nothing_present(rows) and settings.role == "gateway":
            say("\n" + wrap(f"this gateway host's files are not in {settings.volumes_root}: pass --volumes DIR, the "
                            "folder the gateway-host compose file mounts (VOLUMES_DIR), or make them, in compose/: "
                            "docker compose -f docker-compose.gateway.yml up -d"))
        elif nothing_present(rows):
            say("\n" + wrap(f"nothing is present in {settings.volumes_root}: pass --volumes DIR, the folder run "
                            "wrote into"))
        for r in report["rotation"]:
            say("\n" + wrap(f"ROTATION {r['root']}: {r['state']}; old root valid until {r['old_root_not_after']}; "
                            f"both roots trusted in {', '.join(r['trusted_in'])}; next: {r['next']}"))
        if "nacos" in report:
            say("\n" + "\n".join(wrap(line, hang="    ") for line in client.format_status(report["nacos"]).split("\n")))
        if "seeded_for" in report:
            say("\n" + wrap(seeding.seeded_text(settings, report["seeded_for"])))
        if markers:
            say("\n" + wrap("UPSTREAM LAYOUT: " + upstream.hint(markers)))
    return EXIT_OK if report["healthy"] else EXIT_FAILED
