"""The Security Update level of a build: is it the newest update the catalogue knows for its CU?

Only a full build (ExSetup.exe's file version) shows the update level. Fail closed: a build
that cannot be placed in a CU, a CU-level-only build (AD), a disputed build (``kind=other``:
sources disagree on what it is) and a build newer than every update the catalogue lists are
"unknown", never "current".

"Behind" counts the distinct non-disputed releases of the CU above the host's build. A v2
re-release (``Aug23SUv2``) is a release of its own (another build and KB the host lacks), so a
host on ``Aug23SU`` with only ``Aug23SUv2`` above it is one behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from compliance.catalog import Catalog
from compliance.models import Build, Release

# Row kinds that are updates of a CU (Security Update, Update Rollup, Hotfix Update).
UPDATE_KINDS = ("SU", "RU", "HU")


class SuState(StrEnum):
    CURRENT = "current"  # runs the newest release the catalogue knows for its CU
    BEHIND = "behind"  # newer releases of its CU exist
    UNKNOWN = "unknown"  # the update level cannot be told (see ``SuLevel.reason``)


@dataclass(frozen=True)
class SuLevel:
    """Where a build stands against the newest release of its CU.

    ``newest`` is the newest non-disputed release of the CU: its newest update, or the CU itself
    when it never got one (None: the CU is not known). ``behind`` is None when ``state`` is
    unknown."""

    build: Build | None
    product: str | None
    cu: str | None
    state: SuState
    newest: Release | None
    behind: int | None
    reason: str

    @property
    def current(self) -> bool:
        return self.state is SuState.CURRENT


def releases_of(catalog: Catalog, product: str, cu: str) -> tuple[Release, ...]:
    """The non-disputed releases of ``product`` ``cu`` (the CU and its updates), one per build,
    oldest first."""
    seen: dict[Build, Release] = {}
    for release in catalog.releases:
        if release.product == product and release.cu == cu and not release.disputed:
            seen.setdefault(release.build, release)
    return tuple(sorted(seen.values(), key=lambda release: release.build))


def updates_of(catalog: Catalog, product: str, cu: str) -> tuple[Release, ...]:
    """The non-disputed updates (SU, RU, HU) of ``product`` ``cu``, oldest first."""
    return tuple(r for r in releases_of(catalog, product, cu) if r.kind in UPDATE_KINDS)


def newest_release(catalog: Catalog, product: str, cu: str) -> Release | None:
    """The newest non-disputed release of ``product`` ``cu``: its newest update, or the CU
    itself when it never got one; None for a CU the catalogue does not know."""
    known = releases_of(catalog, product, cu)
    return known[-1] if known else None


def newest_update(catalog: Catalog, product: str, cu: str) -> Release | None:
    """The newest non-disputed update (SU, RU, HU) of ``product`` ``cu``, if any."""
    updates = updates_of(catalog, product, cu)
    return updates[-1] if updates else None


def newest_releases(catalog: Catalog) -> dict[tuple[str, str], Release]:
    """Per (product, CU), in the catalogue's order, the newest known release (the Catalogue
    page's "newest known release per CU")."""
    newest: dict[tuple[str, str], Release] = {}
    for group in catalog.groups:
        release = newest_release(catalog, group.product, group.cu)
        if release is not None:
            newest[(group.product, group.cu)] = release
    return newest


def su_level(build: Build | None, catalog: Catalog) -> SuLevel:
    """The Security Update level of ``build`` (placed with ``Catalog.place``)."""
    if build is None:
        return SuLevel(None, None, None, SuState.UNKNOWN, None, None,
                       "no build was read: run the probe to read ExSetup.exe's version")
    placement = catalog.place(build)
    product, cu = placement.product, placement.cu
    newest = newest_release(catalog, product, cu) if product and cu else None

    def unknown(reason: str) -> SuLevel:
        return SuLevel(build, product, cu, SuState.UNKNOWN, newest, None, reason)

    if build.revision is None:
        # AD's serialNumber/versionNumber name the CU only: Security Updates never change them.
        where = f"Exchange Server {product} {cu}" if product and cu else f"build {build}"
        return unknown(f"only the CU level is known ({where}); the Security Update level needs "
                       "ExSetup.exe's version")
    if product is None or cu is None:
        return unknown(f"build {build} is on no CU the catalogue knows (catalogue of "
                       f"{catalog.newest_release})")
    if newest is None:
        return unknown(f"the catalogue has no undisputed release of Exchange Server {product} {cu}")
    release = placement.release
    if release is not None and release.disputed:
        return unknown(f"build {build} is disputed between sources ({release.notes or release.name}): "
                       "check the installed updates")
    if release is None and build > newest.build:
        return unknown(f"build {build} is above {newest.build} ({newest.name}), the newest release "
                       f"the catalogue knows for Exchange Server {product} {cu}: update the catalogue")
    newer = [r for r in releases_of(catalog, product, cu) if r.build > build]
    if not newer:
        return SuLevel(build, product, cu, SuState.CURRENT, newest, 0,
                       f"runs {newest.name} ({newest.build}), the newest release the catalogue "
                       f"knows for Exchange Server {product} {cu}")
    return SuLevel(build, product, cu, SuState.BEHIND, newest, len(newer),
                   f"{len(newer)} release(s) behind {newest.name} ({newest.build}), the newest "
                   f"the catalogue knows for Exchange Server {product} {cu}")
