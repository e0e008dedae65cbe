"""The base config: MeshConfig, MeshNetworks, Higress's global settings block, the gateway's pod
labels, and the check a stored mesh must pass before it is delivered to pilot."""
from __future__ import annotations

import json
import re
from collections.abc import Iterable

import yaml

from higress_init.settings import SETTINGS_BY_ENV, Settings
from higress_init.versions import releases

# Envoy access log fields Higress logs by default, one JSON object a line.
_ACCESS_LOG_FIELDS = {
    "ai_log": "%FILTER_STATE(wasm.ai_log:PLAIN)%",
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
        # k8s://: without it pilot ignores the Istio resources (EnvoyFilters) kept in the apiserver
        "configSources": [{"address": "xds://controller:15051"}, {"address": "k8s://"}],
        "defaultConfig": {
            "disableAlpnH2": True,
            "discoveryAddress": "pilot:15012",
            "proxyStatsMatcher": {"inclusionRegexps": [".*"]},
        },
        "dnsRefreshRate": "200s",
        "enableAutoMtls": False,
        "enablePrometheusMerge": True,
        "ingressControllerMode": "OFF",
        "mseIngressGlobalConfig": {"enableH3": False, "enableProxyProtocol": False},
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


POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"  # Kubernetes' label naming one pod (selectable per host)


def pod_labels(s: Settings) -> str:
    """gateway/podinfo/labels: the gateway's pod labels, and its pod name when one of several hosts."""
    labels = f'app="higress-gateway"\nhigress="{s.namespace}-higress-gateway"\n'
    if s.pod_name != SETTINGS_BY_ENV["POD_NAME"].default:  # one of several gateway hosts
        labels += f'{POD_NAME_LABEL}="{s.pod_name}"\n'
    return labels


def higress_settings_text(s: Settings) -> str:
    """The `higress` key of higress-config: the controller's global settings for the release
    (versions table), at Higress's defaults."""
    return dump(releases.of(s).higress_settings)


# Pilot parses the mesh with protobuf's JSON rules, which accept the lowerCamel JSON name and the
# proto field name; the release's list (versions table) has the JSON names.
_PROTO_NAMES = {"meshMTLS": "mesh_mTLS"}


def _underscored(capital: re.Match[str]) -> str:
    return "_" + capital.group(1).lower()


def known_mesh_keys(fields: Iterable[str]) -> frozenset[str]:
    return frozenset(fields) | frozenset(
        _PROTO_NAMES.get(f, re.sub(r"([A-Z])", _underscored, f)) for f in fields)


def _mapping(text: str) -> tuple[dict | None, str | None]:
    """(the YAML mapping, None), or (None, why the text is not one)."""
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as err:
        return None, f"not valid YAML ({str(err).splitlines()[0]})"
    except RecursionError:
        return None, "not valid YAML (nested too deeply)"
    return (loaded, None) if isinstance(loaded, dict) else (None, "not a YAML mapping")


def mesh_problem(text: str, s: Settings) -> str | None:
    """Why pilot could not use this mesh (it would fall back to Istio's defaults, whose
    discoveryAddress istiod.istio-system.svc:15012 no gateway here can reach); None when fine.
    The fields pilot knows are those of the release's Istio (HIGRESS_VERSION)."""
    mesh, problem = _mapping(text)
    if mesh is None:   # then problem says why
        return problem
    r = releases.of(s)
    known = known_mesh_keys(r.mesh_fields)
    unknown = sorted(str(k) for k in mesh if k not in known)
    if unknown:
        return (f"unknown top-level key(s) {', '.join(unknown)} (not a field of the MeshConfig of Istio {r.istio}, "
                f"which Higress {r.version} runs, nor Higress's)")
    default_config = mesh.get("defaultConfig", mesh.get("default_config"))
    address = default_config.get("discoveryAddress", default_config.get("discovery_address")) \
        if isinstance(default_config, dict) else None
    if not isinstance(address, str) or not address.strip():
        return "defaultConfig.discoveryAddress is not set (pilot would tell the gateway to dial istiod)"
    return None


def mesh_networks_problem(text: str) -> str | None:
    networks, problem = _mapping(text)
    if networks is None:   # then problem says why
        return problem
    unknown = sorted(str(k) for k in networks if k != "networks")
    if unknown:
        return f"unknown top-level key(s) {', '.join(unknown)} (MeshNetworks has only networks)"
    return None
