"""kubeconfig for the components that talk to the apiserver: verify it by its CA, authenticate
by client certificate. Never insecure-skip-tls-verify."""
from __future__ import annotations

import base64

import yaml

CLUSTER, USER, CONTEXT = "higress", "higress-admin", "higress"


def render(server: str, ca_pem: bytes, client_cert_pem: bytes, client_key_pem: bytes) -> bytes:
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER, "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": USER, "user": {"client-certificate-data": b64(client_cert_pem),
                                          "client-key-data": b64(client_key_pem)}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CLUSTER, "user": USER}}],
        "current-context": CONTEXT,
        "preferences": {},
    }
    # libyaml's emitter when present: the pure-Python one spends ~20 ms on the long base64 values
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(config, Dumper=dumper, sort_keys=False).encode()


def parse(data: bytes) -> dict:
    """The parts a consumer uses: server, CA, client certificate and key (PEM bytes)."""
    config = yaml.load(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    return {
        "server": cluster["server"],
        "ca": base64.b64decode(cluster["certificate-authority-data"]),
        "cert": base64.b64decode(user["client-certificate-data"]),
        "key": base64.b64decode(user["client-key-data"]),
    }
