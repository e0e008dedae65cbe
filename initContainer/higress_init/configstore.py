"""The store the apiserver serves Higress's objects from: its file store (the embedded default) or
Nacos. One code path seeds any object of the `objects` table into either store, and one delivers
the stored `higress-config` into pilot's mesh files on every run, as kubelet delivers a mounted
ConfigMap: after the first run the store is the truth, the files follow it.

Layouts (the apiserver's own):
- file store: `<FILE_ROOT_DIR>/<plural>/<name>.yaml`, every object as plain YAML (Secrets too,
  with base64 data); the namespace is not part of the path.
- Nacos: group = the object's namespace (cluster-scoped: DEFAULT_GROUP), dataId `<plural>.<name>`,
  content the YAML; Secrets `enc|` + URL-safe base64 of AES-CBC (key = api/nacos.key, IV = its
  first 16 bytes, PKCS#7). Per type an index `<plural>.__names__` in DEFAULT_GROUP.
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from datetime import timedelta

from . import faults
from .errors import StateError
from .objects import DEFAULT_GROUP, HIGRESS_CONFIG, BaseObject, applicable, render_text
from .phases import DATA_KEY_FILE, MESH_FILE, MESH_NETWORKS_FILE, data_key_problem

CONFIGMAP_NAME = HIGRESS_CONFIG.name
SEEDED_FILE = ".higress-init/seeded.json"        # md5 of what each seeding wrote, for status' "as seeded"
DELIVERED_FILE = ".higress-init/mesh-delivered.json"  # sha256 of the mesh files as last delivered
EMPTY_INDEX = "EMPTY"                             # the apiserver's index of a type with no objects
# The mesh files and the keys of higress-config they are delivered from.
DELIVERED = ((MESH_FILE, "mesh"), (MESH_NETWORKS_FILE, "meshNetworks"))

WHERE_TO_EDIT = ("edit configmaps/higress-config in the store (Higress console, or `kubectl --kubeconfig "
                 "kube/config -n {ns} edit configmap higress-config`)")


def md5(text: str | None) -> str | None:
    return hashlib.md5(text.encode()).hexdigest() if text is not None else None


def sha256(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None


# --- the apiserver's Secret encryption in Nacos
def encrypt(text: str, key: bytes) -> str:
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    padder = padding.PKCS7(128).padder()
    padded = padder.update(text.encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return "enc|" + base64.urlsafe_b64encode(encryptor.update(padded) + encryptor.finalize()).decode()


def decrypt(content: str, key: bytes) -> str:
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    if not content.startswith("enc|"):
        return content  # the apiserver reads an unencrypted Secret as is
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    padded = decryptor.update(base64.urlsafe_b64decode(content[4:])) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return (unpadder.update(padded) + unpadder.finalize()).decode()


# --- the two stores
class FileStore:
    """The apiserver's `--storage file` root. Writes go through the volume writer (staged,
    journaled, renamed into place), so no partial object ever carries a `.yaml` name."""

    kind = "file store"

    def __init__(self, ctx):
        self.ctx, self.settings, self.writer = ctx, ctx.settings, ctx.writer

    def path(self, obj: BaseObject):
        return self.settings.file_root_dir / obj.plural / f"{obj.name}.yaml"

    def where(self, obj: BaseObject) -> str:
        return str(self.path(obj))

    def record_key(self, obj: BaseObject) -> str:
        return f"file:{obj.label}"

    def read(self, obj: BaseObject) -> str | None:
        data = self.writer.read(self.path(obj))
        return None if data is None else data.decode("utf-8", "replace")

    def text(self, obj: BaseObject, raw: str) -> str:
        return raw

    def encode(self, obj: BaseObject, text: str) -> str:
        return text

    def create(self, obj: BaseObject, raw: str) -> None:
        self.writer.stage(self.path(obj), raw.encode(), private=obj.secret)  # committed with the rest by finish()

    def replace(self, obj: BaseObject, raw: str, expected: str) -> None:
        # compare-and-swap as far as a file allows: what is on disk now must be what was read
        data = self.writer.fs.read(self.writer._parts(self.path(obj)))  # fresh, no-follow, capped
        current = None if data is None else data.decode("utf-8", "replace")
        if current != expected:
            raise StateError(f"{self.where(obj)} changed while the initializer was writing it: nothing was "
                             "overwritten; rerun to try again")
        self.writer.stage(self.path(obj), raw.encode(), private=obj.secret)

    def finish(self, counts, objs) -> None:
        pass  # no index: the apiserver lists the folder


class NacosStore:
    kind = "Nacos"

    def __init__(self, ctx, conn):
        self.ctx, self.settings, self.conn = ctx, ctx.settings, conn
        self._key = None

    def where(self, obj: BaseObject) -> str:
        return f"Nacos namespace {self.settings.nacos_namespace}, group {obj.group(self.settings)}, " \
               f"dataId {obj.data_id}"

    def record_key(self, obj: BaseObject) -> str:
        return f"nacos:{self.settings.nacos_namespace}/{obj.group(self.settings)}/{obj.data_id}"

    @property
    def key(self) -> bytes:
        if self._key is None:
            data = self.ctx.writer.read(DATA_KEY_FILE)
            if data is None:
                raise StateError(f"Secrets in Nacos are encrypted with {DATA_KEY_FILE}, which is missing: run phase "
                                 "apiserver-pki first")
            problem = data_key_problem(data)
            if problem:
                raise StateError(f"{DATA_KEY_FILE} {problem}")
            self._key = data
        return self._key

    def read(self, obj: BaseObject) -> str | None:
        return self.conn.get(obj.data_id, obj.group(self.settings))

    def text(self, obj: BaseObject, raw: str) -> str:
        return decrypt(raw, self.key) if obj.secret else raw

    def encode(self, obj: BaseObject, text: str) -> str:
        return encrypt(text, self.key) if obj.secret else text

    def create(self, obj: BaseObject, raw: str) -> None:
        self.conn.compare_and_publish(obj.data_id, obj.group(self.settings), raw, None)

    def replace(self, obj: BaseObject, raw: str, expected: str) -> None:
        self.conn.compare_and_publish(obj.data_id, obj.group(self.settings), raw, md5(expected))

    def finish(self, counts, objs) -> None:
        """Each type's names index lists every seeded object: one read per type, one write when a line
        is missing (the apiserver's refresh is triggered by a change of it)."""
        from .nacos import NacosConflict
        by_plural: dict[str, list[BaseObject]] = {}
        for obj in objs:
            by_plural.setdefault(obj.plural, []).append(obj)
        for plural, members in by_plural.items():
            data_id = f"{plural}.__names__"
            for attempt in range(5):
                index = self.conn.get(data_id, DEFAULT_GROUP)
                wanted = index_with(index, [(o.group(self.settings), o) for o in members])
                if wanted is None:
                    counts.add("kept", data_id)
                    break
                if self.ctx.dry_run:
                    counts.add("would update", data_id)
                    break
                try:
                    self.conn.compare_and_publish(data_id, DEFAULT_GROUP, wanted, md5(index))
                    counts.add("updated" if index else "created", data_id)
                    break
                except NacosConflict:
                    if attempt == 4:
                        raise  # the apiserver rewrites this index too: re-read and merge, a few times


def index_lines(obj: BaseObject, group: str) -> set[str]:
    """Every way an index line can name this object: the apiserver's create appends
    `<namespace>/<name>` (cluster-scoped: `/<name>`), its refresh rewrites all as `<group>/<dataId>`."""
    forms = {f"{group}/{obj.name}", f"{group}/{obj.data_id}"}
    if not obj.namespaced:
        forms.add(f"/{obj.name}")
    return forms


def index_with(content: str | None, members) -> str | None:
    """The index with a line for each object found in none of its forms; None: nothing to add.
    `EMPTY` (the apiserver's word for no objects) counts as no lines."""
    lines = [line.strip() for line in (content or "").splitlines() if line.strip()]
    present = set(lines)
    missing = [f"{'' if not o.namespaced else group}/{o.name}" for group, o in members
               if not index_lines(o, group) & present]
    if not missing:
        return None
    kept = [line for line in lines if line != EMPTY_INDEX]
    return "".join(line + "\n" for line in kept + missing)


def open_store(ctx):
    if ctx.settings.config_storage == "nacos":
        from . import nacos
        ctx.nacos = ctx.nacos or nacos.connect(ctx.settings, ctx.log)
        return NacosStore(ctx, ctx.nacos)
    return FileStore(ctx)


# --- phases
def prepare(ctx, counts) -> None:
    if ctx.settings.config_storage != "nacos":
        counts.add("skipped", "file storage")
        return
    from . import nacos
    nacos.prepare(ctx, counts)


def _adopt(ctx):
    def adopt(rel: str) -> str | None:
        data = ctx.writer.read(rel)
        return data.decode("utf-8", "replace") if data else None
    return adopt


def seed(ctx, counts) -> None:
    """Create every applicable object the store lacks; keep what is there (the user's to change);
    --reseed re-makes the non-random ones on purpose, compare-and-swap."""
    s = ctx.settings
    store = open_store(ctx)
    calls_before = getattr(getattr(ctx, "nacos", None), "calls", 0)
    records = {}
    objs = applicable(s)
    for obj in objs:
        raw = store.read(obj)
        if raw is None:
            if ctx.dry_run:
                counts.add("would create", obj.label)
                continue
            text = render_text(obj, s, ctx.now, _adopt(ctx))
            new = store.encode(obj, text)
            faults.pause("seed:before-write")
            if not _create(store, obj, new):   # another host created it meanwhile: theirs is kept
                counts.add("kept", obj.label)
                ctx.stored[obj.label] = store.read(obj)
                continue
            counts.add("created", obj.label)
        elif ctx.reseed and not obj.random:
            text = render_text(obj, s, ctx.now)
            if ctx.dry_run:
                counts.add("would update", obj.label)
                continue
            faults.pause("reseed:after-read")
            new = store.encode(obj, text)
            store.replace(obj, new, raw)
            counts.add("updated", obj.label)
        else:
            counts.add("kept", obj.label)  # present: the user's to change, never overwritten
            ctx.stored[obj.label] = raw
            continue
        ctx.stored[obj.label] = new
        records[store.record_key(obj)] = md5(new)
    store.finish(counts, objs)
    if not ctx.dry_run and set(counts.by_action) <= {"kept"}:
        ctx.log(f"{store.kind}: every base object is present (in the apiserver's form or ours): nothing written",
                unchanged_store=True)
    if isinstance(store, NacosStore):
        calls = getattr(store.conn, "calls", 0)
        ctx.log(f"nacos: seeding made {calls - calls_before} calls (HTTP and gRPC), {calls} in this run",
                seeding_calls=calls - calls_before, calls=calls)
    if ctx.dry_run:
        return
    if records:
        _record(ctx, SEEDED_FILE, records)
    ctx.writer.commit()  # the file store's objects and the record, in one journaled commit
    if s.config_storage == "nacos":
        # the apiserver's compose service mounts the file store either way: create it owned as configured
        ctx.writer.ensure_dir(s.file_root_dir)


def _create(store, obj: BaseObject, raw: str) -> bool:
    """Create an absent object; False when another writer (a second control-plane host starting at
    the same moment) created it first."""
    if not isinstance(store, NacosStore):
        store.create(obj, raw)
        return True
    from .nacos import NacosConflict
    try:
        store.create(obj, raw)
    except NacosConflict:
        if store.read(obj) is None:
            raise
        return False
    return True


def _record(ctx, rel: str, entries: dict) -> None:
    data = ctx.writer.read(rel)
    try:
        state = json.loads(data) if data else {}
    except ValueError:
        state = {}
    state.update(entries)
    ctx.writer.stage(rel, json.dumps(state, indent=1, sort_keys=True).encode(), private=True)  # bookkeeping: root's


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
    except yaml.YAMLError as err:
        raise StateError(f"configmaps/higress-config ({store.where(HIGRESS_CONFIG)}) is not valid YAML "
                         f"({str(err).splitlines()[0]}): pilot's mesh files were not changed; "
                         + WHERE_TO_EDIT.format(ns=ctx.settings.namespace)) from None
    data = obj.get("data") if isinstance(obj, dict) else None
    return raw, data if isinstance(data, dict) else {}


def _problems(data: dict) -> list[str]:
    from . import meshconfig
    checks = {"mesh": meshconfig.mesh_problem, "meshNetworks": meshconfig.mesh_networks_problem}
    problems = []
    for _, key in DELIVERED:
        text = data.get(key)
        if not isinstance(text, str):
            problems.append(f"key {key} is missing" if text is None else f"key {key} is not text")
        elif (problem := checks[key](text)) is not None:
            problems.append(f"key {key}: {problem}")
    return problems


def _delivered(writer) -> dict:
    data = writer.read(DELIVERED_FILE)
    try:
        return json.loads(data) if data else {}
    except ValueError:
        return {}


def deliver(ctx, counts) -> None:
    """pilot/config/mesh and meshNetworks from the stored higress-config, every run (the store is
    the truth, as a mounted ConfigMap is in Kubernetes). A stored mesh pilot could not use is not
    written; a file edited here since the last delivery is never overwritten."""
    s = ctx.settings
    store = open_store(ctx)
    if ctx.push_mesh and not ctx.dry_run:
        _push(ctx, store, counts)
    raw, data = _stored_config(ctx, store)
    if raw is None:
        if not ctx.dry_run:
            raise StateError(f"configmaps/higress-config is not in the {store.kind} ({store.where(HIGRESS_CONFIG)}): "
                             "run phase seed first")
        import yaml
        data = yaml.safe_load(render_text(HIGRESS_CONFIG, s, ctx.now, _adopt(ctx)))["data"]
    problems = _problems(data)
    if problems:
        raise StateError(f"configmaps/higress-config in the {store.kind} ({store.where(HIGRESS_CONFIG)}): "
                         f"{'; '.join(problems)}. Pilot cannot use it, so {MESH_FILE} and {MESH_NETWORKS_FILE} keep "
                         f"their last good text; " + WHERE_TO_EDIT.format(ns=s.namespace))
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
            f"{store.kind} and from what the initializer last delivered: edited here, the edit would be lost. "
            f"Either keep the edit: `higress-init run --push-mesh` copies the file's text into the store once; "
            f"or drop it: remove the file and rerun, the stored text is delivered")
    records = {}
    for rel, text, action in plan:
        if ctx.dry_run:
            counts.add(f"would {action[:-1]}", rel)
            continue
        ctx.writer.stage(rel, text)
        counts.add(action, rel)
    for rel, key in DELIVERED:
        digest = sha256(data[key].encode())
        if delivered.get(rel) != digest:
            records[rel] = digest
    if ctx.dry_run:
        return
    if records:
        _record(ctx, DELIVERED_FILE, records)
    if plan or records:
        ctx.writer.commit()  # the files and the record of what they were given, in one journaled commit


