"""`watch`: the renewal loop compose runs beside the stack. With short lifetimes made on purpose
(no sleeping), one pass renews exactly the leaf inside RENEW_BEFORE and what is made from it,
keeps every other file byte-identical, names the services to restart, and exits non-zero when
something cannot be renewed."""
from __future__ import annotations

import dataclasses
import fcntl
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import run_cli, snapshot

from higress_init import settings as settings_mod
from higress_init.pki import artifacts, primitives

FAST = {"CA_KEY_ALGORITHM": "ecdsa-p256", "LEAF_KEY_ALGORITHM": "ecdsa-p256"}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    volumes = tmp_path_factory.mktemp("watch") / "volumes"
    run_cli("run", volumes=volumes, env=FAST, check=True)
    return volumes


@pytest.fixture
def stack(template, tmp_path) -> Path:
    import shutil
    shutil.copytree(template, tmp_path / "volumes", symlinks=True)
    return tmp_path / "volumes"


def shorten(volumes: Path, name: str, days: int = 2) -> None:
    """Re-issue one leaf, same key and CA, with only `days` to live: it is now inside RENEW_BEFORE."""
    spec = artifacts.SPECS[name]
    ca = artifacts.SPECS[spec.issuer]
    settings = settings_mod.load(env=dict(FAST, VOLUMES_ROOT=str(volumes)))
    ca_cert = primitives.load_certs((volumes / ca.cert_file).read_bytes())[0]
    ca_key = primitives.load_key((volumes / ca.key_file).read_bytes())
    key = primitives.load_key((volumes / spec.key_file).read_bytes())
    request = dataclasses.replace(spec.request(settings), validity=timedelta(days=days))
    cert = primitives.issue(request, key, ca_cert, ca_key, primitives.utcnow())
    pem = primitives.cert_to_pem(cert) + (primitives.cert_to_pem(ca_cert) if spec.chain else b"")
    (volumes / spec.cert_file).write_bytes(pem)  # same inode: owner and mode kept


def watch_once(volumes: Path, env=None):
    return run_cli("watch", "--once", volumes=volumes, env=dict(FAST, **(env or {})))


def files(volumes: Path) -> dict:
    return {k: v for k, v in snapshot(volumes).items() if not k.startswith("backup/")}


# leaf -> (files a renewal changes, services told to restart)
CASES = {
    "apiserver": ({"api/server.crt", "api/server.key"}, []),
    "apiserver-controller": ({"controller/kube/client.crt", "controller/kube/client.key"}, []),
    "apiserver-pilot": ({"pilot/kube/client.crt", "pilot/kube/client.key"}, []),
    "apiserver-console": ({"pki/console.crt", "pki/console.key", "console/kube/config"}, ["console"]),
    "gateway": ({"gateway/certs/cert-chain.pem", "gateway/certs/key.pem"}, []),
}


@pytest.mark.parametrize("leaf", CASES)
def test_watch_renews_the_leaf_inside_the_window_and_nothing_else(stack, leaf):
    shorten(stack, leaf)
    before = files(stack)
    result = watch_once(stack)
    assert result.returncode == 0, result.stdout + result.stderr
    after = files(stack)
    changed = {k for k in after if after[k] != before.get(k)} | (before.keys() - after.keys())
    wanted, restart = CASES[leaf]
    assert changed == wanted, changed
    cert = primitives.load_certs((stack / artifacts.SPECS[leaf].cert_file).read_bytes())[0]
    assert primitives.expires(cert) - primitives.utcnow() > timedelta(days=300)  # a full lifetime again
    for rel in wanted:  # same mode as before
        assert after[rel][2] == before[rel][2], rel
    if restart:
        assert "docker compose restart " + " ".join(restart) in result.stdout
    else:
        assert "docker compose restart" not in result.stdout
        assert "without a restart" in result.stdout
    assert run_cli("status", volumes=stack, env=FAST).returncode == 0
    # the old files were kept in backup/
    assert any(p.name == Path(artifacts.SPECS[leaf].cert_file).name for p in (stack / "backup").rglob("*"))
    # a second pass has nothing to do
    again = watch_once(stack)
    assert again.returncode == 0 and files(stack) == after


def test_watch_with_nothing_due_changes_nothing(stack):
    before = snapshot(stack)
    result = watch_once(stack)
    assert result.returncode == 0, result.stderr
    assert snapshot(stack) == before
    assert "docker compose restart" not in result.stdout


