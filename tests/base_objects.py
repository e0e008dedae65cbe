"""What each base object must hold, written out by hand from the contract and from Higress 2.1.2's and
2.2.4's standalone set-up (upstream's prepare.sh at each tag; not derived from the initializer's
tables), and an independent reading of the apiserver's Secret encryption (the openssl command line,
not `cryptography`)."""
from __future__ import annotations

import base64
import subprocess

import yaml
from conftest import require_tool

NS = "higress-system"
LABELS = {"app": "higress-gateway", "higress": "higress-system-higress-gateway"}


VERSIONS = ("2.2.4", "2.1.2")   # every release the initializer serves, the default first
DEFAULT_VERSION = VERSIONS[0]


def expected(nacos_host=None, nacos_port=None, credentials=None, version=DEFAULT_VERSION) -> dict:
    """(plural, name) -> the object without metadata.creationTimestamp; Secret data decoded."""
    console = {"domain": "console.svc", "name": "higress-console", "port": 8080, "type": "dns"}
    registries = [console]
    if nacos_host:
        nacos = {"domain": nacos_host, "nacosGroups": ["DEFAULT_GROUP"], "nacosNamespaceId": "", "name": "nacos",
                 "port": nacos_port, "type": "nacos2"}
        if credentials:
            nacos["authSecretName"] = "nacos-auth-default"
        registries.append(nacos)
    meta = lambda name, **extra: {"name": name, "namespace": NS, **extra}  # noqa: E731
    objects = {
        ("configmaps", "higress-config"): {"apiVersion": "v1", "kind": "ConfigMap",
                                           "metadata": meta("higress-config", labels=LABELS)},
        ("mcpbridges", "default"): {"apiVersion": "networking.higress.io/v1", "kind": "McpBridge",
                                    "metadata": meta("default"), "spec": {"registries": registries}},
        ("configmaps", "higress-console"): {"apiVersion": "v1", "kind": "ConfigMap",
                                            "metadata": meta("higress-console"), "data": {"mode": "standalone"}},
        ("secrets", "higress-console"): {"apiVersion": "v1", "kind": "Secret", "metadata": meta("higress-console"),
                                         "type": "Opaque"},
        ("envoyfilters", "higress-gateway-global-custom-response"): {
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
            "metadata": meta("higress-gateway-global-custom-response", labels=LABELS),
            "spec": {"configPatches": [{
                "applyTo": "HTTP_FILTER",
                "match": {"context": "GATEWAY", "listener": {"filterChain": {"filter": {
                    "name": "envoy.filters.network.http_connection_manager"}}}},
                "patch": {"operation": "INSERT_FIRST", "value": {
                    "name": "envoy.filters.http.custom_response",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.custom_response.v3"
                                              ".CustomResponse"}}}}]}},
        ("services", "higress-gateway"): {
            "apiVersion": "v1", "kind": "Service",
            "metadata": meta("higress-gateway", labels={"higress": "higress-system-higress-gateway"}),
            "spec": {"ports": [{"name": "http2", "port": 80, "protocol": "TCP", "targetPort": 80}],
                     "selector": {"higress": "higress-system-higress-gateway"}, "type": "LoadBalancer"}},
        ("gatewayclasses", "higress-gateway"): {
            "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "GatewayClass",
            "metadata": {"name": "higress-gateway"}, "spec": {"controllerName": "higress.io/gateway-controller"}},
        ("gateways", "higress-gateway"): {
            "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "Gateway", "metadata": meta("higress-gateway"),
            "spec": {"gatewayClassName": "higress-gateway", "listeners": [
                {"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}},
                {"name": "https", "port": 443, "protocol": "HTTPS",
                 "allowedRoutes": {"namespaces": {"from": "All"}}}]}},
    }
    if version == "2.2.4":   # upstream's prepare.sh at v2.2.4, checkController
        cluster = "outbound|8889||higress-controller.higress-system.svc.cluster.local"
        objects[("envoyfilters", "higress-http-resolver-cluster")] = {
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
            "metadata": meta("higress-http-resolver-cluster"),
            "spec": {"configPatches": [{
                "applyTo": "CLUSTER", "match": {"context": "GATEWAY"},
                "patch": {"operation": "ADD", "value": {
                    "name": cluster, "type": "STRICT_DNS", "connect_timeout": "5s", "lb_policy": "ROUND_ROBIN",
                    "load_assignment": {"cluster_name": cluster, "endpoints": [{"lb_endpoints": [{"endpoint": {
                        "address": {"socket_address": {"address": "controller.svc", "port_value": 8889}}}}]}]}}}}]}}
    else:
        assert version == "2.1.2", version
    if credentials:
        objects[("secrets", "nacos-auth-default")] = {
            "apiVersion": "v1", "kind": "Secret", "metadata": meta("nacos-auth-default"), "type": "Opaque",
            "data": {"nacosUsername": credentials[0], "nacosPassword": credentials[1]}}
    return objects