def _push(ctx, store, counts) -> None:
    """--push-mesh: the mesh files' text into the stored higress-config, once, compare-and-swap."""
    import yaml
    from . import meshconfig
    raw, data = _stored_config(ctx, store)
    if raw is None:
        raise StateError(f"configmaps/higress-config is not in the {store.kind}: run first, then push")
    texts = {}
    for rel, key in DELIVERED:
        current = ctx.writer.read(rel)
        if current is not None:
            texts[key] = current.decode("utf-8", "replace")
    problems = _problems({**data, **texts})
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
    if isinstance(store, FileStore):
        store.writer.commit()
    ctx.stored[HIGRESS_CONFIG.label] = new
    counts.add("updated", "configmaps/higress-config (pushed from the mesh files)")


# --- status
def _status_store(settings, writer):
    """A read-only store for status: Nacos gets a short wait, not the run's NACOS_WAIT_TIMEOUT."""
    from types import SimpleNamespace
    ctx = SimpleNamespace(settings=settings, writer=writer, nacos=None, dry_run=True, stored={},
                          log=lambda *a, **k: None)
    if settings.config_storage == "nacos":
        from . import nacos
        ctx.nacos = nacos.connect(replace(settings, nacos_wait_timeout=timedelta(seconds=2)), ctx.log)
        return ctx, NacosStore(ctx, ctx.nacos)
    return ctx, FileStore(ctx)


