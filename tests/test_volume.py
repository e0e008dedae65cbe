"""volume: staged, journaled, atomic writes; backups; removal; the lock."""
from __future__ import annotations

import json
import os

import pytest

from higress_init.volume.layout import JOURNAL
from higress_init.volume.safefs import TMP_PREFIX
from higress_init.volume.writer import VolumeWriter


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


# --- the parts: no-follow access, temporaries, journal validation, ownership

def test_temporaries_have_random_names_that_never_end_in_yaml(tmp_path):
    from higress_init.volume.safefs import Root, create_temp
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    names = set()
    for _ in range(20):
        out, name = create_temp(fd, 0o600)
        os.close(out)
        names.add(name)
    os.close(fd)
    assert len(names) == 20 and all(n.startswith(TMP_PREFIX) and n.endswith(".tmp") for n in names)
    assert Root(tmp_path).read(("missing",)) is None


def test_a_refused_target_leaves_nothing_half_written(tmp_path):
    """One staged file's target is a link: the commit refuses before writing any file."""
    from higress_init.volume.safefs import Refused
    outside = tmp_path / "outside"
    outside.write_bytes(b"host")
    root = tmp_path / "v"
    w = VolumeWriter(root)
    w.stage("a/first", b"1")
    w.stage("b/second", b"2")
    w.commit()
    (root / "b/second").unlink()
    (root / "b/second").symlink_to(outside)
    w2 = VolumeWriter(root)
    w2.stage("a/first", b"changed")
    with pytest.raises(Refused, match="b/second is a symbolic link"):
        w2.stage("b/second", b"changed")
        w2.commit()
    assert (root / "a/first").read_bytes() == b"1" and outside.read_bytes() == b"host"
    assert not list(root.rglob(TMP_PREFIX + "*")) and not (root / JOURNAL).exists()


@pytest.mark.parametrize("made", ["directory", "link"])
def test_the_lock_folder_made_by_a_run_started_with_this_one(made, tmp_path, monkeypatch):
    """Another run makes .higress-init/ between this run's look and its mkdir: its folder is
    taken (and the lock with it), never a link in its place."""
    from higress_init.volume import journal
    from higress_init.volume.safefs import Refused
    from higress_init.volume.writer import RunLock
    real = journal.private_mkdir

    def other_run_first(dir_fd, name, parts):
        if made == "directory":
            os.mkdir(name, 0o700, dir_fd=dir_fd)
        else:
            os.symlink(tmp_path, name, dir_fd=dir_fd)
        real(dir_fd, name, parts)   # FileExistsError, as for the run that loses the race

    monkeypatch.setattr(journal, "private_mkdir", other_run_first)
    root = tmp_path / "volumes"
    if made == "link":
        with pytest.raises(Refused, match=r"\.higress-init is a symbolic link"):
            RunLock(root).__enter__()
        assert not (tmp_path / "lock").exists()
        return
    with RunLock(root):
        assert (root / ".higress-init/lock").is_file()


def test_reads_are_capped_and_take_regular_files_only(tmp_path):
    from higress_init.volume.safefs import Refused, Root
    (tmp_path / "big").write_bytes(b"x" * 100)
    with pytest.raises(Refused, match="larger than 10 bytes"):
        Root(tmp_path).read(("big",), cap=10)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(Refused, match="a FIFO"):
        VolumeWriter(tmp_path).read("fifo")
    with pytest.raises(Refused, match="outside the volumes directory"):
        VolumeWriter(tmp_path).read(tmp_path.parent / "elsewhere")


@pytest.mark.parametrize("entry", [["/etc", TMP_PREFIX + "x", "passwd"], ["..", None, "x"], ["a/../..", None, "x"],
                                   ["a", "not-a-temporary", "x"], ["a", TMP_PREFIX + "x", "../x"], ["a", None],
                                   "text", ["a", None, ""]])
def test_a_journal_entry_outside_the_root_is_refused(entry, tmp_path):
    from higress_init.volume.safefs import Refused
    (tmp_path / ".higress-init").mkdir()
    (tmp_path / JOURNAL).write_text(json.dumps([entry]))
    with pytest.raises(Refused, match="journal"):
        VolumeWriter(tmp_path).recover()


