"""settings: defaults, normalisation, secrets from files, and the checks behind exit code 2."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from higress_init.settings import SETTINGS, SettingsError, load, parse_duration


def test_defaults():
    s = load(env={})
    assert s.volumes_root == Path("/mnt/volumes") and s.config_storage == "file"
    assert s.file_root_dir == Path("/mnt/volumes/data")
    assert (s.ca_key_algorithm, s.leaf_key_algorithm) == ("rsa-4096", "rsa-2048")
    assert (s.ca_validity, s.intermediate_validity, s.cert_validity) == \
        (timedelta(days=3650), timedelta(days=730), timedelta(days=365))
    assert s.gateway_spiffe_id == "spiffe://cluster.local/ns/higress-system/sa/higress-gateway"
    assert s.nacos_wait_timeout == timedelta(seconds=180) and s.rotate is None
    assert [i.name for i in s.token_identities] == ["gateway", "console", "controller"]


def test_storage_defaults_to_nacos_when_a_server_is_set():
    assert load(env={"NACOS_SERVER_URL": "http://nacos:8848/nacos"}).config_storage == "nacos"
    assert load(env={"NACOS_SERVER_URL": "http://nacos:8848", "CONFIG_STORAGE": "file"}).config_storage == "file"


@pytest.mark.parametrize("given,normalised", [
    ("http://nacos:8848/nacos", "http://nacos:8848/nacos"),
    ("http://nacos:8848", "http://nacos:8848/nacos"),
    ("http://nacos:8848/nacos/", "http://nacos:8848/nacos"),
    ("http://[::1]:8848", "http://[::1]:8848/nacos"),
])
def test_nacos_urls_are_normalised(given, normalised):
    assert load(env={"NACOS_SERVER_URL": given}).nacos_servers == (normalised,)


def test_several_nacos_servers():
    s = load(env={"NACOS_SERVER_URL": "http://a:8848/nacos,http://b:8848,http://c:9000/nacos"})
    assert s.nacos_servers == ("http://a:8848/nacos", "http://b:8848/nacos", "http://c:9000/nacos")


def test_flags_win_over_the_environment():
    s = load(env={"VOLUMES_ROOT": "/env"}, overrides={"VOLUMES_ROOT": "/flag"})
    assert s.volumes_root == Path("/flag")


def test_secrets_from_files(tmp_path):
    (tmp_path / "user").write_text("nacos\n")
    (tmp_path / "pw").write_text("s3cret\n")
    s = load(env={"NACOS_USERNAME_FILE": str(tmp_path / "user"), "NACOS_PASSWORD_FILE": str(tmp_path / "pw")})
    assert (s.nacos_username, s.nacos_password) == ("nacos", "s3cret")


def test_secrets_have_no_flag_and_every_setting_a_help():
    for setting in SETTINGS:
        assert setting.help
        assert not (setting.secret and setting.flag)


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("5m", 300), ("2h", 7200), ("7d", 604800)])
def test_durations(text, seconds):
    assert parse_duration("X", text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["0d", "-1d", "1w", "1.5d", "", "d", "3", "180"])
def test_bad_durations(text):
    with pytest.raises(SettingsError, match="X="):
        parse_duration("X", text)


def test_apiserver_sans_accept_ips_and_wildcards():
    s = load(env={"APISERVER_SANS": "10.0.0.1, ::1, *.example.com, API.Example.com"})
    assert s.apiserver_sans == ("10.0.0.1", "::1", "*.example.com", "api.example.com")


@pytest.mark.parametrize("value", ["gateway=/abs/token:sa:aud", "x=pki/token:sa:aud", "x=../token:sa:aud",
                                   "x=t:sa:", "x=t:Bad_SA:aud", "nofields", "a=t:sa:aud,a=u:sa:aud"])
def test_bad_token_identities(value):
    with pytest.raises(SettingsError, match="TOKEN_IDENTITIES"):
        load(env={"TOKEN_IDENTITIES": value})


def test_every_setting_says_whether_the_deployment_records_it():
    from higress_init.settings import PER_RUN
    for setting in SETTINGS:
        assert callable(setting.recorded) or setting.recorded == PER_RUN, setting.env
        assert not (setting.secret and callable(setting.recorded)), setting.env   # secrets are never recorded


def test_the_recorded_text_reads_back_to_the_same_settings():
    from higress_init.settings import recorded_text
    env = {"NACOS_SERVER_URL": "http://b:8848,http://a:8848/nacos", "APISERVER_SANS": "10.0.0.9, api.example.com",
           "CERT_VALIDITY": "2160h", "VOLUMES_UID": "1337", "FILE_ROOT_DIR": "store", "TRUST_DOMAIN": "Corp.Example",
           "TOKEN_IDENTITIES": "gateway=gateway/tokens/istio-token:higress-gateway:istio-ca+x"}
    first = load(env=env)
    recorded = recorded_text(first)
    assert recorded["CERT_VALIDITY"] == "90d" and recorded["TRUST_DOMAIN"] == "corp.example"
    again = load(env={}, recorded=recorded)   # nothing given: everything from the record
    assert recorded_text(again) == recorded
    assert again.nacos_servers == ("http://a:8848/nacos", "http://b:8848/nacos")   # the set is what is recorded
    assert load(env=env, recorded=recorded).cert_validity == first.cert_validity   # the same values: no drift
    with pytest.raises(SettingsError, match="VOLUMES_UID=1400: this deployment was made with VOLUMES_UID=1337"):
        load(env={"VOLUMES_UID": "1400"}, recorded=recorded)
    assert load(env={"VOLUMES_UID": "1400"}, recorded=recorded, change=("VOLUMES_UID",)).volumes_uid == 1400
