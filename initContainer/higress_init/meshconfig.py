"""The base config: MeshConfig, MeshNetworks, the gateway's pod labels and the ConfigMap
`higress-config` that carries the first two for the apiserver."""
from __future__ import annotations

import json
from datetime import datetime

import yaml

from .configstore import CONFIGMAP_NAME
from .settings import Settings

# Envoy access log fields Higress logs by default, one JSON object a line.
_ACCESS_LOG_FIELDS = {
    "authority": "%REQ(X-ENVOY-ORIGINAL-HOST?:AUTHORITY)%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "duration": "%DURATION%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "requested_server_name": "%REQUESTED_SERVER_NAME%",
    "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "route_name": "%ROUTE_NAME%",
    "start_time": "%START_TIME%",
    "trace_id": "%REQ(X-B3-TRACEID)%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "upstream_host": "%UPSTREAM_HOST%",
    "upstream_local_address": "%UPSTREAM_LOCAL_ADDRESS%",
    "upstream_service_time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "upstream_transport_failure_reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    "user_agent": "%REQ(USER-AGENT)%",
    "x_forwarded_for": "%REQ(X-FORWARDED-FOR)%",
}


def mesh(s: Settings) -> dict:
    return {
        "accessLogEncoding": "TEXT",
        "accessLogFile": "/dev/stdout",
        "accessLogFormat": json.dumps(_ACCESS_LOG_FIELDS, separators=(",", ":")) + "\n",
        "configSources": [{"address": "xds://controller:15051"}],
        "defaultConfig": {
            "disableAlpnH2": True,
            "discoveryAddress": "pilot:15012",
            "proxyStatsMatcher": {"inclusionRegexps": [".*"]},
        },
        "dnsRefreshRate": "200s",
        "enableAutoMtls": False,
        "enablePrometheusMerge": True,
        "ingressControllerMode": "OFF",
        "protocolDetectionTimeout": "100ms",
        "rootNamespace": s.namespace,
        "trustDomain": s.trust_domain,
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks (`|`), the way kubectl shows a ConfigMap."""


_Dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def dump(obj) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1 << 16)


def mesh_text(s: Settings) -> str:
    return dump(mesh(s))


def mesh_networks_text() -> str:
    return dump({"networks": {}})


def pod_labels(s: Settings) -> str:
    return f'app="higress-gateway"\nhigress="{s.namespace}-higress-gateway"\n'


def configmap(s: Settings, mesh_text_: str, networks_text: str, created: datetime) -> dict:
    """The ConfigMap as the apiserver stores it (same layout in Nacos and in the file store)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CONFIGMAP_NAME,
            "namespace": s.namespace,
            "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "data": {"mesh": mesh_text_, "meshNetworks": networks_text},
    }
