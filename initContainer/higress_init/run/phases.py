"""The run, as a short ordered list of named phases. Each phase is idempotent and stages its
files; the `write` phase commits them all at once, so a refusal anywhere before it leaves the
volumes untouched.

The modules behind the phases (cryptography, PyJWT, PyYAML) are imported by the phases that use
them, so that a rerun with nothing to do (runstate) does not pay for them."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from higress_init import readers
from higress_init.errors import StateError
from higress_init.pki import datakey, kubeconfig
from higress_init.pki.run import PkiRun
from higress_init.run import runstate
from higress_init.run.reporting import Counts
from higress_init.settings import Settings
from higress_init.store import kinds
from higress_init.store.kinds import store_kind
from higress_init.volume import layout
from higress_init.volume.writer import VolumeWriter


class NacosClient(Protocol):
    """The run's Nacos connection, as the runner ends it: store/nacos/client.Connection, or under
    `plan` the StagedNacos (store/nacos/store.py) around it."""

    def close(self) -> None: ...


@dataclass
class Context:
    """What the phases of one run share. The PKI state (decisions, key pool) is the PKI code's
    (pki.run.PkiRun, started by the runner); the store's connection and what it read are set by
    the store when it is opened (store.kinds.open_store)."""
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
    nacos: NacosClient | None = None
    stored: dict = field(default_factory=dict)  # raw stored content of each base object, as read or written this run
    shared_ca: object | None = None             # sharedca.Published: the pilot CA as published in Nacos, read this run

    renew_by: list = field(default_factory=list)  # when something this run made or kept needs renewing
    valid_from: list = field(default_factory=list)  # when each certificate this run made or kept becomes valid
    pki: PkiRun = field(init=False)

    def __post_init__(self):
        self.pki = PkiRun(self.settings, self.writer, self.now, self.rotate, self.phases, plan=self.plan)

    def close(self):
        self.pki.close()

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
    ca_file = ctx.pki.decisions["apiserver-ca"].spec.cert_file
    for spec in kubeconfig.KUBECONFIGS:
        client = ctx.pki.decisions[spec.client]
        files = (ca_file, client.spec.cert_file, client.spec.key_file)
        ca, cert_pem, key_pem = (ctx.writer.read(f) for f in files)
        if ca is None or cert_pem is None or key_pem is None:
            raise StateError(f"{spec.file} needs {', '.join(files)}: run phase apiserver-pki first")
        # embedded (PEM bytes), or named by the path its reader finds them at
        cert: bytes | str = cert_pem
        key: bytes | str = key_pem
        if spec.mounted_at:
            cert, key = (spec.path_in_reader(f) for f in files[1:])
        ctx.stage(spec.file, kubeconfig.render(spec.server_url(ctx.settings), ca, cert, key, user=spec.user),
                  spec.name, counts, private=True)


def _ensure_writable_dirs(ctx: Context, counts: Counts, services) -> None:
    """The folders the `services` write into (readers.READERS), made after the commit with the owner
    (VOLUMES_UID/GID) and mode their image's user needs (ownership.dir_mode); never emptied. Made
    through the writer, so a link or a file in the way is refused, never followed."""
    for reader in readers.READERS:
        if reader.service in services:
            for rel, mode in reader.writes:
                counts.add(ctx.writer.ensure_dir(rel, mode), rel)


def writable_dirs(ctx: Context, counts: Counts) -> None:
    _ensure_writable_dirs(ctx, counts, {r.service for r in readers.READERS})


def gateway_writable_dirs(ctx: Context, counts: Counts) -> None:
    """A gateway-only host runs only the services of its compose file (readers.GATEWAY_HOST_SERVICES)."""
    _ensure_writable_dirs(ctx, counts, readers.GATEWAY_HOST_SERVICES)


def pod_config(ctx: Context, counts: Counts) -> None:
    # the mesh files are not made here: `deliver` renders them from the stored higress-config
    from higress_init.versions import meshconfig
    ctx.stage(layout.POD_LABELS, meshconfig.pod_labels(ctx.settings).encode(), layout.POD_LABELS, counts)


def pilot_pki(ctx: Context, counts: Counts) -> None:
    """The pilot CA and the gateway certificate. With a store that shares the CA between hosts
    (Nacos), the CA is the deployment's (sharedca): taken from there when published, else made here
    and published by the `shared-ca` phase."""
    from higress_init.pki import artifacts
    if not store_kind(ctx.settings).shares_ca:
        artifacts.certificates("pilot-pki", ctx, counts)
        return
    from higress_init.store import sharedca
    sharedca.adopt(ctx, counts)
    artifacts.certificates("pilot-pki", ctx, counts)
    sharedca.stage_pending(ctx)   # a CA made or rotated here is committed, marked pending, before it is published


def gateway_pilot_pki(ctx: Context, counts: Counts) -> None:
    """A gateway-only host: its gateway certificate, issued from the CA published in the store."""
    from higress_init.store import sharedca
    sharedca.gateway_pki(ctx, counts)


def shared_ca(ctx: Context, counts: Counts) -> None:
    if not store_kind(ctx.settings).shares_ca:
        counts.add("skipped", f"{store_kind(ctx.settings).name} storage")   # as the nacos phase says it
        return
    if not ctx.pki.decided and runstate.shared_ca_unchanged(ctx, counts):   # the warm path: nothing local changed
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
    from higress_init.store import seeding
    seeding.seed(ctx, kinds.open_store(ctx), counts)


def deliver(ctx: Context, counts: Counts) -> None:
    from higress_init.store import seeding
    seeding.deliver(ctx, kinds.open_store(ctx), counts)


def store_ready(ctx: Context, counts: Counts) -> None:
    kinds.prepare(ctx, counts)


def gateway_store_ready(ctx: Context, counts: Counts) -> None:
    """A gateway-only host connects to read the published CA; it creates nothing."""
    from higress_init.store import sharedca
    sharedca.connect(ctx, counts)


def token_phase(ctx: Context, counts: Counts) -> None:
    from higress_init.pki import tokens
    tokens.phase(ctx, counts)


@dataclass(frozen=True)
class Phase:
    name: str
    help: str
    run: Callable[[Context, Counts], None]
    # Local: its only inputs are files and settings, so a rerun whose inputs are unchanged keeps
    # its files without running it (runstate). Not local: it reads the store, every run.
    local: bool = False
    makes_keys: bool = False      # new keys are generated up front, in parallel, when it runs
    commits: bool = False         # it commits what it staged itself (else `phase NAME` adds `write`)
    uses_store: bool = False      # it talks to the store (Nacos or the file store)
    # `watch` runs it on each pass: the phases that renew files, and what they need (not seeding:
    # the run at start did it)
    watch: bool = True


NACOS = Phase("nacos", "wait for Nacos, log in, create the namespace (Nacos storage only)", store_ready,
              uses_store=True, watch=False)
APISERVER_PKI = Phase("apiserver-pki", "apiserver CA, server and admin client certificates, data encryption key",
                      apiserver_pki, local=True, makes_keys=True)
# with Nacos storage it reads the published CA: the fast path checks that phase each run (runstate)
PILOT_PKI = Phase("pilot-pki", "pilot plug-in CA (root, intermediate, chain; with Nacos: the deployment's, shared) "
                  "and the gateway certificate", pilot_pki, local=True, makes_keys=True)
KUBECONFIG = Phase("kubeconfig", "one kubeconfig for the operator and each component: the apiserver's CA, its own "
                   "client certificate", kube_config, local=True)
TOKENS = Phase("tokens", "token signing key, JWKS, OIDC discovery document and per-component tokens", token_phase,
               local=True, makes_keys=True)
POD_CONFIG = Phase("pod-config", "gateway pod labels", pod_config, local=True)
WRITE = Phase("write", "commit every staged file into the volumes, atomically", write, local=True, commits=True)
# after `write`: what another host can see is never a key that exists nowhere (sharedca)
SHARED_CA = Phase("shared-ca", "publish the pilot CA as Secret cacerts in Nacos, once, compare-and-swap (Nacos "
                  "storage only)", shared_ca, commits=True, uses_store=True, watch=False)
WRITABLE_DIRS = Phase("writable-dirs", "the folders components write into: controller and gateway logs and data",
                      writable_dirs)
SEED = Phase("seed", "seed the base objects (higress-config, McpBridge, Secrets, Gateway, ...) into Nacos or the "
                     "file store; present ones are kept", seed, commits=True, uses_store=True, watch=False)
DELIVER = Phase("deliver", "render pilot/config/mesh and meshNetworks from the stored higress-config (every run)",
                deliver, commits=True, uses_store=True, watch=False)

# The control-plane host (ROLE=all): every phase, in order.
CONTROL_PLANE: tuple[Phase, ...] = (NACOS, APISERVER_PKI, PILOT_PKI, KUBECONFIG, TOKENS, POD_CONFIG, WRITE, SHARED_CA,
                                    WRITABLE_DIRS, SEED, DELIVER)
# A gateway-only host (ROLE=gateway): it joins through Nacos, takes the published CA, issues its own
# gateway certificate and runs the gateway alone. Its pilot-pki makes keys only once it has read
# the CA (sharedca.gateway_pki starts them): not up front.
GATEWAY_HOST: tuple[Phase, ...] = (
    # watch too: the gateway certificate is renewed from the published CA
    Phase("nacos", "wait for Nacos, log in (the deployment's namespace must exist)", gateway_store_ready,
          uses_store=True),
    Phase("pilot-pki", "the gateway certificate, issued from the pilot CA published in Nacos", gateway_pilot_pki,
          local=True),
    POD_CONFIG, WRITE,
    Phase("writable-dirs", "the gateway's log and data folders", gateway_writable_dirs),
    DELIVER,
)
PHASES_BY_ROLE = {"all": CONTROL_PLANE, "gateway": GATEWAY_HOST}


def phases_of(role: str) -> tuple[Phase, ...]:
    return PHASES_BY_ROLE[role]


def watch_phases(role: str) -> tuple[str, ...]:
    return tuple(p.name for p in PHASES_BY_ROLE[role] if p.watch)


def phase_named(role: str, name: str) -> Phase:
    return {p.name: p for p in PHASES_BY_ROLE[role]}[name]
