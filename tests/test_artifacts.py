"""artifacts: the declarative table and the one decision/issue path, without the CLI."""
from __future__ import annotations

from datetime import timedelta

import pytest

from higress_init.pki import artifacts, primitives
from higress_init.pki.artifacts import CERTIFICATES, SPECS, StateError, apply, decide
from higress_init.pki.keypool import KeyPool
from higress_init.run.reporting import Counts
from higress_init.settings import load
from higress_init.volume.writer import VolumeWriter

SETTINGS = load(env={"CA_KEY_ALGORITHM": "ecdsa-p256", "LEAF_KEY_ALGORITHM": "ecdsa-p256"})
NOW = primitives.utcnow()


def _issue_all(writer, now=NOW, rotate=frozenset()):
    decisions = decide(SETTINGS, writer, now, set(rotate))
    keys = KeyPool({d.spec.name: "ecdsa-p256" for d in decisions.values()
                    if d.new_key})
    counts = Counts()
    for phase in ("apiserver-pki", "pilot-pki"):
        apply(phase, SETTINGS, writer, decisions, keys, now, counts)
    return decisions, counts


def test_table_is_ordered_and_consistent():
    seen = set()
    for spec in CERTIFICATES:
        assert spec.issuer is None or spec.issuer in seen, f"{spec.name} comes before its issuer"
        assert SPECS[spec.issuer].ca if spec.issuer else spec.ca
        seen.add(spec.name)
    files = [f for s in CERTIFICATES for f in (s.cert_file, s.key_file)]
    assert len(files) == len(set(files))
    assert {artifacts.top_root(s) for s in CERTIFICATES} == {"apiserver-ca", "pilot-root-ca"}


def test_everything_is_created_then_kept(tmp_path):
    writer = VolumeWriter(tmp_path)
    decisions, counts = _issue_all(writer)
    assert {d.action for d in decisions.values()} == {"created"}
    writer.commit()
    again = VolumeWriter(tmp_path)
    decisions, counts = _issue_all(again)
    assert {d.action for d in decisions.values()} == {"keep"} and set(counts.by_action) == {"kept"}
    assert again.changes() == []


def test_leaf_inside_the_renewal_window_is_reissued(tmp_path):
    writer = VolumeWriter(tmp_path)
    _issue_all(writer)
    writer.commit()
    later = NOW + SETTINGS.cert_validity - SETTINGS.renew_before + timedelta(hours=1)
    decisions = decide(SETTINGS, VolumeWriter(tmp_path), later)
    assert {n for n, d in decisions.items() if d.action == "reissue"} == {
        "apiserver", "apiserver-admin", "apiserver-controller", "apiserver-pilot", "apiserver-console", "gateway"}
    assert all("expires within" in decisions[n].reason for n in ("apiserver", "gateway"))


def test_expired_ca_is_refused(tmp_path):
    writer = VolumeWriter(tmp_path)
    _issue_all(writer)
    writer.commit()
    with pytest.raises(StateError, match="pilot/cacerts/ca-cert.pem expired"):
        decide(SETTINGS, VolumeWriter(tmp_path), NOW + SETTINGS.intermediate_validity + timedelta(days=1))


def test_rotation_of_a_root_cross_signs_and_keeps_the_old_root(tmp_path):
    writer = VolumeWriter(tmp_path)
    before, _ = _issue_all(writer)
    writer.commit()
    old_root = before["pilot-root-ca"].cert
    writer = VolumeWriter(tmp_path)
    after, _ = _issue_all(writer, rotate={"pilot-root-ca"})
    assert after["pilot-root-ca"].cert != old_root and after["pilot-ca"].action == "reissued"
    assert after["apiserver-ca"].action == "keep"
    previous, cross = artifacts.overlap(writer, "pilot-root-ca")
    assert previous == old_root
    assert cross.subject == after["pilot-root-ca"].cert.subject and primitives.issued_by(cross, old_root)
    assert primitives.public_key_bytes(cross.public_key()) == primitives.public_key_bytes(after["pilot-root-ca"].key)
    roots = primitives.load_certs(writer.read("pilot/cacerts/root-cert.pem"))
    assert roots == [after["pilot-root-ca"].cert, old_root]
    chain = primitives.load_certs(writer.read("gateway/certs/cert-chain.pem"))
    assert chain == [after["gateway"].cert, after["pilot-ca"].cert, cross]


def test_each_certificate_rotates_with_its_kind_in_the_chain():
    """`rotate leaf|intermediate|root` replace what the table says each certificate is, no side list."""
    from higress_init.pki.artifacts import ROTATIONS
    assert {
        "leaf": {"apiserver", "apiserver-admin", "apiserver-controller", "apiserver-pilot", "apiserver-console",
                 "gateway", "tokens"},
        "intermediate": {"pilot-ca"},
        "root": {"apiserver-ca", "pilot-root-ca", "token-key"},
    } == ROTATIONS
    for spec in CERTIFICATES:
        assert spec.rotation == ("leaf" if not spec.ca else "root" if spec.issuer is None else "intermediate")
