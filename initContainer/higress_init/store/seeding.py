"""The store the apiserver serves Higress's objects from: its file store (the embedded default) or
Nacos. One code path seeds any object of the `objects` table into either store, and one delivers
the stored `higress-config` into pilot's mesh files on every run, as kubelet delivers a mounted
ConfigMap: after the first run the store is the truth, the files follow it.

Each store's layout (the apiserver's own) is its module's: store/file.py, store/nacos/layout.py.
"""
from __future__ import annotations

import hashlib
import re

from higress_init import faults
from higress_init.errors import StateError, StoreError
from higress_init.run.reporting import Row, status_row
from higress_init.store.base import md5
from higress_init.store.kinds import open_for_status, store_kind
from higress_init.versions.objects import HIGRESS_CONFIG, applicable, render_text
from higress_init.versions.releases import BEFORE_RECORDS
from higress_init.volume import layout

CONFIGMAP_NAME = HIGRESS_CONFIG.name
# In the seeded record, beside the md5 of each object written: the Higress releases (HIGRESS_VERSION)
# seeding completed for, in order. Kept here, the initializer's own state, not in the store: whatever
# the store holds the apiserver serves as an object (a file-store `.yaml` must be one), and this
# record is committed in the same journaled commit as the file store's objects.
RELEASES_KEY = "releases"
# The mesh files and the keys of higress-config they are delivered from.
DELIVERED = ((layout.MESH, "mesh"), (layout.MESH_NETWORKS, "meshNetworks"))

WHERE_TO_EDIT = ("edit configmaps/higress-config in the store (Higress console, or `kubectl --kubeconfig "
                 "kube/host.config -n {ns} edit configmap higress-config` from the host)")


