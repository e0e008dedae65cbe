"""kubeconfig: render and parse agree; the CA is embedded, never skipped."""
import base64

import yaml

from higress_init import kubeconfig


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
