"""The build catalogue (every known Exchange release) and the advisory it is judged by.

Placement answers "which product and CU is this build?" even for builds the catalogue
has never seen, but only where the answer is certain; otherwise it says so. One ``Catalog``
pairs the releases with one advisory; ``load_catalogs()`` gives one per advisory in
``ADVISORY_IDS``, all sharing the same releases.
"""

from __future__ import annotations

import csv
import hashlib
import io
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from importlib import resources

from compliance.advisory import Advisory, parse_advisory
from compliance.builds import parse_dotted
from compliance.models import Build, Release

DEFAULT_ADVISORY = "2021-03-proxylogon"
# Every advisory shipped in data/advisories, in the order they are shown (by publication); the
# first is the snapshot's own (DEFAULT_ADVISORY).
ADVISORY_IDS = ("2021-03-proxylogon", "2021-05-proxyshell", "2022-11-proxynotshell")
# Rows whose kind is one of these start a CU (or SP/RTM/Preview) group.
CU_KINDS = ("RTM", "Preview", "SP", "CU")


class CatalogError(ValueError):
    """The catalogue data is malformed; the message names the row."""


@dataclass(frozen=True)
class CuGroup:
    product: str
    cu: str
    base: Build
    # 2013 and later keep the CU's build number in every SU; 2010 rollups raise it.
    shares_build_number: bool


@dataclass(frozen=True)
class Placement:
    """Where a build sits. ``cu`` is None when it cannot be placed with certainty."""

    build: Build
    product: str | None
    cu: str | None
    cu_base: Build | None
    release: Release | None


@dataclass(frozen=True)
class Lifecycle:
    """When a product line stopped receiving security updates (None: still supported)."""

    product: str
    end_of_support: date | None
    successor: str | None
    source: str
    # The last update Microsoft will ever ship for the line (None: updates may still come): a
    # build above it is no release at all.
    final_update: Build | None = None


@dataclass(frozen=True)
class Catalog:
    releases: tuple[Release, ...]
    groups: tuple[CuGroup, ...]
    advisory: Advisory
    version: str
    newest_release: str
    by_build: Mapping[Build, Release] = field(default_factory=dict, compare=False, repr=False)
    lifecycle: Mapping[str, Lifecycle] = field(default_factory=dict, compare=False, repr=False)
    # place() is a pure function of the build and this (immutable) catalogue: a fleet has few
    # distinct builds, and re-grading a carried fleet places each of them thousands of times.
    _placements: dict[Build, Placement] = field(default_factory=dict, compare=False, repr=False)
    # (product, CU) -> its group, built on first use: grading asks for it per host and advisory.
    _group_index: dict[tuple[str | None, str | None], CuGroup] = field(
        default_factory=dict, compare=False, repr=False)

    def release(self, build: Build) -> Release | None:
        return self.by_build.get(build) if build.revision is not None else None

    def group(self, product: str | None, cu: str | None) -> CuGroup | None:
        if not self._group_index and self.groups:
            for group in reversed(self.groups):  # the first of a (product, CU) wins, as before
                self._group_index[(group.product, group.cu)] = group
        return self._group_index.get((product, cu))

    def name_of(self, build: Build) -> str | None:
        release = self.release(build)
        return release.name if release else None

    def place(self, build: Build) -> Placement:
        """Where ``build`` sits in the catalogue (memoised per catalogue)."""
        placed = self._placements.get(build)
        if placed is None:
            placed = self._placements[build] = self._place(build)
        return placed

    def _place(self, build: Build) -> Placement:
        release = self.release(build)
        if release is not None:
            return Placement(build, release.product, release.cu, release.cu_base, release)
        line = [g for g in self.groups if g.base.line == build.line]
        if not line:
            return Placement(build, None, None, None, None)
        if build.revision is None:
            # CU level only (AD versionNumber): the CU whose base has this build number.
            same = [g for g in line if g.base.build == build.build]
            if len(same) == 1:
                return Placement(build, same[0].product, same[0].cu, same[0].base, None)
            return Placement(build, _line_product(line, build), None, None, None)
        below = [g for g in line if g.base <= build]
        if not below:
            return Placement(build, line[0].product, None, None, None)
        group = max(below, key=lambda g: g.base)
        if group.shares_build_number and group.base.build != build.build:
            # Between two CUs: a build nobody published, so no CU can be claimed.
            return Placement(build, group.product, None, None, None)
        return Placement(build, group.product, group.cu, group.base, None)

    def later_update(self, product: str, cu: str, since: Build,
                     kbs: Iterable[str]) -> Release | None:
        """The newest update (SU, RU or HU) of ``product`` ``cu`` at or after build ``since``
        whose KB is among ``kbs``: Microsoft's updates are cumulative for their CU, so it
        contains every fix ``since`` brought. A KB of another CU proves nothing here."""
        wanted = {kb.strip().upper() for kb in kbs}
        found = [r for r in self.releases
                 if r.product == product and r.cu == cu and r.kind in ("SU", "RU", "HU")
                 and not r.disputed and r.kb and r.kb.upper() in wanted and r.build >= since]
        return max(found, key=lambda r: r.build) if found else None

    def age_days(self, on: date) -> int:
        """Days from the newest release the catalogue lists to ``on``: past a quarter or so,
        builds released since grade unknown until the catalogue is updated."""
        return (on - date.fromisoformat(self.newest_release[:10])).days

    def out_of_support(self, product: str | None, on: date) -> Lifecycle | None:
        """The product's lifecycle entry when its support had ended by ``on``."""
        entry = self.lifecycle.get(product or "")
        return entry if entry and entry.end_of_support and on > entry.end_of_support else None

    def cu_base(self, product: str, cu: str | None) -> Build | None:
        group = self.group(product, cu)
        return group.base if group else None


