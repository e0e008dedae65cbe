"""A test-only hook for crash-safety tests: HIGRESS_INIT_DIE_AT=<point> SIGKILLs the
process when it reaches that named point. Inert unless the variable is set."""
import os
import signal

_DIE_AT = os.environ.get("HIGRESS_INIT_DIE_AT")


def point(name: str) -> None:
    if _DIE_AT is not None and name == _DIE_AT:
        os.kill(os.getpid(), signal.SIGKILL)


def pause(name: str, limit: float = 120.0) -> None:
    """HIGRESS_INIT_PAUSE_AT=<point>=<dir>: at that point, create <dir>/<point>.paused and wait
    (bounded) for <dir>/<point>.resume, so a test can act in a window it could not hit by timing."""
    spec = os.environ.get("HIGRESS_INIT_PAUSE_AT", "")
    point_name, _, directory = spec.partition("=")
    if point_name != name or not directory:
        return
    import time
    from pathlib import Path
    marker = Path(directory) / (name.replace(":", "_") + ".paused")
    resume = Path(directory) / (name.replace(":", "_") + ".resume")
    marker.touch()
    deadline = time.monotonic() + limit
    while not resume.exists() and time.monotonic() < deadline:
        time.sleep(0.005)   # short: hosts released together leave within milliseconds of each other
