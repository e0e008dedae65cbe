"""kubeconfig: render and parse agree; the CA is embedded, never skipped."""
import base64

import yaml

from higress_init.pki import kubeconfig


def test_render_and_parse_round_trip():
    data = kubeconfig.render("https://apiserver:8443", b"CA-PEM", b"CERT-PEM", b"KEY-PEM")
    doc = yaml.safe_load(data)
    cluster = doc["clusters"][0]["cluster"]
    assert cluster["server"] == "https://apiserver:8443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == b"CA-PEM"
    assert "insecure-skip-tls-verify" not in cluster
    assert doc["current-context"] == kubeconfig.CONTEXT
    assert kubeconfig.parse(data) == {"server": "https://apiserver:8443", "ca": b"CA-PEM", "cert": b"CERT-PEM",
                                      "key": b"KEY-PEM"}


def _kubectl(kubeconfig_file, *args, env=None):
    import os
    import subprocess

    from conftest import require_tool
    require_tool("kubectl", "install kubectl (e.g. apt-get install kubectl, or the Kubernetes release binary)")
    return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig_file), "--request-timeout=20s", *args],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def test_the_readme_steps_to_edit_the_mesh_from_the_host(tmp_path, fast_env):
    """README "Where to edit the mesh", as the operator runs it on the host: kubectl with
    volumes/kube/host.config against the apiserver compose publishes on 127.0.0.1:APISERVER_HOST_PORT
    (here a TLS server with the apiserver's own certificate and key that demands a client
    certificate of its CA, over the file store), TLS verified; then a run delivers the edit."""
    import sys

    from conftest import run_cli
    from consumers import file_store_apiserver
    from rnacos import free_port
    port = free_port()
    volumes = tmp_path / "volumes"
    run_cli("run", volumes=volumes, env={**fast_env, "APISERVER_HOST_PORT": str(port)}, check=True)
    host_config = volumes / "kube/host.config"
    doc = yaml.safe_load(host_config.read_text())
    assert doc["clusters"][0]["cluster"]["server"] == f"https://127.0.0.1:{port}"
    assert "insecure-skip-tls-verify" not in host_config.read_text()
    editor = tmp_path / "editor.py"
    editor.write_text("import sys\np = sys.argv[-1]\ntext = open(p).read()\n"
                      "assert 'dnsRefreshRate: 200s' in text, text\n"
                      "open(p, 'w').write(text.replace('dnsRefreshRate: 200s', 'dnsRefreshRate: 300s'))\n")
    with file_store_apiserver(volumes / "api/server.crt", volumes / "api/server.key", volumes / "api/ca.crt",
                              volumes / "data", port=port) as server:
        got = _kubectl(host_config, "-n", "higress-system", "get", "configmap", "higress-config", "-o", "yaml")
        assert got.returncode == 0, got.stderr
        assert "trustDomain: cluster.local" in got.stdout
        # --validate=false: this stand-in serves no OpenAPI document for kubectl to validate against
        edited = _kubectl(host_config, "-n", "higress-system", "edit", "configmap", "higress-config",
                          "--validate=false", env={"KUBE_EDITOR": f"{sys.executable} {editor}"})
        assert edited.returncode == 0, edited.stderr[:500]
        assert "edited" in edited.stdout
        assert server.writes and server.callers[-1] == "higress-admin"
        # the in-network kubeconfig names a host the host can't resolve; the host one is the way in
        assert doc["users"] == yaml.safe_load((volumes / "kube/config").read_text())["users"]
    stored = yaml.safe_load((volumes / "data/configmaps/higress-config.yaml").read_text())
    assert "dnsRefreshRate: 300s" in stored["data"]["mesh"]
    assert "dnsRefreshRate: 200s" in (volumes / "pilot/config/mesh").read_text()
    run_cli("run", volumes=volumes, check=True)   # the next start delivers it
    assert "dnsRefreshRate: 300s" in (volumes / "pilot/config/mesh").read_text()
    assert run_cli("status", volumes=volumes).returncode == 0


def test_the_host_kubeconfig_is_refused_by_a_server_of_another_ca(tmp_path, fast_env):
    """TLS is verified: the same port served with another deployment's certificate is refused."""
    from conftest import run_cli
    from consumers import file_store_apiserver
    from rnacos import free_port
    port = free_port()
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    run_cli("run", volumes=ours, env={**fast_env, "APISERVER_HOST_PORT": str(port)}, check=True)
    run_cli("run", volumes=theirs, env=fast_env, check=True)
    with file_store_apiserver(theirs / "api/server.crt", theirs / "api/server.key", theirs / "api/ca.crt",
                              theirs / "data", port=port) as server:
        got = _kubectl(ours / "kube/host.config", "-n", "higress-system", "get", "configmap", "higress-config")
        assert got.returncode != 0 and "certificate" in got.stderr, got.stderr
        assert not server.writes
