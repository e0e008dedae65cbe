"""migrate: volumes prepared by upstream's own scripts (higress-standalone's compose/scripts at
v2.1.2 and v2.2.4: precheck.sh makes the apiserver's files and the kubeconfig, init.sh the data
key, prepare.sh the pilot CA and the gateway's files), taken over by `higress-init migrate`.

The tree is made here with openssl the way those scripts make it (their openssl defaults included:
version-1 apiserver certificates, an intermediate whose basicConstraints is not critical, a world-
readable intermediate key), then the CLI runs on it as a user would."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import require_tool, run_cli, snapshot

BITS = "4096"   # upstream's RSA_KEY_LENGTH


def _openssl(cwd: Path, *args: str, stdin: str | None = None) -> None:
    openssl = require_tool("openssl", "apt-get install openssl")
    subprocess.run([openssl, *args], cwd=cwd, check=True, capture_output=True, input=stdin, text=True)


def upstream_tree(root: Path) -> None:
    """The files upstream's scripts leave under the volumes folder (compose/volumes)."""
    api, kube, cacerts = root / "api", root / "kube", root / "pilot/cacerts"
    for folder in (api, kube, cacerts, root / "gateway/certs", root / "gateway/podinfo", root / "pilot/config",
                   root / "nacos/data", root / "controller/log/nacos"):
        folder.mkdir(parents=True, exist_ok=True)
    # precheck.sh: the apiserver's CA (openssl's default key size), its server and admin client certificates
    _openssl(api, "req", "-nodes", "-new", "-x509", "-days", "36500", "-keyout", "ca.key", "-out", "ca.crt",
             "-subj", "/CN=higress-root-ca/O=higress")
    for name, serial, subject in (("server", "01", "/CN=higress-api-server/O=higress"),
                                  ("client", "02", "/CN=higress/O=system:masters")):
        _openssl(api, "req", "-out", f"{name}.csr", "-new", "-newkey", f"rsa:{BITS}", "-nodes", "-keyout",
                 f"{name}.key", "-subj", subject)
        _openssl(api, "x509", "-req", "-days", "36500", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-set_serial", serial, "-sha256", "-out", f"{name}.crt")
    b64 = {n: base64.b64encode((api / n).read_bytes()).decode() for n in ("client.crt", "client.key")}
    (kube / "config").write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n  - name: higress\n    cluster:\n"
        "      server: https://apiserver:8443\n      insecure-skip-tls-verify: true\n"
        f"users:\n  - name: higress-admin\n    user:\n      client-certificate-data: {b64['client.crt']}\n"
        f"      client-key-data: {b64['client.key']}\n"
        "contexts:\n  - name: higress\n    context:\n      cluster: higress\n      user: higress-admin\n"
        "preferences: {}\ncurrent-context: higress\n")
    # init.sh: 32 printable characters, no line break
    key = bytes(c for c in os.urandom(4096) if 0x21 <= c <= 0x7e)[:32]
    (api / "nacos.key").write_bytes(key)
    # prepare.sh: the pilot root (subject answered at openssl's prompts), the intermediate and the gateway's
    _openssl(cacerts, "req", "-newkey", f"rsa:{BITS}", "-nodes", "-keyout", "root-key.pem", "-x509", "-days", "36500",
             "-out", "root-cert.pem",
             stdin="CN\nShanghai\nShanghai\nHigress\nGateway\nRoot CA\nrootca@higress.io\n\n\n")
    (cacerts / "ca.cfg").write_text(
        "[req]\ndistinguished_name = req_distinguished_name\nreq_extensions = v3_req\nprompt = no\n\n"
        "[req_distinguished_name]\nC = CN\nST = Shanghai\nL = Shanghai\nO = Higress\nCN = Higress CA\n\n"
        "[v3_req]\nkeyUsage = keyCertSign\nbasicConstraints = CA:TRUE\nsubjectAltName = @alt_names\n\n"
        "[alt_names]\nDNS.1 = ca.higress.io\n")
    _openssl(cacerts, "genrsa", "-out", "ca-key.pem", BITS)
    _openssl(cacerts, "req", "-new", "-key", "ca-key.pem", "-out", "ca-cert.csr", "-config", "ca.cfg", "-batch",
             "-sha256")
    _openssl(cacerts, "x509", "-req", "-days", "36500", "-in", "ca-cert.csr", "-sha256", "-CA", "root-cert.pem",
             "-CAkey", "root-key.pem", "-CAcreateserial", "-out", "ca-cert.pem", "-extensions", "v3_req",
             "-extfile", "ca.cfg")
    (cacerts / "cert-chain.pem").write_bytes((cacerts / "ca-cert.pem").read_bytes())
    (cacerts / "ca-key.pem").chmod(0o644)
    (cacerts / "gateway.cfg").write_text(
        "[req]\ndistinguished_name = req_distinguished_name\nreq_extensions = v3_req\nprompt = no\n\n"
        "[req_distinguished_name]\nC = CN\nST = Shanghai\nL = Shanghai\nO = Higress\nCN = Higress Gateway\n\n"
        "[v3_req]\nkeyUsage = digitalSignature, keyEncipherment\n"
        "subjectAltName = URI:spiffe://cluster.local/ns/higress-system/sa/higress-gateway\n")
    _openssl(cacerts, "genrsa", "-out", "gateway-key.pem", BITS)
    _openssl(cacerts, "req", "-new", "-key", "gateway-key.pem", "-out", "gateway-cert.csr", "-config", "gateway.cfg",
             "-batch", "-sha256")
    _openssl(cacerts, "x509", "-req", "-days", "36500", "-in", "gateway-cert.csr", "-sha256", "-CA", "ca-cert.pem",
             "-CAkey", "ca-key.pem", "-CAcreateserial", "-out", "gateway-cert.pem", "-extensions", "v3_req",
             "-extfile", "gateway.cfg")
    for csr in cacerts.glob("*.csr"):
        csr.unlink()
    (cacerts / "gateway-key.pem").chmod(0o644)
    certs = root / "gateway/certs"
    (certs / "root-cert.pem").write_bytes((cacerts / "root-cert.pem").read_bytes())
    (certs / "key.pem").write_bytes((cacerts / "gateway-key.pem").read_bytes())
    (certs / "cert-chain.pem").write_bytes((cacerts / "gateway-cert.pem").read_bytes()
                                           + (cacerts / "ca-cert.pem").read_bytes())
    (root / "gateway/podinfo/labels").write_text('app="higress-gateway"\nhigress="higress-system-higress-gateway"\n')
    for folder in ("istio/data", "secrets", "proxy", "log"):
        (root / "gateway" / folder).mkdir(parents=True, exist_ok=True)
    (root / "gateway/log/access.log").touch()
    for path in [root / "gateway", *(root / "gateway").rglob("*")]:   # v2.2.4: chmod a+w -R gateway
        path.chmod(path.stat().st_mode | 0o222)
    # prepare.sh renders the stored higress-config's keys into pilot/config; Nacos keeps its data in nacos/
    (root / "pilot/config/higress").write_text("downstream:\n  idleTimeout: 180\n")
    (root / "nacos/data/derby.log").write_text("Nacos's own data: never touched\n")


