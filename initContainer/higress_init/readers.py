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

from . import layout


@dataclass(frozen=True)
class Reader:
    service: str
    reads: tuple[str, ...]                     # volume folders it mounts read-only
    rereads: tuple[str, ...] = ()              # files among them it picks up again when they change
    writes: tuple[tuple[str, int], ...] = ()   # volume folders it writes into, with their mode
    store: str | None = None                   # the file store it reads and writes (--storage file), made by seed


READERS: tuple[Reader, ...] = (
    Reader("apiserver", ("api",), rereads=("api/server.crt", "api/server.key"), store="data"),
    # its Nacos client keeps logs and a config cache there; uid 1337 cannot create /var/log/nacos
    Reader("controller", ("controller/kube",), rereads=("controller/kube/client.crt", "controller/kube/client.key"),
           writes=(layout.CONTROLLER_NACOS_LOGS,)),
    Reader("pilot", ("pilot/kube", "pilot/cacerts", "pilot/config"),
           rereads=("pilot/kube/client.crt", "pilot/kube/client.key")),
    Reader("gateway", ("gateway/certs", "gateway/podinfo", "pilot/config"),
           rereads=("gateway/certs/cert-chain.pem", "gateway/certs/key.pem"),
           writes=(layout.GATEWAY_ISTIO_DATA, layout.GATEWAY_LOGS)),
    Reader("console", ("console/kube",)),
)


def readers_of(rel: str) -> list[Reader]:
    return [r for r in READERS if any(rel.startswith(folder + "/") for folder in r.reads)]


def to_restart(changed: list[str]) -> list[str]:
    """The services that must be restarted to use the changed files (volume paths), in table order."""
    services = []
    for reader in READERS:
        if any(reader in readers_of(rel) and rel not in reader.rereads for rel in changed):
            services.append(reader.service)
    return services


def restart_command(services: list[str]) -> str:
    return "docker compose restart " + " ".join(services)
