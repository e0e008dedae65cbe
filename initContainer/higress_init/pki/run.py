"""The PKI side of one run: what to do with each certificate (artifacts.decide) and the pool that
generates the new keys, owned here, not by the run context.

Decided on first use (a warm rerun never decides: it imports no cryptography); the key pool is
started by the runner (`start`) before the phases that sign, so that keys are generated while the
run waits for Nacos. A gateway-only host decides from the CA published in Nacos (`decide_from`)."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from higress_init.pki.keypool import KeyPool


class PkiRun:
    def __init__(self, settings, writer, now: datetime, rotate: set, phases: tuple[str, ...], plan: bool = False):
        self.settings, self.writer, self.now, self.rotate, self.phases, self.plan = \
            settings, writer, now, rotate, phases, plan
        self._decisions: dict | None = None
        self._keys: KeyPool | None = None

    @property
    def decided(self) -> bool:
        return self._decisions is not None

    @property
    def decisions(self) -> dict:
        if self._decisions is None:
            from higress_init.pki import artifacts
            self._decisions = artifacts.decide(self.settings, self.writer, self.now, self.rotate)
        return self._decisions

    def wanted(self) -> dict[str, str]:
        """The new keys (name -> algorithm) the run's phases will need."""
        from higress_init.pki import tokens
        wanted = self._new_keys(self.decisions, self.phases)
        if "tokens" in self.phases:
            wanted.update(tokens.keys_wanted(self.writer, self.rotate, self.settings))
        return wanted

    def _new_keys(self, decisions: dict, phases) -> dict[str, str]:
        """name -> algorithm of each certificate of `phases` that `decisions` issue with a new key."""
        return {d.spec.name: getattr(self.settings, d.spec.key_algorithm) for d in decisions.values()
                if d.new_key and d.spec.phase in phases}

    def start(self) -> None:
        """Start generating every key the run's phases will need, in parallel."""
        if self._keys is None:
            self._keys = self._pool(self.wanted())

    @property
    def keys(self):
        self.start()
        return self._keys

    def decide_from(self, view, rotate: set) -> None:
        """Decide from `view` (a gateway-only host: the published CA over its own files) and start
        the pool for the pilot-pki keys those decisions need."""
        from higress_init.pki import artifacts
        self._decisions = artifacts.decide(self.settings, view, self.now, rotate)
        self._keys = self._pool(self._new_keys(self._decisions, ("pilot-pki",)))

    def redecide(self, names) -> None:
        """After the files of `names` changed under the run (the shared CA adopted): decide them again;
        a key they now need is generated on demand. Nothing decided yet: decided later, from the files."""
        if self._decisions is None:
            return
        from higress_init.pki import artifacts
        fresh = artifacts.decide(self.settings, self.writer, self.now, self.rotate)
        for name in names:
            self._decisions[name] = fresh[name]
            if fresh[name].new_key:
                self.keys.algorithms.setdefault(name, getattr(self.settings, fresh[name].spec.key_algorithm))

    def _pool(self, wanted: dict):
        """The keys `wanted` (name -> algorithm), generated in parallel. Under `plan`, throwaway
        keys: what they sign is never written; same kind, cheap size."""
        from higress_init.pki.keypool import KeyPool  # cryptography: a warm rerun makes no key
        if self.plan:
            wanted = {name: "rsa-2048" if a.startswith("rsa") else a for name, a in wanted.items()}
        return KeyPool(wanted)

    def close(self) -> None:
        if self._keys:
            self._keys.close()
