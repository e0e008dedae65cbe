"""`watch`: the renewal loop compose runs beside the stack, with Prometheus metrics (METRICS_PORT)."""
from __future__ import annotations

import time

from higress_init import faults, readers
from higress_init.cli import metrics as metrics_mod
from higress_init.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from higress_init.run import runner, runstate
from higress_init.run.phases import watch_phases
from higress_init.run.reporting import Reporter, Row, timestamp
from higress_init.volume.writer import RunLock, VolumeWriter


def command(settings, reporter: Reporter, interval, once: bool) -> int:
    """The renewal loop compose runs beside the stack. Errors end it (non-zero) through main().
    With METRICS_PORT, the loop serves what each pass found to Prometheus (not --once: one pass
    has nobody to scrape it)."""
    metrics = None
    if settings.metrics_port and not once:
        try:
            metrics = metrics_mod.serve(settings.metrics_port)
        except OSError as err:
            reporter.problem("error", f"METRICS_PORT={settings.metrics_port}: cannot listen ({err.strerror}): choose "
                              "another port, or 0 to turn the metrics off")
            return EXIT_BAD_INPUT
        reporter.message(f"watch: Prometheus metrics on port {settings.metrics_port}, at /metrics",
                         metrics_port=settings.metrics_port)
    while True:
        rows: list[Row] = []
        code = _renew(settings, reporter, rows)
        if metrics is not None:
            metrics.update(rows, success=code == EXIT_OK)
        if once or code != EXIT_OK:
            return code
        time.sleep(interval.total_seconds())


def _renew(settings, reporter: Reporter, rows: list[Row] | None = None) -> int:
    """One pass; `rows` receives what status finds after it (the metrics' values)."""
    from higress_init.cli import status as status_mod
    if reporter.fmt == "text":   # JSON lines carry their own time
        reporter.message(f"watch: pass at {timestamp(runner.utcnow())}")
    if runstate.unchanged(settings, runner.utcnow()) is not None:
        reporter.message("watch: nothing is due for renewal and no file changed since the last run", renewed=[])
    else:
        written: list[str] = []
        runner.execute(settings, reporter, watch_phases(settings.role), written=written)
        restart = readers.for_role(readers.to_restart(written), settings.role)
        live = [r.service for r in readers.READERS if r.service not in restart
                and any(r in readers.readers_of(rel) for rel in written)]
        if live:
            reporter.message(f"watch: {', '.join(live)} pick up their renewed files without a restart", live=live)
        if restart:
            command = readers.restart_command(restart, settings.role)
            reporter.message(f"watch: {', '.join(restart)} read renewed files only at start; "
                             f"restart them, in compose/: {command}", restart=restart, command=command)
    # judged under the lock: a `run` or `rotate` committing at this moment is waited for, never
    # judged half-way through its renames
    faults.pause("watch:judge")
    with RunLock(settings.volumes_root, on_wait=lambda p: reporter.message(f"watch: waiting for the lock {p}")):
        found = status_mod.certificate_rows(settings, VolumeWriter(settings.volumes_root), runner.utcnow())
    if rows is not None:
        rows.extend(found)
    failing = [r for r in found if r["state"] != "ok"]
    for row in failing:
        reporter.problem("error", f"watch: cannot renew {row['name']} ({row['file']}): {status_mod.state_and_time(row)}"
                 + ("; a CA is replaced only on purpose: higress-init rotate root|intermediate" if
                    row["name"].endswith("-ca") else ""))
    return EXIT_FAILED if failing else EXIT_OK
