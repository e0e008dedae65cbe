"""Interrupted runs: SIGKILL or SIGTERM while keys are being generated must not leave a process
holding the lock (a later run would wait forever), and SIGINT/SIGTERM end a run with one line.
A later run that hangs shows as the subprocess timeout: no assert is about speed."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import run_cli
from hostile import make_victim, one_line_error, state_of, status

NO_WAIT = 600  # the failure detector: a run queued behind a leaked lock never ends


def _sigint_as_in_a_terminal():
    """A child's SIGINT as a foreground shell leaves it: the default. A background job of a
    non-interactive shell (`make test &` in a script) inherits SIGINT ignored, and Python then
    installs no handler: a SIGINT test would see the run finish."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_paused(volumes, pause_dir, env=None, point="keys:generating"):
    """A cold run (RSA keys, so the key pool is used), paused while its threads generate keys."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("NACOS_", "VOLUMES_", "CONFIG_STORAGE"))}
    full_env.update(env or {})
    full_env["HIGRESS_INIT_PAUSE_AT"] = f"{point}={pause_dir}"
    proc = subprocess.Popen([sys.executable, "-m", "higress_init", "run", "--volumes", str(volumes)], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_sigint_as_in_a_terminal)
    marker = pause_dir / (point.replace(":", "_") + ".paused")
    deadline = time.monotonic() + NO_WAIT
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never reached key generation"
        time.sleep(0.05)
    return proc


def _cleanup(proc):
    """Whatever the killed run left in its process group (there should be nothing)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("attempt", range(2))
def test_a_run_killed_during_key_generation_leaves_no_lock_behind(sig, attempt, tmp_path):
    volumes, pause_dir = tmp_path / "volumes", tmp_path / "pause"
    pause_dir.mkdir()
    victim = make_victim(tmp_path)
    before = state_of(victim)
    proc = _start_paused(volumes, pause_dir)
    try:
        time.sleep(0.2 * attempt)  # key generation at different points of its work
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=NO_WAIT)
        if sig == signal.SIGTERM:
            assert proc.returncode == 128 + signal.SIGTERM
            assert "Traceback" not in stderr and stderr.strip().count("\n") == 0 and "SIGTERM" in stderr
        else:
            assert proc.returncode == -signal.SIGKILL
        result = run_cli("run", volumes=volumes, timeout=NO_WAIT)
        assert result.returncode == 0, result.stderr
        assert "waiting for the lock" not in result.stdout
    finally:
        _cleanup(proc)
    assert status(volumes).returncode == 0
    assert state_of(victim) == before


def _session_members(sid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.getsid(int(entry)) == sid:
                members.append(int(entry))
        except ProcessLookupError:
            continue
    return members


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_keys_are_generated_ends_the_run_and_all_it_started(sig, tmp_path):
    """`docker stop` early in a cold run: the run ends in one line, without waiting for the keys being
    generated, and nothing it started outlives it (keys are made by its own threads)."""
    volumes, pause_dir = tmp_path / "volumes", tmp_path / "pause"
    pause_dir.mkdir()
    proc = _start_paused(volumes, pause_dir)
    try:
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=NO_WAIT)
        assert _session_members(proc.pid) == [], "a process the run started outlived it"
    finally:
        _cleanup(proc)
    assert proc.returncode == 128 + sig
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not any(volumes.rglob("*.key"))


def test_sigint_ends_a_run_with_one_line_and_exit_130(tmp_path):
    volumes, pause_dir = tmp_path / "volumes", tmp_path / "pause"
    pause_dir.mkdir()
    proc = _start_paused(volumes, pause_dir)
    try:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=NO_WAIT)
    finally:
        _cleanup(proc)
    assert proc.returncode == 130
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0] and "Traceback" not in stderr
    assert not any(volumes.rglob("*.key"))  # stopped before the write phase: nothing half-written
    assert status(volumes).returncode == 1
    run_cli("run", volumes=volumes, timeout=NO_WAIT, check=True)
    assert status(volumes).returncode == 0


def test_sigint_while_waiting_for_the_lock(initialized, tmp_path):
    """A second run queued behind a first one can be interrupted with one line too."""
    pause_dir = tmp_path / "pause"
    pause_dir.mkdir()
    (initialized / "api/server.key").unlink()  # the first run needs a key: it pauses in the pool
    (initialized / "gateway/certs/key.pem").unlink()
    first = _start_paused(initialized, pause_dir)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NACOS_", "VOLUMES_"))}
        second = subprocess.Popen([sys.executable, "-m", "higress_init", "run", "--volumes", str(initialized)],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  preexec_fn=_sigint_as_in_a_terminal)
        deadline = time.monotonic() + NO_WAIT
        out = ""
        while "waiting for the lock" not in out:
            assert time.monotonic() < deadline
            out += second.stdout.readline()
        second.send_signal(signal.SIGINT)
        _, stderr = second.communicate(timeout=NO_WAIT)
        assert second.returncode == 130
        one_line_error(subprocess.CompletedProcess([], 130, "", stderr), "interrupted")
        (pause_dir / "keys_generating.resume").touch()
        first.communicate(timeout=NO_WAIT)
        assert first.returncode == 0
    finally:
        _cleanup(first)
    assert status(initialized).returncode == 0
