"""The key-generation floors: a fresh process that generates exactly the keys a cold `run` into
VOLUMES_DIR would make, and nothing else, one of two ways:
- processes (the floor issue 23 defines: "generating its keys in a process pool"): a fork-server
  process pool, one worker per core, largest keys first, as the run did until it moved to threads;
- threads: the run's own KeyPool (pki/keypool.py), so that cold / this floor is what the run
  costs beyond its own key generation.
Run with the interpreter of the install being measured.
Usage: keyfloor.py VOLUMES_DIR [processes|threads]   (VOLUMES_DIR is not written to)"""
from __future__ import annotations

import os
import sys

from higress_init import settings as settings_mod
from higress_init.run import phases, runner

WAYS = ("processes", "threads")


def _context(volumes: str) -> phases.Context:
    settings = settings_mod.load(overrides={"VOLUMES_ROOT": volumes})
    names = tuple(p.name for p in phases.CONTROL_PLANE)
    return phases.Context(settings, runner.writer_for(settings), runner.utcnow(), phases=names)


def wanted(volumes: str) -> dict[str, str]:
    """The keys (name -> algorithm) a cold run into `volumes` generates, none generated here."""
    return _context(volumes).pki.wanted()


def in_processes(algorithms: dict[str, str]) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import process_pool_keys

    from higress_init.pki import primitives
    from higress_init.pki.keypool import slow_first
    slow = slow_first(algorithms)   # as the run orders them
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([process_pool_keys.__name__])
    with ProcessPoolExecutor(max_workers=max(1, min(len(slow), len(os.sched_getaffinity(0)))),
                             mp_context=context) as pool:
        futures = [pool.submit(process_pool_keys.generate_key_pem, algorithms[n]) for n in slow]
        for name, algorithm in algorithms.items():
            if name not in slow:
                primitives.generate_key(algorithm)
        for future in futures:
            primitives.load_key(future.result())


def main(volumes: str, way: str = "threads") -> int:
    if way not in WAYS:
        raise SystemExit(f"keyfloor.py: the way is one of {', '.join(WAYS)}, not {way!r}")
    ctx = _context(volumes)
    if way == "processes":
        in_processes(ctx.pki.wanted())
    else:
        pool = ctx.pki.keys
        for name in pool.algorithms:
            pool.get(name)
    ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
