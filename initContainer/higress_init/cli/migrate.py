"""`migrate`: take over volumes upstream's scripts prepared (run/upstream.py), committed with a full run."""
from __future__ import annotations

from higress_init.errors import EXIT_OK
from higress_init.run import runner, upstream
from higress_init.run.phases import phases_of
from higress_init.run.reporting import Reporter
from higress_init.volume.writer import VolumeWriter


def command(settings, reporter: Reporter) -> int:
    """Take over upstream's layout (run/upstream.py), committed with a full run; then say which of
    upstream's files were adopted, re-issued or re-rendered, and what was backed up."""
    probe = runner.writer_for(settings, owners=False)
    try:
        markers = upstream.found(probe) if settings.volumes_root.is_dir() else []
    finally:
        probe.close()
    if not markers:
        reporter.emit("summary", f"migrate: nothing to migrate: no file of upstream's layout "
                      f"({', '.join(upstream.MARKERS)}) in {settings.volumes_root}; a normal run is higress-init run",
                      migrated=False)
        return EXIT_OK
    adoptions = []

    def adopt(ctx):
        before = set(upstream.backup_stamps(ctx.writer))
        adoption = upstream.adopt(ctx.settings, ctx.writer, ctx.now)
        adoptions.append((before, adoption))
        for theirs, ours in adoption.moved:
            reporter.message(f"migrate: {theirs} moves to {ours} (the CA is adopted)", moved=[theirs, ours])
        for name, why in adoption.failed.items():
            done = "re-signed by its own key, under its own name" if name in adoption.resigned else "made anew"
            reporter.message(f"migrate: {name} fails validation ({why}): {done}", failed=name, reason=why)
        if adoption.removed:
            reporter.message(f"migrate: upstream's leftovers removed: {', '.join(adoption.removed)}",
                             removed=adoption.removed)

    code = runner.execute(settings, reporter, [p.name for p in phases_of(settings.role)], adopt=adopt)
    before, adoption = adoptions[0]
    reader = VolumeWriter(settings.volumes_root)
    try:
        result = upstream.outcome(adoption, reader, before)
        note = upstream.nacos_data_note(reader)
    finally:
        reader.close()
    if note:
        reporter.message(f"migrate: {note}", nacos_data=upstream.UPSTREAM_NACOS_DATA)
    for label, files in (("adopted", result.adopted), ("re-issued", result.reissued),
                         ("re-rendered", result.rerendered)):
        if files:
            reporter.message(f"migrate: {label}: {', '.join(files)}", **{label.replace("-", "_"): files})
    trusted = upstream.still_trusted(adoption)
    if trusted:
        reporter.message(f"migrate: {trusted}", advice="higress-init rotate root")
    reporter.emit("summary", upstream.summary(result) + "; restart the stack: docker compose up -d --force-recreate "
                  "(in compose/)", migrated=True, adopted=result.adopted, reissued=result.reissued,
                  rerendered=result.rerendered, removed=result.removed, backed_up=result.backed_up,
                  backups=result.backups)
    return code