def test_watch_takes_the_initializers_lock(stack):
    shorten(stack, "gateway")
    old = (stack / "gateway/certs/cert-chain.pem").read_bytes()
    lock = os.open(stack / ".higress-init/lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NACOS_", "VOLUMES_", "CONFIG_STORAGE"))}
    env.update(FAST)
    proc = subprocess.Popen([sys.executable, "-m", "higress_init", "watch", "--once", "--volumes", str(stack)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("watch: pass at ")   # each pass is timestamped
        line = proc.stdout.readline()  # blocks until watch reports that it waits
        assert "waiting for the lock" in line, line
        assert (stack / "gateway/certs/cert-chain.pem").read_bytes() == old
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
    assert proc.wait(120) == 0, proc.stderr.read()
    assert (stack / "gateway/certs/cert-chain.pem").read_bytes() != old


def test_watch_exits_non_zero_when_a_due_leaf_cannot_be_renewed(stack):
    shorten(stack, "apiserver-pilot")
    (stack / "pki/apiserver-ca.key").unlink()  # an externally managed CA: nothing here can sign
    before = snapshot(stack)
    for args in (["--once"], ["--interval", "1s"]):  # the loop ends at the first failure, too
        result = run_cli("watch", *args, volumes=stack, env=FAST, timeout=120)
        assert result.returncode != 0
        assert "pilot/kube/client.crt" in result.stderr, result.stderr
        assert snapshot(stack) == before


def test_watch_exits_non_zero_when_a_ca_comes_within_renew_before(tmp_path):
    volumes = tmp_path / "volumes"
    short = dict(CA_VALIDITY="60d", INTERMEDIATE_VALIDITY="50d", CERT_VALIDITY="40d", TOKEN_VALIDITY="40d",
                 RENEW_BEFORE="10d")
    run_cli("run", volumes=volumes, env=dict(FAST, **short), check=True)
    # now every CA has less than RENEW_BEFORE to live: leaves are renewed, the CAs cannot be
    longer = dict(CA_VALIDITY="3650d", INTERMEDIATE_VALIDITY="730d", CERT_VALIDITY="400d", TOKEN_VALIDITY="400d",
                  RENEW_BEFORE="100d")
    changes = [arg for name in longer for arg in ("--change-setting", name)]
    result = run_cli("watch", "--once", *changes, volumes=volumes, env=dict(FAST, **longer))
    assert result.returncode == 1, result.stdout + result.stderr
    for ca in ("apiserver-ca", "pilot-root-ca", "pilot-ca"):
        assert f"cannot renew {ca}" in result.stderr, result.stderr
    assert "rotate root" in result.stderr
    # the time left in status's words (59d, 49d), never whole days of 0 or -1
    assert "expires within 100d (59d left)" in result.stderr and "(49d left)" in result.stderr, result.stderr


def test_watch_rejects_a_bad_interval(stack):
    result = run_cli("watch", "--interval", "soon", volumes=stack, env=FAST)
    assert result.returncode == 2 and "--interval" in result.stderr


def _held(proc, pause: Path, point: str) -> Path:
    """Wait (bounded) until `proc` holds at `point`; the file that resumes it."""
    import time
    marker = pause / (point.replace(":", "_") + ".paused")
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists(), proc.communicate()
    return pause / (point.replace(":", "_") + ".resume")


def test_watch_once_during_a_rotation_waits_for_it_instead_of_judging_half_renamed_files(stack, tmp_path):
    """watch --once finds nothing changed and is about to judge the files; `rotate intermediate`
    starts and is held between two renames of its commit (the new pilot CA in place, the gateway
    certificate still the old one's). watch waits for the lock, then judges the finished rotation
    and passes (it judged without the lock, half-way through the renames, and failed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NACOS_", "VOLUMES_", "CONFIG_STORAGE"))}
    env.update(FAST)
    assert run_cli("run", volumes=stack, env=FAST, check=True)   # recorded: watch finds nothing changed
    (tmp_path / "w").mkdir()
    (tmp_path / "r").mkdir()
    watch = subprocess.Popen([sys.executable, "-m", "higress_init", "watch", "--once", "--volumes", str(stack)],
                             env={**env, "HIGRESS_INIT_PAUSE_AT": f"watch:judge={tmp_path / 'w'}"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    resume_watch = _held(watch, tmp_path / "w", "watch:judge")
    point = "rename:cert-chain.pem"
    rotate = subprocess.Popen([sys.executable, "-m", "higress_init", "rotate", "intermediate", "--volumes", str(stack)],
                              env={**env, "HIGRESS_INIT_PAUSE_AT": f"{point}={tmp_path / 'r'}"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    resume_rotate = _held(rotate, tmp_path / "r", point)
    resume_watch.touch()
    line = watch.stdout.readline()
    while line and "waiting for the lock" not in line:
        line = watch.stdout.readline()
    assert "waiting for the lock" in line, watch.communicate()
    resume_rotate.touch()
    assert rotate.wait(120) == 0, rotate.communicate()
    out, err = watch.communicate(timeout=120)
    assert watch.returncode == 0, out + err


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port: int, proc, deadline: float = 60.0) -> str:
    """The real endpoint of the running watch, once its first pass has been served."""
    import time
    import urllib.request
    end = time.monotonic() + deadline
    while True:
        assert proc.poll() is None, proc.communicate()
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            if "higress_init_watch_last_run_success 1.0" in text:
                return text
        except OSError:
            pass
        assert time.monotonic() < end, "no metrics served"
        time.sleep(0.2)


def _samples(text: str) -> dict:
    """{(metric, name label): value} from the exposition format, parsed by prometheus_client."""
    from prometheus_client.parser import text_string_to_metric_families
    return {(s.name, s.labels.get("name", "")): (s.value, s.labels)
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_watch_serves_prometheus_metrics_for_every_certificate_token_and_ca(stack):
    import signal
    import time
    shorten(stack, "gateway")   # due: the first pass renews it
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NACOS_", "VOLUMES_", "CONFIG_STORAGE"))}
    env.update(FAST, METRICS_PORT=str(port))
    proc = subprocess.Popen([sys.executable, "-m", "higress_init", "watch", "--interval", "1h", "--volumes",
                             str(stack)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        samples = _samples(_scrape(port, proc))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    now = time.time()
    gateway = primitives.load_certs((stack / "gateway/certs/cert-chain.pem").read_bytes())[0]
    value, labels = samples[("higress_init_certificate_expiration_timestamp_seconds", "gateway")]
    assert value == gateway.not_valid_after_utc.timestamp()   # the renewed certificate, not the shortened one
    assert labels == {"name": "gateway", "path": "gateway/certs/cert-chain.pem", "ca": "false",
                      "issuer": primitives.describe_name(gateway, "issuer")}
    assert samples[("higress_init_certificate_last_renewal_timestamp_seconds", "gateway")][0] == \
        gateway.not_valid_before_utc.timestamp()
    left = samples[("higress_init_certificate_expires_in_seconds", "gateway")][0]
    assert 363 * 86400 < left <= gateway.not_valid_after_utc.timestamp() - now + 5
    # every certificate, CA and token the product manages
    names = {name for (metric, name) in samples if metric == "higress_init_certificate_expiration_timestamp_seconds"}
    assert {spec.name for spec in artifacts.CERTIFICATES} <= names, names
    assert samples[("higress_init_certificate_expiration_timestamp_seconds", "pilot-root-ca")][1]["ca"] == "true"
    tokens = {name for (metric, name) in samples if metric == "higress_init_token_expiration_timestamp_seconds"}
    assert tokens == {"token gateway", "token console", "token controller"}, tokens
    assert samples[("higress_init_token_ready", "token console")][0] == 1.0
    assert samples[("higress_init_watch_last_run_success", "")][0] == 1.0
    assert now - 120 < samples[("higress_init_watch_last_run_timestamp_seconds", "")][0] <= now
    # text mode: every pass is timestamped, and the port is named
    assert "watch: Prometheus metrics on port" in out
    assert re.search(r"^watch: pass at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", out, re.M), out


def test_metrics_port_is_validated_and_a_port_in_use_is_one_line(stack):
    import socket
    result = run_cli("watch", volumes=stack, env=dict(FAST, METRICS_PORT="70000"))
    assert result.returncode == 2 and "METRICS_PORT='70000': expected a port from 1 to 65535" in result.stderr
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("watch", "--interval", "1h", volumes=stack, env=dict(FAST, METRICS_PORT=str(port)))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"METRICS_PORT={port}: cannot listen" in result.stderr


def test_compose_exposes_the_metrics_on_the_stack_network_only():
    import yaml
    from conftest import REPO
    compose = yaml.safe_load((REPO / "compose/docker-compose.yml").read_text())
    watch = compose["services"]["watch"]
    assert watch["expose"] == ["${METRICS_PORT:-9793}"] and "ports" not in watch
    assert watch["environment"]["METRICS_PORT"] == "${METRICS_PORT:-9793}"
