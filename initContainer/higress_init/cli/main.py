"""higress-init: the command line."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import time

from datetime import datetime, timezone

from higress_init import __version__, faults, settings as settings_mod
from higress_init.run import phases, runstate
from higress_init.errors import StateError
from higress_init.run.phases import PHASES, Context
from higress_init.run.reporting import WIDTH, Counts, Reporter, say, wrap
from higress_init.settings import SETTINGS, SettingsError
from higress_init.volume.writer import PlanWriter, RunLock, VolumeError, VolumeWriter, check_writable

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


# The settings each command does not use (its --help leaves them out; every command still accepts
# them, as it accepts any environment variable).
UNUSED_SETTINGS = {
    "run": {"METRICS_PORT"}, "plan": {"METRICS_PORT", "BACKUP_KEEP"}, "phase": {"METRICS_PORT", "ROTATE"},
    "rotate": {"METRICS_PORT", "ROTATE"}, "migrate": {"METRICS_PORT", "ROTATE"}, "watch": {"ROTATE"}, "status": {"METRICS_PORT", "ROTATE", "BACKUP_KEEP"},
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
    for name, command in commands.items():
        _add_settings(command, name)
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
            say(wrap(f"{p.name:<14} {p.help}", hang=" " * 15))
        return EXIT_OK
    global _REPORTER
    _REPORTER = Reporter(overrides.get("LOG_FORMAT") or os.environ.get("LOG_FORMAT") or "text")
    try:
        from higress_init.run import deployment
        recorded = deployment.read(settings_mod.volumes_root_of(overrides=overrides))
        settings = settings_mod.load(overrides=overrides, recorded=recorded,
                                     change=tuple(getattr(args, "change_setting", ())))
        _REPORTER = reporter = Reporter(settings.log_format, plan=command == "plan")
        interval = settings_mod.parse_duration("--interval", args.interval) if command == "watch" else None
        _check_default_root(settings, overrides)
        if command in ("run", "phase", "watch", "rotate", "migrate"):
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
        if command == "migrate":
            return _migrate(settings, reporter)
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
    from higress_init.store.nacos import NacosError
    return NacosError


def _writer(settings, owners: bool = True, plan: bool = False) -> VolumeWriter:
    """The volume writer; private files besides *.key and *key.pem: the kubeconfigs and tokens."""
    from higress_init.pki.kubeconfig import KUBECONFIGS
    private = {*(k.file for k in KUBECONFIGS), *(i.file for i in settings.token_identities)}
    return (PlanWriter if plan else VolumeWriter)(settings.volumes_root, settings.volumes_uid if owners else None,
                                                  settings.volumes_gid if owners else None, private_files=private)


def _rotated(rotation: str | None) -> set[str]:
    if rotation in (None, "finish"):
        return set()
    from higress_init.pki.artifacts import ROTATIONS  # cryptography: only when something is rotated
    return set(ROTATIONS[rotation])


def _execute(settings, reporter: Reporter, names, reseed=False, rotation=None,
             written: list | None = None, push_mesh=False, plan=False, adopt=None) -> int:
    """Run `names` under the lock; `written` collects the volume paths the commit changed.
    `plan` is the same run with a writer that commits nothing (and no lock: it writes nothing).
    `adopt(ctx)` (migrate) stages the take-over of upstream's layout first, committed with the run."""
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
            _run_locked(ctx, reporter, names, report, rotation, adopt)
            if not plan:
                _prune_backups(settings, writer, reporter)
    finally:
        if ctx.nacos is not None:
            ctx.nacos.close()  # ends the Nacos SDK's client at once, and says how many calls the run made
        ctx.close()
        writer.close()
    seconds = time.perf_counter() - started
    files = writer.planned if plan else writer.written
    root = settings.volumes_root
    file_count = f"{len(files)} file{'s' if len(files) != 1 else ''} {'would be ' if plan else ''}written"
    where = f"{file_count} in {root}"
    if plan:
        options = "".join(f" --{o}" for o, on in (("reseed", reseed), ("push-mesh", push_mesh)) if on)
        after = f"to do it: higress-init {'rotate ' + rotation if rotation else 'run'}{options} (same settings)"
    elif rotation:   # a running stack: which services must restart to use what was rotated
        after = "check: higress-init status; " + _restart_advice(settings, writer.written)
    elif written is None and any(phases.PHASES_BY_NAME[n].uses_store for n in names):   # not `watch`'s renewal
        after = "check: higress-init status; " + (
            "start the gateway, in compose/: docker compose -f docker-compose.gateway.yml up -d"
            if settings.role == "gateway" else "start the stack: docker compose up -d (in compose/)")
    else:
        after = "check: higress-init status"
    # text: what to do next, then the summary, last and within 120 columns (the volumes' path on a
    # line of its own when it does not fit)
    summary = f"{'plan' if plan else 'done':<14} {totals.summary(plan)}; {where}"
    text = [wrap(f"{'next':<14} {after}", hang=" " * 15)]
    if len(summary) > WIDTH:
        text.insert(0, wrap(f"{'volumes':<14} {root}", hang=" " * 15))
        summary = f"{'plan' if plan else 'done':<14} {totals.summary(plan)}; {file_count} in the volumes above"
    reporter.emit("summary", "\n".join(text + [wrap(summary, hang=" " * 15)]),
                  actions={a: len(n) for a, n in totals.by_action.items()}, files=len(files),
                  volumes=str(root), next=after, seconds=round(seconds, 3))
    if plan and files:
        reporter.emit("planned", wrap("plan: " + ", ".join(files), hang="      "), files=files)
    elif plan:
        reporter.emit("planned", "plan: nothing to write", files=files)
    return EXIT_OK


