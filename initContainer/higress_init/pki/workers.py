"""Key-generation workers end with the run that started them.

A worker of a process pool outlives a run killed by SIGKILL: it waits forever for work from a
queue nobody writes to any more (and keeps the fork server alive). Each worker therefore
watches the run's process and exits when it is gone."""
from __future__ import annotations

import contextlib
import os
import select
import signal
import threading

HELD = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def signals_held():
    """Defer SIGTERM and SIGINT while the pool launches its workers: raised on leaving, once the pool
    knows every worker (and so can stop them). A handler, not a signal mask: the mask is per thread,
    and a signal taken by any other thread still runs its handler in this one."""
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum)) for sig in HELD}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            signal.raise_signal(caught[0])


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
