"""meshconfig: the base config the contract asks for, and the check a stored mesh must pass."""
import pytest
import yaml

from higress_init import meshconfig
from higress_init.settings import load


def test_mesh_defaults_follow_the_contract():
    mesh = yaml.safe_load(meshconfig.mesh_text(load(env={})))
    assert mesh["accessLogEncoding"] == "TEXT" and mesh["accessLogFile"] == "/dev/stdout"
    assert mesh["configSources"] == [{"address": "xds://controller:15051"}, {"address": "k8s://"}]
    assert mesh["mseIngressGlobalConfig"] == {"enableH3": False, "enableProxyProtocol": False}
    assert mesh["defaultConfig"] == {"disableAlpnH2": True, "discoveryAddress": "pilot:15012",
                                     "proxyStatsMatcher": {"inclusionRegexps": [".*"]}}
    assert (mesh["dnsRefreshRate"], mesh["protocolDetectionTimeout"]) == ("200s", "100ms")
    assert mesh["enableAutoMtls"] is False and mesh["enablePrometheusMerge"] is True
    assert mesh["ingressControllerMode"] == "OFF"
    assert (mesh["rootNamespace"], mesh["trustDomain"]) == ("higress-system", "cluster.local")
    assert yaml.safe_load(meshconfig.mesh_networks_text()) == {"networks": {}}


def test_the_default_mesh_passes_the_check_pilot_needs():
    s = load(env={})
    assert meshconfig.mesh_problem(meshconfig.mesh_text(s)) is None
    assert meshconfig.mesh_networks_problem(meshconfig.mesh_networks_text()) is None


@pytest.mark.parametrize("text, problem", [
    ("defaultConfig: {discoveryAddress: pilot:15012}\n", None),
    ("default_config: {discovery_address: pilot:15012}\nroot_namespace: x\n", None),  # proto field names
    ("defaultConfig: {discoveryAddress: pilot:15012}\nmeshMTLS: {}\nmesh_mTLS: {}\n", None),
    ("trustDomain: cluster.local\n", "discoveryAddress is not set"),
    ("defaultConfig: {discoveryAddress: '  '}\n", "discoveryAddress is not set"),
    ("defaultConfig: {discoveryAddress: pilot:15012}\nconfigSource: []\n", "unknown top-level key(s) configSource"),
    ("", "not a YAML mapping"),
    ("[1, 2]\n", "not a YAML mapping"),
    ("a: [\n", "not valid YAML"),
])
def test_mesh_problem(text, problem):
    found = meshconfig.mesh_problem(text)
    assert found == problem if problem is None else problem in found


def test_mesh_networks_problem():
    assert meshconfig.mesh_networks_problem("networks: {}") is None
    assert "not a YAML mapping" in meshconfig.mesh_networks_problem("x")
    assert "networkz" in meshconfig.mesh_networks_problem("networkz: {}\n")


def test_higress_settings_block():
    block = yaml.safe_load(meshconfig.higress_settings_text())
    assert block["downstream"]["connectionBufferLimits"] == 32768
    assert block["upstream"] == {"connectionBufferLimits": 10485760, "idleTimeout": 10}


def test_pod_labels():
    assert meshconfig.pod_labels(load(env={})) == 'app="higress-gateway"\nhigress="higress-system-higress-gateway"\n'