def _prune_backups(settings, writer, reporter: Reporter) -> None:
    """backup/ keeps the last BACKUP_KEEP runs' folders; what goes is said."""
    from higress_init.volume import journal
    pruned = journal.prune_backups(writer.fs, settings.backup_keep) if writer.fs.exists() else []
    if pruned:
        span = pruned[0] if len(pruned) == 1 else f"{pruned[0]} to {pruned[-1]}"
        reporter.message(f"backup: removed the {len(pruned)} oldest run folder{'s' if len(pruned) > 1 else ''} "
                         f"({span}); keeping the last {settings.backup_keep} (BACKUP_KEEP)", pruned=pruned)


def _run_locked(ctx: Context, reporter: Reporter, names, report, rotation, adopt=None) -> None:
    from higress_init.run import deployment
    settings, writer = ctx.settings, ctx.writer
    ctx.recorded = deployment.read(settings.volumes_root)
    recovered = writer.recover()
    if recovered:
        reporter.message(f"{'would finish' if ctx.plan else 'finished'} {recovered} file renames an interrupted run "
                         "left behind")
    from higress_init.cli import migrate
    if adopt is not None:
        adopt(ctx)
    elif markers := migrate.found(writer):
        raise StateError(migrate.hint(markers))
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
    """The renewal loop compose runs beside the stack. Errors end it (non-zero) through main().
    With METRICS_PORT, the loop serves what each pass found to Prometheus (not --once: one pass
    has nobody to scrape it)."""
    metrics = None
    if settings.metrics_port and not once:
        from higress_init.cli import metrics as metrics_mod
        try:
            metrics = metrics_mod.serve(settings.metrics_port)
        except OSError as err:
            _problem("error", f"METRICS_PORT={settings.metrics_port}: cannot listen ({err.strerror}): choose "
                              "another port, or 0 to turn the metrics off")
            return EXIT_BAD_INPUT
        reporter.message(f"watch: Prometheus metrics on port {settings.metrics_port}, at /metrics",
                         metrics_port=settings.metrics_port)
    while True:
        rows: list[dict] = []
        code = _renew(settings, reporter, rows)
        if metrics is not None:
            metrics.update(rows, success=code == EXIT_OK)
        if once or code != EXIT_OK:
            return code
        time.sleep(interval.total_seconds())


def _renew(settings, reporter: Reporter, rows: list | None = None) -> int:
    """One pass; `rows` receives what status finds after it (the metrics' values)."""
    from higress_init import readers
    from higress_init.cli import status as status_mod
    from higress_init.run.reporting import timestamp
    if reporter.fmt == "text":   # JSON lines carry their own time
        reporter.message(f"watch: pass at {timestamp(utcnow())}")
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
        found = status_mod.certificate_rows(settings, VolumeWriter(settings.volumes_root), utcnow())
    if rows is not None:
        rows.extend(found)
    failing = [r for r in found if r["state"] != "ok"]
    for row in failing:
        _problem("error", f"watch: cannot renew {row['name']} ({row['file']}): {status_mod.state_and_time(row)}"
                 + ("; a CA is replaced only on purpose: higress-init rotate root|intermediate" if
                    row["name"].endswith("-ca") else ""))
    return EXIT_FAILED if failing else EXIT_OK


def _restart_advice(settings, written) -> str:
    from higress_init import readers
    restart = readers.for_role(readers.to_restart(list(written)), settings.role)
    if not restart:
        return "no service needs a restart (those that read the changed files re-read them)"
    return readers.restart_advice(restart, settings.role)


