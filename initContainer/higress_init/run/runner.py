"""The runner: one run of a list of phases under the volumes' lock. It recovers an interrupted
commit, takes the warm fast path when nothing local changed (runstate), starts generating keys
before the phases that use them, runs the phases, fixes owners once, records the run, and prints
the summary."""
from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import Callable
from datetime import UTC, datetime

from higress_init import faults, readers
from higress_init.errors import EXIT_OK, StateError
from higress_init.pki.kubeconfig import KUBECONFIGS
from higress_init.run import deployment, phases, runstate, upstream
from higress_init.run.phases import Context, phases_of
from higress_init.run.reporting import WIDTH, Counts, Reporter, wrap
from higress_init.volume import journal
from higress_init.volume.writer import PlanWriter, RunLock, VolumeWriter

# The libraries the phases after the keys use: loaded while the key threads work, not after the
# last key, when the run has nothing else left to do (a warm rerun loads neither).
LOADED_WHILE_KEYS_GENERATE = ("jwt", "yaml")


def utcnow() -> datetime:
    return datetime.now(UTC)


def writer_for(settings, owners: bool = True, plan: bool = False) -> VolumeWriter:
    """The volume writer; private files besides *.key and *key.pem: the kubeconfigs and tokens."""
    private = {*(k.file for k in KUBECONFIGS), *(i.file for i in settings.token_identities)}
    return (PlanWriter if plan else VolumeWriter)(settings.volumes_root, settings.volumes_uid if owners else None,
                                                  settings.volumes_gid if owners else None, private_files=private)


def _rotated(rotation: str | None) -> set[str]:
    if rotation is None or rotation == "finish":
        return set()
    from higress_init.pki.artifacts import ROTATIONS  # cryptography: only when something is rotated
    return set(ROTATIONS[rotation])


def execute(settings, reporter: Reporter, names, reseed=False, rotation=None,
             written: list | None = None, push_mesh=False, plan=False, adopt=None) -> int:
    """Run `names` under the lock; `written` collects the volume paths the commit changed.
    `plan` is the same run with a writer that commits nothing (and no lock: it writes nothing).
    `adopt(ctx)` (migrate) stages the take-over of upstream's layout first, committed with the run."""
    started = time.perf_counter()
    writer = writer_for(settings, plan=plan)
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
    files = writer.planned if isinstance(writer, PlanWriter) else writer.written   # a PlanWriter when plan
    root = settings.volumes_root
    file_count = f"{len(files)} file{'s' if len(files) != 1 else ''} {'would be ' if plan else ''}written"
    where = f"{file_count} in {root}"
    if plan:
        options = "".join(f" --{o}" for o, on in (("reseed", reseed), ("push-mesh", push_mesh)) if on)
        after = f"to do it: higress-init {'rotate ' + rotation if rotation else 'run'}{options} (same settings)"
    elif rotation:   # a running stack: which services must restart to use what was rotated
        after = "check: higress-init status; " + restart_advice(settings, writer.written)
    elif written is None and any(phases.phase_named(settings.role, n).uses_store for n in names):
        # a run that wrote to the store (not `watch`'s renewal): what to start next
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
    pruned = journal.prune_backups(writer.fs, settings.backup_keep) if writer.fs.exists() else []
    if pruned:
        span = pruned[0] if len(pruned) == 1 else f"{pruned[0]} to {pruned[-1]}"
        reporter.message(f"backup: removed the {len(pruned)} oldest run folder{'s' if len(pruned) > 1 else ''} "
                         f"({span}); keeping the last {settings.backup_keep} (BACKUP_KEEP)", pruned=pruned)


def _run_locked(ctx: Context, reporter: Reporter, names, report, rotation, adopt=None) -> None:
    settings, writer = ctx.settings, ctx.writer
    ctx.recorded = deployment.read(settings.volumes_root)
    recovered = writer.recover()
    if recovered:
        reporter.message(f"{'would finish' if ctx.plan else 'finished'} {recovered} file renames an interrupted run "
                         "left behind")
    if adopt is not None:
        adopt(ctx)
    elif markers := upstream.found(writer):
        raise StateError(upstream.hint(markers))
    if rotation:
        finished = _finish_rotation(ctx.writer) if ctx.finish_rotation else []
        if rotation == "finish" and not finished:
            reporter.message("rotate finish: no rotation is in progress (no old root kept beside a new one): "
                             "nothing to finish", rotation=rotation, finished=[])
        else:
            reporter.message(f"rotation: {rotation}" + (f" (ending the overlap of {', '.join(finished)})"
                                                        if finished else ""), rotation=rotation)
    full_run = list(names) == [p.name for p in phases_of(settings.role)]
    kept = runstate.unchanged(settings, ctx.now) if full_run and not (rotation or ctx.reseed) else None
    if kept is not None:
        reporter.message("nothing the local phases read has changed since the last run: their files are kept",
                         unchanged=True)
        for name in names:
            if phases.phase_named(settings.role, name).local:
                report(name, runstate.replay(kept, name), 0.0)
            else:
                run_phases(ctx, [name], report)  # Nacos is checked every time
        writer.fix_owners()  # what seed wrote after the write phase
        deployment.record(settings)
        return
    if any(phases.phase_named(settings.role, name).makes_keys for name in names):
        ctx.pki.start()  # keys are generated while the run waits for Nacos
        for module in LOADED_WHILE_KEYS_GENERATE:
            importlib.import_module(module)
    outcomes = {}

    def record(name, counts, seconds):
        outcomes[name] = runstate.outcome(counts)
        report(name, counts, seconds)

    run_phases(ctx, names, record)
    writer.fix_owners()  # seed writes the file store after the write phase: its files and folders too
    if ctx.plan:
        return
    deployment.record(settings)
    if full_run and ctx.renew_by:
        runstate.record(settings, writer.touched, min(ctx.renew_by), outcomes,
                        valid_from=max(ctx.valid_from) if ctx.valid_from else None)
    else:
        runstate.forget(settings)



def restart_advice(settings, written) -> str:
    restart = readers.for_role(readers.to_restart(list(written)), settings.role)
    if not restart:
        return "no service needs a restart (those that read the changed files re-read them)"
    return readers.restart_advice(restart, settings.role)


def run_phases(ctx: Context, names, report: Callable[[str, Counts, float], None]) -> None:
    for name in names:
        faults.point(f"phase:{name}")
        faults.pause(f"phase:{name}")
        phase = phases.phase_named(ctx.settings.role, name)
        started = time.perf_counter()
        counts = Counts()
        phase.run(ctx, counts)
        report(name, counts, time.perf_counter() - started)


def _finish_rotation(writer) -> list[str]:
    """Ending a rotation overlap drops the old roots (before the phases)."""
    from higress_init.pki import artifacts
    return artifacts.finish_rotation(writer)
