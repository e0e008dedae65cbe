"""The Higress releases this initializer serves (HIGRESS_VERSION): every module `v<major>_<minor>_<patch>`
in this package is one (release.py says what a release holds), found here; adding a release is
adding its module. Everything that differs between releases is there, as data; the modules that
use it (objects, meshconfig, settings) say how."""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from higress_init.versions.release import Release

_MODULES = sorted((m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                   if m.name.startswith("v") and m.name[1:].replace("_", "").isdigit()),
                  key=lambda name: tuple(int(p) for p in name[1:].split("_")), reverse=True)
# newest first
RELEASES: tuple[Release, ...] = tuple(importlib.import_module(f"higress_init.versions.{m}").RELEASE for m in _MODULES)
RELEASES_BY_VERSION = {r.version: r for r in RELEASES}
DEFAULT = "2.2.4"   # the release users run today (compose/.env's image set)


def of(settings) -> Release:
    """The release a deployment's settings name (HIGRESS_VERSION, checked by settings.load)."""
    return RELEASES_BY_VERSION[settings.higress_version]


# What a store seeded by an initializer older than HIGRESS_VERSION was seeded for: the only release it knew.
BEFORE_RECORDS = "2.1.2"