@pytest.fixture(scope="module")
def upstream_template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("upstream") / "volumes"
    upstream_tree(root)
    return root


@pytest.fixture
def upstream(upstream_template, tmp_path) -> Path:
    import shutil
    target = tmp_path / "volumes"
    shutil.copytree(upstream_template, target, symlinks=True)
    return target


def _public_key(pem_file: Path) -> str:
    out = subprocess.run(["openssl", "x509", "-noout", "-pubkey", "-in", str(pem_file)], check=True,
                         capture_output=True, text=True).stdout
    return hashlib.sha256(out.encode()).hexdigest()


def _verify(ca: Path, leaf: Path, untrusted: Path | None = None) -> subprocess.CompletedProcess:
    args = ["openssl", "verify", "-CAfile", str(ca)] + (["-untrusted", str(untrusted)] if untrusted else [])
    return subprocess.run(args + [str(leaf)], capture_output=True, text=True)


def test_run_and_status_on_upstreams_layout_say_to_migrate_in_one_line(upstream, fast_env):
    before = snapshot(upstream)
    for command in ("run", "plan"):
        result = run_cli(command, volumes=upstream, env=fast_env)
        assert result.returncode == 3, (command, result.stdout, result.stderr)
        line, = result.stderr.strip().splitlines()
        assert "higress-init migrate" in line and "api/ca.key" in line and "backup/" in line
        assert "<" not in line   # no Python object
    status = run_cli("status", volumes=upstream, env=fast_env)
    assert status.returncode == 1
    text = " ".join(status.stdout.split())   # the hint is wrapped within 120 columns
    assert text.count("UPSTREAM LAYOUT:") == 1, status.stdout
    hint = text[text.index("UPSTREAM LAYOUT:"):]
    assert "higress-init migrate" in hint and "pilot/cacerts/root-key.pem" in hint, status.stdout
    report = json.loads(run_cli("status", "--output", "json", volumes=upstream, env=fast_env).stdout)
    assert report["healthy"] is False and report["upstream_layout"]["files"] == ["api/ca.key",
                                                                                 "pilot/cacerts/root-key.pem"]
    assert snapshot(upstream) == before


