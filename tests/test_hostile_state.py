"""Hostile state under .higress-init/: the journal and the last run's record are input like any
file in the volumes. A journal naming paths outside the root, links or `..` is refused (exit 3)
and nothing outside changes; recovery works after the volumes moved; the record of the last
run can only ever make a run do more work, and holds nothing to guess the Nacos password by."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess

import pytest
from conftest import require_tool, run_cli, snapshot
from hostile import make_victim, one_line_error, state_of, status

from higress_init import __version__
from higress_init.settings import load
from higress_init.volume.layout import JOURNAL
from higress_init.volume.safefs import TMP_PREFIX

REFUSED = 3
UNCHANGED = "nothing the local phases read has changed"


def _journal(volumes, entries, raw=None):
    path = volumes / JOURNAL
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(raw if raw is not None else json.dumps(entries).encode())


def _absolute(v, victim):
    (victim / (TMP_PREFIX + "x")).write_bytes(b"planted")
    _journal(v, [[str(victim / (TMP_PREFIX + "x")), str(victim / "secret")]])  # the old absolute format


def _absolute_dir(v, victim):
    (victim / (TMP_PREFIX + "x")).write_bytes(b"planted")
    _journal(v, [[str(victim), TMP_PREFIX + "x", "secret"]])


def _dotdot_dir(v, victim):
    (victim / (TMP_PREFIX + "x")).write_bytes(b"planted")
    _journal(v, [[os.path.relpath(victim, v), TMP_PREFIX + "x", "secret"]])


def _dotdot_name(v, victim):
    _journal(v, [["api", None, "../../victim/secret"]])


def _removal_outside(v, victim):
    _journal(v, [["..", None, "victim"]])


def _not_a_temporary(v, victim):
    _journal(v, [["api", "server.key", "ca.crt"]])  # would move a key over a public file


def _not_a_list(v, victim):
    _journal(v, {"renames": []})


PLANTED = [_absolute, _absolute_dir, _dotdot_dir, _dotdot_name, _removal_outside, _not_a_temporary, _not_a_list]


@pytest.mark.parametrize("plant", PLANTED, ids=lambda f: f.__name__.strip("_"))
def test_a_journal_naming_anything_but_renames_inside_the_root_is_refused(plant, initialized, tmp_path):
    victim = make_victim(tmp_path)
    plant(initialized, victim)
    before, inside = state_of(victim), state_of(initialized / "api")
    result = run_cli("run", volumes=initialized)
    assert result.returncode == REFUSED
    line = one_line_error(result, str(initialized / JOURNAL), "refused")
    assert state_of(victim) == before and state_of(initialized / "api") == inside
    checked = status(initialized)
    assert checked.returncode == REFUSED and one_line_error(checked) == line
    (initialized / JOURNAL).unlink()
    run_cli("run", volumes=initialized, check=True)
    assert state_of(victim) == before and status(initialized).returncode == 0


def _dir_is_link(v, victim):
    (victim / (TMP_PREFIX + "x.tmp")).write_bytes(b"planted")
    (v / "evil").symlink_to(victim)
    _journal(v, [["evil", TMP_PREFIX + "x.tmp", "secret"]])
    return "evil"


def _temporary_is_link(v, victim):
    (v / "api" / (TMP_PREFIX + "x.tmp")).symlink_to(victim / "secret")
    _journal(v, [["api", TMP_PREFIX + "x.tmp", "server.key"]])
    return f"api/{TMP_PREFIX}x.tmp"


def _final_is_link(v, victim):
    (v / "api" / (TMP_PREFIX + "x.tmp")).write_bytes(b"new")
    (v / "api/planted").symlink_to(victim / "secret")
    _journal(v, [["api", TMP_PREFIX + "x.tmp", "planted"]])
    return "api/planted"


def _journal_is_link(v, victim):
    (v / JOURNAL).parent.mkdir(exist_ok=True)
    (victim / "journal.json").write_text(json.dumps([["api", None, "server.key"]]))
    (v / JOURNAL).symlink_to(victim / "journal.json")
    return JOURNAL


def _state_dir_is_link(v, victim):
    shutil.rmtree(v / ".higress-init", ignore_errors=True)
    (v / ".higress-init").symlink_to(victim)
    return ".higress-init"


def _lock_is_link(v, victim):
    (v / ".higress-init").mkdir(exist_ok=True)
    (v / ".higress-init/lock").unlink(missing_ok=True)
    (v / ".higress-init/lock").symlink_to(victim / "secret")
    return ".higress-init/lock"


LINKED = [_dir_is_link, _temporary_is_link, _final_is_link, _journal_is_link, _state_dir_is_link, _lock_is_link]


@pytest.mark.parametrize("plant", LINKED, ids=lambda f: f.__name__.strip("_"))
def test_links_in_the_journal_or_state_folder_are_refused(plant, initialized, tmp_path):
    victim = make_victim(tmp_path)
    rel = plant(initialized, victim)
    before = state_of(victim)
    result = run_cli("run", volumes=initialized)
    assert result.returncode == REFUSED
    one_line_error(result, str(initialized / rel), "refused")
    assert state_of(victim) == before
    checked = status(initialized)
    assert checked.returncode == REFUSED and str(initialized / rel) in checked.stderr
    assert state_of(victim) == before


@pytest.mark.parametrize("raw", [b'[["api", ".higress-init-tmp.', b"\xff\xfe\x00garbage", b""],
                         ids=["torn", "not-utf8", "empty"])
def test_a_torn_journal_is_dropped_and_the_old_files_kept(raw, initialized):
    server = (initialized / "api/server.crt").read_bytes()
    _journal(initialized, None, raw=raw)
    result = run_cli("run", volumes=initialized, check=True)
    assert "Traceback" not in result.stderr
    assert not (initialized / JOURNAL).exists() and (initialized / "api/server.crt").read_bytes() == server
    assert status(initialized).returncode == 0


def test_a_crashed_commit_is_finished_after_the_volumes_moved(tmp_path, fast_env):
    """Host ./volumes first, then the same folder seen at another path (as in the container)."""
    first = tmp_path / "host/volumes"
    died = run_cli("run", volumes=first, env=dict(fast_env, HIGRESS_INIT_DIE_AT="commit:journal"))
    assert died.returncode == -9 and (first / JOURNAL).exists()
    moved = tmp_path / "mnt/volumes"
    moved.parent.mkdir()
    first.rename(moved)
    first.mkdir()  # something else is now at the old path: it must stay untouched
    (first / "api").mkdir()
    before = state_of(first)
    checked = status(moved, env=fast_env)
    assert checked.returncode == 1 and "interrupted commit" in checked.stdout
    result = run_cli("run", volumes=moved, env=fast_env, check=True)
    assert "finished" in result.stdout and not (moved / JOURNAL).exists()
    assert state_of(first) == before
    assert status(moved, env=fast_env).returncode == 0


@pytest.fixture
def settled(initialized):
    run_cli("run", volumes=initialized, check=True)
    assert UNCHANGED in run_cli("run", volumes=initialized, check=True).stdout
    return initialized


def _edit_record(volumes, change):
    path = volumes / ".higress-init/last-run.json"
    state = json.loads(path.read_text())
    body = json.loads(state["body"])
    change(state, body)
    state["body"] = json.dumps(body, sort_keys=True)
    path.write_text(json.dumps(state))


def test_an_edited_record_does_not_skip_repairing_a_deleted_key(settled):
    from higress_init.run import runstate
    from higress_init.volume.safefs import Root
    (settled / "api/server.key").unlink()
    # the record edited to describe the volumes as they now are, its signature kept
    _edit_record(settled, lambda state, body: body["files"].update(
        {"api/server.key": runstate._stat(Root(settled), "api/server.key")}))
    result = run_cli("run", volumes=settled, check=True)
    assert UNCHANGED not in result.stdout and "re-issued 1" in result.stdout
    assert (settled / "api/server.key").exists() and status(settled).returncode == 0


def test_a_record_copied_from_other_volumes_is_not_trusted(settled, tmp_path, initialized_template):
    other = tmp_path / "other"
    shutil.copytree(initialized_template, other, symlinks=True)
    run_cli("run", volumes=other, check=True)
    (settled / "gateway/certs/key.pem").unlink()
    shutil.copy(other / ".higress-init/last-run.json", settled / ".higress-init/last-run.json")
    result = run_cli("run", volumes=settled, check=True)
    assert UNCHANGED not in result.stdout and "re-issued 1" in result.stdout
    assert (settled / "gateway/certs/key.pem").exists() and status(settled).returncode == 0


def test_a_later_deadline_written_into_the_record_is_not_trusted(settled):
    _edit_record(settled, lambda state, body: body.update(deadline="9999-01-01T00:00:00+00:00"))
    assert UNCHANGED not in run_cli("run", volumes=settled, check=True).stdout


@pytest.mark.parametrize("raw", [b"{", b"\xff\xfe garbage", b'{"settings": 1, "body": "[]", "mac": null}', b"[]"],
                         ids=["torn", "not-utf8", "wrong-types", "not-an-object"])
def test_a_garbage_record_means_a_full_run(raw, settled):
    (settled / ".higress-init/last-run.json").write_bytes(raw)
    result = run_cli("run", volumes=settled, check=True)
    assert UNCHANGED not in result.stdout and "Traceback" not in result.stderr
    assert UNCHANGED in run_cli("run", volumes=settled, check=True).stdout


def test_the_record_holds_nothing_to_guess_the_password_by(tmp_path, fast_env):
    volumes = tmp_path / "volumes"
    password = "hunter2-correct-horse"
    env = dict(fast_env, NACOS_USERNAME="nacos", NACOS_PASSWORD=password, CONFIG_STORAGE="file")
    # the file store: no Nacos needed, the password is still a setting the record covers
    env.pop("CONFIG_STORAGE")
    run_cli("run", volumes=volumes, env=env, check=True)
    record = (volumes / ".higress-init/last-run.json").read_text()
    settings = load(env=dict(env, VOLUMES_ROOT=str(volumes)))
    unsalted = hashlib.sha256(f"{__version__}|{settings!r}".encode()).hexdigest()
    assert unsalted not in record and password not in record
    key = volumes / ".higress-init/last-run.key"
    assert key.stat().st_mode & 0o777 == 0o600 and key.parent.stat().st_mode & 0o777 == 0o700
    assert os.path.getsize(key) >= 32 and key.stat().st_uid == os.geteuid()


def test_a_record_signed_with_a_key_root_does_not_own_is_not_trusted(settled):
    """Whoever owns the volumes root can swap .higress-init/ for a folder of their own, with a
    key they chose and a record signed with it: a key not owned by root counts for nothing."""
    key = settled / ".higress-init/last-run.key"
    os.chown(key, 4321, 4321)
    (settled / "gateway/certs/key.pem").unlink()
    result = run_cli("run", volumes=settled, check=True)
    assert UNCHANGED not in result.stdout and (settled / "gateway/certs/key.pem").exists()


def _remove_chain(path) -> None:
    """Remove a chain of nested folders without recursion: the deepest first."""
    chain = []
    while path.is_dir() and not path.is_symlink():
        chain.append(path)
        entries = [p for p in path.iterdir() if p.is_dir() and not p.is_symlink()]
        if len(entries) != 1:
            break
        path = entries[0]
    for folder in reversed(chain):
        shutil.rmtree(folder, ignore_errors=True)


def test_what_a_component_does_in_its_own_folder_never_stops_a_run(initialized, request):
    """The controller nests 1000 folders in its log folder, the gateway keeps a folder named like
    a temporary in its own: runs and `watch --once` go on (the sweep of leftover temporaries was a
    walk of the whole root and failed on every run); a temporary a killed run left beside a managed
    file is still swept."""
    top = deep = initialized / "controller/log/nacos"
    for _ in range(1000):
        deep = deep / "d"
        deep.mkdir()
    request.addfinalizer(lambda: _remove_chain(top / "d"))   # shutil.rmtree recurses past Python's limit
    (initialized / "gateway/log" / (TMP_PREFIX + "x")).mkdir()
    (initialized / "gateway/log" / (TMP_PREFIX + "y")).write_bytes(b"the gateway's own")
    leftover = initialized / "gateway/certs" / (TMP_PREFIX + "left.tmp")
    leftover.write_bytes(b"a killed run's")
    for _ in range(2):
        result = run_cli("run", volumes=initialized)
        assert result.returncode == 0, result.stdout + result.stderr
    assert not leftover.exists()
    assert (initialized / "gateway/log" / (TMP_PREFIX + "y")).read_bytes() == b"the gateway's own"
    assert deep.is_dir()
    watched = run_cli("watch", "--once", volumes=initialized)
    assert watched.returncode == 0, watched.stdout + watched.stderr


def test_a_journal_entry_that_can_never_be_applied_says_what_to_do(initialized):
    """A journal an older version left naming a file longer than NAME_MAX (from a TOKEN_IDENTITIES
    now refused): one line, exit 3, naming the journal and the way out; following it works."""
    _journal(initialized, [["tok", TMP_PREFIX + "a.tmp", "t" * 256]])
    before = state_of(initialized)
    result = run_cli("run", volumes=initialized)
    one_line_error(result, JOURNAL, "longer than 255 bytes", f"Remove {JOURNAL} and rerun")
    assert result.returncode == 3 and state_of(initialized) == before
    (initialized / JOURNAL).unlink()
    run_cli("run", volumes=initialized, check=True)


@pytest.mark.parametrize("owned", ["journal", "folder"])
def test_a_journal_planted_by_a_non_root_owner_of_the_volumes_is_not_obeyed(initialized, owned):
    """Whoever owns the volumes root (not root) writes a journal that would rename the apiserver CA
    key away: the run refuses it in one line and renames nothing; removed, the run goes on."""
    key = initialized / "pki/apiserver-ca.key"
    (initialized / "pki" / (TMP_PREFIX + "x.tmp")).write_bytes(b"not a key")
    _journal(initialized, [["pki", TMP_PREFIX + "x.tmp", "apiserver-ca.key"]])
    os.chown(initialized / (JOURNAL if owned == "journal" else ".higress-init"), 1000, 1000)
    data = key.read_bytes()
    result = run_cli("run", volumes=initialized)
    one_line_error(result, JOURNAL, "not the initializer's", "owned by uid 1000")
    assert result.returncode == 3 and key.read_bytes() == data
    (initialized / JOURNAL).unlink()
    os.chown(initialized / ".higress-init", 0, 0)
    run_cli("run", volumes=initialized, check=True)
    assert key.read_bytes() == data


def test_a_journal_nested_without_end_is_refused_in_one_line(initialized):
    _journal(initialized, None, raw=b"[" * 100_000 + b"]" * 100_000)
    result = run_cli("run", volumes=initialized)
    one_line_error(result, JOURNAL, "nested too deeply", "remove it")
    assert result.returncode == 3


def _immutable(path, on: bool) -> None:
    subprocess.run(["chattr", "+i" if on else "-i", str(path)], check=True)


def _pair_matches(volumes, cert: str, key: str) -> bool:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    public = x509.load_pem_x509_certificate((volumes / cert).read_bytes()).public_key()
    private = serialization.load_pem_private_key((volumes / key).read_bytes(), None)
    der = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return public.public_bytes(*der) == private.public_key().public_bytes(*der)


@pytest.mark.parametrize("stuck", ["api/server.key", "api/server.crt", "pilot/kube/client.key", "api"])
def test_a_file_that_cannot_be_replaced_leaves_every_pair_whole(initialized, stuck):
    """An immutable file (or folder) stops the commit half-way through its renames: what was already
    renamed is put back, so no key is left beside a certificate of another run; once the file can be
    written again, the rotation goes through."""
    require_tool("chattr", "apt-get install e2fsprogs")
    before = snapshot(initialized)
    _immutable(initialized / stuck, True)
    try:
        result = run_cli("rotate", "leaf", volumes=initialized)
    finally:
        _immutable(initialized / stuck, False)
    line = one_line_error(result, "cannot be", "chattr -i")
    assert result.returncode == REFUSED, line
    after = snapshot(initialized)
    assert {k: v[0] for k, v in after.items() if not k.startswith("backup/")} == \
           {k: v[0] for k, v in before.items() if not k.startswith("backup/")}
    assert not (initialized / JOURNAL).exists()
    leftovers = [p for p in initialized.rglob(TMP_PREFIX + "*") if "backup" not in p.parts]
    assert leftovers == []
    assert status(initialized).returncode == 0
    run_cli("rotate", "leaf", volumes=initialized, check=True)
    assert snapshot(initialized)["api/server.key"][0] != before["api/server.key"][0]
    for cert, key in (("api/server.crt", "api/server.key"), ("pilot/kube/client.crt", "pilot/kube/client.key")):
        assert _pair_matches(initialized, cert, key), cert
