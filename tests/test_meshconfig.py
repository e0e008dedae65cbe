"""meshconfig: the base config the contract asks for, and the check a stored mesh must pass."""
import pytest
import yaml

from higress_init.settings import load
from higress_init.versions import meshconfig


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
    assert meshconfig.mesh_problem(meshconfig.mesh_text(s), s) is None
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
@pytest.mark.parametrize("version", ["2.2.4", "2.1.2"])
def test_mesh_problem(text, problem, version):
    found = meshconfig.mesh_problem(text, load(env={"HIGRESS_VERSION": version}))
    assert found == problem if problem is None else problem in found


# Top-level fields Istio 1.27's MeshConfig has and 1.19's lacks (istio/api mesh/v1alpha1/config.proto,
# release-1.27 against release-1.19), with a value of each field's type.
ISTIO_1_27_ONLY = {"inboundTrafficPolicy": "inboundTrafficPolicy: {mode: LOCALHOST}\n",
                   "serviceScopeConfigs": "serviceScopeConfigs: [{scope: GLOBAL}]\n"}
PILOT = "defaultConfig: {discoveryAddress: pilot:15012}\n"


@pytest.mark.parametrize("field", sorted(ISTIO_1_27_ONLY))
def test_a_mesh_with_istio_1_27_fields_passes_for_2_2_4_and_is_refused_for_2_1_2(field):
    text = PILOT + ISTIO_1_27_ONLY[field]
    assert meshconfig.mesh_problem(text, load(env={})) is None   # 2.2.4, the default
    snake = "".join("_" + c.lower() if c.isupper() else c for c in field)
    assert meshconfig.mesh_problem(PILOT + ISTIO_1_27_ONLY[field].replace(field, snake), load(env={})) is None
    refused = meshconfig.mesh_problem(text, load(env={"HIGRESS_VERSION": "2.1.2"}))
    assert f"unknown top-level key(s) {field}" in refused and "Istio 1.19" in refused and "2.1.2" in refused


@pytest.mark.parametrize("version, istio", [("2.2.4", "1.27"), ("2.1.2", "1.19")])
def test_an_unknown_field_is_refused_per_version(version, istio):
    s = load(env={"HIGRESS_VERSION": version})
    refused = meshconfig.mesh_problem(PILOT + "inboundTrafficPolicyX: {}\nthriftConfig: {}\n", s)
    # thriftConfig: a field Istio removed (reserved), refused like any unknown one
    assert f"unknown top-level key(s) inboundTrafficPolicyX, thriftConfig (not a field of the MeshConfig of Istio " \
           f"{istio}, which Higress {version} runs" in refused


def test_each_release_knows_every_field_of_its_istio_mesh_config():
    """The lists written out by hand from the proto at each release branch (44 and 46 fields), plus
    Higress's mseIngressGlobalConfig."""
    from higress_init.versions import releases
    istio_1_19 = {
        "proxyListenPort", "proxyInboundListenPort", "proxyHttpPort", "connectTimeout", "protocolDetectionTimeout",
        "tcpKeepalive", "ingressClass", "ingressService", "ingressControllerMode", "ingressSelector",
        "enableTracing", "accessLogFile", "accessLogFormat", "accessLogEncoding", "enableEnvoyAccessLogService",
        "disableEnvoyListenerLog", "defaultConfig", "outboundTrafficPolicy", "configSources", "enableAutoMtls",
        "trustDomain", "trustDomainAliases", "caCertificates", "defaultServiceExportTo",
        "defaultVirtualServiceExportTo", "defaultDestinationRuleExportTo", "rootNamespace", "localityLbSetting",
        "dnsRefreshRate", "h2UpgradePolicy", "inboundClusterStatName", "outboundClusterStatName", "certificates",
        "serviceSettings", "enablePrometheusMerge", "verifyCertificateAtClient", "ca", "extensionProviders",
        "defaultProviders", "discoverySelectors", "pathNormalization", "defaultHttpRetryPolicy", "meshMTLS",
        "tlsDefaults"}
    assert len(istio_1_19) == 44
    fields = {r.version: set(r.mesh_fields) for r in releases.RELEASES}
    assert fields["2.1.2"] == istio_1_19 | {"mseIngressGlobalConfig"}
    assert fields["2.2.4"] == istio_1_19 | set(ISTIO_1_27_ONLY) | {"mseIngressGlobalConfig"}
    for version in fields:
        mesh = "".join(f"{f}: null\n" for f in fields[version]) + "defaultConfig: {discoveryAddress: pilot:15012}\n"
        assert meshconfig.mesh_problem(mesh, load(env={"HIGRESS_VERSION": version})) is None


def test_mesh_networks_problem():
    assert meshconfig.mesh_networks_problem("networks: {}") is None
    assert "not a YAML mapping" in meshconfig.mesh_networks_problem("x")
    assert "networkz" in meshconfig.mesh_networks_problem("networkz: {}\n")


@pytest.mark.parametrize("version", ["2.2.4", "2.1.2"])
def test_higress_settings_block(version):
    block = yaml.safe_load(meshconfig.higress_settings_text(load(env={"HIGRESS_VERSION": version})))
    assert block["downstream"]["connectionBufferLimits"] == 32768
    assert block["upstream"] == {"connectionBufferLimits": 10485760, "idleTimeout": 10}
    assert ("mcpServer" in block) == (version == "2.2.4")


def test_pod_labels():
    assert meshconfig.pod_labels(load(env={})) == 'app="higress-gateway"\nhigress="higress-system-higress-gateway"\n'