def test_modes_are_enforced_without_loosening(tmp_path):
    w = VolumeWriter(tmp_path, private_files={"kube/config"})
    w.stage("kube/config", b"k", private=True)
    w.stage("pub/cert.pem", b"c")
    w.stage("pub/own.conf", b"o")
    w.commit()
    os.chmod(tmp_path / "kube/config", 0o644)
    os.chmod(tmp_path / "pub/cert.pem", 0o4777)
    os.chmod(tmp_path / "pub/own.conf", 0o600)  # tighter than needed: kept
    os.chmod(tmp_path / "pub", 0o777)
    w2 = VolumeWriter(tmp_path, private_files={"kube/config"})
    for rel in ("kube/config", "pub/cert.pem", "pub/own.conf"):
        w2.read(rel)
    fixed = {str(p.relative_to(tmp_path)) for p in w2.fix_owners()}
    assert fixed == {"kube/config", "pub/cert.pem", "pub"}
    modes = {rel: (tmp_path / rel).stat().st_mode & 0o7777
             for rel in ("kube/config", "pub/cert.pem", "pub/own.conf", "pub")}
    assert modes == {"kube/config": 0o600, "pub/cert.pem": 0o644, "pub/own.conf": 0o600, "pub": 0o755}


def test_a_journal_an_older_release_left_is_rolled_forward(tmp_path):
    """Before commits could be undone the journal was a bare list of renames; a run killed under that
    release is finished by this one."""
    w = VolumeWriter(tmp_path)
    w.stage("api/server.crt", b"old")
    w.commit()
    (tmp_path / "api" / (TMP_PREFIX + "a.tmp")).write_bytes(b"new")
    (tmp_path / JOURNAL).write_text(json.dumps([["api", TMP_PREFIX + "a.tmp", "server.crt"]]))
    assert VolumeWriter(tmp_path).recover() == 1
    assert (tmp_path / "api/server.crt").read_bytes() == b"new" and not (tmp_path / JOURNAL).exists()


def test_a_crash_after_the_journal_leaves_kept_files_the_rerun_finishes(tmp_path):
    """The files a commit replaces are kept aside (hard links) until it is done: a crash between two
    renames is rolled forward by the next run and the kept copies are dropped."""
    w = VolumeWriter(tmp_path)
    w.stage("a/key", b"k1")
    w.stage("a/crt", b"c1")
    w.commit()
    w.stage("a/key", b"k2")
    w.stage("a/crt", b"c2")
    entries = [w._write_temporary(item) for item in w.changes()]
    from higress_init.volume import journal
    journal.write(w.fs, entries)
    journal._apply(w.fs, entries[0], "stamp")          # the first rename done, then the crash
    assert sorted(p.name.endswith(".kept") for p in (tmp_path / "a").iterdir()).count(True) == 1
    assert VolumeWriter(tmp_path).recover() == 1
    assert {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == {"key": b"k2", "crt": b"c2"}


def test_backup_keeps_the_last_backup_keep_runs_private_and_says_what_it_removed(tmp_path, fast_env):
    import re
    import stat

    from conftest import run_cli
    volumes = tmp_path / "volumes"
    env = {**fast_env, "BACKUP_KEEP": "2"}
    run_cli("run", volumes=volumes, env=env, check=True)
    outputs = []
    stored = volumes / "data/configmaps/higress-config.yaml"
    for i in range(4):   # each reseed replaces the edited object: one backup folder per run
        stored.write_text(stored.read_text() + f"# edit {i}\n")
        outputs.append(run_cli("run", "--reseed", volumes=volumes, env=env, check=True).stdout)
    folders = sorted(p.name for p in (volumes / "backup").iterdir())
    assert len(folders) == 2 and all(re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z", f) for f in folders), folders
    assert not any("backup: removed" in out for out in outputs[:2]), outputs[:2]
    removed = [line for out in outputs[2:] for line in out.splitlines() if line.startswith("backup: removed")]
    removal = (r"backup: removed the 1 oldest run folder \(\d{8}T\d{6}\.\d{6}Z\); "
               r"keeping the last 2 \(BACKUP_KEEP\)")
    assert len(removed) == 2 and all(re.fullmatch(removal, line) for line in removed), removed
    for path in [volumes / "backup", *(volumes / "backup").rglob("*")]:
        mode = path.lstat().st_mode
        assert stat.S_IMODE(mode) & 0o077 == 0, (path, oct(mode))
    # the newest run's folder holds what it replaced
    assert (volumes / "backup" / folders[-1] / "data/configmaps/higress-config.yaml").is_file()
    # a folder not named as a run names it is never touched; 0 keeps all
    (volumes / "backup" / "mine").mkdir()
    stored.write_text(stored.read_text() + "# edit again\n")
    out = run_cli("run", "--reseed", volumes=volumes, env={**fast_env, "BACKUP_KEEP": "0"}, check=True).stdout
    assert "backup: removed" not in out and (volumes / "backup" / "mine").is_dir()
    assert len(list((volumes / "backup").iterdir())) == 4
    bad = run_cli("run", volumes=volumes, env={**fast_env, "BACKUP_KEEP": "ten"})
    assert bad.returncode == 2 and "BACKUP_KEEP='ten': expected a whole number" in bad.stderr
