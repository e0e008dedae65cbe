"""The table of base objects, the apiserver's Secret encryption and its names index rules."""
from __future__ import annotations

import base64
import os
from datetime import UTC, datetime

import pytest
import yaml
from base_objects import openssl_decrypt

from higress_init.settings import load
from higress_init.store.nacos import layout as nacos_layout
from higress_init.versions import objects

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_the_table_declares_each_object_once_with_its_store_names():
    labels = [o.label for o in objects.OBJECTS]
    assert len(labels) == len(set(labels)) == 10
    for o in objects.OBJECTS:
        assert o.plural == o.plural.lower() and o.data_id == f"{o.plural}.{o.name}"
    assert [o.label for o in objects.OBJECTS if o.secret] == ["secrets/nacos-auth-default", "secrets/higress-console"]
    assert [o.label for o in objects.OBJECTS if not o.namespaced] == ["gatewayclasses/higress-gateway"]


def test_each_release_seeds_objects_of_the_table_and_2_2_4_adds_the_http_resolver_cluster():
    from higress_init.versions import releases
    for release in releases.RELEASES:
        assert set(release.objects) <= set(objects.OBJECTS_BY_LABEL), release.version
    full = {"NACOS_SERVER_URL": "http://n:8848", "NACOS_USERNAME": "u", "NACOS_PASSWORD": "p"}
    old = [o.label for o in objects.applicable(load(env=dict(full, HIGRESS_VERSION="2.1.2")))]
    new = [o.label for o in objects.applicable(load(env=full))]
    assert len(old) == 9 and new == old + ["envoyfilters/higress-http-resolver-cluster"]


def test_which_objects_apply_to_which_store():
    file_store = [o.label for o in objects.applicable(load(env={}))]
    nacos = [o.label for o in objects.applicable(load(env={"NACOS_SERVER_URL": "http://n:8848"}))]
    with_credentials = [o.label for o in objects.applicable(load(env={
        "NACOS_SERVER_URL": "http://n:8848", "NACOS_USERNAME": "u", "NACOS_PASSWORD": "p"}))]
    assert file_store == nacos and "secrets/nacos-auth-default" not in nacos
    assert set(with_credentials) - set(nacos) == {"secrets/nacos-auth-default"}


def test_rendered_objects_carry_metadata_as_the_apiserver_stores_it():
    s = load(env={})
    cm = yaml.safe_load(objects.render_text(objects.HIGRESS_CONFIG, s, NOW))
    assert cm["metadata"] == {"name": "higress-config", "namespace": "higress-system",
                              "creationTimestamp": "2026-01-02T03:04:05Z",
                              "labels": {"app": "higress-gateway", "higress": "higress-system-higress-gateway"}}
    gc = yaml.safe_load(objects.render_text(objects.OBJECTS_BY_LABEL["gatewayclasses/higress-gateway"], s, NOW))
    assert "namespace" not in gc["metadata"]  # cluster-scoped


def test_random_secret_values_differ_per_render():
    s = load(env={})
    obj = objects.OBJECTS_BY_LABEL["secrets/higress-console"]
    first, second = (yaml.safe_load(objects.render_text(obj, s, NOW))["data"] for _ in range(2))
    assert first != second and len(base64.b64decode(first["key"])) == 32


@pytest.mark.parametrize("length", [16, 24, 32])
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 5000])
def test_encryption_matches_an_independent_reading_of_the_apiserver_rule(length, size):
    key = os.urandom(length)
    text = ("é" * size)[:size] if size else ""
    stored = nacos_layout.encrypt(text, key)
    assert openssl_decrypt(stored, key) == text
    assert nacos_layout.decrypt(stored, key) == text
    assert nacos_layout.decrypt("plain: yaml\n", key) == "plain: yaml\n"


def _members(*labels):
    s = load(env={})
    return [(o.group(s), o) for o in (objects.OBJECTS_BY_LABEL[label] for label in labels)]


def test_index_accepts_both_line_forms_and_adds_only_missing_lines():
    cms = _members("configmaps/higress-config", "configmaps/higress-console")
    assert nacos_layout.index_with(None, cms) == "higress-system/higress-config\nhigress-system/higress-console\n"
    # the apiserver's own form, as its refresh rewrites the index: nothing to add
    rewritten = "higress-system/configmaps.higress-config\nhigress-system/configmaps.higress-console\n"
    assert nacos_layout.index_with(rewritten, cms) is None
    # the create form and a mix of both
    assert nacos_layout.index_with("higress-system/higress-config\nhigress-system/configmaps.higress-console\n",
                                  cms) is None
    # one missing: appended, the others kept as they were
    assert nacos_layout.index_with("other/configmaps.x\nhigress-system/configmaps.higress-config\n", cms) == \
        "other/configmaps.x\nhigress-system/configmaps.higress-config\nhigress-system/higress-console\n"


def test_index_reads_empty_as_no_lines():
    assert nacos_layout.index_with("EMPTY", _members("services/higress-gateway")) == "higress-system/higress-gateway\n"
    assert nacos_layout.index_with("EMPTY\n", _members("services/higress-gateway")) == \
        "higress-system/higress-gateway\n"


def test_index_of_a_cluster_scoped_object():
    gc = _members("gatewayclasses/higress-gateway")
    assert nacos_layout.index_with(None, gc) == "/higress-gateway\n"  # what the apiserver's create appends
    for form in ("/higress-gateway", "DEFAULT_GROUP/gatewayclasses.higress-gateway", "DEFAULT_GROUP/higress-gateway"):
        assert nacos_layout.index_with(form + "\n", gc) is None


def test_a_secret_the_apiserver_rule_encrypted_independently_reads_back():
    import subprocess

    from conftest import require_tool
    openssl = require_tool("openssl", "apt-get install openssl")
    key = os.urandom(32)
    text = "apiVersion: v1\nkind: Secret\ndata:\n  key: dmFsdWU=\n"
    ciphertext = subprocess.run([openssl, "enc", "-aes-256-cbc", "-K", key.hex(), "-iv", key[:16].hex()],
                                input=text.encode(), capture_output=True, check=True).stdout
    stored = "enc|" + base64.urlsafe_b64encode(ciphertext).decode()
    assert nacos_layout.decrypt(stored, key) == text
    assert nacos_layout.encrypt(text, key) == stored  # the same rule, byte for byte (fixed IV)
