"""The Higress releases this initializer serves (HIGRESS_VERSION), one table entry each: the objects
its standalone set-up seeds and their content, the top-level mesh fields its pilot accepts, and the
image set compose runs it with. Everything that differs between releases is here, as data; the
modules that use it (objects, meshconfig, settings) say how. Imports nothing, so that settings can
check a version against it.

Facts from upstream's standalone deployment (higress-group/higress-standalone, `compose/.env` and
`compose/scripts/prepare.sh` at the release tags) and from Istio's `mesh/v1alpha1/config.proto` at
the release branch each Higress pilot is built on (Higress 2.1 on Istio 1.19, 2.2 on Istio 1.27).
"""
from __future__ import annotations

from dataclasses import dataclass, field

# --- top-level fields of Istio's MeshConfig, as written in the proto (lowerCamel JSON names; the
# mesh is read with protobuf's JSON rules, which accept these and the proto's snake_case names).
_ISTIO_1_19_MESH_FIELDS = (
    "proxyListenPort", "proxyInboundListenPort", "proxyHttpPort", "connectTimeout", "protocolDetectionTimeout",
    "tcpKeepalive", "ingressClass", "ingressService", "ingressControllerMode", "ingressSelector", "enableTracing",
    "accessLogFile", "accessLogFormat", "accessLogEncoding", "enableEnvoyAccessLogService",
    "disableEnvoyListenerLog", "defaultConfig", "outboundTrafficPolicy", "configSources", "enableAutoMtls",
    "trustDomain", "trustDomainAliases", "caCertificates", "defaultServiceExportTo",
    "defaultVirtualServiceExportTo", "defaultDestinationRuleExportTo", "rootNamespace", "localityLbSetting",
    "dnsRefreshRate", "h2UpgradePolicy", "inboundClusterStatName", "outboundClusterStatName", "certificates",
    "serviceSettings", "enablePrometheusMerge", "verifyCertificateAtClient", "ca", "extensionProviders",
    "defaultProviders", "discoverySelectors", "pathNormalization", "defaultHttpRetryPolicy", "meshMTLS",
    "tlsDefaults",
)
# Istio 1.27 (release-1.27) has every field of 1.19 (none was removed between them) and two more.
_ISTIO_1_27_MESH_FIELDS = _ISTIO_1_19_MESH_FIELDS + ("inboundTrafficPolicy", "serviceScopeConfigs")
# Higress's own addition to the MeshConfig its pilot is built from (higress-group's fork of istio/api).
_HIGRESS_MESH_FIELDS = ("mseIngressGlobalConfig",)

# --- the `higress` key of higress-config: the controller's global settings, at Higress's defaults
# (the controller falls back to the same defaults without it; stored so the console can edit it).
_HIGRESS_2_1_SETTINGS = {
    "downstream": {
        "connectionBufferLimits": 32768,
        "http2": {"initialConnectionWindowSize": 1048576, "initialStreamWindowSize": 65535,
                  "maxConcurrentStreams": 100},
        "idleTimeout": 180,
        "maxRequestHeadersKb": 60,
        "routeTimeout": 0,
    },
    "upstream": {"connectionBufferLimits": 10485760, "idleTimeout": 10},
}
# 2.2 seeds its MCP server block first, off, with a placeholder redis (upstream's prepare.sh).
_HIGRESS_2_2_SETTINGS = {
    "mcpServer": {
        "enable": False,
        "sse_path_suffix": "/sse",
        "redis": {"address": "redis-address:6379", "username": "", "password": "", "db": 0},
        "match_list": [],
        "servers": [],
    },
    **_HIGRESS_2_1_SETTINGS,
}

# --- the objects each release's set-up seeds, by label (the `objects` table says how each is made)
_OBJECTS_2_1 = (
    "configmaps/higress-config", "mcpbridges/default", "secrets/nacos-auth-default", "configmaps/higress-console",
    "secrets/higress-console", "envoyfilters/higress-gateway-global-custom-response", "services/higress-gateway",
    "gatewayclasses/higress-gateway", "gateways/higress-gateway",
)
# 2.2: the STRICT_DNS cluster to the controller's ACME HTTP-01 solver (port 8889) automatic HTTPS needs;
# upstream adds it on every start when absent, so a deployment made for 2.1 gets it on upgrade.
_OBJECTS_2_2 = _OBJECTS_2_1 + ("envoyfilters/higress-http-resolver-cluster",)

