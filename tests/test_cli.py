"""The command line as a user meets it: help, errors, output formats, pipes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO, run_cli

from higress_init import __version__


def test_version():
    result = run_cli("--version", check=True)
    assert result.stdout.strip() == f"higress-init {__version__}"


def test_a_command_help_leads_with_what_it_does_then_its_options_then_the_settings():
    out = " ".join(run_cli("status", "--help", check=True).stdout.split())
    assert out.index("check every file the product writes") < out.index("--output") < \
        out.index("settings this command uses")
    assert "[/mnt/volumes]" in out and "(default: table)" in out


def test_a_usage_error_is_one_line_with_a_hint():
    result = run_cli("statsu")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "--help" in lines[0] and "invalid choice" in lines[0]


def test_errors_and_refusals_follow_the_log_format(initialized):
    (initialized / "pki/apiserver-ca.key").write_text("garbage")
    result = run_cli("run", "--log-format", "json", volumes=initialized)
    assert result.returncode == 3
    event = json.loads(result.stderr)
    assert event["event"] == "refused" and "pki/apiserver-ca.key" in event["message"] and event["time"].endswith("Z")
    bad = run_cli("run", "--log-format", "json", "--cert-validity", "soon", volumes=initialized)
    assert bad.returncode == 2 and json.loads(bad.stderr)["event"] == "error"


def test_a_closed_stdout_does_not_stop_the_work(volumes, fast_env):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NACOS_", "VOLUMES_", "CONFIG_STORAGE"))}
    env.update(fast_env)
    pipeline = f"{sys.executable} -m higress_init run --volumes {volumes} | head -1; exit ${{PIPESTATUS[0]}}"
    result = subprocess.run(["bash", "-c", pipeline], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 and "Traceback" not in result.stderr
    assert run_cli("status", volumes=volumes, env=fast_env).returncode == 0


def test_finishing_without_a_rotation_says_so(initialized):
    for args in (("rotate", "finish"), ("rotate", "--finish")):
        result = run_cli(*args, volumes=initialized, check=True)
        assert "no rotation is in progress" in result.stdout


def test_no_pki_under_a_missing_default_volumes_root(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOLUMES_")}
    result = subprocess.run([sys.executable, "-m", "higress_init"], env=env, capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    if os.path.exists("/mnt/volumes"):
        return  # this machine has the folder: a run there would be what the user asked for
    assert result.returncode == 2 and "--volumes" in result.stderr and "/mnt/volumes" in result.stderr
    assert not os.path.exists("/mnt/volumes")


def test_status_fits_120_columns_and_wide_shows_everything(initialized, tmp_path):
    (initialized / "pilot/config/mesh").write_text("defaultConfig: [unclosed\n")
    narrow = run_cli("status", volumes=initialized).stdout
    table = narrow.split("\n\ndetails:")[0]
    assert max(len(line) for line in table.splitlines()) <= 120
    assert "pilot/config/mesh" in narrow.split("details:")[1]
    wide = run_cli("status", "-o", "wide", volumes=initialized).stdout
    assert "SUBJECT" in wide and "CN=higress-apiserver-ca" in wide and "SUBJECT" not in narrow
    empty = run_cli("status", volumes=tmp_path / "elsewhere")
    assert empty.returncode == 1 and "pass --volumes" in empty.stdout


def test_make_help_prints_real_defaults():
    result = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "$(" not in result.stdout and "./volumes" in result.stdout


def test_every_line_of_every_command_fits_120_columns_and_names_stay_apart(tmp_path, fast_env):
    """A deep volumes path (as a CI runner's) and every command's text output: the `done` line,
    plan's file list, status (narrow and wide), watch and rotate."""
    volumes = tmp_path / ("deep-" * 16) / "volumes"
    outputs = {}
    for args in (("plan",), ("run",), ("plan", "--reseed"), ("run", "--reseed"), ("status",),
                 ("status", "-o", "wide"), ("watch", "--once"), ("rotate", "leaf"), ("phases",)):
        result = run_cli(*args, volumes=volumes, env=fast_env)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        outputs[" ".join(args)] = result.stdout
    for command, out in outputs.items():
        long = [line for line in out.splitlines() if len(line) > 120]
        assert not long, (command, long)
    # the summary stays the last line, and the volumes are named
    run = outputs["run"].splitlines()
    assert run[-1].startswith("done ") and "49 files written" in run[-1], run[-3:]
    assert str(volumes).startswith(" ".join(ln.split(None, 1)[1] for ln in run if ln.startswith("volumes"))[:60])
    # status: every NAME in the table is told apart from every other
    table = outputs["status"].split("\n\ndetails:")[0].splitlines()[1:]
    names = [line[:line.index("  ")] for line in table]
    assert len(set(names)) == len(names), names


def _help(*args, columns: int = 120) -> str:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["COLUMNS"] = str(columns)
    result = subprocess.run([sys.executable, "-m", "higress_init", *args, "--help"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_each_commands_help_shows_its_own_options_and_the_settings_it_uses():
    from higress_init.cli import main as cli
    from higress_init.settings import SETTINGS
    status, watch, plan, top = _help("status"), _help("watch"), _help("plan"), _help()
    assert "--output" in status and "--interval" not in status and "--reseed" not in status
    assert "--interval" in watch and "--once" in watch and "--output" not in watch
    assert "--reseed" in plan and "--push-mesh" in plan
    assert "METRICS_PORT:" in watch and "METRICS_PORT" not in status and "ROTATE:" in plan and "ROTATE:" not in watch
    # one line a setting (at 120 columns, a few run over to a second), not the 80 lines of the whole list
    settings = status.split("settings this command uses:")[1].split("exit codes:")[0]
    shown = [s for s in SETTINGS if f"{s.env}:" in settings]
    assert len(shown) >= 25 and len(settings.strip().splitlines()) <= len(shown) + 12, settings
    assert "VOLUMES_ROOT: directory holding every component's volume [/mnt/volumes]" in settings
    # the top level lists the commands, not the settings; every help has the exit codes and one example
    assert "settings this command uses" not in top and "CERT_VALIDITY" not in top and "status" in top
    for name, text in [(None, top), ("status", status), ("watch", watch), ("plan", plan)]:
        assert "exit codes:" in text and "  3  refused, to protect what exists" in text
        assert f"example:\n  {cli.EXAMPLES[name]}" in text
        assert max(len(line) for line in text.splitlines()) <= 120, name
    assert "settings this command uses" not in _help("phases")
    # a setting's flag is still accepted by every command, and at the top level (run)
    assert run_cli("status", "--metrics-port", "0", "--volumes-root", "/nonexistent/x").returncode == 1
