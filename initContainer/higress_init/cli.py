"""higress-init: the command line."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import time

from datetime import datetime, timezone

from . import __version__, faults, phases, runstate, settings as settings_mod
from .errors import StateError
from .phases import PHASES, Context
from .reporting import Counts, Reporter, say
from .settings import SETTINGS, SettingsError
from .volume import PlanWriter, RunLock, VolumeError, VolumeWriter, check_writable

# Exit codes (documented in the README).
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_REFUSED = 0, 1, 2, 3
EXIT_NACOS_UNREACHABLE, EXIT_NACOS_AUTH, EXIT_NACOS_CONFLICT, EXIT_NACOS_REQUEST = 4, 5, 6, 7
EXIT_INTERRUPTED = 130  # 128 + the signal number, as a shell reports it: SIGINT 130, SIGTERM 143


def _flag(setting) -> str:
    return setting.flag or "--" + setting.env.lower().replace("_", "-")


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line and a hint, not the whole usage."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def _add_settings(parser: argparse.ArgumentParser) -> None:
    """The settings, after the command's own options: each flag overrides its environment variable."""
    group = parser.add_argument_group("settings (each overrides its environment variable; secrets come only "
                                      "from the environment or <NAME>_FILE)")
    for s in SETTINGS:
        if s.secret:
            continue  # secrets come from the environment or <NAME>_FILE, never the command line
        names = [_flag(s)]
        long_name = "--" + s.env.lower().replace("_", "-")
        if long_name not in names:
            names.append(long_name)
        shown = f" (default: {s.default})" if s.default not in (None, "") and "default:" not in s.help else ""
        group.add_argument(*names, dest=s.env, metavar=s.env, default=argparse.SUPPRESS, help=s.help + shown)


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
    "phase": "run one phase only (and commit what it staged)",
    "phases": "list the phases",
}


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.ArgumentDefaultsHelpFormatter
    parser = Parser(prog="higress-init", formatter_class=formatter, usage="%(prog)s [COMMAND] [OPTIONS] [SETTINGS]",
                    description="Prepare certificates, kubeconfigs, tokens and base config for Higress standalone. "
                                "With no command: run.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands = {}
    for name, text in COMMANDS.items():
        positional = {"phase": " NAME", "rotate": " [KIND]"}.get(name, "")
        commands[name] = sub.add_parser(name, prog=f"higress-init {name}", help=text, description=text,
                                        formatter_class=formatter,
                                        usage=f"%(prog)s{positional} [OPTIONS] [SETTINGS]")
    run = commands["run"]
    run.add_argument("--reseed", action="store_true", help="rewrite the base config on purpose (compare-and-swap)")
    run.add_argument("--push-mesh", action="store_true",
                     help="copy pilot/config/mesh and meshNetworks, edited here, into the stored higress-config once "
                          "(compare-and-swap); afterwards edit it in the store")
    for name in ("run", "plan", "rotate", "phase", "watch"):
        commands[name].add_argument(
            "--change-setting", action="append", default=[], metavar="NAME",
            help="change a setting this deployment was made with, on purpose (repeatable): without it a value "
                 "other than the recorded one (.higress-init/settings.json) is refused, and a setting left out "
                 "keeps its recorded value")
    commands["phase"].add_argument("name", choices=[p.name for p in PHASES], help="the phase")
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
    for command in commands.values():
        _add_settings(command)
    return parser


class Terminated(BaseException):
    """SIGTERM, handled like SIGINT: stop, clean up (key workers included), one line, exit 143."""


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """The command line; every failure ends in one line on stderr and an exit code, never a
    traceback (a killed or interrupted run is finished by the next one: see volume.py)."""
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
        for p in PHASES:
            say(f"{p.name:<14} {p.help}")
        return EXIT_OK
    global _REPORTER
    _REPORTER = Reporter(overrides.get("LOG_FORMAT") or os.environ.get("LOG_FORMAT") or "text")
    try:
        from . import deployment
        recorded = deployment.read(settings_mod.volumes_root_of(overrides=overrides))
        settings = settings_mod.load(overrides=overrides, recorded=recorded,
                                     change=tuple(getattr(args, "change_setting", ())))
        _REPORTER = reporter = Reporter(settings.log_format, plan=command == "plan")
        interval = settings_mod.parse_duration("--interval", args.interval) if command == "watch" else None
        _check_default_root(settings, overrides)
        if command in ("run", "phase", "watch", "rotate"):
            check_writable(settings.volumes_root)
    except (SettingsError, VolumeError) as err:
        _problem("error", str(err))
        return EXIT_BAD_INPUT
    except StateError as err:   # a record of settings someone else could have written
        _problem("refused", str(err))
        return EXIT_REFUSED
    try:
        if command == "status":
            return _status(settings, args.output)
        if command == "watch":
            return _watch(settings, reporter, interval, args.once)
        names = [args.name] if command == "phase" else [p.name for p in PHASES]
        if command == "phase" and not phases.PHASES_BY_NAME[args.name].commits:
            names.append("write")  # a single phase still commits what it staged
        rotation = settings.rotate if command in ("run", "plan") else None
        if command == "rotate":
            if args.finish and args.kind not in ("leaf", "finish"):
                reporter.problem("error", "rotate takes a kind or finish, not both")
                return EXIT_BAD_INPUT
            rotation = "finish" if args.finish else args.kind
        return _execute(settings, reporter, names, reseed=getattr(args, "reseed", False), rotation=rotation,
                        push_mesh=getattr(args, "push_mesh", False), plan=command == "plan")
    except StateError as err:
        _problem("refused", str(err))
        return EXIT_REFUSED
    except VolumeError as err:   # found only once the run starts (the root cannot be made)
        _problem("error", str(err))
        return EXIT_BAD_INPUT
    except _nacos_errors() as err:
        _problem("error", str(err))
        return err.exit_code
    except OSError as err:
        _problem("error", str(err))
        return EXIT_FAILED
    except UnicodeDecodeError as err:
        _problem("error", f"a file the run reads is not UTF-8 text ({err.reason} at byte {err.start})")
        return EXIT_FAILED


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


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _nacos_errors():
    from .nacos import NacosError
    return NacosError


def _writer(settings, owners: bool = True, plan: bool = False) -> VolumeWriter:
    """The volume writer; private files besides *.key and *key.pem: the kubeconfigs and tokens."""
    from .kubeconfig import KUBECONFIGS
    private = {*(k.file for k in KUBECONFIGS), *(i.file for i in settings.token_identities)}
    return (PlanWriter if plan else VolumeWriter)(settings.volumes_root, settings.volumes_uid if owners else None,
                                                  settings.volumes_gid if owners else None, private_files=private)


def _rotated(rotation: str | None) -> set[str]:
    if rotation in (None, "finish"):
        return set()
    from .artifacts import ROTATIONS  # cryptography: only when something is rotated
    return set(ROTATIONS[rotation])


def _execute(settings, reporter: Reporter, names, reseed=False, rotation=None,
             written: list | None = None, push_mesh=False, plan=False) -> int:
    """Run `names` under the lock; `written` collects the volume paths the commit changed.
    `plan` is the same run with a writer that commits nothing (and no lock: it writes nothing)."""
    started = time.perf_counter()
    writer = _writer(settings, plan=plan)
    ctx = Context(settings, writer, utcnow(), plan=plan, reseed=reseed, push_mesh=push_mesh, log=reporter.message,
                  phases=tuple(names), rotate=_rotated(rotation),
                  finish_rotation=rotation == "finish")
    totals = Counts()

    def report(name, counts, seconds):
        reporter.phase(name, counts, seconds)
        if name == "write" and written is not None:
            written.extend(counts.by_action.get("written", []))
        if name != "write":
            for action, items in counts.by_action.items():
                for item in items:
                    totals.add(action, item)

    if plan:
        reporter.message("plan: the run below is not committed; nothing is written, Nacos included", plan=True)
    try:
        lock = contextlib.nullcontext() if plan else \
            RunLock(settings.volumes_root, on_wait=lambda p: reporter.message(f"waiting for the lock {p}"))
        with lock:
            _run_locked(ctx, reporter, names, report, rotation)
    finally:
        if ctx.nacos is not None:
            ctx.nacos.close()  # ends the Nacos SDK's client at once, and says how many calls the run made
        ctx.close()
        writer.close()
    seconds = time.perf_counter() - started
    files = writer.planned if plan else writer.written
    root = settings.volumes_root
    where = f"{len(files)} file{'s' if len(files) != 1 else ''} {'would be ' if plan else ''}written in {root}"
    if plan:
        after = f"to do it: higress-init {'rotate ' + rotation if rotation else 'run'} (same settings)"
    elif rotation:   # a running stack: which services must restart to use what was rotated
        after = "check: higress-init status; " + _restart_advice(settings, writer.written)
    elif written is None and any(phases.PHASES_BY_NAME[n].uses_store for n in names):   # not `watch`'s renewal
        after = "check: higress-init status; " + (
            "start the gateway, in compose/: docker compose -f docker-compose.gateway.yml up -d"
            if settings.role == "gateway" else "start the stack: docker compose up -d (in compose/)")
    else:
        after = "check: higress-init status"
    reporter.emit("summary", f"{'plan' if plan else 'done':<14} {totals.summary(plan)}; {where}; {after}",
                  actions={a: len(n) for a, n in totals.by_action.items()}, files=len(files),
                  volumes=str(root), next=after, seconds=round(seconds, 3))
    if plan and files:
        reporter.emit("planned", "plan: " + ", ".join(files), files=files)
    elif plan:
        reporter.emit("planned", "plan: nothing to write", files=files)
    return EXIT_OK


def _run_locked(ctx: Context, reporter: Reporter, names, report, rotation) -> None:
    from . import deployment
    settings, writer = ctx.settings, ctx.writer
    ctx.recorded = deployment.read(settings.volumes_root)
    recovered = writer.recover()
    if recovered:
        reporter.message(f"{'would finish' if ctx.plan else 'finished'} {recovered} file renames an interrupted run "
                         "left behind")
    if rotation:
        finished = ctx.start()
        if rotation == "finish" and not finished:
            reporter.message("rotate finish: no rotation is in progress (no old root kept beside a new one): "
                             "nothing to finish", rotation=rotation, finished=[])
        else:
            reporter.message(f"rotation: {rotation}" + (f" (ending the overlap of {', '.join(finished)})"
                                                        if finished else ""), rotation=rotation)
    full_run = list(names) == [p.name for p in PHASES]
    kept = runstate.unchanged(settings, ctx.now) if full_run and not (rotation or ctx.reseed) else None
    if kept is not None:
        reporter.message("nothing the local phases read has changed since the last run: their files are kept",
                         unchanged=True)
        for name in names:
            if phases.PHASES_BY_NAME[name].local:
                report(name, runstate.replay(kept, name), 0.0)
            else:
                phases.run_phases(ctx, [name], report)  # Nacos is checked every time
        writer.fix_owners()  # what seed wrote after the write phase
        deployment.record(settings)
        return
    if any(phases.PHASES_BY_NAME[name].makes_keys for name in names):
        ctx.keys  # start generating keys now, overlapping the wait for Nacos
    outcomes = {}

    def record(name, counts, seconds):
        outcomes[name] = runstate.outcome(counts)
        report(name, counts, seconds)

    phases.run_phases(ctx, names, record)
    writer.fix_owners()  # seed writes the file store after the write phase: its files and folders too
    if ctx.plan:
        return
    deployment.record(settings)
    if full_run and ctx.renew_by:
        runstate.record(settings, writer.touched, min(ctx.renew_by), outcomes,
                        valid_from=max(ctx.valid_from) if ctx.valid_from else None)
    else:
        runstate.forget(settings)


# What `watch` runs: every phase that renews files; not Nacos (the initializer seeded it at start).
WATCH_PHASES = tuple(p.name for p in PHASES if not p.uses_store)


def _watch(settings, reporter: Reporter, interval, once: bool) -> int:
    """The renewal loop compose runs beside the stack. Errors end it (non-zero) through main()."""
    while True:
        code = _renew(settings, reporter)
        if once or code != EXIT_OK:
            return code
        time.sleep(interval.total_seconds())


def _renew(settings, reporter: Reporter) -> int:
    from . import readers, status as status_mod
    if runstate.unchanged(settings, utcnow()) is not None:
        reporter.message("watch: nothing is due for renewal and no file changed since the last run", renewed=[])
    else:
        written: list[str] = []
        # a gateway host issues its certificate from the CA published in Nacos: it connects to read it
        names = ("nacos", *WATCH_PHASES) if settings.role == "gateway" else WATCH_PHASES
        _execute(settings, reporter, names, written=written)
        restart = readers.for_role(readers.to_restart(written), settings.role)
        live = [r.service for r in readers.READERS if r.service not in restart
                and any(r in readers.readers_of(rel) for rel in written)]
        if live:
            reporter.message(f"watch: {', '.join(live)} pick up their renewed files without a restart", live=live)
        if restart:
            command = readers.restart_command(restart, settings.role)
            reporter.message(f"watch: {', '.join(restart)} read renewed files only at start; restart them, in compose/: "
                             f"{command}", restart=restart, command=command)
    # judged under the lock: a `run` or `rotate` committing at this moment is waited for, never
    # judged half-way through its renames
    faults.pause("watch:judge")
    with RunLock(settings.volumes_root, on_wait=lambda p: reporter.message(f"watch: waiting for the lock {p}")):
        rows = status_mod.certificate_rows(settings, VolumeWriter(settings.volumes_root), utcnow())
    failing = [r for r in rows if r["state"] != "ok"]
    for row in failing:
        _problem("error", f"watch: cannot renew {row['name']} ({row['file']}): {row['state']}"
                 + ("; a CA is replaced only on purpose: higress-init rotate root|intermediate" if
                    row["name"].endswith("-ca") else ""))
    return EXIT_FAILED if failing else EXIT_OK


def _restart_advice(settings, written) -> str:
    from . import readers
    restart = readers.for_role(readers.to_restart(list(written)), settings.role)
    if not restart:
        return "no service needs a restart (those that read the changed files re-read them)"
    return readers.restart_advice(restart, settings.role)


def _status(settings, output: str) -> int:
    from . import status as status_mod
    writer = _writer(settings, owners=False)  # status reads; it compares owners, never sets them
    rows = status_mod.certificate_rows(settings, writer, utcnow())
    report = {"volumes": str(settings.volumes_root), "healthy": status_mod.healthy(rows), "files": rows,
              "rotation": status_mod.rotation_rows(writer)}
    if settings.config_storage == "nacos":
        from . import nacos
        report["nacos"] = nacos.status(settings, writer)
        report["healthy"] = report["healthy"] and report["nacos"]["healthy"]
    if output == "json":
        say(json.dumps(report, indent=2))
    else:
        say(status_mod.format_table(rows, wide=output == "wide"))
        if status_mod.nothing_present(rows) and settings.role == "gateway":
            say(f"\nthis gateway host's files are not in {settings.volumes_root}: pass --volumes DIR, the folder "
                "the gateway-host compose file mounts (VOLUMES_DIR), or make them, in compose/: "
                "docker compose -f docker-compose.gateway.yml up -d")
        elif status_mod.nothing_present(rows):
            say(f"\nnothing is present in {settings.volumes_root}: pass --volumes DIR, the folder run wrote into")
        for r in report["rotation"]:
            say(f"\nROTATION {r['root']}: {r['state']}; old root valid until {r['old_root_not_after']}; "
                  f"both roots trusted in {', '.join(r['trusted_in'])}; next: {r['next']}")
        if "nacos" in report:
            say("\n" + nacos.format_status(report["nacos"]))
    return EXIT_OK if report["healthy"] else EXIT_FAILED
