"""Hostile volumes, links and file types: whatever a component planted in a shared volume (a
symlink to a file or directory, a link into pki/, a hard link, a FIFO, a device, an oversized
file), the initializer refuses it with exit 3 naming the path, never follows it, and changes
nothing outside the volumes root; `status` says the same."""
from __future__ import annotations

import os
import shutil
import stat

import pytest
from conftest import run_cli
from hostile import make_victim, one_line_error, state_of, status

REFUSED = 3


def _replace_with_link(volumes, rel, target):
    path = volumes / rel
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    path.symlink_to(target)


def _link_file(v, victim):
    _replace_with_link(v, "gateway/tokens/istio-token", victim / "secret")
    return "gateway/tokens/istio-token", "symbolic link"


def _link_dir(v, victim):
    _replace_with_link(v, "gateway/certs", victim)
    return "gateway/certs", "symbolic link"


def _link_mesh_into_pki(v, victim):
    _replace_with_link(v, "pilot/config/mesh", "../../pki/apiserver-ca.key")
    return "pilot/config/mesh", "symbolic link"


def _link_in_pki(v, victim):
    _replace_with_link(v, "pki/sa.key", victim / "secret")
    return "pki/sa.key", "symbolic link"


def _pki_is_a_link(v, victim):
    shutil.copytree(v / "pki", victim / "sub/pki")
    _replace_with_link(v, "pki", victim / "sub/pki")
    return "pki", "symbolic link"


def _link_ca_cert(v, victim):
    _replace_with_link(v, "api/ca.crt", victim / "secret")
    return "api/ca.crt", "symbolic link"


def _link_in_file_store(v, victim):
    _replace_with_link(v, "data/configmaps/higress-config.yaml", victim / "sub/config.yaml")
    return "data/configmaps/higress-config.yaml", "symbolic link"


def _hard_link_key(v, victim):
    (v / "api/server.key").unlink()
    os.link(victim / "secret", v / "api/server.key")
    return "api/server.key", "hard link"


def _hard_link_token(v, victim):
    (v / "console/token").unlink()
    os.link(victim / "secret", v / "console/token")
    return "console/token", "hard link"


def _fifo_token(v, victim):
    (v / "console/token").unlink()
    os.mkfifo(v / "console/token")
    return "console/token", "FIFO"


def _fifo_mesh(v, victim):
    (v / "pilot/config/mesh").unlink()
    os.mkfifo(v / "pilot/config/mesh")
    return "pilot/config/mesh", "FIFO"


def _device_kubeconfig(v, victim):
    (v / "kube/config").unlink()
    os.mknod(v / "kube/config", stat.S_IFCHR | 0o600, os.makedev(1, 5))  # what /dev/zero is
    return "kube/config", "device"


def _socket_jwks(v, victim):
    import socket
    (v / "tokens/jwks.json").unlink()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(v / "tokens/jwks.json"))
    sock.close()
    return "tokens/jwks.json", "socket"


def _oversized_cert(v, victim):
    with open(v / "api/ca.crt", "ab") as f:
        f.truncate(5 * 1024 * 1024)
    return "api/ca.crt", "larger than"


def _directory_for_file(v, victim):
    (v / "tokens/sa.pub").unlink()
    (v / "tokens/sa.pub").mkdir()
    return "tokens/sa.pub", "directory"


def _file_for_directory(v, victim):
    shutil.rmtree(v / "gateway/podinfo")
    (v / "gateway/podinfo").write_bytes(b"not a directory")
    return "gateway/podinfo", "regular file"


PLANTS = [_link_file, _link_dir, _link_mesh_into_pki, _link_in_pki, _pki_is_a_link, _link_ca_cert,
          _link_in_file_store, _hard_link_key, _hard_link_token, _fifo_token, _fifo_mesh, _device_kubeconfig,
          _socket_jwks, _oversized_cert, _directory_for_file, _file_for_directory]


