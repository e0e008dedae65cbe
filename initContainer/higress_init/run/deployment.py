"""One set of settings per deployment: the effective, non-secret settings a deployment was made
with (settings.SETTINGS, column `recorded`), kept in .higress-init/settings.json after every run
that commits, and read back by every later command, so that a setting left out keeps its value
(a host `rotate` after a compose run keeps Nacos storage and the owners) and a changed one is
refused unless asked for (settings.load)."""
from __future__ import annotations

import json
from pathlib import Path

from higress_init.settings import recorded_text
from higress_init.volume import journal, layout
from higress_init.volume.safefs import Refused, Root, not_roots, parts_of, show


def read(volumes_root: Path) -> dict[str, str]:
    """The recorded settings; empty when none were recorded yet. A record someone else could
    have written is refused, as the journal is: it decides owners and where Secrets go."""
    if not volumes_root.is_dir():
        return {}
    root = Root(volumes_root)
    try:
        parts = parts_of(layout.DEPLOYMENT_SETTINGS)
        try:
            data = root.read(parts)
        except PermissionError:
            return {}   # not root: the record (like pki/) is root's; the run says what it cannot read
        if data is None:
            return {}
        name = show(root.path, parts)
        if root.lstat(parts[:1]) is None or not_roots(root, parts[:1]):
            return {}   # a folder someone else could fill: nothing in it is trusted (a run refuses it: journal)
        if why := not_roots(root, parts):
            raise Refused(f"{name}: not the initializer's ({why}): the deployment's settings are read only when root "
                          "owns them and their folder; remove it and run again with the deployment's settings")
        try:
            record = json.loads(data)
        except (ValueError, RecursionError):
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("settings"), dict) or \
                not all(isinstance(v, str) for v in record["settings"].values()):
            raise Refused(f"{name}: not a record of settings: refused; remove it and run again with the "
                          "deployment's settings")
        return record["settings"]
    finally:
        root.close()


def record(settings) -> None:
    """Keep this run's recorded settings (after a committed run, under the lock)."""
    data = json.dumps({"settings": recorded_text(settings)}, indent=1, sort_keys=True) + "\n"
    root = Root(settings.volumes_root)
    try:
        if root.read(parts_of(layout.DEPLOYMENT_SETTINGS)) != data.encode():
            journal.write_atomic(root, layout.DEPLOYMENT_SETTINGS, data.encode(), 0o600)
    finally:
        root.close()
