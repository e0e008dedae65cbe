"""Modes and owners: a loosened key, token or directory is reported by `status` and restored by
the next run (the fast path included); umask 000 leaks nothing; the volumes root itself stays
the user's; nothing outside the root is ever chmod-ed or chown-ed."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from conftest import run_cli
from hostile import make_victim, state_of, status

PRIVATE = ["pki/apiserver-ca.key", "pki/pilot-root-ca.key", "pilot/cacerts/ca-key.pem", "gateway/certs/key.pem",
           "api/server.key", "pki/admin.key", "pki/sa.key", "api/nacos.key", "kube/config", "console/token",
           "controller/token", "gateway/tokens/istio-token"]
PUBLIC = ["api/ca.crt", "tokens/jwks.json", "pilot/config/mesh", "gateway/certs/root-cert.pem"]
DIRS = ["api", "pki", "gateway/certs", "tokens/.well-known", "pilot/cacerts", "data/configmaps"]
UNCHANGED = "nothing the local phases read has changed"


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _expected_file_mode(rel: str) -> int:
    private = rel.endswith((".key", "key.pem", "kube/config", "kube/host.config", "token", "istio-token")) \
        or rel.startswith("data/secrets/")
    return 0o600 if private else 0o644


def _expected_dir_mode(rel: str) -> int:
    from higress_init import readers
    own = {folder: mode for reader in readers.READERS for folder, mode in reader.writes}
    if rel in own:  # a folder a component writes into keeps the mode its user needs, run after run
        return own[rel]
    return 0o700 if rel.split("/")[0] in ("pki", ".higress-init", "backup") else 0o755


def _loosen(volumes, rel, mode):
    os.chmod(volumes / rel, mode)
    return rel


@pytest.fixture
def settled(initialized):
    run_cli("run", volumes=initialized, check=True)
    assert UNCHANGED in run_cli("run", volumes=initialized, check=True).stdout
    return initialized


@pytest.mark.parametrize("rel,mode", [(r, 0o644) for r in PRIVATE] + [(r, 0o666) for r in PUBLIC] +
                         [("tokens/jwks.json", 0o4755), ("api/server.key", 0o2600)] + [(d, 0o777) for d in DIRS],
                         ids=lambda v: v if isinstance(v, str) else f"{v:04o}")
def test_a_loosened_mode_is_reported_and_restored_even_on_the_fast_path(rel, mode, settled, tmp_path):
    victim = make_victim(tmp_path)
    (settled / "gateway/tokens/evil").symlink_to(victim / "secret")  # a link beside it: never chmod-ed
    before = state_of(victim)
    _loosen(settled, rel, mode)
    checked = status(settled)
    assert checked.returncode == 1 and "mode" in checked.stdout and f"{mode:04o}" in checked.stdout
    result = run_cli("run", volumes=settled, check=True)
    assert UNCHANGED not in result.stdout  # the record covers modes: never the fast path here
    want = _expected_dir_mode(rel) if (settled / rel).is_dir() else _expected_file_mode(rel)
    assert _mode(settled / rel) == want
    assert status(settled).returncode == 0
    assert state_of(victim) == before


def test_a_changed_owner_is_reported_and_restored(settled, tmp_path):
    env = {"VOLUMES_UID": "4321", "VOLUMES_GID": "4322"}
    victim = make_victim(tmp_path)
    os.link(victim / "secret", settled / "gateway/tokens/hard")  # not managed: left alone
    before = state_of(victim)
    run_cli("run", "--change-setting", "VOLUMES_UID", "--change-setting", "VOLUMES_GID", volumes=settled, env=env,
            check=True)
    os.chown(settled / "gateway/certs", 0, 0)
    os.chown(settled / "pki/apiserver-ca.key", 4321, 4322)   # as a run before this rule left it
    checked = status(settled, env=env)
    assert checked.returncode == 1 and "owned by 0:0" in checked.stdout and "root's alone" in checked.stdout
    run_cli("run", volumes=settled, env=env, check=True)
    st = os.lstat(settled / "gateway/certs")
    assert (st.st_uid, st.st_gid) == (4321, 4322)
    st = os.lstat(settled / "pki/apiserver-ca.key")
    assert (st.st_uid, st.st_gid) == (0, 0)
    assert status(settled, env=env).returncode == 0
    root = os.lstat(settled)
    assert (root.st_uid, root.st_gid) == (0, 0)  # the volumes root itself is the user's
    assert state_of(victim) == before


def test_keys_no_component_needs_stay_roots_whatever_volumes_uid_says(tmp_path, fast_env):
    """With the compose default VOLUMES_UID=1337 (controller, pilot), the CA keys, the token
    signing key, the admin key (pki/) and the data key are root's, 0600 (pki/ itself 0700); the
    keys a uid-1337 component mounts are its."""
    volumes = tmp_path / "volumes"
    env = dict(fast_env, VOLUMES_UID="1337", VOLUMES_GID="1337")
    run_cli("run", volumes=volumes, env=env, check=True)
    root_only = ["pki/apiserver-ca.key", "pki/pilot-root-ca.key", "pki/sa.key", "pki/admin.key", "api/nacos.key"]
    for rel in root_only:
        st = os.lstat(volumes / rel)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o600), rel
    st = os.lstat(volumes / "pki")
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o700)
    assert all(p.stat().st_uid == 0 for p in (volumes / "pki").rglob("*"))
    for rel in ("pilot/cacerts/ca-key.pem", "pilot/kube/client.key", "controller/kube/client.key"):
        assert os.lstat(volumes / rel).st_uid == 1337, rel
    assert status(volumes, env=env).returncode == 0


def test_umask_000_leaks_no_open_mode(tmp_path, fast_env):
    volumes = tmp_path / "volumes"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NACOS_", "VOLUMES_", "CONFIG_STORAGE"))}
    env.update(fast_env)
    for args in (["run"], ["rotate", "leaf"], ["run"]):
        subprocess.run([sys.executable, "-m", "higress_init", *args, "--volumes", str(volumes)], env=env, check=True,
                       preexec_fn=lambda: os.umask(0), capture_output=True, timeout=300)
    checked = [volumes]
    for path in volumes.rglob("*"):
        rel = str(path.relative_to(volumes))
        mode = _mode(path)
        if path.is_dir():
            assert mode == _expected_dir_mode(rel), rel
        elif rel.startswith((".higress-init/", "backup/")) or rel.startswith("pki/") and rel.endswith(".key"):
            assert mode == 0o600, rel
        else:
            assert mode == _expected_file_mode(rel), rel
        checked.append(path)
    assert _mode(volumes) == 0o755
    assert (volumes / ".higress-init/last-run.json").exists() and list((volumes / "backup").rglob("*.crt"))
    assert status(volumes, env=fast_env).returncode == 0


def test_the_folders_components_write_are_the_ones_the_file_policy_keeps_writable():
    """readers.READERS says which folders each component writes (the writable-dirs phase makes
    them); layout.WRITABLE_DIRS is what the file policy (ownership, status, the temporaries' sweep)
    keeps at their own mode. A folder in one and not the other would be made, then reset to 0755."""
    from higress_init import readers
    from higress_init.volume import layout
    assert {w for reader in readers.READERS for w in reader.writes} == set(layout.WRITABLE_DIRS)
