"""Which compose service reads which of the initializer's folders, which files it re-reads by
itself when they change, and which folders it writes into. `watch` uses it to name exactly the
services to restart after a renewal; the compose file mounts exactly these folders.

Re-read without a restart (checked against the real components; README "Renewal"):
- apiserver: its serving certificate (Kubernetes' DynamicServingCertificateController, within 5 s);
- gateway: its xDS client certificate and key (pilot-agent reads them on every xDS handshake);
- controller, pilot: their apiserver client certificate and key (client-go re-reads files named
  by path in a kubeconfig, within its 5-minute refresh).
"""
from __future__ import annotations

from dataclasses import dataclass

from higress_init.volume import layout


@dataclass(frozen=True)
class Reader:
    service: str
    reads: tuple[str, ...]                     # volume folders it mounts read-only
    rereads: tuple[str, ...] = ()              # files among them it picks up again when they change
    writes: tuple[tuple[str, int], ...] = ()   # volume folders it writes into, with their mode
    store: str | None = None                   # the file store it reads and writes (--storage file), made by seed
    why: str = "read the changed files only at start"  # why it is restarted after a change of its files


READERS: tuple[Reader, ...] = (
    Reader("apiserver", (layout.APISERVER_DIR,), rereads=(layout.APISERVER_CERT, layout.APISERVER_KEY),
           store=layout.FILE_STORE),
    # its Nacos client keeps logs and a config cache there; uid 1337 cannot create /var/log/nacos
    Reader("controller", (layout.CONTROLLER_KUBE_DIR,),
           rereads=(layout.CONTROLLER_CLIENT_CERT, layout.CONTROLLER_CLIENT_KEY),
           writes=(layout.CONTROLLER_NACOS_LOGS,)),
    Reader("pilot", (layout.PILOT_KUBE_DIR, layout.PILOT_CACERTS_DIR, layout.PILOT_CONFIG_DIR),
           rereads=(layout.PILOT_CLIENT_CERT, layout.PILOT_CLIENT_KEY)),
    Reader("gateway", (layout.GATEWAY_CERTS_DIR, layout.GATEWAY_PODINFO_DIR, layout.PILOT_CONFIG_DIR),
           rereads=(layout.GATEWAY_CERT_CHAIN, layout.GATEWAY_KEY),
           writes=(layout.GATEWAY_ISTIO_DATA, layout.GATEWAY_LOGS)),
    # its Java client keeps the certificate it loaded at start (issue 22's report, checked with that library)
    Reader("console", (layout.CONSOLE_KUBE_DIR,), why="its Java client never re-reads its certificate"),
)

# The compose file each role runs from, and where the restart command is typed (README "More hosts").
COMPOSE_FILES = {"all": "docker-compose.yml", "gateway": "docker-compose.gateway.yml"}
# The services of the gateway-host compose file that read the initializer's files.
GATEWAY_HOST_SERVICES = ("gateway",)


def readers_of(rel: str) -> list[Reader]:
    return [r for r in READERS if any(rel.startswith(folder + "/") for folder in r.reads)]


def to_restart(changed: list[str]) -> list[str]:
    """The services that must be restarted to use the changed files (volume paths), in table order."""
    services = []
    for reader in READERS:
        if any(reader in readers_of(rel) and rel not in reader.rereads for rel in changed):
            services.append(reader.service)
    return services


def for_role(services: list[str], role: str) -> list[str]:
    """Of `services`, those the role's compose file runs (a gateway host has no pilot to restart)."""
    return [s for s in services if role != "gateway" or s in GATEWAY_HOST_SERVICES]


def restart_command(services: list[str], role: str = "all") -> str:
    """The command, typed in compose/."""
    if role == "gateway":
        return f"docker compose -f {COMPOSE_FILES['gateway']} restart " + " ".join(services)
    return "docker compose restart " + " ".join(services)


def restart_advice(services: list[str], role: str = "all") -> str:
    """Which services to restart, why, and the exact command."""
    by = {r.service: r for r in READERS}
    whys: dict[str, list[str]] = {}
    for service in services:
        whys.setdefault(by[service].why, []).append(service)
    reasons = "; ".join(f"{', '.join(names)}: {why}" for why, names in whys.items())
    return f"restart {', '.join(services)} ({reasons}), in compose/: {restart_command(services, role)}"
