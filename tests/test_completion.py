"""Shell completion as an operator gets it: `make completion` writes bash and zsh scripts from the
CLI's own parser (shtab), so they offer exactly the commands and options the parser has."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from conftest import REPO

from higress_init.cli import main as cli


@pytest.fixture(scope="module")
def scripts(tmp_path_factory):
    """`make completion` in a copy of the repository sharing this worktree's .venv."""
    clone = tmp_path_factory.mktemp("completion")
    shutil.copy(REPO / "Makefile", clone / "Makefile")
    (clone / ".venv").symlink_to(REPO / ".venv")
    result = subprocess.run(["make", "--no-print-directory", "-o", ".venv/bin/higress-init", "completion"], cwd=clone,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return clone / "completion"


def _complete(script, words: list[str]) -> list[str]:
    """What bash offers after `words` (the last one being typed), through the script's own function."""
    line = " ".join(words)
    program = f"""
source {script}
COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; COMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}}
fn=$(complete -p higress-init | sed -E 's/.* -F ([^ ]+) .*/\\1/')
$fn higress-init "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return sorted(set(result.stdout.split()))


def test_bash_completes_the_parsers_commands_and_each_commands_own_options(scripts):
    script = scripts / "higress-init.bash"
    assert _complete(script, ["higress-init", ""]) == sorted(cli.COMMANDS), _complete(script, ["higress-init", ""])
    assert "--metrics-port" in _complete(script, ["higress-init", "watch", "--m"])
    assert "--metrics-port" not in _complete(script, ["higress-init", "status", "--m"])   # not status's setting
    assert _complete(script, ["higress-init", "status", "-o", ""]) == ["json", "table", "wide"]
    assert "--reseed" in _complete(script, ["higress-init", "plan", "--re"])


def test_zsh_script_names_every_command_and_option_of_the_parser(scripts):
    text = (scripts / "_higress-init").read_text()
    assert text.startswith("#compdef higress-init")
    for name in cli.COMMANDS:
        assert re.search(rf"^\s+{name}:'", text, re.M), name
    parser = cli.build_parser()
    watch = next(a for a in parser._subparsers._actions if a.choices).choices["watch"]
    for action in watch._actions:
        if action.help != "==SUPPRESS==":
            for option in action.option_strings:
                assert option in text, option