def assert_matches(text: str, want: dict, where: str) -> dict:
    """Compare a stored object field by field with what it must hold; returns it as loaded."""
    obj = yaml.safe_load(text)
    assert isinstance(obj, dict), where
    created = obj["metadata"].pop("creationTimestamp")
    assert isinstance(created, str) and created.endswith("Z"), (where, created)
    if obj["kind"] == "Secret":
        obj["data"] = {k: base64.b64decode(v).decode() for k, v in obj["data"].items()}
    for field, value in want.items():
        assert obj.get(field) == value, (where, field, obj.get(field), value)
    extra = set(obj) - set(want) - {"data"}
    assert not extra, (where, extra)
    return obj


def assert_higress_config(obj: dict, version: str = DEFAULT_VERSION) -> None:
    """The data of higress-config: the three keys, the mesh as Higress 2.1.2 and 2.2.4 run it; 2.2.4's
    `higress` settings begin with its MCP server block, off."""
    data = obj["data"]
    assert set(data) == {"higress", "mesh", "meshNetworks"}
    settings = yaml.safe_load(data["higress"])
    if version == "2.2.4":
        assert list(settings) == ["mcpServer", "downstream", "upstream"]
        assert settings["mcpServer"] == {
            "enable": False, "sse_path_suffix": "/sse",
            "redis": {"address": "redis-address:6379", "username": "", "password": "", "db": 0},
            "match_list": [], "servers": []}
    else:
        assert list(settings) == ["downstream", "upstream"]
    assert settings["downstream"]["idleTimeout"] == 180 and settings["upstream"]["idleTimeout"] == 10
    assert settings["downstream"]["http2"]["maxConcurrentStreams"] == 100
    mesh = yaml.safe_load(data["mesh"])
    assert mesh["configSources"] == [{"address": "xds://controller:15051"}, {"address": "k8s://"}]
    assert mesh["mseIngressGlobalConfig"] == {"enableH3": False, "enableProxyProtocol": False}
    assert mesh["defaultConfig"]["discoveryAddress"] == "pilot:15012"
    assert yaml.safe_load(data["meshNetworks"]) == {"networks": {}}


def assert_console_secret(obj: dict) -> None:
    assert set(obj["data"]) == {"iv", "key"}
    assert len(obj["data"]["iv"]) == 16 and len(obj["data"]["key"]) == 32


def openssl_decrypt(content: str, key: bytes) -> str:
    """The apiserver's rule, read independently: `enc|` + URL-safe base64 (padded) of AES-CBC with
    key = the key file's bytes, IV = its first 16 bytes, PKCS#7 padding."""
    openssl = require_tool("openssl", "apt-get install openssl")
    assert content.startswith("enc|"), content[:20]
    body = content[4:]
    assert len(body) % 4 == 0, "URL-safe base64 with padding"
    ciphertext = base64.urlsafe_b64decode(body)
    cipher = {16: "-aes-128-cbc", 24: "-aes-192-cbc", 32: "-aes-256-cbc"}[len(key)]
    out = subprocess.run([openssl, "enc", "-d", cipher, "-K", key.hex(), "-iv", key[:16].hex()],
                         input=ciphertext, capture_output=True, check=True)
    return out.stdout.decode()
