"""Settings that would make broken artifacts, or reach outside the volumes: each is refused with
one line naming the setting (exit 2) before anything is written; secrets read from <NAME>_FILE
are regular files read with a bound (a FIFO or /dev/zero is an error, not a hang)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import run_cli
from hostile import make_victim, one_line_error, state_of

BAD_INPUT = 2

CASES = [
    ({"APISERVER_SANS": "foo\n.example.com"}, "APISERVER_SANS"),
    ({"APISERVER_SANS": "foo.example.com\n"}, None),  # a trailing newline is only whitespace: allowed
    ({"TRUST_DOMAIN": "cluster\n.local"}, "TRUST_DOMAIN"),
    ({"HIGRESS_NAMESPACE": "higress-system\nx"}, "HIGRESS_NAMESPACE"),
    ({"GATEWAY_SERVICE_ACCOUNT": "gw\n"}, None),
    ({"GATEWAY_SERVICE_ACCOUNT": "gw\nx"}, "GATEWAY_SERVICE_ACCOUNT"),
    ({"NACOS_NS": "public\nx"}, "NACOS_NS"),
    ({"INTERMEDIATE_VALIDITY": "20d", "CERT_VALIDITY": "365d"}, "CERT_VALIDITY"),        # a leaf outliving its CA
    ({"INTERMEDIATE_VALIDITY": "20d", "CERT_VALIDITY": "10d", "RENEW_BEFORE": "30d"}, "RENEW_BEFORE"),
    ({"CA_VALIDITY": "99999999999999999999d"}, "CA_VALIDITY"),                          # overflowing durations
    ({"CERT_VALIDITY": "999999999999d"}, "CERT_VALIDITY"),
    ({"TOKEN_VALIDITY": "36501d"}, "TOKEN_VALIDITY"),
    ({"NACOS_WAIT_TIMEOUT": "١٠s"}, "NACOS_WAIT_TIMEOUT"),                               # non-ASCII digits
    ({"APISERVER_SANS": "fe80::1%eth0"}, "APISERVER_SANS"),                             # scoped IPv6
    ({"TOKEN_IDENTITIES": "x=api/ca.crt:sa:aud"}, "TOKEN_IDENTITIES"),                 # a managed file
    ({"TOKEN_IDENTITIES": "x=gateway/certs/key.pem:sa:aud"}, "TOKEN_IDENTITIES"),
    ({"TOKEN_IDENTITIES": "x=data/configmaps/higress-config.yaml:sa:aud"}, "TOKEN_IDENTITIES"),
    ({"TOKEN_IDENTITIES": "x=.higress-init/journal.json:sa:aud"}, "TOKEN_IDENTITIES"),
    ({"TOKEN_IDENTITIES": "x=kube/config:sa:aud"}, "TOKEN_IDENTITIES"),
    ({"TOKEN_IDENTITIES": "x=gateway/./token:sa:aud"}, "TOKEN_IDENTITIES"),
    ({"FILE_ROOT_DIR": "/etc"}, "FILE_ROOT_DIR"),                                       # outside the root
    ({"FILE_ROOT_DIR": "../store"}, "FILE_ROOT_DIR"),
    ({"FILE_ROOT_DIR": "pki"}, "FILE_ROOT_DIR"),
    ({"APISERVER_URL": "https://apiserver:99999"}, "APISERVER_URL"),
    ({"APISERVER_URL": "https://apiserver:8443/?x=1"}, "APISERVER_URL"),
    ({"APISERVER_URL": "https://apiserver:8443/#top"}, "APISERVER_URL"),
    ({"APISERVER_URL": "https://admin:pw@apiserver:8443"}, "APISERVER_URL"),
    ({"APISERVER_URL": "https://apiserver:8443/\nx"}, "APISERVER_URL"),
    ({"TOKEN_ISSUER": "https://issuer.example:65536"}, "TOKEN_ISSUER"),
    ({"TOKEN_ISSUER": "https://issuer.example/?a=b"}, "TOKEN_ISSUER"),
    ({"TOKEN_ISSUER": "https://issuer.example/#f"}, "TOKEN_ISSUER"),
    ({"VOLUMES_UID": "²"}, "VOLUMES_UID"),
    ({"VOLUMES_GID": "-1"}, "VOLUMES_GID"),
    ({"VOLUMES_UID": "99999999999999999999"}, "VOLUMES_UID"),
]


@pytest.mark.parametrize("env,setting", CASES, ids=[repr(sorted(c[0].items()))[:60] for c in CASES])
def test_a_setting_that_would_make_a_broken_artifact_is_refused(env, setting, tmp_path, fast_env):
    volumes = tmp_path / "volumes"
    victim = make_victim(tmp_path)
    before = state_of(victim)
    result = run_cli("run", volumes=volumes, env=dict(fast_env, **env), timeout=300)
    if setting is None:
        assert result.returncode == 0, result.stderr
        assert run_cli("status", volumes=volumes, env=dict(fast_env, **env)).returncode == 0
        return
    assert result.returncode == BAD_INPUT, result.stdout + result.stderr
    one_line_error(result, setting)
    assert not volumes.exists() and state_of(victim) == before
    checked = run_cli("status", volumes=volumes, env=dict(fast_env, **env))
    assert checked.returncode == BAD_INPUT and setting in checked.stderr


def test_an_empty_volumes_option_never_means_the_current_directory(tmp_path):
    victim = make_victim(tmp_path)
    before = state_of(victim)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NACOS_", "VOLUMES_", "CONFIG_STORAGE"))}
    for args in (["run", "--volumes", ""], ["status", "--volumes", ""], ["run", "--volumes", "  "]):
        result = subprocess.run([sys.executable, "-m", "higress_init", *args], cwd=victim, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == BAD_INPUT
        one_line_error(result, "VOLUMES_ROOT")
    assert state_of(victim) == before


def test_file_root_dir_inside_the_volumes_gets_the_same_rules(tmp_path, fast_env):
    volumes = tmp_path / "volumes"
    env = dict(fast_env, FILE_ROOT_DIR="store")  # relative: taken from the volumes root
    run_cli("run", volumes=volumes, env=env, check=True)
    assert (volumes / "store/configmaps/higress-config.yaml").is_file()
    victim = make_victim(tmp_path)
    (volumes / "store/configmaps/higress-config.yaml").unlink()
    (volumes / "store/configmaps/higress-config.yaml").symlink_to(victim / "sub/config.yaml")
    before = state_of(victim)
    result = run_cli("run", volumes=volumes, env=env)
    assert result.returncode == 3
    one_line_error(result, "store/configmaps/higress-config.yaml", "symbolic link")
    assert state_of(victim) == before


def _fifo(path):
    os.mkfifo(path)


def _zero(path):
    path.symlink_to("/dev/zero")  # a link is fine for a secret (Kubernetes mounts them so): not a device


def _huge(path):
    path.write_bytes(b"k" * (1 << 20))


def _not_utf8(path):
    path.write_bytes(b"\xff\xfe0123456789abcdef0123456789abcd")


def _directory(path):
    path.mkdir()


@pytest.mark.parametrize("make,words", [(_fifo, "not a regular file"), (_zero, "not a regular file"),
                                        (_huge, "larger than"), (_not_utf8, "not UTF-8"),
                                        (_directory, "cannot read")],
                         ids=["fifo", "dev-zero", "huge", "not-utf8", "directory"])
@pytest.mark.parametrize("secret", ["NACOS_DATA_ENC_KEY", "NACOS_PASSWORD"])
def test_a_secret_file_is_a_bounded_read_of_a_regular_file(make, words, secret, tmp_path, fast_env):
    volumes, path = tmp_path / "volumes", tmp_path / "secret"
    make(path)
    env = dict(fast_env, **{f"{secret}_FILE": str(path)})
    if secret == "NACOS_PASSWORD":
        env["NACOS_USERNAME"] = "admin-user-name"
    result = run_cli("run", volumes=volumes, env=env, timeout=300)  # a hang shows as the timeout
    assert result.returncode == BAD_INPUT
    line = one_line_error(result, f"{secret}_FILE", words)
    assert "admin-user-name" not in result.stdout + result.stderr and "\\xff" not in line
    assert not volumes.exists()


def test_a_leaf_issued_late_in_its_cas_life_never_outlives_it(tmp_path, fast_env):
    """Settings that are fine on their own (500d leaves, 800d intermediates) under an existing
    intermediate with 400 days left: the gateway leaf ends with its CA, and status is healthy."""
    from higress_init.pki import primitives
    volumes = tmp_path / "volumes"
    run_cli("run", volumes=volumes, env=dict(fast_env, INTERMEDIATE_VALIDITY="400d"), check=True)
    env = dict(fast_env, INTERMEDIATE_VALIDITY="800d", CERT_VALIDITY="500d")
    run_cli("rotate", "leaf", "--change-setting", "INTERMEDIATE_VALIDITY", "--change-setting", "CERT_VALIDITY",
            volumes=volumes, env=env, check=True)
    leaf = primitives.load_certs((volumes / "gateway/certs/cert-chain.pem").read_bytes())[0]
    ca = primitives.load_certs((volumes / "pilot/cacerts/ca-cert.pem").read_bytes())[0]
    assert leaf.not_valid_after_utc <= ca.not_valid_after_utc
    assert run_cli("status", volumes=volumes, env=env).returncode == 0
    assert "re-issued" not in run_cli("run", volumes=volumes, env=env, check=True).stdout  # and stays
