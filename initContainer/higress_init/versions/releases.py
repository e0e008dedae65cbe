"""The Higress releases this initializer serves (HIGRESS_VERSION), newest first: each is a module
`v<major>_<minor>_<patch>` in this package (release.py says what a release holds); adding a release
is adding its module and naming it here. Everything that differs between releases is there, as
data; the modules that use it (objects, meshconfig, settings) say how."""
from __future__ import annotations

from higress_init.versions import v2_1_2, v2_2_4
from higress_init.versions.release import Release

RELEASES: tuple[Release, ...] = (v2_2_4.RELEASE, v2_1_2.RELEASE)   # newest first
RELEASES_BY_VERSION = {r.version: r for r in RELEASES}
DEFAULT = "2.2.4"   # the release users run today (compose/.env's image set)


def of(settings) -> Release:
    """The release a deployment's settings name (HIGRESS_VERSION, checked by settings.load)."""
    return RELEASES_BY_VERSION[settings.higress_version]


# What a store seeded by an initializer older than HIGRESS_VERSION was seeded for: the only release it knew.
BEFORE_RECORDS = "2.1.2"
