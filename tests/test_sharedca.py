"""The shared pilot CA under faults, on a real Nacos 3.0.1 (Higress 2.2.4's): a run killed (SIGKILL)
or stopped (SIGTERM) at every point between committing its CA and finishing its publication never
leaves a published CA whose keys exist nowhere, nor a state later runs refuse: the rerun completes
the publication, or, when another host published first meanwhile, takes that CA."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import _SETTING_VARS, require_tool, run_cli
from nacos_server import Target, fresh_namespace
from test_multihost import CA_FILES, DATA_KEY, NS, assert_gateway_joins, local_ca, published

from higress_init.pki import primitives

# where a run can end after its commit: before the phase, before the publish answer, after it
FIRST = ("phase:shared-ca", "shared-ca:before-publish", "shared-ca:published")


@pytest.fixture
def node(real_nacos):
    return Target("nacos-3.0.1", real_nacos("3.0.1"), fresh_namespace("faults"))


def env_for(node, **extra) -> dict:
    return {"CA_KEY_ALGORITHM": "ecdsa-p256", "LEAF_KEY_ALGORITHM": "ecdsa-p256", "NACOS_WAIT_TIMEOUT": "60s",
            **node.client_env(), **extra}


def interrupted(args, volumes: Path, env: dict, point: str, how: str, tmp: Path) -> subprocess.CompletedProcess:
    """Run until `point`, then end there: SIGKILL (the fault hook kills the process itself), or
    SIGTERM sent while the run is held at that point (as `docker stop` would)."""
    full = {k: v for k, v in os.environ.items() if k not in _SETTING_VARS}
    full.update(env)
    if how == "SIGKILL":
        full["HIGRESS_INIT_DIE_AT"] = point
        proc = subprocess.run([sys.executable, "-m", "higress_init", *args, "--volumes", str(volumes)], env=full,
                              capture_output=True, text=True, timeout=180)
        assert proc.returncode == -signal.SIGKILL, (point, proc.stdout, proc.stderr)
        return proc
    pause = tmp / f"pause-{point.replace(':', '_')}"
    pause.mkdir(parents=True, exist_ok=True)
    full["HIGRESS_INIT_PAUSE_AT"] = f"{point}={pause}"
    proc = subprocess.Popen([sys.executable, "-m", "higress_init", *args, "--volumes", str(volumes)], env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marker = pause / (point.replace(":", "_") + ".paused")
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists(), proc.communicate()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, (point, out, err)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_recoverable(node, volumes: Path):
    """What Nacos holds is this host's CA, decrypted with this host's data key, and this host holds
    its root key: nothing published exists nowhere."""
    secret = published(node.server, node.ns)
    assert local_ca(volumes) == secret
    root = primitives.load_certs(secret["root-cert.pem"])[0]
    assert primitives.key_matches(root, primitives.load_key((volumes / "pki/pilot-root-ca.key").read_bytes()))
    assert (volumes / "api/nacos.key").read_bytes() == DATA_KEY.encode()


def points():
    """(point, how) for every kill point, SIGKILL and SIGTERM: the fault hook's `phase:` point is
    a kill point only (there is no pause there)."""
    for point in FIRST:
        for how in ("SIGKILL", "SIGTERM"):
            if not (point.startswith("phase:") and how == "SIGTERM"):
                yield point, how


@pytest.mark.parametrize("point,how", list(points()))
def test_first_publication_interrupted_then_the_rerun_completes_it(node, tmp_path, point, how):
    a = tmp_path / "a"
    env = env_for(node, NACOS_DATA_ENC_KEY=DATA_KEY)
    interrupted(["run"], a, env, point, how, tmp_path)
    assert (a / "pki/pilot-root-ca.key").exists(), "the CA is committed before anything is published"
    rerun = run_cli("run", volumes=a, env=env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert_recoverable(node, a)
    status = run_cli("status", volumes=a, env=env)
    assert status.returncode == 0, status.stdout
    # a second host joins it
    b = tmp_path / "b"
    run_cli("run", volumes=b, env=env_for(node, NACOS_DATA_ENC_KEY=DATA_KEY, ROLE="gateway", POD_NAME="gw-b"),
            check=True)
    assert_gateway_joins(b, a, tmp_path, "gw-b")


@pytest.mark.parametrize("point,how", [("shared-ca:before-publish", "SIGKILL"), ("shared-ca:before-publish", "SIGTERM"),
                                       ("shared-ca:adopting", "SIGKILL")])
def test_a_host_interrupted_while_another_publishes_first_takes_that_ca_on_its_rerun(node, tmp_path, point, how):
    """A commits its CA and ends (before publishing; or refused at its publication, while taking
    the winner's) while B publishes: A's rerun discards its own CA (into backup/, root key
    included) and takes B's."""
    a, b = tmp_path / "a", tmp_path / "b"
    env = env_for(node, NACOS_DATA_ENC_KEY=DATA_KEY)
    if point == "shared-ca:adopting":   # A held at its publication, B publishes first, A refused, killed
        full = {k: v for k, v in os.environ.items() if k not in _SETTING_VARS}
        pause = tmp_path / "hold-a"
        pause.mkdir()
        full.update(env, HIGRESS_INIT_PAUSE_AT=f"shared-ca:before-publish={pause}", HIGRESS_INIT_DIE_AT=point)
        held = subprocess.Popen([sys.executable, "-m", "higress_init", "run", "--volumes", str(a)], env=full,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not (pause / "shared-ca_before-publish.paused").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        run_cli("run", volumes=b, env=env, check=True)
        (pause / "shared-ca_before-publish.resume").touch()
        out, err = held.communicate(timeout=120)
        assert held.returncode == -signal.SIGKILL, (out, err)
    else:
        interrupted(["run"], a, env, point, how, tmp_path)
        run_cli("run", volumes=b, env=env, check=True)
    mine = (a / "pilot/cacerts/root-cert.pem").read_bytes()
    assert mine != published(node.server, node.ns)["root-cert.pem"]
    rerun = run_cli("run", volumes=a, env=env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "never published is in backup/" in rerun.stdout, rerun.stdout
    assert local_ca(a) == local_ca(b) == published(node.server, node.ns)
    assert not (a / "pki/pilot-root-ca.key").exists() and (b / "pki/pilot-root-ca.key").exists()
    backed_up = {p.name: p.read_bytes() for p in (a / "backup").rglob("*") if p.is_file()}
    assert backed_up.get("root-cert.pem") == mine and "pilot-root-ca.key" in backed_up
    assert_gateway_joins(a, b, tmp_path, "higress-gateway")
    assert run_cli("status", volumes=a, env=env).returncode == 0


@pytest.mark.parametrize("point,how", [("shared-ca:before-publish", "SIGKILL"), ("shared-ca:published", "SIGKILL"),
                                       ("shared-ca:before-publish", "SIGTERM"), ("shared-ca:published", "SIGTERM")])
def test_rotate_root_interrupted_then_the_rerun_publishes_the_new_root(node, tmp_path, point, how):
    a, b = tmp_path / "a", tmp_path / "b"
    env = env_for(node, NACOS_DATA_ENC_KEY=DATA_KEY)
    gateway = env_for(node, NACOS_DATA_ENC_KEY=DATA_KEY, ROLE="gateway", POD_NAME="gw-b")
    run_cli("run", volumes=a, env=env, check=True)
    run_cli("run", volumes=b, env=gateway, check=True)
    old_root = (a / "pilot/cacerts/root-cert.pem").read_bytes()
    interrupted(["rotate", "root"], a, env, point, how, tmp_path)
    new_root = primitives.load_certs((a / "pilot/cacerts/root-cert.pem").read_bytes())[0]
    assert primitives.key_matches(new_root, primitives.load_key((a / "pki/pilot-root-ca.key").read_bytes())), \
        "the new root and its key are committed before the publication"
    rerun = run_cli("run", volumes=a, env=env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert_recoverable(node, a)
    assert published(node.server, node.ns)["root-cert.pem"] != old_root
    run_cli("run", volumes=b, env=gateway, check=True)
    assert_gateway_joins(b, a, tmp_path, "gw-b")
    assert set(CA_FILES) <= {p.name for p in (a / "pilot/cacerts").iterdir()}


@pytest.fixture
def small_disk(tmp_path):
    """A filesystem of its own for the volumes (tmpfs), so a test can fill it: a real ENOSPC."""
    require_tool("mount", "apt-get install mount")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _full_at_commit(args, volumes: Path, env: dict, tmp: Path) -> subprocess.CompletedProcess:
    """Run until the `write` phase (where the CA is committed, before anything is published), fill the
    disk there, let the run go on."""
    full = {k: v for k, v in os.environ.items() if k not in _SETTING_VARS}
    pause = tmp / "pause-full"
    pause.mkdir(exist_ok=True)
    full.update(env, HIGRESS_INIT_PAUSE_AT=f"phase:write={pause}")
    proc = subprocess.Popen([sys.executable, "-m", "higress_init", *args, "--volumes", str(volumes)], env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (pause / "phase_write.paused").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (pause / "phase_write.paused").exists(), proc.communicate()
    filler = subprocess.run(["dd", "if=/dev/zero", f"of={volumes.parent / 'filler'}", "bs=64k"], capture_output=True)
    assert b"No space left" in filler.stderr, filler.stderr
    (pause / "phase_write.resume").touch()
    out, err = proc.communicate(timeout=120)
    (volumes.parent / "filler").unlink()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_a_full_disk_at_the_first_commit_publishes_nothing_and_the_rerun_completes(node, small_disk, tmp_path):
    a = small_disk / "volumes"
    env = env_for(node, NACOS_DATA_ENC_KEY=DATA_KEY)
    failed = _full_at_commit(["run"], a, env, tmp_path)
    assert failed.returncode == 3, failed.stdout + failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left" in lines[0] and "Traceback" not in failed.stderr, failed.stderr
    assert node.server.get_config("secrets.cacerts", NS, node.ns) is None, "a CA was published that no host committed"
    assert not (a / "pki/pilot-root-ca.key").exists() and not list(a.rglob(".higress-init-tmp.*"))
    rerun = run_cli("run", volumes=a, env=env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert_recoverable(node, a)
    b = tmp_path / "b"
    run_cli("run", volumes=b, env=env_for(node, NACOS_DATA_ENC_KEY=DATA_KEY, ROLE="gateway", POD_NAME="gw-b"),
            check=True)
    assert_gateway_joins(b, a, tmp_path, "gw-b")


def test_a_full_disk_at_the_commit_of_rotate_root_keeps_the_old_root_everywhere(node, small_disk, tmp_path):
    a = small_disk / "volumes"
    env = env_for(node, NACOS_DATA_ENC_KEY=DATA_KEY)
    run_cli("run", volumes=a, env=env, check=True)
    before = {p: (a / "pilot/cacerts" / p).read_bytes() for p in CA_FILES}
    root_key = (a / "pki/pilot-root-ca.key").read_bytes()
    failed = _full_at_commit(["rotate", "root"], a, env, tmp_path)
    assert failed.returncode == 3 and "No space left" in failed.stderr, failed.stdout + failed.stderr
    assert {p: (a / "pilot/cacerts" / p).read_bytes() for p in CA_FILES} == before
    assert (a / "pki/pilot-root-ca.key").read_bytes() == root_key
    assert published(node.server, node.ns)["root-cert.pem"] == before["root-cert.pem"]
    run_cli("rotate", "root", volumes=a, env=env, check=True)
    assert_recoverable(node, a)
    assert published(node.server, node.ns)["root-cert.pem"] != before["root-cert.pem"]


@pytest.mark.parametrize("stamp", ["2026-01-01T00:00:00", "yesterday", 7, None])
def test_a_publication_time_without_a_zone_or_not_a_time_has_no_age(stamp):
    """A Secret cacerts made elsewhere (kubectl) may carry any annotation: no age, never a crash."""
    from higress_init.store import sharedca
    obj = {"metadata": {"annotations": {sharedca.PUBLISHED_AT: stamp}}}
    assert sharedca.Published(raw="", obj=obj, files={}).age() is None
    aware = {"metadata": {"annotations": {sharedca.PUBLISHED_AT: "2026-01-01T00:00:00Z"}}}
    assert sharedca.Published(raw="", obj=aware, files={}).age() > 0
