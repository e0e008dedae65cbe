"""runstate: a rerun with nothing changed skips the work; any change takes the full path."""
from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from conftest import run_cli, snapshot

from higress_init.run import runstate
from higress_init.settings import load

UNCHANGED = "nothing the local phases read has changed"


@pytest.fixture
def settled(initialized):
    """An initialized volumes dir after one rerun: a copied tree has new inodes and ctimes, so
    its first rerun takes the full path (and records what it saw)."""
    result = run_cli("run", volumes=initialized, check=True)
    assert UNCHANGED not in result.stdout
    return initialized


def test_a_rerun_with_nothing_changed_takes_the_fast_path(settled):
    before = snapshot(settled)
    result = run_cli("run", volumes=settled, check=True)
    assert UNCHANGED in result.stdout
    assert "kept 40, skipped 2" in result.stdout.splitlines()[-1]
    assert snapshot(settled) == before


def test_a_file_changed_behind_its_back_takes_the_full_path(settled):
    initialized = settled
    key = initialized / "gateway/certs/key.pem"
    st = key.stat()
    key.write_bytes((initialized / "api/server.key").read_bytes())  # a different key, then the old timestamps put back
    os.utime(key, ns=(st.st_atime_ns, st.st_mtime_ns))
    result = run_cli("run", volumes=initialized, check=True)
    assert UNCHANGED not in result.stdout and "re-issued 1" in result.stdout
    assert UNCHANGED in run_cli("run", volumes=initialized, check=True).stdout


def test_a_settings_change_takes_the_full_path(settled):
    initialized = settled
    result = run_cli("run", "--change-setting", "APISERVER_SANS", volumes=initialized,
                     env={"APISERVER_SANS": "extra.example"}, check=True)
    assert UNCHANGED not in result.stdout and "re-issued 1" in result.stdout


def test_a_missing_file_takes_the_full_path(settled):
    initialized = settled
    (initialized / "console/token").unlink()
    result = run_cli("run", volumes=initialized, check=True)
    assert UNCHANGED not in result.stdout and (initialized / "console/token").exists()


def test_the_renewal_deadline_ends_the_fast_path(settled):
    settings = load(env={"VOLUMES_ROOT": str(settled)})
    now = datetime.now(UTC)
    assert runstate.unchanged(settings, now) is not None
    # the earliest leaf expires in 365 days and is renewed 30 days before
    assert runstate.unchanged(settings, now + timedelta(days=334)) is not None
    assert runstate.unchanged(settings, now + timedelta(days=336)) is None


def test_rotation_and_single_phases_never_take_it_and_plan_says_so(settled):
    initialized = settled
    assert UNCHANGED in run_cli("plan", volumes=initialized, check=True).stdout  # as run would
    assert UNCHANGED not in run_cli("phase", "pod-config", volumes=initialized, check=True).stdout
    assert UNCHANGED not in run_cli("rotate", "leaf", volumes=initialized, check=True).stdout
    assert UNCHANGED not in run_cli("run", volumes=initialized, env={"ROTATE": "leaf"}, check=True).stdout


def test_a_run_after_the_clock_was_ahead_takes_the_full_path(tmp_path, fast_env):
    """Leaves re-issued while the clock was 10 days ahead are valid only from then; once the clock
    is right again, nothing the local phases read has changed, yet those files fail every TLS
    peer: the next run takes the full path and re-issues them."""
    import subprocess
    import sys
    volumes = tmp_path / "volumes"
    run_cli("run", volumes=volumes, env=fast_env, check=True)
    ahead = ("import sys; from datetime import timedelta; from higress_init.cli import main as cli; "
             "from higress_init.run import runner; real = runner.utcnow; "
             "runner.utcnow = lambda: real() + timedelta(days=10); "
             "sys.exit(cli.main(['rotate', 'leaf', '--volumes', sys.argv[1]]))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NACOS_", "CONFIG_STORAGE"))}
    done = subprocess.run([sys.executable, "-c", ahead, str(volumes)], env={**env, **fast_env}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    checked = run_cli("status", volumes=volumes, env=fast_env)
    assert checked.returncode == 1 and "not yet valid" in checked.stdout
    result = run_cli("run", volumes=volumes, env=fast_env, check=True)
    assert UNCHANGED not in result.stdout and "re-issued" in result.stdout
    assert run_cli("status", volumes=volumes, env=fast_env).returncode == 0


# --- the shared pilot CA on the warm path (Nacos storage)
def test_the_shared_ca_files_are_sharedcas():
    from higress_init.store import sharedca
    assert runstate.SHARED_CA_FILES == sharedca.CA_FILES


def _warm_run_in_process(volumes, env) -> list[str]:
    """A warm rerun in a fresh interpreter; its last line: the exit code and whether it imported
    cryptography."""
    import subprocess
    import sys
    code = ("import sys; from higress_init.cli import main as cli; rc = cli.main(['run', '--volumes', sys.argv[1]]); "
            "print(rc, 'cryptography' in sys.modules)")
    full = {k: v for k, v in os.environ.items() if not k.startswith(("NACOS_", "CONFIG_STORAGE"))}
    result = subprocess.run([sys.executable, "-c", code, str(volumes)], env={**full, **env}, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


def test_a_warm_nacos_rerun_checks_the_shared_ca_without_cryptography(rnacos, tmp_path, fast_env):
    """The published Secret is what this host published, the local files what they were: kept,
    from digests alone (no decryption, no certificate parsed)."""
    node = rnacos()
    env = dict(fast_env, **node.client_env(), NACOS_WAIT_TIMEOUT="30s")
    volumes = tmp_path / "v"
    run_cli("run", volumes=volumes, env=env, check=True)
    before = snapshot(volumes)
    out = _warm_run_in_process(volumes, env)
    assert out[-1] == "0 False", out
    assert any(line.startswith("shared-ca") and "kept 2" in line for line in out), out
    assert snapshot(volumes) == before


def test_a_shared_ca_published_again_since_is_decided_in_full(rnacos, tmp_path, fast_env):
    """Another host published the Secret again (same CA, another annotation): the digest no longer
    matches, so sharedca reads and decides it in full; same files, so it is kept and the record
    now holds the new publication's md5."""
    import json

    import yaml

    from higress_init.store import sharedca
    from higress_init.store.base import md5
    from higress_init.store.nacos import layout as nacos_layout
    from higress_init.volume import layout
    node = rnacos()
    env = dict(fast_env, **node.client_env(), NACOS_WAIT_TIMEOUT="30s")
    volumes = tmp_path / "v"
    run_cli("run", volumes=volumes, env=env, check=True)
    key = (volumes / layout.DATA_KEY).read_bytes()
    group = "higress-system"
    raw = node.get_config(sharedca.CACERTS.data_id, group, group)
    secret = yaml.safe_load(nacos_layout.decrypt(raw, key))
    secret["metadata"].setdefault("annotations", {})[sharedca.PUBLISHED_BY] = "another-host"
    again = nacos_layout.encrypt(yaml.safe_dump(secret), key)
    node.publish_config(sharedca.CACERTS.data_id, group, group, again)
    out = _warm_run_in_process(volumes, env)
    assert out[-1] == "0 True", out
    assert any(line.startswith("shared-ca") and "kept 2" in line for line in out), out
    record = json.loads((volumes / layout.SHARED_CA_RECORD).read_text())
    assert record["published_md5"] == md5(again)
