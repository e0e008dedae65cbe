"""The key-generation floor: a fresh process that generates exactly the keys a cold `run` into
VOLUMES_DIR would make, the way the run makes them (its KeyPool: in parallel across cores), and
nothing else. Run with the interpreter of the install being measured.
Usage: keyfloor.py VOLUMES_DIR (not written to)"""
from __future__ import annotations

import sys

from higress_init import cli, phases, settings as settings_mod


def main(volumes: str) -> int:
    settings = settings_mod.load(overrides={"VOLUMES_ROOT": volumes})
    ctx = phases.Context(settings, cli._writer(settings), cli.utcnow(), phases=tuple(p.name for p in phases.PHASES))
    pool = ctx.keys
    for name in pool.algorithms:
        pool.get(name)
    ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
