"""Parse every build form Exchange shows into one ``Build``; refuse anything else.

Forms (see shared/reference/ad_exchange_objects.md):
- dotted ``15.1.2176.9`` and the zero-padded file version ``15.01.2176.009``;
- ``AdminDisplayVersion``: ``Version 15.1 (Build 2176.2)``;
- AD ``serialNumber``: ``Version 15.1 (Build 32176.2)``: the build plus 30000 for
  major >= 8, optionally ``: description`` before the ``)``;
- AD ``versionNumber``: an int packing major, minor and build (no revision).
"""

from __future__ import annotations

import re

from compliance.models import Build, BuildSource


class BuildParseError(ValueError):
    """The text is not a build in any form we know; the message says what was seen."""


_DOTTED = re.compile(r"^\s*(\d{1,3})\.(\d{1,3})\.(\d{1,5})\.(\d{1,4})\s*$", re.ASCII)
_VERSION_FORM = re.compile(
    r"^\s*Version\s+(\d{1,3})\.(\d{1,3})\s+\(Build\s+(\d{1,6})\.(\d{1,4})\s*(?::[^()]*)?\)\s*$",
    re.IGNORECASE | re.ASCII,
)
_SERIAL_OFFSET = 30000
_LEGACY_SERIAL_OFFSET = 10000
# ServerVersion.ToInt(): (build & 0x7FFF) | (minor & 63) << 16 | (major & 63) << 22 | 0x70008000
_VERSION_NUMBER_MARK = 0x70008000
_VERSION_NUMBER_MAX = 0x7FFFFFFF


def parse_dotted(text: str) -> Build:
    """``15.1.2176.9`` or the file-version form ``15.01.2176.009``."""
    match = _DOTTED.match(text)
    if not match:
        raise BuildParseError(f"not a four-part build number: {text!r}")
    major, minor, build, revision = (int(part) for part in match.groups())
    if max(major, minor, build, revision) > 65535:
        # A Windows file version is four 16-bit numbers: anything larger was never shipped.
        raise BuildParseError(f"a part exceeds 65535, impossible in a file version: {text!r}")
    return Build(major, minor, build, revision)


def _version_form(text: str) -> tuple[int, int, int, int]:
    match = _VERSION_FORM.match(text)
    if not match:
        raise BuildParseError(f"not a 'Version X.Y (Build B.R)' string: {text!r}")
    major, minor, build, revision = (int(part) for part in match.groups())
    return major, minor, build, revision


def parse_admin_display_version(text: str) -> Build:
    """``Version 15.1 (Build 2176.2)``: the CU level as Get-ExchangeServer shows it."""
    major, minor, build, revision = _version_form(text)
    if build >= _SERIAL_OFFSET:
        raise BuildParseError(
            f"build {build} carries the serialNumber offset; this looks like an AD "
            f"serialNumber, not an AdminDisplayVersion: {text!r}"
        )
    return Build(major, minor, build, revision)


def parse_serial_number(text: str) -> Build:
    """AD ``serialNumber`` ``Version 15.1 (Build 32176.2)``, as Exchange's own parser reads it."""
    major, minor, build, revision = _version_form(text)
    offset = _SERIAL_OFFSET if major >= 8 else _LEGACY_SERIAL_OFFSET
    if build < offset:
        raise BuildParseError(
            f"serialNumber build {build} lacks the +{offset} offset Exchange writes: {text!r}"
        )
    return Build(major, minor, build - offset, revision)


def parse_version_number(value: int | str) -> Build:
    """AD ``versionNumber`` integer; the result has no revision (CU level only)."""
    try:
        number = value if isinstance(value, int) else int(str(value).strip())
    except ValueError:  # also Python's limit on very long digit strings
        raise BuildParseError("versionNumber is not an integer") from None
    if not 0 <= number <= _VERSION_NUMBER_MAX or (
        number & _VERSION_NUMBER_MARK != _VERSION_NUMBER_MARK
    ):
        raise BuildParseError(f"not an Exchange versionNumber (marker bits missing): "
                              f"{str(number)[:20] if number.bit_length() < 256 else 'huge'}")
    return Build((number >> 22) & 63, (number >> 16) & 63, number & 0x7FFF, None)


def encode_version_number(build: Build) -> int:
    """The AD ``versionNumber`` Exchange would write for this build's CU. ``BuildParseError``
    for parts the field cannot hold (major or minor above 63, build above 32767): masking them
    would name another build (15.1.34944 would read as 15.1.2176)."""
    if not (0 <= build.major <= 63 and 0 <= build.minor <= 63 and 0 <= build.build <= 0x7FFF):
        raise BuildParseError(f"{build.major}.{build.minor}.{build.build} does not fit an "
                              "Exchange versionNumber")
    return (
        (build.build & 0x7FFF)
        | (build.minor & 63) << 16
        | (build.major & 63) << 22
        | _VERSION_NUMBER_MARK
    )


def parse_build(text: str, source: BuildSource) -> Build:
    """Parse ``text`` as the form its ``source`` produces."""
    if source in (BuildSource.EXSETUP, BuildSource.INSTALLED_UPDATE):
        return parse_dotted(text)
    if source is BuildSource.ADMIN_DISPLAY_VERSION:
        return parse_admin_display_version(text)
    if source is BuildSource.AD_SERIAL_NUMBER:
        return parse_serial_number(text)
    return parse_version_number(text)


def parse_ad_build(text: str) -> tuple[Build, BuildSource]:
    """A CU-level build as AD holds it: serialNumber, AdminDisplayVersion or versionNumber.

    A dotted four-part build is refused here: it would look like an ExSetup file version
    and be graded at the Security Update level, which AD never knows.
    """
    build, source = parse_any(text)
    if not source.cu_level_only:
        raise BuildParseError(f"a dotted build is not an AD attribute value: {text!r}")
    return build, source


def parse_any(text: str) -> tuple[Build, BuildSource]:
    """Recognise the form from the text alone.

    The forms do not overlap: dotted has four parts, an integer is a versionNumber,
    and in ``Version X.Y (Build B.R)`` a build of 30000 or more is a serialNumber
    (no real Exchange 2007+ build number comes near 30000).
    """
    stripped = text.strip()
    if not stripped:
        raise BuildParseError("empty build string")
    if stripped.isascii() and stripped.isdigit():
        return parse_version_number(stripped), BuildSource.AD_VERSION_NUMBER
    if stripped[:1].isdigit():
        return parse_dotted(stripped), BuildSource.EXSETUP
    major, _minor, build, _revision = _version_form(stripped)
    offset = _SERIAL_OFFSET if major >= 8 else _LEGACY_SERIAL_OFFSET
    if build >= offset:
        return parse_serial_number(stripped), BuildSource.AD_SERIAL_NUMBER
    return parse_admin_display_version(stripped), BuildSource.ADMIN_DISPLAY_VERSION
