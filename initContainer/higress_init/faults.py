"""A test-only hook for crash-safety tests: HIGRESS_INIT_DIE_AT=<point> SIGKILLs the
process when it reaches that named point. Inert unless the variable is set."""
import os
import signal

_DIE_AT = os.environ.get("HIGRESS_INIT_DIE_AT")


def point(name: str) -> None:
    if _DIE_AT is not None and _DIE_AT == name:
        os.kill(os.getpid(), signal.SIGKILL)
