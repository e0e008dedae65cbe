"""Errors shared by every concern, and the exit codes they end in; imports nothing."""


# Exit codes (the README lists them; `--help` too).
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_REFUSED = 0, 1, 2, 3
EXIT_NACOS_UNREACHABLE, EXIT_NACOS_AUTH, EXIT_NACOS_CONFLICT, EXIT_NACOS_REQUEST = 4, 5, 6, 7


class StoreError(Exception):
    """The store could not be reached or answered wrong (each store's errors derive from it and
    say their exit code)."""
    exit_code = EXIT_FAILED


class StateError(Exception):
    """Existing state the initializer refuses to change silently (exit code 3)."""


EXIT_INTERRUPTED = 130  # 128 + the signal number, as a shell reports it: SIGINT 130, SIGTERM 143
