"""Bad input: one line naming the setting and what is allowed, exit code 2, nothing written."""
from __future__ import annotations

import pytest
from conftest import run_cli, snapshot

BAD_INPUTS = [
    ({"NACOS_SERVER_URL": "ftp://nacos:8848"}, "NACOS_SERVER_URL", "http"),
    ({"NACOS_SERVER_URL": "nacos:8848"}, "NACOS_SERVER_URL", "http"),
    ({"NACOS_SERVER_URL": "http://nacos:99999/nacos"}, "NACOS_SERVER_URL", "port"),
    ({"NACOS_SERVER_URL": "http://nacos:8848/other"}, "NACOS_SERVER_URL", "/nacos"),
    ({"NACOS_SERVER_URL": " , "}, "NACOS_SERVER_URL", "no server"),
    # a host no resolver takes (a label over 63 characters) was a raw codec error
    ({"NACOS_SERVER_URL": f"http://{'a' * 64}.example:8848/nacos"}, "NACOS_SERVER_URL", "not a valid DNS name"),
    # what the apiserver, which reads the same value, would get wrong
    ({"NACOS_SERVER_URL": "https://nacos:8848/nacos"}, "NACOS_SERVER_URL", "apiserver talks to Nacos over plain http"),
    ({"NACOS_SERVER_URL": "http://nacos/nacos"}, "NACOS_SERVER_URL", "apiserver would use port 80"),
    ({"NACOS_SERVER_URL": "http://a:8848/nacos, http://b:8848/nacos"}, "NACOS_SERVER_URL", "no spaces around the commas"),  # noqa: E501 (a table row)
    ({"CONFIG_STORAGE": "etcd"}, "CONFIG_STORAGE", "file, nacos"),
    # names Linux can never write (the journal of such a commit could never be applied)
    ({"TOKEN_IDENTITIES": f"x=tok/{'t' * 256}:sa:aud"}, "TOKEN_IDENTITIES", "at most 255 bytes"),
    ({"TOKEN_IDENTITIES": "x=" + "/".join(["d" * 200] * 21) + ":sa:aud"}, "TOKEN_IDENTITIES", "under 4096"),
    ({"FILE_ROOT_DIR": "d" * 256}, "FILE_ROOT_DIR", "at most 255 bytes"),
    # a token or the file store among a component's own files
    ({"TOKEN_IDENTITIES": "x=controller/kube/client.key:sa:aud"}, "TOKEN_IDENTITIES", "controller/kube/"),
    ({"TOKEN_IDENTITIES": "x=gateway/log/token:sa:aud"}, "TOKEN_IDENTITIES", "gateway/log/"),
    ({"FILE_ROOT_DIR": "controller/kube"}, "FILE_ROOT_DIR", "a component's own files"),
    ({"FILE_ROOT_DIR": "console"}, "FILE_ROOT_DIR", "a component's own files"),
    ({"CONFIG_STORAGE": "nacos"}, "NACOS_SERVER_URL", "CONFIG_STORAGE=nacos"),
    ({"CA_KEY_ALGORITHM": "dsa-1024"}, "CA_KEY_ALGORITHM", "rsa-4096"),
    ({"LEAF_KEY_ALGORITHM": "rsa-1024"}, "LEAF_KEY_ALGORITHM", "ecdsa-p256"),
    ({"CERT_VALIDITY": "-5d"}, "CERT_VALIDITY", "positive"),
    ({"CERT_VALIDITY": "0d"}, "CERT_VALIDITY", "positive"),
    # a bare number was days: NACOS_WAIT_TIMEOUT=180 (upstream's seconds) waited 180 days
    ({"NACOS_WAIT_TIMEOUT": "180"}, "NACOS_WAIT_TIMEOUT", "no unit; a duration is a whole number with a unit: s, m, h or d"),  # noqa: E501 (a table row)
    ({"CERT_VALIDITY": "365"}, "CERT_VALIDITY", "no unit"),
    ({"RENEW_BEFORE": "0"}, "RENEW_BEFORE", "no unit"),
    ({"CA_VALIDITY": "ten years"}, "CA_VALIDITY", "unit"),
    ({"INTERMEDIATE_VALIDITY": "4000d"}, "INTERMEDIATE_VALIDITY", "CA_VALIDITY"),
    ({"RENEW_BEFORE": "400d"}, "RENEW_BEFORE", "CERT_VALIDITY"),
    ({"NACOS_WAIT_TIMEOUT": "soon"}, "NACOS_WAIT_TIMEOUT", "unit"),
    ({"APISERVER_SANS": "bad_name!"}, "APISERVER_SANS", "DNS name"),
    ({"APISERVER_SANS": "-leading.example"}, "APISERVER_SANS", "DNS name"),
    ({"APISERVER_URL": "http://apiserver:8443"}, "APISERVER_URL", "https"),
    ({"TRUST_DOMAIN": "Not A Domain"}, "TRUST_DOMAIN", "DNS name"),
    ({"HIGRESS_NAMESPACE": "Higress_System"}, "HIGRESS_NAMESPACE", "Kubernetes name"),
    ({"GATEWAY_SERVICE_ACCOUNT": "x" * 64}, "GATEWAY_SERVICE_ACCOUNT", "at most 63"),
    ({"NACOS_NS": "bad/ns"}, "NACOS_NS", "letters"),
    ({"NACOS_USERNAME": "nacos"}, "NACOS_PASSWORD", "both"),
    ({"NACOS_DATA_ENC_KEY": "short"}, "NACOS_DATA_ENC_KEY", "32"),
    ({"NACOS_DATA_ENC_KEY_FILE": "/nonexistent/key"}, "NACOS_DATA_ENC_KEY_FILE", "cannot read"),
    ({"NACOS_PASSWORD_FILE": "/nonexistent/pw", "NACOS_USERNAME": "u"}, "NACOS_PASSWORD_FILE", "cannot read"),
    ({"NACOS_DATA_ENC_KEY": "k" * 32, "NACOS_DATA_ENC_KEY_FILE": "/etc/hostname"}, "NACOS_DATA_ENC_KEY_FILE", "only one"),  # noqa: E501 (a table row)
    ({"VOLUMES_UID": "root"}, "VOLUMES_UID", "numeric"),
    ({"VOLUMES_GID": "-1"}, "VOLUMES_GID", "numeric"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT", "text, json"),
]


@pytest.mark.parametrize("env,setting,allowed", BAD_INPUTS, ids=[f"{i}-{b[1]}" for i, b in enumerate(BAD_INPUTS)])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, env, setting, allowed):
    volumes = tmp_path / "volumes"
    volumes.mkdir()
    (volumes / "keep-me").write_text("user data")
    before = snapshot(volumes)
    result = run_cli("run", volumes=volumes, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert setting in lines[0] and allowed in lines[0], lines[0]
    assert result.stdout == ""
    assert snapshot(volumes) == before
    assert sorted(p.name for p in volumes.iterdir()) == ["keep-me"]


def test_unwritable_volumes_root(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_cli("run", volumes=blocker / "volumes")
    assert result.returncode == 2 and "VOLUMES_ROOT" in result.stderr and "writable" in result.stderr
    result = run_cli("run", volumes=blocker)
    assert result.returncode == 2 and "VOLUMES_ROOT" in result.stderr


def test_a_volumes_root_that_cannot_be_made_is_bad_input():
    """/proc takes no new directory: exit 2 naming the setting (it was exit 1 with a bare errno)."""
    result = run_cli("run", volumes="/proc/higress-init-volumes")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1
    assert "VOLUMES_ROOT=/proc/higress-init-volumes: cannot be created" in result.stderr


def test_secret_on_the_command_line_is_not_offered():
    result = run_cli("run", "--nacos-password", "x")
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr


def test_a_run_from_a_deleted_working_directory(tmp_path):
    """A working directory deleted under the command (it once failed every run with RSA keys,
    when a fork server started there): an absolute VOLUMES_ROOT works; a relative one is bad input."""
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NACOS_", "CONFIG_STORAGE", "VOLUMES_"))}
    env.update(CA_KEY_ALGORITHM="rsa-2048", LEAF_KEY_ALGORITHM="rsa-2048")
    script = 'mkdir "$1/gone" && cd "$1/gone" && rmdir "$1/gone" && shift && exec "$@"'
    command = ["sh", "-c", script, "sh", str(tmp_path), sys.executable, "-m", "higress_init", "run", "--volumes"]
    done = subprocess.run(command + [str(tmp_path / "volumes")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "volumes/pki/apiserver-ca.key").is_file()
    relative = subprocess.run(command + ["volumes"], env=env, capture_output=True, text=True, timeout=60)
    assert relative.returncode == 2 and "VOLUMES_ROOT=volumes" in relative.stderr, relative.stderr
    assert relative.stderr.count("\n") == 1


def test_a_bare_number_interval_is_refused_and_the_readme_states_the_same_rule(tmp_path):
    from conftest import REPO

    from higress_init.settings import DURATION_RULE
    result = run_cli("watch", "--once", "--interval", "12", volumes=tmp_path / "v")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "--interval='12': no unit" in result.stderr and DURATION_RULE in result.stderr
    readme = " ".join((REPO / "README.md").read_text().split())
    assert f"A duration is {DURATION_RULE}" in readme


DURATION_SETTINGS = ("NACOS_WAIT_TIMEOUT", "CA_VALIDITY", "INTERMEDIATE_VALIDITY", "CERT_VALIDITY", "RENEW_BEFORE",
                     "TOKEN_VALIDITY", "WATCH_INTERVAL")


def test_every_duration_the_env_and_compose_files_set_has_a_unit():
    import re

    from conftest import REPO

    from higress_init.settings import SETTINGS_BY_ENV, parse_duration
    found = {}
    for path in [*(REPO / "env").glob("*.env"), REPO / "compose/.env", *(REPO / "compose").glob("*.yml")]:
        assignments = r"\b(" + "|".join(DURATION_SETTINGS) + r")(?:=|:-)([^\s\"}#]+)"
        for name, value in re.findall(assignments, path.read_text()):
            parse_duration(name, value)  # raises on a bare number
            found[name] = value
    assert {"WATCH_INTERVAL", "NACOS_WAIT_TIMEOUT", "CERT_VALIDITY"} <= set(found), found
    for name in DURATION_SETTINGS[:-1]:
        parse_duration(name, SETTINGS_BY_ENV[name].default)
