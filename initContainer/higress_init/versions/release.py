"""What a Higress release is to this initializer (one module per release beside this one says
what each is): the objects its standalone set-up seeds, the `higress` settings of higress-config,
the top-level mesh fields its pilot accepts, and the image set compose runs it with. Imports
nothing, so that settings can check a version against the releases."""
from __future__ import annotations

from dataclasses import dataclass, field

REGISTRY = "higress-registry.cn-hangzhou.cr.aliyuncs.com/higress"

# --- top-level fields of Istio's MeshConfig, as written in the proto (lowerCamel JSON names; the
# mesh is read with protobuf's JSON rules, which accept these and the proto's snake_case names),
# from Istio's `mesh/v1alpha1/config.proto` at the release branch each Higress pilot is built on.
ISTIO_1_19_MESH_FIELDS = (
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
ISTIO_1_27_MESH_FIELDS = ISTIO_1_19_MESH_FIELDS + ("inboundTrafficPolicy", "serviceScopeConfigs")
# Higress's own addition to the MeshConfig its pilot is built from (higress-group's fork of istio/api).
HIGRESS_MESH_FIELDS = ("mseIngressGlobalConfig",)


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
