"""higress-init: the command line. The parser, one map from error to exit code, and the dispatch
to each command (run, plan, rotate and phase through the runner; status, watch and migrate in
their own modules)."""
from __future__ import annotations

import argparse
import os
import re
import signal

from higress_init import __version__
from higress_init import settings as settings_mod
from higress_init.cli import migrate, watch
from higress_init.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    StateError,
    StoreError,
)
from higress_init.run import deployment, runner
from higress_init.run.phases import CONTROL_PLANE, GATEWAY_HOST, phase_named, phases_of
from higress_init.run.reporting import Reporter, say, wrap
from higress_init.settings import SETTINGS, SettingsError
from higress_init.volume.writer import VolumeError, check_writable


def _flag(setting) -> str:
    return setting.flag or "--" + setting.env.lower().replace("_", "-")


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line and a hint, not the whole usage."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


# The settings each command does not use (its --help leaves them out; every command still accepts
# them, as it accepts any environment variable).
UNUSED_SETTINGS = {
    "run": {"METRICS_PORT"}, "plan": {"METRICS_PORT", "BACKUP_KEEP"}, "phase": {"METRICS_PORT", "ROTATE"},
    "rotate": {"METRICS_PORT", "ROTATE"}, "migrate": {"METRICS_PORT", "ROTATE"}, "watch": {"ROTATE"},
    "status": {"METRICS_PORT", "ROTATE", "BACKUP_KEEP"},
    "phases": {s.env for s in SETTINGS},
}


def _short(setting) -> str:
    """A setting's help in about a line: without its asides (parentheses) when long, up to the first
    `;`, and its default."""
    text = setting.help if len(setting.help) <= 70 else re.sub(r" \([^()]*\)", "", setting.help)
    text = re.split(r"; |, e\.g\. ", text)[0]
    default = f" [{setting.default}]" if setting.default not in (None, "") else ""
    return f"{setting.env}: {text}{default}"