def sha256(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None


# --- phases
def _adopt(ctx):
    def adopt(rel: str) -> str | None:
        data = ctx.writer.read(rel)
        return data.decode("utf-8", "replace") if data else None
    return adopt


def seed(ctx, store, counts) -> None:
    """Create every applicable object the store lacks; keep what is there (the user's to change);
    --reseed re-makes the non-random ones on purpose, compare-and-swap. `store`: stores.open_store."""
    s = ctx.settings
    calls_before = store.calls
    records: dict[str, object] = {}   # each object's md5, and the releases list
    backups: list[str] = []
    objs = applicable(s)
    contents = store.read_all(objs)   # Nacos: every read sent at once
    for obj in objs:
        raw = contents[obj.label]
        if raw is None:
            text = render_text(obj, s, ctx.now, _adopt(ctx))
            new = store.encode(obj, text)
            faults.pause("seed:before-write")
            if not store.create(obj, new):   # another host created it meanwhile: theirs is kept
                counts.add("kept", obj.label)
                ctx.stored[obj.label] = store.stored(obj)
                continue
            counts.add("created", obj.label)
        elif ctx.reseed and not obj.random:
            text = render_text(obj, s, ctx.now)
            faults.pause("reseed:after-read")
            new = store.encode(obj, text)
            if new != raw:   # what it replaces is kept first (the same text loses nothing)
                backups.append(store.backup(obj, raw))
            store.replace(obj, new, raw)
            counts.add("updated", obj.label)
        else:
            counts.add("kept", obj.label)  # present: the user's to change, never overwritten
            ctx.stored[obj.label] = raw
            continue
        ctx.stored[obj.label] = new
        records[store.record_key(obj)] = md5(new)
    store.finish(counts, objs)
    releases = seeded_releases(ctx.writer)
    if not any(r["version"] == s.higress_version for r in releases):   # every object of it is there now
        records[RELEASES_KEY] = releases + [{"version": s.higress_version,
                                             "seeded_at": ctx.now.strftime("%Y-%m-%dT%H:%M:%SZ")}]
    if set(counts.by_action) <= {"kept"}:
        ctx.log(f"{store.label}: every base object is present (in the apiserver's form or ours): nothing written",
                unchanged_store=True)
    if store.calls is not None:   # a store with a server: what seeding cost in requests
        calls = store.calls
        ctx.log(f"nacos: seeding made {calls - calls_before} calls (HTTP and gRPC), {calls} in this run",
                seeding_calls=calls - calls_before, calls=calls)
    if records:
        _record(ctx, layout.SEEDED, records)
    ctx.writer.commit()  # the file store's objects and the record, in one journaled commit
    if backups:
        folder = f"{s.volumes_root}/{layout.BACKUP_DIR}/{ctx.writer.backup_stamp}/"
        ctx.log(f"reseed: {'would back up' if ctx.plan else 'backed up'} the {len(backups)} stored objects it "
                f"{'would replace' if ctx.plan else 'replaced'} ({store.label}) in {folder}", backups=backups)
    if store_kind(s).remote:
        # the apiserver's compose service mounts the file store either way: create it owned as configured
        ctx.writer.ensure_dir(s.file_root_dir)


def seeded_releases(writer) -> list[dict]:
    """The releases seeding completed for, oldest first ({"version", "seeded_at"}); a record older
    than the releases key was written for the one release its initializer knew."""
    record = writer.read_record(layout.SEEDED)
    releases = record.get(RELEASES_KEY)
    if isinstance(releases, list):
        return [r for r in releases if isinstance(r, dict) and isinstance(r.get("version"), str)]
    if any(key.startswith(("file:", "nacos:")) for key in record):
        return [{"version": BEFORE_RECORDS, "seeded_at": None}]
    return []


def seeded_text(settings, releases: list[dict]) -> str:
    """For status: which releases the store was seeded for, and what the next run does about it."""
    if not releases:
        return f"store: no seeding recorded in {layout.SEEDED} (the next run seeds Higress {settings.higress_version})"
    done = ", then ".join(r["version"] + (f" ({r['seeded_at']})" if r.get("seeded_at") else "") for r in releases)
    text = f"store: seeded for Higress {done}"
    if not any(r["version"] == settings.higress_version for r in releases):
        text += (f"; HIGRESS_VERSION={settings.higress_version}: the next run adds the objects it seeds that the "
                 "store lacks (present ones are kept)")
    return text


def _record(ctx, rel: str, entries: dict) -> None:
    ctx.writer.stage_record(rel, {**ctx.writer.read_record(rel), **entries})


def _stored_config(ctx, store) -> tuple[str | None, dict | None]:
    """The stored higress-config: its raw content (as read this run) and its data block."""
    import yaml
    raw = ctx.stored.get(HIGRESS_CONFIG.label)
    if raw is None:
        raw = store.read(HIGRESS_CONFIG)
    if raw is None:
        return None, None
    try:
        obj = yaml.safe_load(raw)
    except (yaml.YAMLError, RecursionError) as err:
        why = "nested too deeply" if isinstance(err, RecursionError) else str(err).splitlines()[0]
        raise StateError(f"configmaps/higress-config ({store.where(HIGRESS_CONFIG)}) is not valid YAML "
                         f"({why}): pilot's mesh files were not changed; "
                         + WHERE_TO_EDIT.format(ns=ctx.settings.namespace)) from None
    data = obj.get("data") if isinstance(obj, dict) else None
    return raw, data if isinstance(data, dict) else {}


def _problems(data: dict, settings) -> list[str]:
    from higress_init.versions import meshconfig
    checks = {"mesh": lambda text: meshconfig.mesh_problem(text, settings),
              "meshNetworks": meshconfig.mesh_networks_problem}
    problems = []
    for _, key in DELIVERED:
        text = data.get(key)
        if not isinstance(text, str):
            problems.append(f"key {key} is missing" if text is None else f"key {key} is not text")
        elif (problem := checks[key](text)) is not None:
            problems.append(f"key {key}: {problem}")
    return problems


def _file_problem(key: str, data: bytes, settings) -> str | None:
    """What pilot would find wrong with a mesh file as it is on disk (None: it can use it)."""
    from higress_init.versions import meshconfig
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 text"
    return meshconfig.mesh_problem(text, settings) if key == "mesh" else meshconfig.mesh_networks_problem(text)


def _delivered(writer) -> dict:
    return writer.read_record(layout.MESH_DELIVERED)


def deliver(ctx, store, counts) -> None:
    """pilot/config/mesh and meshNetworks from the stored higress-config, every run (the store is
    the truth, as a mounted ConfigMap is in Kubernetes). A stored mesh pilot could not use is not
    written; a file edited here since the last delivery is never overwritten."""
    s = ctx.settings
    if ctx.push_mesh:
        _push(ctx, store, counts)
    before = ctx.recorded.get("TRUST_DOMAIN")
    if before and before != s.trust_domain:   # changed on purpose (--change-setting): the mesh follows
        _follow_trust_domain(ctx, store, counts, before)
    raw, data = _stored_config(ctx, store)
    if raw is None:
        raise StateError(f"configmaps/higress-config is not in the {store.label} ({store.where(HIGRESS_CONFIG)}): "
                         "run phase seed first")
    assert data is not None   # _stored_config: a dict whenever raw is not None
    problems = _problems(data, s)
    if problems:
        raise StateError(f"configmaps/higress-config in the {store.label} ({store.where(HIGRESS_CONFIG)}): "
                         f"{'; '.join(problems)}. Pilot cannot use it, so {layout.MESH} and {layout.MESH_NETWORKS} "
                         f"keep their last good text; " + WHERE_TO_EDIT.format(ns=s.namespace))
    delivered = _delivered(ctx.writer)
    plan, edited = [], []
    for rel, key in DELIVERED:
        text = data[key].encode()
        current = ctx.writer.read(rel)
        if current == text:
            counts.add("kept", rel)
        elif current is None or sha256(current) == delivered.get(rel):
            plan.append((rel, text, "created" if current is None else "updated"))
        else:
            edited.append(rel)
    if edited:
        raise StateError(
            f"{' and '.join(edited)} differ{'s' if len(edited) == 1 else ''} from configmaps/higress-config in the "
            f"{store.label} and from what the initializer last delivered: edited here, the edit would be lost. "
            f"Either keep the edit: `higress-init run --push-mesh` copies the file's text into the store once; "
            f"or drop it: remove the file and rerun, the stored text is delivered")
    records = {}
    for rel, text, action in plan:
        ctx.writer.stage(rel, text)
        counts.add(action, rel)
    for rel, key in DELIVERED:
        digest = sha256(data[key].encode())
        if delivered.get(rel) != digest:
            records[rel] = digest
    if records:
        _record(ctx, layout.MESH_DELIVERED, records)
    if plan or records:
        ctx.writer.commit()  # the files and the record of what they were given, in one journaled commit


_TRUST_DOMAIN_LINE = re.compile(r"^trustDomain:[ \t]*[\"']?([A-Za-z0-9.-]*)[\"']?[ \t]*$", re.MULTILINE)


def _follow_trust_domain(ctx, store, counts, before: str) -> None:
    """TRUST_DOMAIN changed on purpose: the stored mesh's trustDomain, still the old one, becomes
    the new one (compare-and-swap, the rest of the text as it is), so that pilot's SPIFFE names
    match the gateway's re-issued certificate. One the operator set otherwise is not touched."""
    import yaml

    from higress_init.versions import meshconfig
    new = ctx.settings.trust_domain
    raw, data = _stored_config(ctx, store)
    text = data.get("mesh") if data else None
    found = _TRUST_DOMAIN_LINE.findall(text) if isinstance(text, str) else []
    if found == [new]:
        return
    if found != [before]:
        raise StateError(f"TRUST_DOMAIN changed from {before} to {new}, but the stored mesh's trustDomain is "
                         f"{found[0] if len(found) == 1 else 'not one plain line'} (not {before}): it was not "
                         "changed; set `trustDomain: " + new + "` there by hand, then rerun: "
                         + WHERE_TO_EDIT.format(ns=ctx.settings.namespace))
    assert raw is not None and isinstance(text, str)   # found == [before]: a stored mesh was read
    obj = yaml.safe_load(raw)
    obj["data"]["mesh"] = _TRUST_DOMAIN_LINE.sub(f"trustDomain: {new}", text)
    updated = meshconfig.dump(obj)
    store.replace(HIGRESS_CONFIG, updated, raw)
    store.commit()
    ctx.stored[HIGRESS_CONFIG.label] = updated
    counts.add("updated", f"configmaps/higress-config (mesh trustDomain {before} -> {new})")


def _push(ctx, store, counts) -> None:
    """--push-mesh: the mesh files' text into the stored higress-config, once, compare-and-swap."""
    import yaml

    from higress_init.versions import meshconfig
    raw, data = _stored_config(ctx, store)
    if raw is None:
        raise StateError(f"configmaps/higress-config is not in the {store.label}: run first, then push")
    assert data is not None   # _stored_config: a dict whenever raw is not None
    texts = {}
    for rel, key in DELIVERED:
        current = ctx.writer.read(rel)
        if current is not None:
            texts[key] = current.decode("utf-8", "replace")
    problems = _problems({**data, **texts}, ctx.settings)
    if problems:
        raise StateError(f"--push-mesh: the files' text is not a mesh pilot can use ({'; '.join(problems)}): "
                         "nothing was pushed; fix the file first")
    if all(data.get(k) == v for k, v in texts.items()):
        counts.add("kept", "configmaps/higress-config (nothing to push)")
        return
    obj = yaml.safe_load(raw)
    obj["data"] = {**obj.get("data", {}), **texts}
    new = meshconfig.dump(obj)
    store.replace(HIGRESS_CONFIG, new, raw)
    store.commit()
    ctx.stored[HIGRESS_CONFIG.label] = new
    counts.add("updated", "configmaps/higress-config (pushed from the mesh files)")


# --- status
def status_rows(settings, writer) -> list[Row]:
    """Rows for status: each object in the file store, and whether pilot's mesh files are what the
    store holds (for Nacos the objects themselves are in the Nacos section)."""
    rows: list[Row] = []
    try:
        ctx, store = open_for_status(settings, writer)
    except (StoreError, OSError) as err:   # Nacos down: say so on the rows that need it
        return [status_row(key, rel, state=f"cannot compare with the store: {err}") for rel, key in DELIVERED]
    if not store_kind(settings).remote:   # a remote store's objects: in its own section of status
        import yaml
        for obj in applicable(settings):
            raw = store.read(obj)
            state = "missing"
            if raw is not None:
                try:
                    loaded = yaml.safe_load(raw)
                    state = "ok" if isinstance(loaded, dict) and loaded.get("kind") == obj.kind else \
                        f"not a {obj.kind}"
                except (yaml.YAMLError, RecursionError):
                    state = "not valid YAML (the apiserver will not start)"
            path = store.path(obj)
            shown = path.relative_to(settings.volumes_root) if path.is_relative_to(settings.volumes_root) else path
            rows.append(status_row(obj.label, str(shown), state=state))
    try:
        raw, data = _stored_config(ctx, store)
    except StateError as err:
        raw, data = "", None
        problems = [str(err)]
    else:
        # _stored_config: data is None exactly when raw is (not stored)
        problems = _problems(data, settings) if data is not None else ["configmaps/higress-config is not in the store"]
    finally:   # the store is read: its connection ends here, not at exit
        if ctx.nacos is not None:
            ctx.nacos.close()
    stored = data or {}   # None only with problems, where it is not read
    delivered = _delivered(writer)
    for rel, key in DELIVERED:
        current = writer.read(rel)
        own = _file_problem(key, current, settings) if current is not None else None
        if problems:
            state = "stored higress-config unusable: " + "; ".join(problems) + " (fix it in the store)"
        elif current is None:
            state = "missing"
        elif own:
            state = f"{own}: pilot falls back to its defaults and the gateway cannot connect"
        elif current == stored[key].encode():
            state = "ok"
        elif sha256(current) == delivered.get(rel):
            state = "the store changed since the last delivery: the next run delivers it"
        else:
            state = "edited here: differs from the store and the last delivery (run --push-mesh, or remove the file)"
        rows.append(status_row(key, rel, state=state, subject=f"edit in the {store.label}: configmaps/higress-config"))
    return rows

