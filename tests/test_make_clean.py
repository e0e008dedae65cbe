"""`make clean` as the operator runs it: it never deletes the CA keys or the data key unasked."""
from __future__ import annotations

import os
import pty
import re
import shutil
import subprocess

import pytest
from conftest import REPO

from higress_init.volume import layout


@pytest.fixture
def clone(tmp_path):
    """A copy of the Makefile with a ./volumes holding the keys a run makes (no .venv to lose)."""
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    for rel in (layout.APISERVER_CA_KEY, layout.PILOT_ROOT_KEY, layout.PILOT_CA_KEY, layout.DATA_KEY, "api/ca.crt"):
        path = tmp_path / "volumes" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("key")
    return tmp_path


def _make(clone, *args, stdin=subprocess.DEVNULL):
    return subprocess.run(["make", "--no-print-directory", "clean", *args], cwd=clone, stdin=stdin,
                          capture_output=True, text=True, timeout=60)


def test_the_guarded_files_are_the_ca_keys_and_the_data_key_layout_names():
    guarded = re.search(r"^CLEAN_GUARDED := (.*?)(?<!\\)$", (REPO / "Makefile").read_text(), re.M | re.S)[1]
    files = {f.removeprefix("volumes/") for f in guarded.replace("\\\n", " ").split()}
    assert files == {layout.APISERVER_CA_KEY, layout.PILOT_ROOT_KEY, layout.PILOT_CA_KEY, layout.DATA_KEY}


def test_without_a_terminal_make_clean_refuses_and_deletes_nothing(clone):
    result = _make(clone)
    assert result.returncode != 0
    assert "refused" in result.stdout and "FORCE=1" in result.stdout, result.stdout
    assert (clone / "volumes" / layout.DATA_KEY).exists() and (clone / "volumes" / layout.APISERVER_CA_KEY).exists()


def test_force_deletes_without_asking(clone):
    result = _make(clone, "FORCE=1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (clone / "volumes").exists()


def _on_a_terminal(clone, answer: str) -> tuple[int, str]:
    master, slave = pty.openpty()
    proc = subprocess.Popen(["make", "--no-print-directory", "clean"], cwd=clone, stdin=slave, stdout=slave,
                            stderr=slave)
    os.close(slave)
    out = b""
    while b"type yes:" not in out:
        chunk = os.read(master, 1024)
        assert chunk, out
        out += chunk
    os.write(master, answer.encode() + b"\n")
    code = proc.wait(60)
    try:
        while True:
            chunk = os.read(master, 1024)
            if not chunk:
                break
            out += chunk
    except OSError:
        pass
    os.close(master)
    return code, out.decode(errors="replace")


def test_on_a_terminal_make_clean_asks_and_only_yes_deletes(clone):
    code, out = _on_a_terminal(clone, "no")
    assert code != 0 and "nothing deleted" in out and (clone / "volumes" / layout.DATA_KEY).exists(), out
    assert layout.APISERVER_CA_KEY in out and layout.DATA_KEY in out
    code, out = _on_a_terminal(clone, "yes")
    assert code == 0 and not (clone / "volumes").exists(), out


def test_without_keys_make_clean_does_not_ask(tmp_path):
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    (tmp_path / "volumes/gateway").mkdir(parents=True)
    result = _make(tmp_path)
    assert result.returncode == 0 and not (tmp_path / "volumes").exists(), result.stdout + result.stderr