def _add_settings(parser: argparse.ArgumentParser, command: str | None = None) -> None:
    """The settings, after the command's own options: each flag overrides its environment variable.
    Help lists only those the command uses, one line each (the README has them in full)."""
    unused = UNUSED_SETTINGS.get(command, set()) if command else {s.env for s in SETTINGS}
    group = parser.add_argument_group(
        "settings this command uses", "flag or environment variable (the flag wins); secrets only from the "
        "environment or <NAME>_FILE; every setting in full: README, \"Settings\"") if len(unused) < len(SETTINGS) \
        else parser
    for s in SETTINGS:
        if s.secret:
            continue  # secrets come from the environment or <NAME>_FILE, never the command line
        hidden = s.env in unused
        group.add_argument(_flag(s), dest=s.env, metavar="", default=argparse.SUPPRESS,
                           help=argparse.SUPPRESS if hidden else _short(s))
        long_name = "--" + s.env.lower().replace("_", "-")
        if long_name != _flag(s):   # the alias named after the variable: accepted, not listed twice
            group.add_argument(long_name, dest=s.env, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


EXIT_CODES = """exit codes:
  0  done (status: all healthy)             4  Nacos not ready within NACOS_WAIT_TIMEOUT
  1  failed (status: something wrong)       5  Nacos rejected the credentials
  2  bad input: the line names the setting  6  a compare-and-swap write to Nacos lost a race
  3  refused, to protect what exists        7  a Nacos request failed after retries
  130, 143  interrupted (SIGINT, SIGTERM): the next run finishes or undoes what was started"""
EXAMPLES = {
    None: "higress-init run --volumes ./volumes",
    "run": "higress-init run --volumes ./volumes --apiserver-sans api.example.com",
    "plan": "higress-init plan --reseed --volumes ./volumes",
    "status": "higress-init status -o wide --volumes ./volumes",
    "rotate": "higress-init rotate leaf --volumes ./volumes",
    "watch": "METRICS_PORT=9793 higress-init watch --interval 12h --volumes ./volumes",
    "phase": "higress-init phase apiserver-pki --volumes ./volumes",
    "migrate": "higress-init migrate --volumes ./volumes",
    "phases": "higress-init phases",
}


def _epilog(command: str | None) -> str:
    return f"{EXIT_CODES}\n\nexample:\n  {EXAMPLES[command]}"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown, options and their help on one line where they fit, within 120 columns; text
    laid out in lines (the exit codes) kept as written."""

    def __init__(self, prog):
        import shutil
        super().__init__(prog, max_help_position=30, width=min(120, shutil.get_terminal_size().columns))

    def _fill_text(self, text, width, indent):
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


# Each command: what it does (its help leads with this), then its own options.
COMMANDS = {
    "run": "all phases in order (the default command): certificates, kubeconfigs, tokens, pod labels, commit, "
           "writable folders, seed the store, deliver the mesh files",
    "plan": "the same run without the commit: what run would create, re-issue, update and write; writes nothing, "
            "Nacos included (ROTATE=... or --rotate plans a rotation)",
    "status": "check every file the product writes (chains, expiry, names, modes, tokens, the mesh, the store); "
              "exit 1 when something is wrong",
    "rotate": "re-issue on purpose: leaf (the default), intermediate or root; `rotate finish` ends a root overlap",
    "watch": "stay up: every --interval renew what comes within RENEW_BEFORE, say which services to restart; exit "
             "non-zero when something cannot be renewed",
    "migrate": "take over volumes upstream's scripts prepared (api/ca.key, pilot/cacerts/root-key.pem): move their CA "
               "keys into pki/, re-issue what fails validation, remove their leftovers (all backed up under "
               "backup/), then run",
    "phase": "run one phase only (and commit what it staged)",
    "phases": "list the phases",
}


def build_parser() -> argparse.ArgumentParser:
    formatter = HelpFormatter
    parser = Parser(prog="higress-init", formatter_class=formatter, usage="%(prog)s [COMMAND] [OPTIONS] [SETTINGS]",
                    description="Prepare certificates, kubeconfigs, tokens and base config for Higress standalone. "
                                "With no command: run. Each command's --help lists its options and the settings "
                                "it uses.", epilog=_epilog(None))
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands = {}
    for name, text in COMMANDS.items():
        positional = {"phase": " NAME", "rotate": " [KIND]"}.get(name, "")
        commands[name] = sub.add_parser(name, prog=f"higress-init {name}", help=text, description=text,
                                        formatter_class=formatter, epilog=_epilog(name),
                                        usage=f"%(prog)s{positional} [OPTIONS] [SETTINGS]")
    for name in ("run", "plan"):   # plan takes run's options: it shows what that run would do
        commands[name].add_argument("--reseed", action="store_true",
                                    help="rewrite the base config on purpose (compare-and-swap); each stored object "
                                         "replaced is first copied to backup/<time>/")
        commands[name].add_argument("--push-mesh", action="store_true",
                                    help="copy pilot/config/mesh and meshNetworks, edited here, into the stored "
                                         "higress-config once (compare-and-swap); afterwards edit it in the store")
    for name in ("run", "plan", "rotate", "phase", "watch"):
        commands[name].add_argument(
            "--change-setting", action="append", default=[], metavar="NAME",
            help="change a setting this deployment was made with, on purpose (repeatable): without it a value "
                 "other than the recorded one (.higress-init/settings.json) is refused, and a setting left out "
                 "keeps its recorded value")
    commands["phase"].add_argument("name", choices=[p.name for p in CONTROL_PLANE], help="the phase")
    rot = commands["rotate"]
    rot.add_argument("kind", nargs="?", choices=("leaf", "intermediate", "root", "finish"), default="leaf",
                     help="what to re-issue; finish: drop the old roots once every component runs with the new ones")
    rot.add_argument("--finish", action="store_true", help="the same as `rotate finish`")
    st = commands["status"]
    st.add_argument("-o", "--output", choices=("table", "wide", "json"), default="table",
                    help="table fits 120 columns; wide adds subject, issuer, expiry and checks; json has everything")
    st.add_argument("--wide", action="store_const", dest="output", const="wide", default=argparse.SUPPRESS,
                    help="the same as -o wide")
    wa = commands["watch"]
    wa.add_argument("--interval", default="12h", help="time between checks")
    wa.add_argument("--once", action="store_true", help="one check, then exit with its result")
    _add_settings(parser)
    for name, command in commands.items():
        _add_settings(command, name)
    return parser


class Terminated(BaseException):
    """SIGTERM, handled like SIGINT: stop, clean up, one line, exit 143."""


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """The command line; every failure ends in one line on stderr and an exit code, never a
    traceback (a killed or interrupted run is finished by the next one: see volume/journal.py)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        _problem("interrupted", "SIGINT; the next run finishes or undoes what was started")
        return EXIT_INTERRUPTED
    except Terminated:
        _problem("terminated", "SIGTERM; the next run finishes or undoes what was started")
        return 128 + signal.SIGTERM
    except RecursionError:
        _problem("error", "input nested too deeply")
        return EXIT_FAILED
    except Exception as err:  # noqa: BLE001 - the last resort: one line naming what went wrong
        _problem("error", f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}")
        return EXIT_FAILED


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "run"
    overrides = {s.env: getattr(args, s.env) for s in SETTINGS if hasattr(args, s.env)}
    if command == "phases":
        for p in CONTROL_PLANE:
            say(wrap(f"{p.name:<14} {p.help}", hang=" " * 15))
        say("\n" + wrap(f"a gateway-only host (ROLE=gateway) runs: {', '.join(p.name for p in GATEWAY_HOST)}"))
        return EXIT_OK
    global _REPORTER
    _REPORTER = Reporter(overrides.get("LOG_FORMAT") or os.environ.get("LOG_FORMAT") or "text")
    try:
        recorded = deployment.read(settings_mod.volumes_root_of(overrides=overrides))
        settings = settings_mod.load(overrides=overrides, recorded=recorded,
                                     change=tuple(getattr(args, "change_setting", ())))
        _REPORTER = reporter = Reporter(settings.log_format, plan=command == "plan")
        interval = settings_mod.parse_duration("--interval", args.interval) if command == "watch" else None
        _check_default_root(settings, overrides)
        if command in ("run", "phase", "watch", "rotate", "migrate"):
            check_writable(settings.volumes_root)
    except Exception as err:
        return _exit_for(err)
    try:
        if command == "status":
            from higress_init.cli import status
            return status.command(settings, args.output)
        if command == "watch":
            return watch.command(settings, reporter, interval, args.once)
        if command == "migrate":
            return migrate.command(settings, reporter)
        names = [args.name] if command == "phase" else [p.name for p in phases_of(settings.role)]
        if command == "phase" and args.name not in {p.name for p in phases_of(settings.role)}:
            reporter.problem("error", f"phase {args.name} does not run on a gateway-only host (ROLE=gateway); "
                                      f"its phases: {', '.join(p.name for p in GATEWAY_HOST)}")
            return EXIT_BAD_INPUT
        if command == "phase" and not phase_named(settings.role, args.name).commits:
            names.append("write")  # a single phase still commits what it staged
        rotation = settings.rotate if command in ("run", "plan") else None
        if command == "rotate":
            if args.finish and args.kind not in ("leaf", "finish"):
                reporter.problem("error", "rotate takes a kind or finish, not both")
                return EXIT_BAD_INPUT
            rotation = "finish" if args.finish else args.kind
        return runner.execute(settings, reporter, names, reseed=getattr(args, "reseed", False), rotation=rotation,
                        push_mesh=getattr(args, "push_mesh", False), plan=command == "plan")
    except Exception as err:
        return _exit_for(err)


def _exit_codes() -> tuple:
    """(error type, what the line calls it, exit code or None: the error's own exit_code), first match wins."""
    return ((SettingsError, "error", EXIT_BAD_INPUT),
            (StateError, "refused", EXIT_REFUSED),         # protects what exists, a record of settings included
            (VolumeError, "error", EXIT_BAD_INPUT),        # the volumes root cannot be made or written
            (StoreError, "error", None),                   # Nacos: unreachable 4, auth 5, conflict 6, else 7
            (OSError, "error", EXIT_FAILED))


def _exit_for(err: Exception) -> int:
    """One line on stderr for an expected error, and its exit code; anything else goes on to main()."""
    if isinstance(err, UnicodeDecodeError):
        _problem("error", f"a file the run reads is not UTF-8 text ({err.reason} at byte {err.start})")
        return EXIT_FAILED
    for kind, word, code in _exit_codes():
        if isinstance(err, kind):
            _problem(word, str(err))
            return err.exit_code if code is None else code
    raise err


_REPORTER: Reporter | None = None   # how errors are printed: the run's --log-format once it is known


def _problem(kind: str, text: str) -> None:
    """An error or refusal: one line on stderr, text or JSON (with a timestamp) as --log-format says."""
    (_REPORTER or Reporter()).problem(kind, text)


def _in_image() -> bool:
    return os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv")


def _check_default_root(settings, overrides) -> None:
    """Outside the image (which sets VOLUMES_ROOT), a bare `higress-init` would make a PKI under
    /mnt: refuse with a hint instead, unless the default folder is really there."""
    given = "VOLUMES_ROOT" in overrides or "VOLUMES_ROOT" in os.environ or "VOLUMES_ROOT_FILE" in os.environ
    default = settings_mod.SETTINGS_BY_ENV["VOLUMES_ROOT"].default
    if not given and str(settings.volumes_root) == default and not settings.volumes_root.exists():
        raise VolumeError(f"VOLUMES_ROOT: the default {default} does not exist"
                          + ("" if _in_image() else " (this is not the initializer's container)")
                          + ": pass --volumes DIR (e.g. --volumes ./volumes, as `make run` does) or set VOLUMES_ROOT")
