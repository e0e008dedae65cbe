"""The real consumers of the initializer's output: openssl, kubectl, and TLS peers."""
from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import require_tool


def openssl(*args, input: bytes | None = None) -> subprocess.CompletedProcess:
    require_tool("openssl", "apt-get install openssl")
    return subprocess.run(["openssl", *args], capture_output=True, input=input)


def openssl_verify(cafile: Path, cert: Path, untrusted: Path | None = None,
                   purpose: str | None = None) -> tuple[bool, str]:
    args = ["verify", "-x509_strict", "-CAfile", str(cafile)]
    if untrusted:
        args += ["-untrusted", str(untrusted)]
    if purpose:
        args += ["-purpose", purpose]
    result = openssl(*args, str(cert))
    return result.returncode == 0, (result.stdout + result.stderr).decode()


def openssl_text(cert: Path) -> str:
    result = openssl("x509", "-noout", "-text", "-in", str(cert))
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


class _VersionHandler(BaseHTTPRequestHandler):
    """Answers like an apiserver would for `kubectl get --raw /version` (kubectl here is a
    version dispatcher that asks /version itself first, so more than one request comes)."""

    def do_GET(self):
        body = json.dumps({"major": "1", "minor": "32", "gitVersion": "v1.32.4", "platform": "linux/amd64"}).encode()
        if self.path.split("?")[0] != "/version":
            body = json.dumps({"kind": "Status", "status": "Failure", "code": 404}).encode()
            self.send_response(404)
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextmanager
def mtls_https_server(cert: Path, key: Path, client_ca: Path):
    """A local HTTPS server that demands client certificates from `client_ca`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.load_verify_locations(client_ca)
    context.verify_mode = ssl.CERT_REQUIRED
    server = ThreadingHTTPServer(("127.0.0.1", 0), _VersionHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.handle_error = lambda *a: None  # rejected handshakes are expected in negative tests
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def kubectl_version(kubeconfig: Path, server: str, tls_server_name: str | None = None) -> subprocess.CompletedProcess:
    require_tool("kubectl", "install kubectl (e.g. apt-get install kubectl, or the Kubernetes release binary)")
    args = ["kubectl", "--kubeconfig", str(kubeconfig), "--server", server, "--request-timeout=10s"]
    if tls_server_name:
        args += ["--tls-server-name", tls_server_name]
    return subprocess.run(args + ["get", "--raw", "/version"], capture_output=True, text=True, timeout=60)


def mtls_handshake(server_cert_chain: bytes, server_key: bytes, server_trust: Path,
                   client_chain: Path, client_key: Path, client_trust: Path, server_name: str, tmp: Path):
    """One mutual-TLS handshake over loopback; returns (client error, server error, peer cert of each)."""
    (tmp / "srv-chain.pem").write_bytes(server_cert_chain)
    (tmp / "srv-key.pem").write_bytes(server_key)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp / "srv-chain.pem", tmp / "srv-key.pem")
    server_ctx.load_verify_locations(server_trust)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_cert_chain(client_chain, client_key)
    client_ctx.load_verify_locations(client_trust)
    client_ctx.check_hostname = False  # Istio peers check the SPIFFE URI, not a host name
    outcome = {}
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                outcome["server_peer"] = tls.getpeercert()
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as err:
            outcome["server_error"] = err

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with (socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
              client_ctx.wrap_socket(raw, server_hostname=server_name) as tls):
            outcome["client_peer"] = tls.getpeercert()
            outcome["data"] = tls.recv(2)
    except (ssl.SSLError, OSError) as err:
        outcome["client_error"] = err
    thread.join(10)
    listener.close()
    return outcome


class _ApiserverAuthHandler(_VersionHandler):
    """Authorises as the apiserver does with --auth-enabled: a verified client certificate whose
    O is system:masters may call; anyone else gets 403. Records each caller's CN."""

    def do_GET(self):
        peer = self.connection.getpeercert() or {}
        subject = {k: v for rdn in peer.get("subject", ()) for k, v in rdn}
        groups = [v for rdn in peer.get("subject", ()) for k, v in rdn if k == "organizationName"]
        self.server.callers.append(subject.get("commonName"))
        if "system:masters" not in groups:
            body = json.dumps({"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403,
                               "message": "forbidden: User \"system:anonymous\" cannot get path"}).encode()
            self.send_response(403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


@contextmanager
def apiserver_like_server(cert: Path, key: Path, client_ca: Path):
    """A local HTTPS server built from the apiserver's files that authenticates like it: client
    certificates are optional at the handshake but, when sent, must verify against `client_ca`;
    requests are then authorised by group. Yields (url, list of caller CNs)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.load_verify_locations(client_ca)
    context.verify_mode = ssl.CERT_OPTIONAL
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ApiserverAuthHandler)
    server.callers = []
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.handle_error = lambda *a: None  # rejected handshakes are expected in negative tests
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", server.callers
    finally:
        server.shutdown()
        server.server_close()


def kubectl_in_container(kubeconfig: str, mounts: dict[str, Path], server: str, uid: int,
                         tls_server_name: str = "apiserver") -> subprocess.CompletedProcess:
    """kubectl as a component runs it: in a private mount namespace where its volume folders are
    bound at their container paths (so a kubeconfig naming files by container path works as in the
    container), as the uid its image runs as."""
    if os.geteuid() != 0:
        pytest.fail("kubectl runs in a mount namespace as the component's uid: run the tests as root (CI does)",
                    pytrace=False)
    require_tool("unshare", "apt-get install util-linux")
    require_tool("setpriv", "apt-get install util-linux")
    kubectl = require_tool("kubectl",
                           "install kubectl (e.g. apt-get install kubectl, or the Kubernetes release binary)")
    script = ["set -e"]
    for top in sorted({"/" + target.strip("/").split("/")[0] for target in mounts}):
        script.append(f"mount -t tmpfs -o mode=0755 tmpfs {top}")  # hides the host's folder in this namespace only
    for target, host in mounts.items():
        script += [f"mkdir -p {target}", f"mount --bind {host} {target}"]
    script.append(f'exec setpriv --reuid {uid} --regid {uid} --clear-groups env HOME=/tmp/kubectl-home-{uid} '
                  f'{kubectl} --kubeconfig {kubeconfig} --server {server} --tls-server-name {tls_server_name} '
                  f'--request-timeout=10s get --raw /version')
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script)],
                          capture_output=True, text=True, timeout=60)


class _ConfigMapHandler(BaseHTTPRequestHandler):
    """The part of the apiserver `kubectl get|edit configmap` talks to, over the file store the
    apiserver serves with --storage file (`<root>/configmaps/<name>.yaml`): discovery, GET, and
    PATCH/PUT of a ConfigMap (a merge of `data`, as the strategic merge kubectl edit sends for a
    ConfigMap's data is). Every request needs a verified client certificate of O=system:masters."""

    def _send(self, code: int, obj) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorised(self) -> bool:
        peer = self.connection.getpeercert() or {}
        groups = [v for rdn in peer.get("subject", ()) for k, v in rdn if k == "organizationName"]
        self.server.callers.append(next((v for rdn in peer.get("subject", ()) for k, v in rdn
                                         if k == "commonName"), None))
        if "system:masters" not in groups:
            self._send(403, {"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403})
            return False
        return True

    def _file(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) == 6 and parts[:2] == ["api", "v1"] and parts[2] == "namespaces" and parts[4] == "configmaps":
            return self.server.store / "configmaps" / f"{parts[5]}.yaml", parts[3]
        return None, None

    def _object(self, path: Path, namespace: str):
        import yaml
        obj = yaml.safe_load(path.read_text())
        if obj.get("metadata", {}).get("namespace") != namespace:
            return None
        obj["metadata"].setdefault("resourceVersion", str(path.stat().st_mtime_ns))
        obj["metadata"].setdefault("uid", "00000000-0000-0000-0000-000000000001")
        return obj

    def do_GET(self):
        if not self._authorised():
            return
        self.server.paths.append(self.path)
        route = self.path.split("?")[0].rstrip("/")
        discovery = {
            "/version": {"major": "1", "minor": "32", "gitVersion": "v1.32.4"},
            "/api": {"kind": "APIVersions", "versions": ["v1"],
                     "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
            "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
            "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "configmaps", "singularName": "configmap", "namespaced": True, "kind": "ConfigMap",
                 "verbs": ["get", "list", "patch", "update"], "shortNames": ["cm"]}]},
        }
        if route in discovery:
            self._send(200, discovery[route])
            return
        path, namespace, obj = self._stored()
        if obj is not None:
            self._send(200, obj)

    def _stored(self):
        """The requested object's file, namespace and content; a 404 already sent when it is not stored."""
        path, namespace = self._file()
        obj = self._object(path, namespace) if path is not None and path.is_file() else None
        if obj is None:
            self._send(404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404})
        return path, namespace, obj

    def _write(self, merge: bool):
        import yaml
        if not self._authorised():
            return
        path, namespace, obj = self._stored()
        if obj is None:
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if merge:
            for key, value in (body.get("data") or {}).items():
                if value is None:
                    obj["data"].pop(key, None)
                else:
                    obj["data"][key] = value
        else:
            obj["data"] = body.get("data", {})
        obj["metadata"].pop("resourceVersion", None)
        obj["metadata"].pop("uid", None)
        path.write_text(yaml.safe_dump(obj, sort_keys=False))
        self.server.writes.append(self.command)
        self._send(200, self._object(path, namespace))

    def do_PATCH(self):
        self._write(merge=True)

    def do_PUT(self):
        self._write(merge=False)

    def log_message(self, *args):
        pass


@contextmanager
def file_store_apiserver(cert: Path, key: Path, client_ca: Path, store: Path, port: int = 0):
    """A local HTTPS server on 127.0.0.1 (as compose publishes the apiserver) with the apiserver's
    serving certificate, demanding client certificates of `client_ca`, serving ConfigMaps from the
    file store `store`. Yields the server (its .port, .callers, .writes)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.load_verify_locations(client_ca)
    context.verify_mode = ssl.CERT_REQUIRED
    server = ThreadingHTTPServer(("127.0.0.1", port), _ConfigMapHandler)
    server.store, server.callers, server.writes, server.paths = store, [], [], []
    server.port = server.server_address[1]
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.handle_error = lambda *a: None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
