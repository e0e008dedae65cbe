"""Every base object a Higress standalone deployment needs in its store, declared as one table
(the way `artifacts` declares the certificates). `store/seeding` seeds any of them into either store;
this module only says what each object is and how its content is made.

Facts from Higress's standalone set-up (2.1.2 and 2.2.4): these are the objects it creates in
`higress-system` through the apiserver; an object absent from the store is one the controller, pilot
or the console either falls back on defaults for or cannot work without. Which of them a release
seeds, and the content that differs between releases, is in the `versions` table.
"""
from __future__ import annotations

import base64
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from higress_init.settings import Settings
from higress_init.store.kinds import store_kind
from higress_init.versions import meshconfig, releases
from higress_init.volume import layout

DEFAULT_GROUP = "DEFAULT_GROUP"  # where the apiserver keeps cluster-scoped objects in Nacos (empty group)
NACOS_AUTH_SECRET = "nacos-auth-default"

# Adopt: a function giving the text of an existing volume file (or None), so an installation whose
# mesh files predate the store keeps its edits when the store's copy is first made.
Adopt = Callable[[str], "str | None"]


@dataclass(frozen=True)
class BaseObject:
    kind: str
    api_version: str
    plural: str                      # the apiserver's resource name: file store folder, Nacos dataId prefix
    name: str
    make: Callable[[Settings, Adopt], dict]   # everything after metadata (data / spec / type), labels under "labels"
    secret: bool = False             # data values are base64'd; in Nacos the whole object is encrypted
    namespaced: bool = True
    applies: Callable[[Settings], bool] = lambda s: True
    random: bool = False             # holds fresh random values: never re-made by --reseed

    @property
    def label(self) -> str:
        return f"{self.plural}/{self.name}"

    @property
    def data_id(self) -> str:
        return f"{self.plural}.{self.name}"

    def group(self, s: Settings) -> str:
        """The Nacos group: the object's Kubernetes namespace (none: the SDK's default group)."""
        return s.namespace if self.namespaced else DEFAULT_GROUP



# The pilot CA as a Secret in the store (sharedca publishes it; not seeded): here, so that the warm
# path can check it without importing sharedca (runstate.shared_ca_unchanged)
CACERTS = BaseObject("Secret", "v1", "secrets", "cacerts", lambda s, adopt: {}, secret=True)

def render(obj: BaseObject, s: Settings, created: datetime, adopt: Adopt = lambda rel: None) -> dict:
    """The object as the apiserver stores it (same layout in Nacos and in the file store)."""
    body = dict(obj.make(s, adopt))
    metadata = {"name": obj.name}
    if obj.namespaced:
        metadata["namespace"] = s.namespace
    metadata["creationTimestamp"] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = body.pop("labels", None)
    if labels:
        metadata["labels"] = labels
    if obj.secret:
        body["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in body["data"].items()}
    return {"apiVersion": obj.api_version, "kind": obj.kind, "metadata": metadata, **body}


def render_text(obj: BaseObject, s: Settings, created: datetime, adopt: Adopt = lambda rel: None) -> str:
    return meshconfig.dump(render(obj, s, created, adopt))


def gateway_labels(s: Settings) -> dict:
    return {"app": "higress-gateway", "higress": f"{s.namespace}-higress-gateway"}


def _nacos_credentials(s: Settings) -> bool:
    return store_kind(s).registry and bool(s.nacos_username) and bool(s.nacos_password)


# --- how each object's content is made


def _higress_config(s: Settings, adopt: Adopt) -> dict:
    # mesh files an earlier version left in the volumes were the user's to edit: the first stored
    # copy carries their text, so no edit is lost; otherwise Higress's defaults
    return {
        "labels": gateway_labels(s),
        "data": {
            "higress": meshconfig.higress_settings_text(s),
            "mesh": adopt(layout.MESH) or meshconfig.mesh_text(s),
            "meshNetworks": adopt(layout.MESH_NETWORKS) or meshconfig.mesh_networks_text(),
        },
    }


def _mcp_bridge(s: Settings, adopt: Adopt) -> dict:
    registries = [{"domain": "console.svc", "name": "higress-console", "port": 8080, "type": "dns"}]
    if store_kind(s).registry:
        # the same Nacos as service registry (first listed server; the apiserver reads the list the same way)
        url = urlsplit(s.nacos_servers[0])
        registry: dict[str, object] = {"domain": url.hostname, "nacosGroups": [DEFAULT_GROUP], "nacosNamespaceId": "",
                    "name": "nacos", "port": url.port or 80, "type": "nacos2"}
        if _nacos_credentials(s):
            registry["authSecretName"] = NACOS_AUTH_SECRET
        registries.append(registry)
    return {"spec": {"registries": registries}}


def _nacos_auth(s: Settings, adopt: Adopt) -> dict:
    return {"data": {"nacosUsername": s.nacos_username, "nacosPassword": s.nacos_password}, "type": "Opaque"}


def _random_text(length: int) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(length))


