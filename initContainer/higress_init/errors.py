"""Errors shared by the phases, kept in a module that imports nothing heavy."""


class StateError(Exception):
    """Existing state the initializer refuses to change silently (exit code 3)."""
