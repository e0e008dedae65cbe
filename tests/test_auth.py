"""Authentication: each component calls the apiserver with its own client certificate, through its
own kubeconfig, exactly as its container sees it; anonymous callers and certificates of another CA
are refused. The server is built from the generated apiserver files and authorises like the
apiserver with --auth-enabled (only O=system:masters); kubectl is the client."""
from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
import yaml
from compose_schema import COMPONENT_USERS, model
from conftest import run_cli
from consumers import apiserver_like_server, kubectl_in_container, kubectl_version

from higress_init.pki import kubeconfig

# the operator's two kubeconfigs (in the network, from the host) are one caller
CALLERS = [spec for spec in kubeconfig.KUBECONFIGS if not spec.file.startswith("kube/")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Path:
    """A run with the compose owner settings (files handed to uid 1337, as compose does)."""
    volumes = tmp_path_factory.mktemp("auth") / "volumes"
    run_cli("run", volumes=volumes, check=True, env={"CA_KEY_ALGORITHM": "ecdsa-p256",
                                                      "LEAF_KEY_ALGORITHM": "ecdsa-p256",
                                                      "VOLUMES_UID": "1337", "VOLUMES_GID": "1337"})
    return volumes


def _mounts_of(service: str, volumes: Path) -> dict[str, Path]:
    """container path -> host folder, for the service's read-only mounts of the volumes."""
    doc = model(("nacos",), overrides={"VOLUMES_DIR": str(volumes)})
    out = {}
    for spec in doc["services"][service]["volumes"]:
        host, target, *mode = spec.split(":")
        if mode == ["ro"]:
            out[target] = Path(host)
    return out


def _server(volumes: Path):
    return apiserver_like_server(volumes / "api/server.crt", volumes / "api/server.key", volumes / "api/ca.crt")


def test_every_caller_has_its_own_kubeconfig_and_certificate():
    services = [spec.file.split("/")[0] for spec in CALLERS]
    assert services == ["controller", "pilot", "console"]
    assert len({spec.client for spec in CALLERS} | {"apiserver-admin"}) == len(CALLERS) + 1


@pytest.mark.parametrize("spec", CALLERS, ids=lambda s: s.file.split("/")[0])
def test_each_component_is_authenticated_by_its_own_certificate_as_its_container_sees_it(stack, spec):
    service = spec.file.split("/")[0]
    mounts = _mounts_of(service, stack)
    folder = stack / Path(spec.file).parent
    target = next(t for t, host in mounts.items() if host == folder)
    config_in_container = str(PurePosixPath(target) / "config")
    if spec.mounted_at:  # named by path: the paths are the container's
        assert target == spec.mounted_at
        assert "client-certificate-data" not in (stack / spec.file).read_text()
    else:
        assert "client-certificate-data" in (stack / spec.file).read_text()
    uid = COMPONENT_USERS[service][1]
    with _server(stack) as (url, callers):
        result = kubectl_in_container(config_in_container, mounts, url, uid)
        assert result.returncode == 0, result.stderr
        assert '"gitVersion"' in result.stdout
        assert callers and set(callers) == {service}, callers  # the apiserver's log names the caller


def test_the_operator_kubeconfig_works_from_the_host(stack):
    with _server(stack) as (url, callers):
        result = kubectl_version(stack / "kube/config", url, tls_server_name="apiserver")
        assert result.returncode == 0, result.stderr
        assert set(callers) == {"higress-admin"}


def test_anonymous_callers_are_refused(stack, tmp_path):
    parsed = kubeconfig.parse((stack / "kube/config").read_bytes())
    anonymous = yaml.safe_load(kubeconfig.render("https://apiserver:8443", parsed["ca"], b"x", b"x"))
    # no client certificate; kubectl prompts for a password without any credential, so it sends a
    # bearer token, which the apiserver does not take as one either
    anonymous["users"][0]["user"] = {"token": "not-a-credential"}
    path = tmp_path / "anonymous"
    path.write_text(yaml.safe_dump(anonymous))
    with _server(stack) as (url, callers):
        result = kubectl_version(path, url, tls_server_name="apiserver")
        assert result.returncode != 0
        assert "Forbidden" in result.stderr or "forbidden" in result.stderr, result.stderr
        assert callers and set(callers) == {None}


def test_a_client_certificate_of_another_ca_is_refused(stack, tmp_path):
    other = tmp_path / "other"
    run_cli("run", volumes=other, check=True,
            env={"CA_KEY_ALGORITHM": "ecdsa-p256", "LEAF_KEY_ALGORITHM": "ecdsa-p256"})
    ours = kubeconfig.parse((stack / "kube/config").read_bytes())
    theirs = kubeconfig.parse((other / "kube/config").read_bytes())
    # trusts our apiserver, but presents a system:masters certificate from another CA
    path = tmp_path / "foreign"
    path.write_bytes(kubeconfig.render("https://apiserver:8443", ours["ca"], theirs["cert"], theirs["key"]))
    with _server(stack) as (url, callers):
        result = kubectl_version(path, url, tls_server_name="apiserver")
        assert result.returncode != 0
        assert callers == []  # refused at the handshake: no request got through
        # TLS 1.3 checks the client certificate after the client's Finished: kubectl sees the
        # server's alert, or, when the server closes first, a reset of the connection
        assert any(w in result.stderr.lower() for w in ("certificate", "tls", "connection reset")), result.stderr