def _status(settings, output: str) -> int:
    from higress_init.cli import migrate, status as status_mod
    writer = _writer(settings, owners=False)  # status reads; it compares owners, never sets them
    rows = status_mod.certificate_rows(settings, writer, utcnow())
    report = {"volumes": str(settings.volumes_root), "healthy": status_mod.healthy(rows), "files": rows,
              "rotation": status_mod.rotation_rows(writer)}
    markers = migrate.found(writer)
    if markers:
        report["healthy"], report["upstream_layout"] = False, {"files": markers, "next": migrate.hint(markers)}
    if settings.config_storage == "nacos":
        from higress_init.store import nacos
        report["nacos"] = nacos.status(settings, writer)
        report["healthy"] = report["healthy"] and report["nacos"]["healthy"]
    if settings.role == "all":   # the host that seeds the store: for which Higress release(s) it did
        from higress_init.store import configstore
        report["seeded_for"] = configstore.seeded_releases(writer)
    if output == "json":
        say(json.dumps(report, indent=2))
    else:
        say(status_mod.format_table(rows, wide=output == "wide"))
        if status_mod.nothing_present(rows) and settings.role == "gateway":
            say("\n" + wrap(f"this gateway host's files are not in {settings.volumes_root}: pass --volumes DIR, the "
                            "folder the gateway-host compose file mounts (VOLUMES_DIR), or make them, in compose/: "
                            "docker compose -f docker-compose.gateway.yml up -d"))
        elif status_mod.nothing_present(rows):
            say("\n" + wrap(f"nothing is present in {settings.volumes_root}: pass --volumes DIR, the folder run "
                            "wrote into"))
        for r in report["rotation"]:
            say("\n" + wrap(f"ROTATION {r['root']}: {r['state']}; old root valid until {r['old_root_not_after']}; "
                            f"both roots trusted in {', '.join(r['trusted_in'])}; next: {r['next']}"))
        if "nacos" in report:
            say("\n" + "\n".join(wrap(line, hang="    ") for line in nacos.format_status(report["nacos"]).split("\n")))
        if "seeded_for" in report:
            say("\n" + wrap(configstore.seeded_text(settings, report["seeded_for"])))
        if markers:
            say("\n" + wrap("UPSTREAM LAYOUT: " + migrate.hint(markers)))
    return EXIT_OK if report["healthy"] else EXIT_FAILED


def _migrate(settings, reporter: Reporter) -> int:
    """Take over upstream's layout (migrate.adopt), committed with a full run; then say which of
    upstream's files were adopted, re-issued or re-rendered, and what was backed up."""
    from higress_init.cli import migrate
    probe = _writer(settings, owners=False)
    try:
        markers = migrate.found(probe) if settings.volumes_root.is_dir() else []
    finally:
        probe.close()
    if not markers:
        reporter.emit("summary", f"migrate: nothing to migrate: no file of upstream's layout "
                      f"({', '.join(migrate.MARKERS)}) in {settings.volumes_root}; a normal run is higress-init run",
                      migrated=False)
        return EXIT_OK
    adoptions = []

    def adopt(ctx):
        before = set(migrate.backup_stamps(ctx.writer))
        adoption = migrate.adopt(ctx.settings, ctx.writer, ctx.now)
        adoptions.append((before, adoption))
        for theirs, ours in adoption.moved:
            reporter.message(f"migrate: {theirs} moves to {ours} (the CA is adopted)", moved=[theirs, ours])
        for name, why in adoption.failed.items():
            done = "re-signed by its own key, under its own name" if name in adoption.resigned else "made anew"
            reporter.message(f"migrate: {name} fails validation ({why}): {done}", failed=name, reason=why)
        if adoption.removed:
            reporter.message(f"migrate: upstream's leftovers removed: {', '.join(adoption.removed)}",
                             removed=adoption.removed)

    code = _execute(settings, reporter, [p.name for p in PHASES], adopt=adopt)
    before, adoption = adoptions[0]
    reader = VolumeWriter(settings.volumes_root)
    try:
        result = migrate.outcome(adoption, reader, before)
        note = migrate.nacos_data_note(reader)
    finally:
        reader.close()
    if note:
        reporter.message(f"migrate: {note}", nacos_data=migrate.UPSTREAM_NACOS_DATA)
    for label, files in (("adopted", result.adopted), ("re-issued", result.reissued),
                         ("re-rendered", result.rerendered)):
        if files:
            reporter.message(f"migrate: {label}: {', '.join(files)}", **{label.replace("-", "_"): files})
    trusted = migrate.still_trusted(adoption)
    if trusted:
        reporter.message(f"migrate: {trusted}", advice="higress-init rotate root")
    reporter.emit("summary", migrate.summary(result) + "; restart the stack: docker compose up -d --force-recreate "
                  "(in compose/)", migrated=True, adopted=result.adopted, reissued=result.reissued,
                  rerendered=result.rerendered, removed=result.removed, backed_up=result.backed_up,
                  backups=result.backups)
    return code