def test_migrate_adopts_upstreams_cas_reissues_what_fails_and_backs_up_the_rest(upstream, upstream_template,
                                                                               fast_env):
    original = {rel: data for rel, data in ((p.relative_to(upstream).as_posix(), p.read_bytes())
                                            for p in upstream.rglob("*") if p.is_file())}
    result = run_cli("migrate", volumes=upstream, env=fast_env, check=True)
    lines = result.stdout.splitlines()
    summary = lines[-1]
    assert summary.startswith("migrated: 4 files adopted, 8 re-issued, 3 re-rendered, 10 leftovers removed, "
                              "24 files backed up in backup/"), summary
    print("\n".join(line for line in lines if line.startswith("migrat")))   # the figures, with -s
    # the keys moved into pki/, nothing of upstream's left beside the mounted files
    assert (upstream / "pki/apiserver-ca.key").read_bytes() == original["api/ca.key"]
    assert (upstream / "pki/pilot-root-ca.key").read_bytes() == original["pilot/cacerts/root-key.pem"]
    assert (upstream / "api/nacos.key").read_bytes() == original["api/nacos.key"]
    assert sorted(p.name for p in (upstream / "api").iterdir()) == ["ca.crt", "nacos.key", "server.crt", "server.key"]
    assert sorted(p.name for p in (upstream / "pilot/cacerts").iterdir()) == \
        ["ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"]
    for key in ("pki/apiserver-ca.key", "pki/pilot-root-ca.key", "pilot/cacerts/ca-key.pem", "api/nacos.key"):
        assert (upstream / key).stat().st_mode & 0o077 == 0, key
    # the adopted CAs are upstream's: their key, their name; upstream's own CA certificates verify the new leaves
    for ours, theirs in (("api/ca.crt", "api/ca.crt"), ("pilot/cacerts/root-cert.pem", "pilot/cacerts/root-cert.pem")):
        assert _public_key(upstream / ours) == _public_key(upstream_template / theirs)
    for leaf in ("api/server.crt", "pki/admin.crt", "controller/kube/client.crt", "pilot/kube/client.crt"):
        verified = _verify(upstream_template / "api/ca.crt", upstream / leaf)
        assert verified.returncode == 0, (leaf, verified.stdout, verified.stderr)
    verified = _verify(upstream_template / "pilot/cacerts/root-cert.pem", upstream / "gateway/certs/cert-chain.pem",
                       untrusted=upstream / "pilot/cacerts/ca-cert.pem")
    assert verified.returncode == 0, (verified.stdout, verified.stderr)
    # upstream's intermediate (not valid for the verifier; its key was world-readable) is replaced
    assert (upstream / "pilot/cacerts/ca-key.pem").read_bytes() != original["pilot/cacerts/ca-key.pem"]
    # everything replaced or removed is in backup/, byte for byte; nothing outside upstream's files touched
    stamp, = (upstream / "backup").iterdir()
    backed = {p.relative_to(stamp).as_posix(): p.read_bytes() for p in stamp.rglob("*") if p.is_file()}
    assert len(backed) == 24
    assert all(original[rel] == data for rel, data in backed.items())
    for rel in ("api/ca.key", "api/client.key", "pilot/cacerts/root-key.pem", "pilot/cacerts/ca-key.pem",
                "pilot/cacerts/gateway-key.pem", "kube/config", "api/server.crt"):
        assert rel in backed, rel
    assert (upstream / "nacos/data/derby.log").read_bytes() == original["nacos/data/derby.log"]
    joined = " ".join(result.stdout.split())   # messages wrap within 120 columns
    assert "Nacos's data stays in nacos/" in joined and "nacos-data" in joined[joined.index("Nacos's data stays"):]
    assert (upstream / "pilot/config/higress").read_bytes() == original["pilot/config/higress"]
    # the next run is a rerun, status passes, a second migrate has nothing to do
    files = snapshot(upstream)
    rerun = run_cli("run", volumes=upstream, env=fast_env, check=True)
    assert " 0 files written" in rerun.stdout.splitlines()[-1] and snapshot(upstream) == files
    status = run_cli("status", volumes=upstream, env=fast_env)
    assert status.returncode == 0, status.stdout
    again = run_cli("migrate", volumes=upstream, env=fast_env, check=True)
    assert "nothing to migrate" in again.stdout and snapshot(upstream) == files


