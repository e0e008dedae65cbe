"""Higress 2.2.4 (pilot on Istio 1.27), as upstream's standalone deployment sets it up
(higress-group/higress-standalone at v2.2.4: `compose/.env`, `compose/scripts/prepare.sh`).
What it adds to 2.1: its MCP server settings, and the ACME solver's cluster."""
from __future__ import annotations

from higress_init.versions import v2_1_2
from higress_init.versions.release import HIGRESS_MESH_FIELDS, ISTIO_1_27_MESH_FIELDS, REGISTRY, Release

# 2.2 seeds its MCP server block first, off, with a placeholder redis (upstream's prepare.sh)
HIGRESS_SETTINGS = {
    "mcpServer": {
        "enable": False,
        "sse_path_suffix": "/sse",
        "redis": {"address": "redis-address:6379", "username": "", "password": "", "db": 0},
        "match_list": [],
        "servers": [],
    },
    **v2_1_2.HIGRESS_SETTINGS,
}
# the STRICT_DNS cluster to the controller's ACME HTTP-01 solver (port 8889) automatic HTTPS needs;
# upstream adds it on every start when absent, so a deployment made for 2.1 gets it on upgrade
OBJECTS = v2_1_2.OBJECTS + ("envoyfilters/higress-http-resolver-cluster",)

RELEASE = Release("2.2.4", "1.27", OBJECTS, HIGRESS_SETTINGS, ISTIO_1_27_MESH_FIELDS + HIGRESS_MESH_FIELDS, {
    "HIGRESS_API_SERVER_IMAGE": f"{REGISTRY}/api-server:0.1.0",
    # pinned by digest as upstream's .env pins them at its v2.2.4 tag
    "HIGRESS_CONTROLLER_IMAGE": f"{REGISTRY}/higress:2.2.4@sha256:"
                                "0a5b7809a107cbec150f41352a156e31160b8a92df787798e2a9a06cdd5587da",
    "HIGRESS_PILOT_IMAGE": f"{REGISTRY}/pilot:2.2.4@sha256:"
                           "f742ed20f938c5c1eaf6f8c36c6481a87052d06e903ab6cb0c079165ac0c8284",
    "HIGRESS_GATEWAY_IMAGE": f"{REGISTRY}/gateway:2.2.4@sha256:"
                             "3dbd609df5db3fca61653eafe0e2310705e485190c4f8cd02d9aab8f07dcf329",
    "HIGRESS_CONSOLE_IMAGE": f"{REGISTRY}/console:2.2.4",
    "HIGRESS_PLUGIN_SERVER_IMAGE": f"{REGISTRY}/plugin-server:2.2.4@sha256:"
                                   "05a3e3615434befdb89928e491a8833255733c099dd24faefe82fea4d63165bb",
    "NACOS_IMAGE": "nacos/nacos-server:v3.0.1",
})
