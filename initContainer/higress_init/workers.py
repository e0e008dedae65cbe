"""Key-generation workers end with the run that started them.

A worker of a process pool outlives a run killed by SIGKILL: it waits forever for work from a
queue nobody writes to any more (and keeps the fork server alive). Each worker therefore
watches the run's process and exits when it is gone."""
from __future__ import annotations

import os
import select
import threading


def exit_with(run_pid: int) -> None:
    """Pool initializer: a daemon thread that ends this worker when process `run_pid` ends."""
    threading.Thread(target=_watch, args=(run_pid,), daemon=True, name="exit-with-run").start()


def _watch(run_pid: int) -> None:
    try:
        fd = os.pidfd_open(run_pid)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # no pidfd (old kernel): poll
        import time
        while True:
            try:
                os.kill(run_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            time.sleep(0.5)
    select.select([fd], [], [])  # readable once the process has ended
    os._exit(1)