def test_a_key_in_both_places_that_differ_is_refused(upstream, fast_env, tmp_path):
    (upstream / "pki").mkdir(mode=0o700)
    _openssl(upstream / "pki", "genrsa", "-out", "apiserver-ca.key", "2048")
    before = snapshot(upstream)
    result = run_cli("migrate", volumes=upstream, env=fast_env)
    assert result.returncode == 3, (result.stdout, result.stderr)
    line, = result.stderr.strip().splitlines()
    assert "api/ca.key" in line and "pki/apiserver-ca.key" in line and "differ" in line
    assert snapshot(upstream) == before and not (upstream / "backup").exists()


def test_a_key_that_is_a_link_out_of_the_volumes_is_refused_and_never_read(upstream, fast_env, tmp_path):
    outside = tmp_path / "elsewhere.key"
    outside.write_bytes((upstream / "api/ca.key").read_bytes())
    (upstream / "api/ca.key").unlink()
    (upstream / "api/ca.key").symlink_to(outside)
    before = snapshot(upstream)
    result = run_cli("migrate", volumes=upstream, env=fast_env)
    assert result.returncode == 3, (result.stdout, result.stderr)
    line, = result.stderr.strip().splitlines()
    assert "api/ca.key" in line and "link" in line
    assert snapshot(upstream) == before and (upstream / "api/ca.key").is_symlink() and outside.exists()


def test_migrate_with_nacos_keeps_what_upstream_stored(real_nacos, upstream, fast_env):
    """Nacos 3.0.1 as upstream's 2.2.4 runs it, holding what upstream's prepare.sh seeded (a Secret
    encrypted with upstream's api/nacos.key): the key is adopted, the stored objects kept, the
    adopted pilot root published as the deployment's CA."""
    from nacos_server import UPSTREAM, Target, fresh_namespace

    from higress_init.store.nacos.layout import decrypt, encrypt
    node = Target("nacos-3.0.1", real_nacos(UPSTREAM), fresh_namespace("migrate"))
    key = (upstream / "api/nacos.key").read_bytes()
    secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: higress-console\n  namespace: higress-system\n" \
             "data:\n  iv: YWJj\n  key: ZGVm\ntype: Opaque\n"
    node.publish_config("secrets.higress-console", "higress-system", encrypt(secret, key))
    node.publish_config("secrets.__names__", "DEFAULT_GROUP", "higress-system/secrets.higress-console\n")
    env = dict(fast_env, **node.client_env(), NACOS_WAIT_TIMEOUT="30s")
    refused = run_cli("run", volumes=upstream, env=env)
    assert refused.returncode == 3 and "higress-init migrate" in refused.stderr
    result = run_cli("migrate", volumes=upstream, env=env, check=True)
    assert result.stdout.splitlines()[-1].startswith("migrated: 4 files adopted, 8 re-issued"), result.stdout
    assert decrypt(node.get_config("secrets.higress-console", "higress-system"), key) == secret
    assert node.get_config("secrets.cacerts", "higress-system") is not None   # the adopted root, published
    files = snapshot(upstream)
    rerun = run_cli("run", volumes=upstream, env=env, check=True)
    assert " 0 files written" in rerun.stdout.splitlines()[-1] and snapshot(upstream) == files
    status = run_cli("status", volumes=upstream, env=env)
    assert status.returncode == 0, status.stdout