def _console_secret(s: Settings, adopt: Adopt) -> dict:
    # the console's own AES key and IV (32 and 16 bytes); it would make missing ones itself on first use
    return {"data": {"iv": _random_text(16), "key": _random_text(32)}, "type": "Opaque"}


def _console_config(s: Settings, adopt: Adopt) -> dict:
    return {"data": {"mode": "standalone"}}


def _custom_response_filter(s: Settings, adopt: Adopt) -> dict:
    return {
        "labels": gateway_labels(s),
        "spec": {"configPatches": [{
            "applyTo": "HTTP_FILTER",
            "match": {"context": "GATEWAY", "listener": {"filterChain": {
                "filter": {"name": "envoy.filters.network.http_connection_manager"}}}},
            "patch": {"operation": "INSERT_FIRST", "value": {
                "name": "envoy.filters.http.custom_response",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.custom_response.v3."
                                          "CustomResponse"}}},
        }]},
    }


def _http_resolver_cluster(s: Settings, adopt: Adopt) -> dict:
    # the controller's ACME HTTP-01 solver (automatic HTTPS), as the gateway reaches it: a cluster
    # named as Istio names the controller's service port 8889, resolved by DNS
    name = f"outbound|8889||higress-controller.{s.namespace}.svc.cluster.local"
    return {"spec": {"configPatches": [{
        "applyTo": "CLUSTER",
        "match": {"context": "GATEWAY"},
        "patch": {"operation": "ADD", "value": {
            "name": name, "type": "STRICT_DNS", "connect_timeout": "5s", "lb_policy": "ROUND_ROBIN",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": "controller.svc", "port_value": 8889}}}}]}]}}},
    }]}}


def _gateway_service(s: Settings, adopt: Adopt) -> dict:
    selector = {"higress": f"{s.namespace}-higress-gateway"}
    return {"labels": dict(selector), "spec": {
        "ports": [{"name": "http2", "port": 80, "protocol": "TCP", "targetPort": 80}],
        "selector": selector, "type": "LoadBalancer"}}


def _gateway_class(s: Settings, adopt: Adopt) -> dict:
    return {"spec": {"controllerName": "higress.io/gateway-controller"}}


def _gateway(s: Settings, adopt: Adopt) -> dict:
    every_namespace = {"namespaces": {"from": "All"}}
    return {"spec": {"gatewayClassName": "higress-gateway", "listeners": [
        {"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": every_namespace},
        {"name": "https", "port": 443, "protocol": "HTTPS", "allowedRoutes": every_namespace}]}}


GATEWAY_API = "gateway.networking.k8s.io/v1beta1"

# Every object any release seeds; releases.Release.objects says which, and in which order.
OBJECTS: tuple[BaseObject, ...] = (
    BaseObject("ConfigMap", "v1", "configmaps", "higress-config", _higress_config),
    BaseObject("McpBridge", "networking.higress.io/v1", "mcpbridges", "default", _mcp_bridge),
    BaseObject("Secret", "v1", "secrets", NACOS_AUTH_SECRET, _nacos_auth, secret=True, applies=_nacos_credentials),
    BaseObject("ConfigMap", "v1", "configmaps", "higress-console", _console_config),
    BaseObject("Secret", "v1", "secrets", "higress-console", _console_secret, secret=True, random=True),
    BaseObject("EnvoyFilter", "networking.istio.io/v1alpha3", "envoyfilters", "higress-gateway-global-custom-response",
               _custom_response_filter),
    BaseObject("Service", "v1", "services", "higress-gateway", _gateway_service),
    BaseObject("EnvoyFilter", "networking.istio.io/v1alpha3", "envoyfilters", "higress-http-resolver-cluster",
               _http_resolver_cluster),
    BaseObject("GatewayClass", GATEWAY_API, "gatewayclasses", "higress-gateway", _gateway_class, namespaced=False),
    BaseObject("Gateway", GATEWAY_API, "gateways", "higress-gateway", _gateway),
)
OBJECTS_BY_LABEL = {o.label: o for o in OBJECTS}
HIGRESS_CONFIG = OBJECTS_BY_LABEL["configmaps/higress-config"]


def applicable(s: Settings) -> list[BaseObject]:
    """The objects the release (HIGRESS_VERSION) seeds that apply to these settings, in its order."""
    return [o for o in (OBJECTS_BY_LABEL[label] for label in releases.of(s).objects) if o.applies(s)]
