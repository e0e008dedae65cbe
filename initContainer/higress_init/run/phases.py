"""The run, as a short ordered list of named phases. Each phase is idempotent and stages its
files; the `write` phase commits them all at once, so a refusal anywhere before it leaves the
volumes untouched.

The modules behind the phases (cryptography, PyJWT, PyYAML) are imported by the phases that use
them, so that a rerun with nothing to do (runstate) does not pay for them."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from higress_init.pki import datakey
from higress_init import faults
from higress_init.volume import layout
from higress_init.errors import StateError
from higress_init.run.reporting import Counts
from higress_init.settings import Settings
from higress_init.volume.writer import VolumeWriter


@dataclass
class Context:
    settings: Settings
    writer: VolumeWriter
    now: datetime
    plan: bool = False                          # `plan`: the writer is a PlanWriter, Nacos is staged too
    rotate: set = field(default_factory=set)   # names to replace on purpose (see ROTATIONS)
    finish_rotation: bool = False
    reseed: bool = False
    push_mesh: bool = False                     # copy the mesh files' text into the stored higress-config once
    recorded: dict = field(default_factory=dict)  # the deployment's settings before this run (deployment.read)
    log: Callable = print
    phases: tuple[str, ...] = ()                # the phases this run executes
    _decisions: dict | None = None
    _keys: object | None = None            # artifacts.KeyPool, made on first use
    nacos: object | None = None
    stored: dict = field(default_factory=dict)  # raw stored content of each base object, as read or written this run
    shared_ca: object | None = None             # sharedca.Published: the pilot CA as published in Nacos, read this run

    renew_by: list = field(default_factory=list)  # when something this run made or kept needs renewing
    valid_from: list = field(default_factory=list)  # when each certificate this run made or kept becomes valid

    @property
    def dry_run(self) -> bool:
        """nacos.prepare's name for `plan` (it does not create the namespace then)."""
        return self.plan

    @property
    def decisions(self) -> dict:
        if self._decisions is None:
            from higress_init.pki import artifacts
            self._decisions = artifacts.decide(self.settings, self.writer, self.now, self.rotate)
        return self._decisions

    @property
    def keys(self):
        if self._keys is None and self.settings.role == "gateway" and self._decisions is None:
            # a gateway host decides only once it has read the published CA (sharedca.gateway_pki)
            from higress_init.pki import artifacts
            return artifacts.KeyPool({})
        if self._keys is None:
            from higress_init.pki import artifacts, tokens
            s = self.settings
            wanted = {d.spec.name: getattr(s, d.spec.key_algorithm) for d in self.decisions.values()
                      if d.action in ("create", "reissue", "rotate") and d.spec.phase in self.phases}
            if "tokens" in self.phases:
                wanted.update(tokens.keys_wanted(self))
            self._keys = self.key_pool(wanted)
        return self._keys

    def key_pool(self, wanted: dict):
        """The keys `wanted` (name -> algorithm), generated in parallel. Under `plan`, throwaway
        keys: what they sign is never written; same kind, cheap size."""
        from higress_init.pki import artifacts
        if self.plan:
            wanted = {name: "rsa-2048" if a.startswith("rsa") else a for name, a in wanted.items()}
        return artifacts.KeyPool(wanted)

    def close(self):
        if self._keys:
            self._keys.close()

    def start(self) -> list[str]:
        """Work that precedes the phases: ending a rotation overlap drops the old roots."""
        from higress_init.pki import artifacts
        return artifacts.finish_rotation(self.writer) if self.finish_rotation else []

    def stage(self, rel, data, name: str, counts: Counts, private=False) -> None:
        """Stage a derived file (bytes, or a function making them) and count what that does to it."""
        existing = self.writer.read(rel)
        data = data() if callable(data) else data
        action = "created" if existing is None else "updated"
        if self.writer.stage(rel, data, private=private):
            counts.add(action, name)
        else:
            counts.add("kept", name)


def apiserver_pki(ctx: Context, counts: Counts) -> None:
    from higress_init.pki import artifacts
    artifacts.certificates("apiserver-pki", ctx, counts)
    datakey.phase(ctx, counts)


def kube_config(ctx: Context, counts: Counts) -> None:
    """One kubeconfig per caller of the apiserver (kubeconfig.KUBECONFIGS), each with its own
    client certificate: named by path where its reader re-reads renewed files, else embedded."""
    from higress_init.pki import kubeconfig
    ca_file = ctx.decisions["apiserver-ca"].spec.cert_file
    for spec in kubeconfig.KUBECONFIGS:
        client = ctx.decisions[spec.client]
        files = (ca_file, client.spec.cert_file, client.spec.key_file)
        parts = [ctx.writer.read(f) for f in files]
        if None in parts:
            raise StateError(f"{spec.file} needs {', '.join(files)}: run phase apiserver-pki first")
        ca, cert, key = parts
        if spec.mounted_at:
            cert, key = (spec.path_in_reader(f) for f in files[1:])
        ctx.stage(spec.file, kubeconfig.render(spec.server_url(ctx.settings), ca, cert, key, user=spec.user),
                  spec.name, counts, private=True)


def writable_dirs(ctx: Context, counts: Counts) -> None:
    """The folders components write into (readers.READERS), made after the commit with the owner
    (VOLUMES_UID/GID) and mode their image's user needs (ownership.dir_mode); never emptied. Made
    through the writer, so a link or a file in the way is refused, never followed."""
    from higress_init import readers
    for reader in readers.READERS:
        if ctx.settings.role == "gateway" and reader.service != "gateway":
            continue  # a gateway-only host runs no other component
        for rel, mode in reader.writes:
            counts.add(ctx.writer.ensure_dir(rel, mode), rel)


