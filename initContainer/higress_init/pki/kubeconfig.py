"""kubeconfigs for the operator and for each component that talks to the apiserver: verify it by
its CA, authenticate by the component's own client certificate. Never insecure-skip-tls-verify.

A kubeconfig names its client certificate and key by path where the reader re-reads them when they
change (client-go does, for `client-certificate`/`client-key` files; not for inline `-data`), so a
renewal reaches it without a restart. The path is the one inside the reader's container: the
kubeconfig's folder is mounted there. Elsewhere they are embedded (`-data`): the operator's
kubeconfig is used from the host, where no container path applies, and the console's Java client
has not been shown to re-read files, so it is restarted after a renewal anyway. The CA is always
embedded: it changes only with a root rotation, which restarts every component.
"""
from __future__ import annotations

import base64
import posixpath
from collections.abc import Callable
from dataclasses import dataclass

from higress_init.volume import layout

CLUSTER, USER, CONTEXT = "higress", "higress-admin", "higress"


@dataclass(frozen=True)
class KubeconfigSpec:
    name: str
    file: str                    # volume path
    client: str                  # the certificate table's name of its client certificate
    user: str
    mounted_at: str | None = None  # the kubeconfig's folder inside its reader; None: embed the certificate
    server: Callable | None = None  # its server URL from the settings; None: APISERVER_URL

    def server_url(self, settings) -> str:
        return self.server(settings) if self.server else settings.apiserver_url

    def path_in_reader(self, volume_path: str) -> str:
        """Where the reader finds a file of the kubeconfig's folder."""
        folder, name = posixpath.split(volume_path)
        if folder != posixpath.dirname(self.file):
            raise ValueError(f"{volume_path} is not in the folder of {self.file}, which is what is mounted")
        assert self.mounted_at is not None, f"{self.name} embeds its certificate: no reader path"
        return posixpath.join(self.mounted_at, name)

    def volume_path(self, reader_path: str) -> str | None:
        """The volume path of a file the kubeconfig names by path (None: outside its folder)."""
        if self.mounted_at and posixpath.dirname(reader_path) == self.mounted_at:
            return posixpath.join(posixpath.dirname(self.file), posixpath.basename(reader_path))
        return None


KUBECONFIGS: tuple[KubeconfigSpec, ...] = (
    KubeconfigSpec("kubeconfig", layout.KUBECONFIG, "apiserver-admin", USER),   # the operator's; no component reads it
    # the operator's on the host: compose publishes the apiserver on 127.0.0.1:APISERVER_HOST_PORT, a name
    # its certificate always carries, so TLS is verified as from inside the network
    KubeconfigSpec("kubeconfig host", layout.HOST_KUBECONFIG, "apiserver-admin", USER,
                   server=lambda s: f"https://127.0.0.1:{s.apiserver_host_port}"),
    KubeconfigSpec("kubeconfig controller", layout.CONTROLLER_KUBECONFIG, "apiserver-controller", "controller",
                   mounted_at="/home/higress/.kube"),
    KubeconfigSpec("kubeconfig pilot", layout.PILOT_KUBECONFIG, "apiserver-pilot", "pilot",
                   mounted_at="/var/run/secrets/remote"),
    KubeconfigSpec("kubeconfig console", layout.CONSOLE_KUBECONFIG, "apiserver-console", "console"),
)


def render(server: str, ca_pem: bytes, client_cert: bytes | str, client_key: bytes | str, user: str = USER) -> bytes:
    """client_cert, client_key: PEM bytes (embedded as -data) or paths (str) the reader opens."""
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    if isinstance(client_cert, str):
        credentials = {"client-certificate": client_cert, "client-key": client_key}
    else:
        credentials = {"client-certificate-data": b64(client_cert), "client-key-data": b64(client_key)}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER, "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CLUSTER, "user": user}}],
        "current-context": CONTEXT,
        "preferences": {},
    }
    import yaml  # PyYAML: loaded by what writes or reads a kubeconfig; every run reads KUBECONFIGS
    # libyaml's emitter when present: the pure-Python one spends ~20 ms on the long base64 values
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(config, Dumper=dumper, sort_keys=False).encode()


def parse(data: bytes, open_path=None) -> dict:
    """The parts a consumer uses: server, CA, client certificate and key (PEM bytes). A certificate
    or key named by path is read with `open_path(path) -> bytes`."""
    import yaml
    try:
        config = yaml.load(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (yaml.YAMLError, RecursionError) as err:   # garbage or nesting without end: unparsable, as any bad field
        raise ValueError(f"not YAML ({type(err).__name__})") from None
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])

    def part(field):
        if f"{field}-data" in user:
            return base64.b64decode(user[f"{field}-data"])
        if open_path is None:
            raise ValueError(f"{field} is named by path ({user[field]}) and no way to open it was given")
        return open_path(user[field])

    return {
        "server": cluster["server"],
        "ca": base64.b64decode(cluster["certificate-authority-data"]),
        "cert": part("client-certificate"),
        "key": part("client-key"),
    }
