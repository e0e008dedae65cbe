"""meshconfig: the base config the contract asks for."""
from datetime import datetime, timezone

import yaml

from higress_init import meshconfig
from higress_init.settings import load


def test_mesh_defaults_follow_the_contract():
    mesh = yaml.safe_load(meshconfig.mesh_text(load(env={})))
    assert mesh["accessLogEncoding"] == "TEXT" and mesh["accessLogFile"] == "/dev/stdout"
    assert mesh["configSources"] == [{"address": "xds://controller:15051"}]
    assert mesh["defaultConfig"] == {"disableAlpnH2": True, "discoveryAddress": "pilot:15012",
                                     "proxyStatsMatcher": {"inclusionRegexps": [".*"]}}
    assert (mesh["dnsRefreshRate"], mesh["protocolDetectionTimeout"]) == ("200s", "100ms")
    assert mesh["enableAutoMtls"] is False and mesh["enablePrometheusMerge"] is True
    assert mesh["ingressControllerMode"] == "OFF"
    assert (mesh["rootNamespace"], mesh["trustDomain"]) == ("higress-system", "cluster.local")
    assert yaml.safe_load(meshconfig.mesh_networks_text()) == {"networks": {}}


def test_configmap_keeps_the_text_verbatim_as_literal_blocks():
    s = load(env={})
    text = meshconfig.dump(meshconfig.configmap(s, meshconfig.mesh_text(s), "networks: {}\n",
                                                datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)))
    assert "  mesh: |\n" in text
    cm = yaml.safe_load(text)
    assert cm["data"]["mesh"] == meshconfig.mesh_text(s) and cm["data"]["meshNetworks"] == "networks: {}\n"
    assert cm["metadata"] == {"name": "higress-config", "namespace": "higress-system",
                              "creationTimestamp": "2026-01-02T03:04:05Z"}


def test_pod_labels():
    assert meshconfig.pod_labels(load(env={})) == 'app="higress-gateway"\nhigress="higress-system-higress-gateway"\n'