_REGISTRY = "higress-registry.cn-hangzhou.cr.aliyuncs.com/higress"


@dataclass(frozen=True)
class Release:
    version: str
    istio: str                            # the Istio release its pilot is built on
    objects: tuple[str, ...]              # labels in objects.OBJECTS, seeded in this order
    higress_settings: dict                # the `higress` key of higress-config
    mesh_fields: tuple[str, ...]          # top-level MeshConfig fields its pilot accepts
    # compose's image variables (compose/.env for the default release, compose/higress-<version>.env
    # for the others), each a full reference: a digest can be pinned in place of a tag
    images: dict = field(default_factory=dict)


RELEASES: tuple[Release, ...] = (
    Release("2.2.4", "1.27", _OBJECTS_2_2, _HIGRESS_2_2_SETTINGS, _ISTIO_1_27_MESH_FIELDS + _HIGRESS_MESH_FIELDS, {
        "HIGRESS_API_SERVER_IMAGE": f"{_REGISTRY}/api-server:0.1.0",
        # pinned by digest as upstream's .env pins them at its v2.2.4 tag
        "HIGRESS_CONTROLLER_IMAGE": f"{_REGISTRY}/higress:2.2.4@sha256:"
                                    "0a5b7809a107cbec150f41352a156e31160b8a92df787798e2a9a06cdd5587da",
        "HIGRESS_PILOT_IMAGE": f"{_REGISTRY}/pilot:2.2.4@sha256:"
                               "f742ed20f938c5c1eaf6f8c36c6481a87052d06e903ab6cb0c079165ac0c8284",
        "HIGRESS_GATEWAY_IMAGE": f"{_REGISTRY}/gateway:2.2.4@sha256:"
                                 "3dbd609df5db3fca61653eafe0e2310705e485190c4f8cd02d9aab8f07dcf329",
        "HIGRESS_CONSOLE_IMAGE": f"{_REGISTRY}/console:2.2.4",
        "HIGRESS_PLUGIN_SERVER_IMAGE": f"{_REGISTRY}/plugin-server:2.2.4@sha256:"
                                       "05a3e3615434befdb89928e491a8833255733c099dd24faefe82fea4d63165bb",
        "NACOS_IMAGE": "nacos/nacos-server:v3.0.1",
    }),
    Release("2.1.2", "1.19", _OBJECTS_2_1, _HIGRESS_2_1_SETTINGS, _ISTIO_1_19_MESH_FIELDS + _HIGRESS_MESH_FIELDS, {
        # api-server 0.0.22 is the build matching 2.1.2 (0.0.20 predates its McpBridge fields)
        "HIGRESS_API_SERVER_IMAGE": f"{_REGISTRY}/api-server:0.0.22",
        "HIGRESS_CONTROLLER_IMAGE": f"{_REGISTRY}/higress:2.1.2",
        "HIGRESS_PILOT_IMAGE": f"{_REGISTRY}/pilot:2.1.2",
        "HIGRESS_GATEWAY_IMAGE": f"{_REGISTRY}/gateway:2.1.2",
        "HIGRESS_CONSOLE_IMAGE": f"{_REGISTRY}/console:2.1.2",
        "NACOS_IMAGE": "nacos/nacos-server:v2.5.1",
    }),
)
RELEASES_BY_VERSION = {r.version: r for r in RELEASES}
DEFAULT = RELEASES[0].version


def of(settings) -> Release:
    """The release a deployment's settings name (HIGRESS_VERSION, checked by settings.load)."""
    return RELEASES_BY_VERSION[settings.higress_version]


# What a store seeded by an initializer older than HIGRESS_VERSION was seeded for: the only release it knew.
BEFORE_RECORDS = "2.1.2"
