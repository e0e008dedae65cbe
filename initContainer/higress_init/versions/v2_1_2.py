"""Higress 2.1.2 (pilot on Istio 1.19), as upstream's standalone deployment sets it up
(higress-group/higress-standalone at v2.1.2: `compose/.env`, `compose/scripts/prepare.sh`)."""
from __future__ import annotations

from higress_init.versions.release import HIGRESS_MESH_FIELDS, ISTIO_1_19_MESH_FIELDS, REGISTRY, Release

# the `higress` key of higress-config: the controller's global settings, at Higress's defaults (the
# controller falls back to the same defaults without it; stored so the console can edit it)
HIGRESS_SETTINGS = {
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
OBJECTS = (
    "configmaps/higress-config", "mcpbridges/default", "secrets/nacos-auth-default", "configmaps/higress-console",
    "secrets/higress-console", "envoyfilters/higress-gateway-global-custom-response", "services/higress-gateway",
    "gatewayclasses/higress-gateway", "gateways/higress-gateway",
)

RELEASE = Release("2.1.2", "1.19", OBJECTS, HIGRESS_SETTINGS, ISTIO_1_19_MESH_FIELDS + HIGRESS_MESH_FIELDS, {
    # api-server 0.0.22 is the build matching 2.1.2 (0.0.20 predates its McpBridge fields)
    "HIGRESS_API_SERVER_IMAGE": f"{REGISTRY}/api-server:0.0.22",
    "HIGRESS_CONTROLLER_IMAGE": f"{REGISTRY}/higress:2.1.2",
    "HIGRESS_PILOT_IMAGE": f"{REGISTRY}/pilot:2.1.2",
    "HIGRESS_GATEWAY_IMAGE": f"{REGISTRY}/gateway:2.1.2",
    "HIGRESS_CONSOLE_IMAGE": f"{REGISTRY}/console:2.1.2",
    "NACOS_IMAGE": "nacos/nacos-server:v2.5.1",
})
