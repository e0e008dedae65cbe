"""The run, as a short ordered list of named phases. Each phase is idempotent and stages its
files; the `write` phase commits them all at once, so a refusal anywhere before it leaves the
volumes untouched.

The modules behind the phases (cryptography, PyJWT, PyYAML) are imported by the phases that use
them, so that a rerun with nothing to do (runstate) does not pay for them."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from . import faults
from .errors import StateError
from .settings import Settings
from .volume import VolumeWriter

DATA_KEY_FILE = "api/nacos.key"
KUBECONFIG_FILE = "kube/config"
LABELS_FILE = "gateway/podinfo/labels"
MESH_FILE = "pilot/config/mesh"
MESH_NETWORKS_FILE = "pilot/config/meshNetworks"
DATA_KEY_LENGTHS = (16, 24, 32)  # what the apiserver accepts from its key file (AES-128/192/256), raw bytes


class Counts:
    """What a phase did, by action (created, kept, re-issued, ...), naming each artifact."""

    ORDER = ("connected", "created", "reissued", "updated", "written", "owner set", "kept", "skipped", "would create",
             "would reissue", "would update")

    def __init__(self):
        self.by_action: dict[str, list[str]] = {}

    def add(self, action: str, name: str) -> None:
        self.by_action.setdefault(action, []).append(name)

    def summary(self) -> str:
        actions = sorted(self.by_action, key=lambda a: self.ORDER.index(a) if a in self.ORDER else 99)
        return ", ".join(f"{a.replace('reissued', 're-issued')} {len(self.by_action[a])}" for a in actions) or "nothing to do"


@dataclass
class Context:
    settings: Settings
    writer: VolumeWriter
    now: datetime
    dry_run: bool = False
    rotate: set = field(default_factory=set)   # names to replace on purpose (see ROTATIONS)
    finish_rotation: bool = False
    reseed: bool = False
    push_mesh: bool = False                     # copy the mesh files' text into the stored higress-config once
    log: Callable = print
    phases: tuple[str, ...] = ()                # the phases this run executes
    _decisions: dict | None = None
    _keys: object | None = None            # artifacts.KeyPool, made on first use
    nacos: object | None = None
    stored: dict = field(default_factory=dict)  # raw stored content of each base object, as read or written this run
    shared_ca: object | None = None             # sharedca.Published: the pilot CA as published in Nacos, read this run

    renew_by: list = field(default_factory=list)  # when something this run made or kept needs renewing

    @property
    def decisions(self) -> dict:
        if self._decisions is None:
            from . import artifacts
            self._decisions = artifacts.decide(self.settings, self.writer, self.now, self.rotate)
        return self._decisions

    @property
    def keys(self):
        if self._keys is None and self.settings.role == "gateway" and self._decisions is None:
            # a gateway host decides only once it has read the published CA (sharedca.gateway_pki)
            from . import artifacts
            return artifacts.KeyPool({})
        if self._keys is None:
            from . import artifacts, tokens
            s = self.settings
            wanted = {d.spec.name: getattr(s, d.spec.key_algorithm) for d in self.decisions.values()
                      if d.action in ("create", "reissue", "rotate") and d.spec.phase in self.phases}
            if "tokens" in self.phases:
                wanted.update(tokens.keys_wanted(self))
            self._keys = artifacts.KeyPool(wanted)
        return self._keys

    def close(self):
        if self._keys:
            self._keys.close()

    def start(self) -> list[str]:
        """Work that precedes the phases: ending a rotation overlap drops the old roots."""
        from . import artifacts
        return artifacts.finish_rotation(self.writer) if self.finish_rotation and not self.dry_run else []

    def stage(self, rel, data, name: str, counts: Counts, private=False) -> None:
        """Stage a derived file (bytes, or a function making them) and count what that does to it."""
        existing = self.writer.read(rel)
        data = data() if callable(data) else data
        action = "created" if existing is None else "updated"
        if self.dry_run:
            changed = existing != data
            counts.add(f"would {action[:-1]}" if changed else "kept", name)
        elif self.writer.stage(rel, data, private=private):
            counts.add(action, name)
        else:
            counts.add("kept", name)


def _certificates(phase: str):
    def run(ctx: Context, counts: Counts) -> None:
        from . import artifacts
        if ctx.dry_run:
            for d in ctx.decisions.values():
                if d.spec.phase == phase:
                    counts.add("kept" if d.action in ("keep", "external") else
                               f"would {d.action.replace('rotate', 'reissue')}",
                               f"{d.spec.name}" + (f" ({d.reason})" if d.reason and d.action != "keep" else ""))
            return
        ctx.keys  # start generating every key the run needs, in parallel, before signing
        artifacts.apply(phase, ctx.settings, ctx.writer, ctx.decisions, ctx.keys, ctx.now, counts)
        for d in ctx.decisions.values():
            if d.spec.phase == phase and d.cert is not None:
                lead = timedelta(0) if d.spec.ca else ctx.settings.renew_before
                ctx.renew_by.append(d.cert.not_valid_after_utc - lead)
    return run


def data_key_problem(data: bytes) -> str | None:
    """Why the apiserver would refuse this key file (it uses the raw bytes: 16, 24 or 32 of them)."""
    if len(data) in DATA_KEY_LENGTHS:
        return None
    if not data:
        return "is empty"
    if data != data.rstrip(b"\r\n") and len(data.rstrip(b"\r\n")) in DATA_KEY_LENGTHS:
        return (f"is {len(data)} bytes: a key followed by a line break, which the apiserver reads as part of the "
                "key and refuses to start")
    return f"is {len(data)} bytes; the apiserver accepts only exactly 16, 24 or 32"


def data_key(ctx: Context, counts: Counts) -> None:
    """api/nacos.key: generated once, never replaced (Secrets in Nacos are encrypted with it)."""
    existing = ctx.writer.read(DATA_KEY_FILE)
    wanted = ctx.settings.nacos_data_key
    if existing is not None:
        problem = data_key_problem(existing)
        if problem:
            raise StateError(f"{DATA_KEY_FILE} {problem}. It is never replaced silently (Secrets stored with a key "
                             "become unreadable without it): write the key's exact bytes into it (printf '%s' KEY), "
                             "or, if nothing was ever stored with it, remove it to have a new key made")
        if wanted is not None and existing != wanted:
            raise StateError(f"NACOS_DATA_ENC_KEY differs from the existing {DATA_KEY_FILE}: the key is never "
                             "replaced, since Secrets stored with it would become unreadable; unset "
                             "NACOS_DATA_ENC_KEY or set it to the existing key")
        counts.add("kept", "nacos.key")
        return
    if ctx.dry_run:
        counts.add("would create", "nacos.key")
        return
    import secrets
    import string
    key = wanted or "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32)).encode()
    ctx.writer.stage(DATA_KEY_FILE, key, private=True)
    counts.add("created", "nacos.key")


def apiserver_pki(ctx: Context, counts: Counts) -> None:
    _certificates("apiserver-pki")(ctx, counts)
    data_key(ctx, counts)


def kube_config(ctx: Context, counts: Counts) -> None:
    """One kubeconfig per caller of the apiserver (kubeconfig.KUBECONFIGS), each with its own
    client certificate: named by path where its reader re-reads renewed files, else embedded."""
    from . import kubeconfig
    ca_file = ctx.decisions["apiserver-ca"].spec.cert_file
    for spec in kubeconfig.KUBECONFIGS:
        client = ctx.decisions[spec.client]
        if ctx.dry_run and client.action != "keep":
            counts.add("would update" if ctx.writer.exists(spec.file) else "would create", spec.name)
            continue
        files = (ca_file, client.spec.cert_file, client.spec.key_file)
        parts = [ctx.writer.read(f) for f in files]
        if None in parts:
            raise StateError(f"{spec.file} needs {', '.join(files)}: run phase apiserver-pki first")
        ca, cert, key = parts
        if spec.mounted_at:
            cert, key = (spec.path_in_reader(f) for f in files[1:])
        ctx.stage(spec.file, kubeconfig.render(ctx.settings.apiserver_url, ca, cert, key, user=spec.user),
                  spec.name, counts, private=True)


def writable_dirs(ctx: Context, counts: Counts) -> None:
    """The folders components write into (readers.READERS), made after the commit with the owner
    (VOLUMES_UID/GID) and mode their image's user needs (ownership.dir_mode); never emptied. Made
    through the writer, so a link or a file in the way is refused, never followed."""
    from . import readers
    for reader in readers.READERS:
        if ctx.settings.role == "gateway" and reader.service != "gateway":
            continue  # a gateway-only host runs no other component
        for rel, _mode in reader.writes:
            existed = ctx.writer.fs.exists() and ctx.writer.fs.lstat(ctx.writer._parts(rel)) is not None
            if ctx.dry_run:
                counts.add("kept" if existed else "would create", rel)
                continue
            ctx.writer.ensure_dir(rel)  # an existing one gets its mode and owner back with the rest
            counts.add("kept" if existed else "created", rel)


POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"  # Kubernetes' label naming one pod (selectable per host)


def pod_config(ctx: Context, counts: Counts) -> None:
    # the mesh files are not made here: `deliver` renders them from the stored higress-config
    from . import meshconfig
    from .settings import SETTINGS_BY_ENV
    labels = meshconfig.pod_labels(ctx.settings)
    if ctx.settings.pod_name != SETTINGS_BY_ENV["POD_NAME"].default:  # one of several gateway hosts
        labels += f'{POD_NAME_LABEL}="{ctx.settings.pod_name}"\n'
    ctx.stage(LABELS_FILE, labels.encode(), "podinfo/labels", counts)


def pilot_pki(ctx: Context, counts: Counts) -> None:
    """The pilot CA and the gateway certificate. With Nacos storage the CA is the deployment's, shared
    through Nacos (sharedca): taken from there when published, else made here and published by the
    `shared-ca` phase; a gateway-only host only issues its gateway certificate from it."""
    if ctx.settings.role == "gateway":
        from . import sharedca
        sharedca.gateway_pki(ctx, counts)
        return
    if ctx.settings.config_storage == "nacos":
        from . import sharedca
        sharedca.adopt(ctx, counts)
    _certificates("pilot-pki")(ctx, counts)


def shared_ca(ctx: Context, counts: Counts) -> None:
    if ctx.settings.config_storage != "nacos":
        counts.add("skipped", "file storage")
        return
    from . import sharedca
    sharedca.publish(ctx, counts)


def write(ctx: Context, counts: Counts) -> None:
    if ctx.dry_run:
        for item in ctx.writer.changes():
            counts.add("would update", str(item.path))
        return
    written = ctx.writer.commit()
    for path in ctx.writer.fix_owners():
        counts.add("owner set", str(path))
    for path in written:
        counts.add("written", str(path.relative_to(ctx.settings.volumes_root))
                   if path.is_relative_to(ctx.settings.volumes_root) else str(path))


def seed(ctx: Context, counts: Counts) -> None:
    from . import configstore
    configstore.seed(ctx, counts)


def deliver(ctx: Context, counts: Counts) -> None:
    from . import configstore
    configstore.deliver(ctx, counts)


def nacos_ready(ctx: Context, counts: Counts) -> None:
    if ctx.settings.role == "gateway":
        from . import sharedca
        sharedca.connect(ctx, counts)
        return
    from . import configstore
    configstore.prepare(ctx, counts)


def token_phase(ctx: Context, counts: Counts) -> None:
    from . import tokens
    tokens.phase(ctx, counts)


@dataclass(frozen=True)
class Phase:
    name: str
    help: str
    run: Callable[[Context, Counts], None]
    roles: tuple[str, ...] = ("all",)   # settings.ROLES this phase runs for


BOTH = ("all", "gateway")


PHASES: tuple[Phase, ...] = (
    Phase("nacos", "wait for Nacos, log in, create the namespace (Nacos storage only)", nacos_ready, BOTH),
    Phase("apiserver-pki", "apiserver CA, server and admin client certificates, data encryption key", apiserver_pki),
    Phase("pilot-pki", "pilot plug-in CA (root, intermediate, chain; with Nacos: the deployment's, shared) and the "
                       "gateway certificate", pilot_pki, BOTH),
    Phase("kubeconfig", "one kubeconfig for the operator and each component: the apiserver's CA, its own "
          "client certificate", kube_config),
    Phase("tokens", "token signing key, JWKS, OIDC discovery document and per-component tokens", token_phase),
    Phase("pod-config", "gateway pod labels", pod_config, BOTH),
    Phase("shared-ca", "publish the pilot CA as Secret cacerts in Nacos, once, compare-and-swap (Nacos storage "
                       "only)", shared_ca),
    Phase("write", "commit every staged file into the volumes, atomically", write, BOTH),
    Phase("writable-dirs", "the folders components write into: controller and gateway logs and data",
          writable_dirs, BOTH),
    Phase("seed", "seed the base objects (higress-config, McpBridge, Secrets, Gateway, ...) into Nacos or the "
                  "file store; present ones are kept", seed),
    Phase("deliver", "render pilot/config/mesh and meshNetworks from the stored higress-config (every run)", deliver,
          BOTH),
)
PHASES_BY_NAME = {p.name: p for p in PHASES}


# What each rotation replaces; everything issued under a replaced CA follows it.
ROTATIONS = {
    "leaf": {"apiserver", "apiserver-admin", "apiserver-controller", "apiserver-pilot", "apiserver-console",
             "gateway", "tokens"},
    "intermediate": {"pilot-ca"},
    "root": {"apiserver-ca", "pilot-root-ca", "token-key"},
}


def run_phases(ctx: Context, names: list[str], report: Callable[[str, Counts, float], None]) -> None:
    for name in names:
        faults.point(f"phase:{name}")
        phase = PHASES_BY_NAME[name]
        started = time.perf_counter()
        counts = Counts()
        if ctx.settings.role in phase.roles:
            phase.run(ctx, counts)
        else:
            counts.add("skipped", f"ROLE={ctx.settings.role}")
        report(name, counts, time.perf_counter() - started)
