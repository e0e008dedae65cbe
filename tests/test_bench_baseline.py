"""The benchmark's openssl baseline makes the same keys and certificates as the initializer, so
the comparison stays fair as the product changes. (No test here asserts a time.)"""
from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import REPO, run_cli
from consumers import openssl_verify
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from higress_init.pki import artifacts, primitives
from higress_init.volume import layout


def _pem_files(root: Path) -> dict[str, bytes]:
    """Every certificate and private/public key file, by path."""
    out = {}
    for path in root.rglob("*"):
        rel = str(path.relative_to(root))
        if path.is_file() and not rel.startswith((".higress-init", "backup")):
            data = path.read_bytes()
            if b"-----BEGIN " in data and b"CONFIGURATION" not in data:
                out[rel] = data
    return out


def _describe(rel: str, data: bytes):
    """What a file is: certificates (key type and size, CA flag, path length, SAN kinds) or a key."""
    if b"CERTIFICATE" in data:
        shapes = []
        for cert in primitives.load_certs(data):
            key = cert.public_key()
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            shapes.append((type(key).__name__, key.key_size, bc.ca, bc.path_length,
                           tuple(sorted(type(n).__name__ for n in _sans(cert)))))
        return shapes
    if b"PUBLIC KEY" in data:
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
        key = load_pem_public_key(data)
    else:
        key = primitives.load_key(data)
    return (isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)), key.key_size)


def _sans(cert):
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []


def test_baseline_makes_the_same_artifact_set(tmp_path):
    """The shape (files, key kinds and sizes, names, extensions), with RSA-2048 CAs on both sides:
    the sizes are compared, not timed."""
    import os
    initialized = tmp_path / "ours"
    run_cli("run", volumes=initialized, env={"CA_KEY_ALGORITHM": "rsa-2048"}, check=True)
    baseline = tmp_path / "baseline"
    result = subprocess.run(["bash", str(REPO / "bench/openssl-baseline.sh"), str(baseline)], capture_output=True,
                            text=True, timeout=600, env={**os.environ, "CA_BITS": "2048"})
    assert result.returncode == 0, result.stderr
    ours = _pem_files(initialized)
    # the initializer's own extra files that are not keys or certificates of a PKI step
    expected = ({spec.cert_file for spec in artifacts.CERTIFICATES} | {spec.key_file for spec in artifacts.CERTIFICATES}
                | {bundle.file for bundle in artifacts.BUNDLES} | {layout.TOKEN_SIGNING_KEY, layout.TOKEN_PUBLIC_KEY})
    assert set(ours) == expected
    theirs = _pem_files(baseline)
    assert set(theirs) == set(ours)
    for rel in ours:
        assert _describe(rel, theirs[rel]) == _describe(rel, ours[rel]), rel
    b = baseline
    for cafile, cert, untrusted in [("api/ca.crt", "api/server.crt", None), ("api/ca.crt", "pki/admin.crt", None),
                                    ("pilot/cacerts/root-cert.pem", "pilot/cacerts/ca-cert.pem", None),
                                    ("gateway/certs/root-cert.pem", "gateway/certs/cert-chain.pem",
                                     "gateway/certs/cert-chain.pem")]:
        ok, out = openssl_verify(b / cafile, b / cert, untrusted=b / untrusted if untrusted else None)
        assert ok, f"baseline {cert}: {out}"


def test_the_key_floor_generates_exactly_the_keys_of_a_cold_run(tmp_path):
    """bench/keyfloor.py (the floor a cold run is measured against) generates the keys a cold run
    makes, with the same algorithms, and writes nothing."""
    import json
    import os
    import sys

    from higress_init import settings as settings_mod
    from higress_init.pki import tokens
    volumes = tmp_path / "v"
    code = ("import json, sys; sys.path.insert(0, sys.argv[2]); import keyfloor; "
            "print(json.dumps(keyfloor.wanted(sys.argv[1])))")
    result = subprocess.run([sys.executable, "-c", code, str(volumes), str(REPO / "bench")], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "CA_KEY_ALGORITHM": "rsa-2048"})
    assert result.returncode == 0, result.stderr
    wanted = json.loads(result.stdout)
    s = settings_mod.load(env={**os.environ, "CA_KEY_ALGORITHM": "rsa-2048"}, overrides={"VOLUMES_ROOT": str(volumes)})
    assert wanted == {**{spec.name: getattr(s, spec.key_algorithm) for spec in artifacts.CERTIFICATES},
                      tokens.SIGNING_KEY: s.token_key_algorithm}
    for way in ("processes", "threads"):
        floor = subprocess.run([sys.executable, str(REPO / "bench/keyfloor.py"), str(volumes), way],
                               capture_output=True, text=True, timeout=600,
                               env={**os.environ, "CA_KEY_ALGORITHM": "rsa-2048"})
        assert floor.returncode == 0, floor.stderr
        assert not volumes.exists()
