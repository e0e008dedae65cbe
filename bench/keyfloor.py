"""The key-generation floor: a fresh process that generates exactly the keys a cold `run` into
VOLUMES_DIR would make, the way the run makes them (its KeyPool: in parallel across cores), and
nothing else. Run with the interpreter of the install being measured.
Usage: keyfloor.py VOLUMES_DIR (not written to)"""
from __future__ import annotations

import sys

from higress_init import settings as settings_mod
from higress_init.run import phases, runner


def _context(volumes: str) -> phases.Context:
    settings = settings_mod.load(overrides={"VOLUMES_ROOT": volumes})
    return phases.Context(settings, runner.writer_for(settings), runner.utcnow(),
                          phases=tuple(p.name for p in phases.phases_of(settings.role)))


def wanted(volumes: str) -> dict[str, str]:
    """The keys (name -> algorithm) a cold run into `volumes` generates, none generated here."""
    ctx = _context(volumes)
    ctx.pki._pool = dict   # what the run's pool is asked for, instead of the pool
    return ctx.pki.keys


def main(volumes: str) -> int:
    ctx = _context(volumes)
    pool = ctx.pki.keys
    for name in pool.algorithms:
        pool.get(name)
    ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
