"""The new keys a run needs, generated up front in parallel while the run goes on.

Threads, not processes: cryptography lets go of the interpreter while OpenSSL generates a key,
so threads use every core. Unlike a process pool they start at once (no interpreter to exec, no
cryptography to import a second time), hand keys over without a copy, and cannot outlive the
run: a SIGKILL ends them with it, and nothing else holds the run lock's descriptor. They are
daemon threads, so an interrupted run exits without waiting for a key nobody will use.
(cryptography releases the interpreter in RSA key generation since pyca/cryptography#14370, in
the release requirements.lock pins; an older one makes the keys one at a time: slower, not wrong.)"""
from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import Future

from higress_init import faults
from higress_init.pki import primitives


def slow_first(algorithms: dict[str, str]) -> list[str]:
    """The names of the keys worth generating in parallel, largest first (they dominate the wall
    time): the RSA ones; an EC key takes a millisecond."""
    rsa = [name for name, algorithm in algorithms.items() if algorithm.startswith("rsa-")]
    return sorted(rsa, key=lambda name: -int(algorithms[name].removeprefix("rsa-")))


class KeyPool:
    def __init__(self, algorithms: dict[str, str]):
        self.algorithms = dict(algorithms)
        self.futures: dict[str, Future] = {}
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        slow = slow_first(algorithms)
        for name in slow:
            self.futures[name] = Future()
            self._work.put(name)
        for _ in range(min(len(slow), _cpus())):
            threading.Thread(target=self._generate, daemon=True, name="key-generation").start()
        faults.pause("keys:generating")  # tests interrupt a run here, its keys being generated

    def _generate(self) -> None:
        while True:
            try:
                name = self._work.get_nowait()
            except queue.Empty:
                return
            future = self.futures[name]
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(primitives.generate_key(self.algorithms[name]))
            except BaseException as err:  # handed to the phase that asks for the key
                future.set_exception(err)

    def get(self, name: str):
        """The key `name`: from the pool, or generated now (an EC key, or one asked for later)."""
        if name in self.futures:
            return self.futures[name].result()
        return primitives.generate_key(self.algorithms[name])

    def close(self) -> None:
        """Keys not started yet are not generated; one being generated ends with the process."""
        for future in self.futures.values():
            future.cancel()


def _cpus() -> int:
    return max(1, len(os.sched_getaffinity(0)))