@pytest.mark.parametrize("plant", PLANTS, ids=lambda f: f.__name__.strip("_"))
def test_a_planted_link_or_foreign_file_is_refused_naming_it(plant, initialized, tmp_path):
    victim = make_victim(tmp_path)
    rel, kind = plant(initialized, victim)
    before = state_of(victim)
    # a hang on a FIFO would show as the subprocess timeout
    result = run_cli("run", "--change-setting", "VOLUMES_UID", "--change-setting", "VOLUMES_GID", volumes=initialized,
                     env={"VOLUMES_UID": "4321", "VOLUMES_GID": "4321"}, timeout=300)
    assert result.returncode == REFUSED, result.stderr
    line = one_line_error(result, str(initialized / rel), kind, "refused")
    assert state_of(victim) == before
    checked = status(initialized)
    assert checked.returncode == REFUSED and one_line_error(checked) == line
    assert state_of(victim) == before
    for config in (initialized / "data").rglob("*.yaml"):
        assert b"PRIVATE KEY" not in config.read_bytes()


def test_a_link_that_is_not_a_managed_file_is_left_alone(initialized, tmp_path):
    """gateway/tokens/evil -> a host file: not managed, so not refused, and never chowned."""
    victim = make_victim(tmp_path)
    (initialized / "gateway/tokens/evil").symlink_to(victim / "secret")
    os.link(victim / "sub/config.yaml", initialized / "gateway/tokens/hard")
    before = state_of(victim)
    run_cli("run", "--change-setting", "VOLUMES_UID", "--change-setting", "VOLUMES_GID", volumes=initialized,
            env={"VOLUMES_UID": "4321", "VOLUMES_GID": "4322"}, check=True)
    assert state_of(victim) == before
    assert (initialized / "gateway/tokens/istio-token").stat().st_uid == 4321
    assert status(initialized, env={"VOLUMES_UID": "4321", "VOLUMES_GID": "4322"}).returncode == 0


def test_links_at_predictable_temporary_names_are_never_written_through(initialized, tmp_path):
    """The names older versions used for temporaries, planted as links: the CA key and the
    host file stay what they were; the links are swept away."""
    victim = make_victim(tmp_path)
    ca_key = (initialized / "pki/apiserver-ca.key").read_bytes()
    planted = [initialized / "pki/.higress-init-tmp.apiserver-ca.key", initialized / "api/.higress-init-tmp.server.crt",
               initialized / "api/.higress-init-tmp.server.key", initialized / "kube/.higress-init-tmp.config"]
    planted[0].symlink_to(victim / "secret")
    for link in planted[1:]:
        link.symlink_to(initialized / "pki/apiserver-ca.key")
    before = state_of(victim)
    result = run_cli("rotate", "leaf", volumes=initialized, check=True)
    assert "re-issued" in result.stdout
    assert state_of(victim) == before and (initialized / "pki/apiserver-ca.key").read_bytes() == ca_key
    assert not any(os.path.lexists(link) for link in planted)
    assert status(initialized).returncode == 0


def test_a_backup_folder_that_is_a_link_is_refused_before_any_rename(initialized, tmp_path):
    victim = make_victim(tmp_path)
    (initialized / "backup").symlink_to(victim / "sub")
    server = (initialized / "api/server.crt").read_bytes()
    before = state_of(victim)
    result = run_cli("rotate", "leaf", volumes=initialized)
    assert result.returncode == REFUSED
    one_line_error(result, str(initialized / "backup"), "symbolic link")
    assert state_of(victim) == before and (initialized / "api/server.crt").read_bytes() == server
    (initialized / "backup").unlink()
    run_cli("rotate", "leaf", volumes=initialized, check=True)
    assert (initialized / "api/server.crt").read_bytes() != server and status(initialized).returncode == 0
    backups = [p for p in (initialized / "backup").rglob("*") if p.is_symlink()]
    assert backups == []