def _line_product(line: list[CuGroup], build: Build) -> str:
    below = [g for g in line if g.base <= build]
    return max(below, key=lambda g: g.base).product if below else line[0].product


def parse_releases(rows: Iterable[Mapping[str, str]]) -> tuple[Release, ...]:
    releases = []
    for number, row in enumerate(rows, start=2):
        try:
            notes = " | ".join(part for part in (row["source_disagreement"], row["notes"]) if part)
            releases.append(Release(
                build=parse_dotted(row["build"]), product=row["product"], cu=row["cu"],
                kind=row["kind"], name=row["name"], kb=row["kb"] or None,
                released=row["release_date"], cu_base=parse_dotted(row["cu_base_build"]),
                source=row["source"], disputed=row["kind"] == "other", notes=notes,
            ))
        except (KeyError, ValueError) as error:
            raise CatalogError(f"builds.csv line {number}: {error}") from None
    return tuple(releases)


def cu_groups(releases: Iterable[Release]) -> tuple[CuGroup, ...]:
    members: dict[tuple[str, str], list[Release]] = {}
    for release in releases:
        members.setdefault((release.product, release.cu), []).append(release)
    groups = []
    for (product, cu), rows in members.items():
        base = rows[0].cu_base
        trusted = [r for r in rows if not r.disputed]
        shares = all(r.build.build == base.build for r in trusted)
        groups.append(CuGroup(product, cu, base, shares))
    return tuple(sorted(groups, key=lambda g: g.base))


def parse_lifecycle(rows: Iterable[Mapping[str, str]]) -> dict[str, Lifecycle]:
    entries = {}
    for number, row in enumerate(rows, start=2):
        try:
            end = date.fromisoformat(row["end_of_support"]) if row["end_of_support"] else None
            final = parse_dotted(row["final_update"]) if row.get("final_update") else None
            entries[row["product"]] = Lifecycle(row["product"], end, row["successor"] or None,
                                                row["source"], final)
        except (KeyError, ValueError) as error:
            raise CatalogError(f"lifecycle.csv line {number}: {error}") from None
    return entries


def build_catalog(builds_csv: str, advisory_toml: str, lifecycle_csv: str = "") -> Catalog:
    """A catalogue from the text of the data files (pure)."""
    return build_catalogs(builds_csv, (advisory_toml,), lifecycle_csv)[0]


def build_catalogs(builds_csv: str, advisory_tomls: Sequence[str],
                   lifecycle_csv: str = "") -> tuple[Catalog, ...]:
    """One catalogue per advisory text, in that order, sharing the releases parsed once (and
    the memo of placements, which depends on the releases alone). Pure."""
    releases = parse_releases(csv.DictReader(io.StringIO(builds_csv)))
    groups = cu_groups(releases)
    by_build = {release.build: release for release in releases}
    lifecycle = parse_lifecycle(csv.DictReader(io.StringIO(lifecycle_csv)))
    newest = max(r.released for r in releases if r.released)
    placements: dict[Build, Placement] = {}
    catalogs = []
    for advisory_toml in advisory_tomls:
        advisory = parse_advisory(tomllib.loads(advisory_toml))
        digest = hashlib.sha256(builds_csv.encode() + b"\0" + advisory_toml.encode()
                                + (b"\0" + lifecycle_csv.encode() if lifecycle_csv else b"")
                                ).hexdigest()
        catalogs.append(Catalog(
            releases=releases, groups=groups, advisory=advisory,
            version=f"{newest}+{digest[:12]}", newest_release=newest, by_build=by_build,
            lifecycle=lifecycle, _placements=placements,
        ))
    return tuple(catalogs)


def _data_texts(advisory_ids: Sequence[str]) -> tuple[str, list[str], str]:
    data = resources.files("compliance") / "data"
    return ((data / "builds.csv").read_text(encoding="utf-8"),
            [(data / "advisories" / f"{advisory_id}.toml").read_text(encoding="utf-8")
             for advisory_id in advisory_ids],
            (data / "lifecycle.csv").read_text(encoding="utf-8"))


def load_catalog(advisory_id: str = DEFAULT_ADVISORY) -> Catalog:
    """The catalogue shipped in ``compliance/data``."""
    builds, (advisory,), lifecycle = _data_texts((advisory_id,))
    return build_catalog(builds, advisory, lifecycle)


def load_catalogs() -> tuple[Catalog, ...]:
    """One shipped catalogue per advisory of ``ADVISORY_IDS``, in that order (the snapshot's
    own, March 2021, first), all on the same releases."""
    builds, advisories, lifecycle = _data_texts(ADVISORY_IDS)
    return build_catalogs(builds, advisories, lifecycle)