def status_rows(settings, writer) -> list[dict]:
    """Rows for status: each object in the file store, and whether pilot's mesh files are what the
    store holds (for Nacos the objects themselves are in the Nacos section)."""
    rows = []
    if settings.config_storage == "nacos":
        from .nacos import NacosError
    else:
        NacosError = StateError  # noqa: N806
    try:
        ctx, store = _status_store(settings, writer)
    except (NacosError, OSError) as err:  # Nacos down: say so on the rows that need it
        return [{"name": key, "file": rel, "state": f"cannot compare with the store: {err}"}
                for rel, key in DELIVERED]
    if isinstance(store, FileStore):
        import yaml
        for obj in applicable(settings):
            raw = store.read(obj)
            state = "missing"
            if raw is not None:
                try:
                    loaded = yaml.safe_load(raw)
                    state = "ok" if isinstance(loaded, dict) and loaded.get("kind") == obj.kind else \
                        f"not a {obj.kind}"
                except yaml.YAMLError:
                    state = "not valid YAML (the apiserver will not start)"
            path = store.path(obj)
            shown = path.relative_to(settings.volumes_root) if path.is_relative_to(settings.volumes_root) else path
            rows.append({"name": obj.label, "file": str(shown), "state": state})
    try:
        raw, data = _stored_config(ctx, store)
    except StateError as err:
        raw, data = "", None
        problems = [str(err)]
    else:
        problems = _problems(data) if raw is not None else ["configmaps/higress-config is not in the store"]
    delivered = _delivered(writer)
    for rel, key in DELIVERED:
        current = writer.read(rel)
        if problems:
            state = "stored higress-config unusable: " + "; ".join(problems) + " (fix it in the store)"
        elif current is None:
            state = "missing"
        elif current == data[key].encode():
            state = "ok"
        elif sha256(current) == delivered.get(rel):
            state = "the store changed since the last delivery: the next run delivers it"
        else:
            state = "edited here: differs from the store and the last delivery (run --push-mesh, or remove the file)"
        rows.append({"name": key, "file": rel, "state": state,
                     "subject": f"edit in the {store.kind}: configmaps/higress-config"})
    return rows