def pod_config(ctx: Context, counts: Counts) -> None:
    # the mesh files are not made here: `deliver` renders them from the stored higress-config
    from higress_init.versions import meshconfig
    ctx.stage(layout.POD_LABELS, meshconfig.pod_labels(ctx.settings).encode(), layout.POD_LABELS, counts)


def pilot_pki(ctx: Context, counts: Counts) -> None:
    """The pilot CA and the gateway certificate. With Nacos storage the CA is the deployment's, shared
    through Nacos (sharedca): taken from there when published, else made here and published by the
    `shared-ca` phase; a gateway-only host only issues its gateway certificate from it."""
    if ctx.settings.role == "gateway":
        from higress_init.store import sharedca
        sharedca.gateway_pki(ctx, counts)
        return
    from higress_init.pki import artifacts
    if ctx.settings.config_storage != "nacos":
        artifacts.certificates("pilot-pki", ctx, counts)
        return
    from higress_init.store import sharedca
    sharedca.adopt(ctx, counts)
    artifacts.certificates("pilot-pki", ctx, counts)
    sharedca.stage_pending(ctx)   # a CA made or rotated here is committed, marked pending, before it is published


def shared_ca(ctx: Context, counts: Counts) -> None:
    if ctx.settings.config_storage != "nacos":
        counts.add("skipped", "file storage")
        return
    if ctx._decisions is None:   # the warm path: nothing local changed
        from higress_init.run import runstate
        if runstate.shared_ca_unchanged(ctx, counts):
            return
    from higress_init.store import sharedca
    sharedca.publish(ctx, counts)


def write(ctx: Context, counts: Counts) -> None:
    written = ctx.writer.commit()
    for path in ctx.writer.fix_owners():
        counts.add("owner set", str(path))
    for path in written:
        counts.add("written", str(path.relative_to(ctx.settings.volumes_root))
                   if path.is_relative_to(ctx.settings.volumes_root) else str(path))


def seed(ctx: Context, counts: Counts) -> None:
    from higress_init.store import configstore, stores
    configstore.seed(ctx, stores.open_store(ctx), counts)


def deliver(ctx: Context, counts: Counts) -> None:
    from higress_init.store import configstore, stores
    configstore.deliver(ctx, stores.open_store(ctx), counts)


def nacos_ready(ctx: Context, counts: Counts) -> None:
    if ctx.settings.role == "gateway":
        from higress_init.store import sharedca
        sharedca.connect(ctx, counts)
        return
    from higress_init.store import stores
    stores.prepare(ctx, counts)


def token_phase(ctx: Context, counts: Counts) -> None:
    from higress_init.pki import tokens
    tokens.phase(ctx, counts)


@dataclass(frozen=True)
class Phase:
    name: str
    help: str
    run: Callable[[Context, Counts], None]
    roles: tuple[str, ...] = ("all",)   # settings.ROLES this phase runs for
    # Local: its only inputs are files and settings, so a rerun whose inputs are unchanged keeps
    # its files without running it (runstate). Not local: it reads the store, every run.
    local: bool = False
    makes_keys: bool = False      # new keys are generated up front, in parallel, when it runs
    commits: bool = False         # it commits what it staged itself (else `phase NAME` adds `write`)
    uses_store: bool = False      # it talks to the store (Nacos or the file store); `watch` leaves it out


BOTH = ("all", "gateway")


PHASES: tuple[Phase, ...] = (
    Phase("nacos", "wait for Nacos, log in, create the namespace (Nacos storage only)", nacos_ready, BOTH,
          uses_store=True),
    Phase("apiserver-pki", "apiserver CA, server and admin client certificates, data encryption key", apiserver_pki,
          local=True, makes_keys=True),
    # with Nacos storage it reads the published CA: the fast path checks that phase each run (runstate)
    Phase("pilot-pki", "pilot plug-in CA (root, intermediate, chain; with Nacos: the deployment's, shared) and the "
                       "gateway certificate", pilot_pki, BOTH, local=True, makes_keys=True),
    Phase("kubeconfig", "one kubeconfig for the operator and each component: the apiserver's CA, its own "
          "client certificate", kube_config, local=True),
    Phase("tokens", "token signing key, JWKS, OIDC discovery document and per-component tokens", token_phase,
          local=True, makes_keys=True),
    Phase("pod-config", "gateway pod labels", pod_config, BOTH, local=True),
    Phase("write", "commit every staged file into the volumes, atomically", write, BOTH, local=True, commits=True),
    # after `write`: what another host can see is never a key that exists nowhere (sharedca)
    Phase("shared-ca", "publish the pilot CA as Secret cacerts in Nacos, once, compare-and-swap (Nacos storage "
                       "only)", shared_ca, commits=True, uses_store=True),
    Phase("writable-dirs", "the folders components write into: controller and gateway logs and data",
          writable_dirs, BOTH),
    Phase("seed", "seed the base objects (higress-config, McpBridge, Secrets, Gateway, ...) into Nacos or the "
                  "file store; present ones are kept", seed, commits=True, uses_store=True),
    Phase("deliver", "render pilot/config/mesh and meshNetworks from the stored higress-config (every run)", deliver,
          BOTH, commits=True, uses_store=True),
)
PHASES_BY_NAME = {p.name: p for p in PHASES}


def run_phases(ctx: Context, names: list[str], report: Callable[[str, Counts, float], None]) -> None:
    for name in names:
        faults.point(f"phase:{name}")
        faults.pause(f"phase:{name}")
        phase = PHASES_BY_NAME[name]
        started = time.perf_counter()
        counts = Counts()
        if ctx.settings.role in phase.roles:
            phase.run(ctx, counts)
        else:
            counts.add("skipped", f"ROLE={ctx.settings.role}")
        report(name, counts, time.perf_counter() - started)
