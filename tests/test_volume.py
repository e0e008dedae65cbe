"""volume: staged, journaled, atomic writes; backups; removal; the lock."""
from __future__ import annotations

import json
import os

import pytest

from higress_init.volume import JOURNAL, TMP_PREFIX, VolumeWriter


def test_stage_then_commit_writes_with_modes(tmp_path):
    w = VolumeWriter(tmp_path)
    assert w.stage("a/public.pem", b"cert") and w.stage("pki/secret.key", b"key", private=True)
    assert not (tmp_path / "a").exists() and w.read("a/public.pem") == b"cert"
    written = w.commit()
    assert sorted(p.name for p in written) == ["public.pem", "secret.key"]
    assert (tmp_path / "a/public.pem").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "pki/secret.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "pki").stat().st_mode & 0o777 == 0o700 and (tmp_path / "a").stat().st_mode & 0o777 == 0o755
    assert not (tmp_path / JOURNAL).exists() and not list(tmp_path.rglob(TMP_PREFIX + "*"))


def test_unchanged_content_is_not_rewritten(tmp_path):
    w = VolumeWriter(tmp_path)
    w.stage("f", b"x")
    w.commit()
    mtime = (tmp_path / "f").stat().st_mtime_ns
    w2 = VolumeWriter(tmp_path)
    assert not w2.stage("f", b"x") and w2.commit() == []
    assert (tmp_path / "f").stat().st_mtime_ns == mtime


def test_replaced_and_removed_files_are_backed_up(tmp_path):
    w = VolumeWriter(tmp_path)
    w.stage("f", b"old")
    w.stage("g", b"gone")
    w.commit()
    w.stage("f", b"new")
    w.remove("g")
    assert w.read("g") is None
    w.commit()
    assert (tmp_path / "f").read_bytes() == b"new" and not (tmp_path / "g").exists()
    backups = {p.name: p.read_bytes() for p in (tmp_path / "backup").rglob("*") if p.is_file()}
    assert backups == {"f": b"old", "g": b"gone"}


def test_recover_rolls_a_journaled_commit_forward(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d/f").write_bytes(b"old")
    (tmp_path / "d" / (TMP_PREFIX + "f.tmp")).write_bytes(b"new")
    (tmp_path / "d" / (TMP_PREFIX + "stray")).write_bytes(b"half")
    journal = tmp_path / JOURNAL
    journal.parent.mkdir()
    journal.write_text(json.dumps([["d", TMP_PREFIX + "f.tmp", "f"]]))  # relative to the volumes root
    assert VolumeWriter(tmp_path).recover() == 1
    assert (tmp_path / "d/f").read_bytes() == b"new"
    assert not journal.exists() and not list(tmp_path.rglob(TMP_PREFIX + "*"))


def test_recover_without_a_journal_drops_temporaries_and_keeps_files(tmp_path):
    (tmp_path / "f").write_bytes(b"old")
    (tmp_path / (TMP_PREFIX + "f")).write_bytes(b"half-written")
    assert VolumeWriter(tmp_path).recover() == 0
    assert (tmp_path / "f").read_bytes() == b"old" and not (tmp_path / (TMP_PREFIX + "f")).exists()


def test_owner(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("chown needs root (CI runs as root)")
    w = VolumeWriter(tmp_path, uid=4321, gid=4322)
    w.stage("x/f", b"1")
    w.commit()
    assert (tmp_path / "x/f").stat().st_uid == 4321 and (tmp_path / "x").stat().st_gid == 4322
