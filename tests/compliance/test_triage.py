"""The advisories' triage data (compliance/triage.py, issue 21): the shipped rows and their
sources, the optional sections of the later advisories, and malformed rows refused."""

from __future__ import annotations

import copy
import re
import tomllib
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from compliance.advisory import AdvisoryError, parse_advisory
from compliance.catalog import ADVISORY_IDS, load_catalogs
from compliance.triage import (
    TRACE_LOGS,
    LogRequirement,
    StandardFiles,
    ThreatFamily,
    looks_alike,
    nameless,
    normalise_threat,
)

DATA = Path(__file__).resolve().parents[2] / "compliance" / "data" / "advisories"
MARCH = DATA / "2021-03-proxylogon.toml"


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return tomllib.loads(MARCH.read_text(encoding="utf-8"))


def _source_keys(text: str) -> set[str]:
    """The keys the file's header defines (a comment line ``#   <key>  <description>``)."""
    return {match.group(1) for match in re.finditer(r"^#   (\S+)\s{2,}\S", text, re.MULTILINE)}


def test_the_shipped_triage_rows(raw: dict[str, Any]) -> None:
    advisory = load_catalogs()[0].advisory
    assert advisory.exposure is not None
    # 6 January 2021 from its first instant anywhere (UTC+14).
    assert advisory.exposure.start == datetime(2021, 1, 5, 10, 0, tzinfo=UTC)
    assert raw["exposure"]["start"] == datetime(2021, 1, 6, tzinfo=timezone(timedelta(hours=14)))
    triage = advisory.triage
    assert triage is not None
    assert (triage.directive, triage.scan_command, triage.followup_scans,
            triage.followup_interval_days) == ("CISA ED 21-02", "msert.exe /F /Q", 4, 7)
    assert {log.log for log in triage.logs} == set(TRACE_LOGS)
    assert {log.cve for log in triage.logs} == set(advisory.cve_ids)
    assert len(advisory.threat_families) == len(raw["threat_families"]) >= 8
    assert [(entry.folder, len(entry.names)) for entry in triage.standard_files] == [
        ("FrontEnd\\HttpProxy\\owa\\auth", 8), ("FrontEnd\\HttpProxy\\ecp\\auth", 1)]
    # The HttpProxy protocol folders each check reads (Test-ProxyLogon): the age of each of these is
    # what it reports for CVE-2021-26855; the CVE-2021-27065 check reads HttpProxy\Ecp.
    folders = {(log.log, log.cve): log.folders for log in triage.logs if log.folders}
    assert folders == {
        ("httpproxy", "CVE-2021-26855"): ("Autodiscover", "Eas", "Ecp", "Ews", "Mapi", "Oab", "Owa",
                                          "OwaCalendar", "PowerShell", "RpcHttp"),
        ("httpproxy", "CVE-2021-27065"): ("Ecp",)}


def test_a_needed_folder_is_matched_as_windows_names_it() -> None:
    need = LogRequirement("httpproxy", "CVE-2021-27065", "s", ("Ecp", "Owa"))
    assert need.unlisted(["ECP", "owa", None]) == ()
    assert need.unlisted(["Ecp\\x", "Ecp ", "Еcp", None]) == ("Ecp", "Owa")  # a Cyrillic Е: not Ecp
    assert LogRequirement("httpproxy", "CVE-2021-26855", "s").unlisted([]) == ()


def test_every_triage_row_has_a_source_the_file_defines(raw: dict[str, Any]) -> None:
    keys = _source_keys(MARCH.read_text(encoding="utf-8"))
    assert {"Volexity", "HAFNIUM-blog", "ED21-02-v2", "MSERT-docs"} <= keys
    rows = [raw["exposure"], raw["triage"], *raw["triage"]["logs"],
            *raw["triage"]["standard_files"], *raw["threat_families"]]
    for row in rows:
        assert row["source"].strip(), row
        cited = re.findall(r"[A-Za-z][\w-]*", row["source"])
        assert any(word in keys for word in cited), row


@pytest.mark.parametrize(("threat", "family"), [
    ("Exploit:Script/Exmann.A!dha", "Exmann (HAFNIUM exploitation)"),
    ("Behavior:Win32/Exmann.A", "Exmann (HAFNIUM exploitation)"),
    ("Backdoor:ASP/SecChecker.A", "SecChecker web shell"),
    ("BACKDOOR:ASP/SECCHECKER.A", "SecChecker web shell"),
    ("Trojan:JS/Chopper!dha", "China Chopper web shell"),
    ("Backdoor:JS/Chopper.C!dha", "China Chopper web shell"),
    ("Backdoor:ASP/Chopper.F!dha", "China Chopper web shell"),
    ("Backdoor:MSIL/Chopper.F!dha", "China Chopper web shell"),
    ("Backdoor:JS/Webshell", "Generic web shell"),
    ("Behavior:Win32/DumpLsass.A!attk", "LSASS dump (credential theft)"),
    ("Backdoor:HTML/TwoFaceVar.B", "TwoFace web shell"),
    ("Ransom:Win32/DoejoCrypt.A", "DoejoCrypt (DearCry) ransomware"),
    ("Exploit:Script/ExchgProxyRequest.A!gen", "Exchange proxy request exploit"),
    ("Trojan:Win32/CoinMiner!MSR", None),
    ("Backdoor:ASP/SecCheckerX", None),
    # Normalised first (NFKC, format characters out, trimmed): look-alikes made of
    # compatibility forms or hidden characters are the names they imitate.
    ("Backdoor:ASP/ſecChecker.A", "SecChecker web shell"),  # NFKC: the long s is an s
    ("Ｔrojan:JS/Chopper!dha", "China Chopper web shell"),  # a full-width T
    ("Backdoor:ASP/Sec\u200bChecker.A", "SecChecker web shell"),  # a zero-width space
    ("\u202eBackdoor:ASP/SecChecker.A ", "SecChecker web shell"),  # a direction mark, a space
    ("Backdoor:ASP/S\u0435cChecker.A", None),  # a Cyrillic e: no family (looks_alike says)
    # A "*" spans any character, a line break too.
    ("Backdoor:ASP/SecChecker.A\nx", "SecChecker web shell"),
    ("Trojan:JS/Chopper\n!dha", "China Chopper web shell"),
    ("Exploit:Script/Exmann.A\r\n!dha", "Exmann (HAFNIUM exploitation)"),
    ("Trojan:JS/Chop\nper!dha", None),  # no family: a control character inside (looks_alike says)
])
def test_threat_names_and_their_families(threat: str, family: str | None) -> None:
    found = load_catalogs()[0].advisory.family_of(threat)
    assert (found.name if found else None) == family


def test_a_pattern_is_literal_but_for_its_stars() -> None:
    family = ThreatFamily("x", "Backdoor:ASP/Sec.Checker*", "s")
    assert family.matches("backdoor:asp/sec.checker.a")
    assert not family.matches("Backdoor:ASP/SecXChecker.A")  # the dot is a dot
    assert not family.matches("Trojan:Backdoor:ASP/Sec.Checker.A")  # the whole name matches


@pytest.mark.parametrize(("threat", "normal", "alike", "unnamed"), [
    ("Trojan:JS/Chopper!dha", "Trojan:JS/Chopper!dha", False, False),
    (" Trojan:JS/Chop\u200dper!dha\u200e ", "Trojan:JS/Chopper!dha", False, False),
    ("Trojan:JS/Ch\u043epper!dha", "Trojan:JS/Ch\u043epper!dha", True, False),
    ("Trojan:JS/Chopper\u0131dha", "Trojan:JS/Chopper\u0131dha", True, False),
    ("", "", False, True),
    (" \u200b", "", False, True),
    ("(no name)", "(no name)", False, True),
    ("ThreatID 2147776320", "ThreatID 2147776320", False, True),
    ("Trojan:Win32/ThreatID", "Trojan:Win32/ThreatID", False, False),
    # No name Defender or MSERT prints holds a control character: one inside is a look-alike.
    ("Trojan:JS/Chop\r\nper!dha", "Trojan:JS/Chop\r\nper!dha", True, False),
    ("Trojan:JS/Chopper\x7f!dha", "Trojan:JS/Chopper\x7f!dha", True, False),
    ("\x01", "\x01", True, False),
    ("ThreatID\n2147776320", "ThreatID\n2147776320", True, True),
    ("\tTrojan:JS/Chopper!dha\r\n", "Trojan:JS/Chopper!dha", False, False),  # trimmed
])
def test_threat_names_are_normalised_before_matching(threat: str, normal: str, alike: bool,
                                                     unnamed: bool) -> None:
    assert normalise_threat(threat) == normal
    assert (looks_alike(threat), nameless(threat)) == (alike, unnamed)


OWA = StandardFiles("FrontEnd\\HttpProxy\\owa\\auth", ("logon.aspx",), "s")
INSTALL = "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\"


@pytest.mark.parametrize(("path", "install_path", "holds"), [
    (INSTALL + "FrontEnd\\HttpProxy\\owa\\auth\\logon.aspx", INSTALL, True),
    (INSTALL + "FrontEnd/HttpProxy/owa/auth/LOGON.ASPX", INSTALL.upper(), True),
    (INSTALL + "FrontEnd\\HttpProxy\\owa\\auth\\logon.aspx", "D:\\Exchange\\", False),
    (INSTALL + "FrontEnd\\HttpProxy\\owa\\auth\\logon.aspx", None, True),
    ("D:\\Exchange\\FrontEnd\\HttpProxy\\owa\\auth\\logon.aspx", None, True),
    ("C:\\inetpub\\wwwroot\\aspnet_client\\FrontEnd\\HttpProxy\\owa\\auth\\logon.aspx", None,
     False),
    ("C:\\inetpub\\wwwroot\\aspnet_client\\FrontEnd\\HttpProxy\\owa\\auth\\logon.aspx",
     INSTALL, False),
    (INSTALL + "FrontEnd\\HttpProxy\\owa\\auth\\FrontEnd\\HttpProxy\\owa\\auth\\logon.aspx",
     None, False),
    ("FrontEnd\\HttpProxy\\owa\\auth\\logon.aspx", None, False),
    ("\\\\host\\share\\FrontEnd\\HttpProxy\\owa\\auth\\logon.aspx", None, False),
    ("C:\\x.\\FrontEnd\\HttpProxy\\owa\\auth\\logon.aspx", None, False),
    (INSTALL + "FrontEnd\\HttpProxy\\owa\\auth\\logon.aspx:evil", None, False),
])
def test_a_standard_file_is_in_the_installs_own_folder(path: str, install_path: str | None,
                                                       holds: bool) -> None:
    # Review of issue 21, case 4: not any folder whose path ends in the folder's name.
    assert OWA.holds(path, install_path) is holds


@pytest.mark.parametrize("advisory_id", ADVISORY_IDS[1:])
def test_the_later_advisories_have_no_triage_and_stay_valid(advisory_id: str) -> None:
    advisory = next(c.advisory for c in load_catalogs() if c.advisory.id == advisory_id)
    assert (advisory.exposure, advisory.threat_families, advisory.triage) == (None, (), None)


def _logs(data: dict[str, Any]) -> list[dict[str, Any]]:
    logs: list[dict[str, Any]] = data["triage"]["logs"]
    return logs


def _standard(data: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = data["triage"]["standard_files"][0]
    return entry


MALFORMED = [
    pytest.param(lambda d: d["exposure"].update(start=date(2021, 1, 6)), id="start-a-date"),
    pytest.param(lambda d: d["exposure"].update(start=datetime(2021, 1, 6)), id="start-local"),
    pytest.param(lambda d: d["exposure"].update(start="2021-01-06T00:00:00Z"),
                 id="start-a-string"),
    pytest.param(lambda d: d["exposure"].pop("start"), id="start-missing"),
    pytest.param(lambda d: d["exposure"].update(source=" "), id="exposure-source-blank"),
    pytest.param(lambda d: d.update(exposure="2021-01-06"), id="exposure-not-a-table"),
    pytest.param(lambda d: d["threat_families"][0].pop("source"), id="family-without-source"),
    pytest.param(lambda d: d["threat_families"][0].pop("pattern"), id="family-without-pattern"),
    pytest.param(lambda d: d["threat_families"][0].update(pattern="**"),
                 id="family-matching-everything"),
    pytest.param(lambda d: d["threat_families"][0].update(pattern="Backdoor:* "),
                 id="family-pattern-padded"),
    pytest.param(lambda d: d["threat_families"].append(dict(d["threat_families"][0])),
                 id="family-twice"),
    pytest.param(lambda d: d["threat_families"].append("Backdoor:ASP/X"), id="family-a-string"),
    pytest.param(lambda d: d.update(threat_families={"name": "x"}), id="families-not-a-list"),
    pytest.param(lambda d: d["triage"].update(followup_scans=True), id="followups-a-boolean"),
    pytest.param(lambda d: d["triage"].update(followup_scans=-1), id="followups-negative"),
    pytest.param(lambda d: d["triage"].update(followup_scans="4"), id="followups-a-string"),
    pytest.param(lambda d: d["triage"].update(followup_interval_days=0), id="interval-zero"),
    pytest.param(lambda d: d["triage"].pop("scan_command"), id="no-scan-command"),
    pytest.param(lambda d: d["triage"].pop("directive"), id="no-directive-name"),
    pytest.param(lambda d: d["triage"].pop("source"), id="triage-without-source"),
    pytest.param(lambda d: d["triage"].update(logs=[]), id="no-logs"),
    pytest.param(lambda d: _logs(d)[0].update(log="http_proxy"), id="log-misspelt"),
    pytest.param(lambda d: _logs(d)[0].update(cve="CVE-2099-0001"), id="log-undefined-cve"),
    pytest.param(lambda d: _logs(d)[0].pop("source"), id="log-without-source"),
    pytest.param(lambda d: _logs(d)[0].update(folders="Ecp"), id="folders-a-string"),
    pytest.param(lambda d: _logs(d)[0].update(folders=[]), id="folders-empty"),
    pytest.param(lambda d: _logs(d)[0].update(folders=["Ecp", " "]), id="folder-blank"),
    pytest.param(lambda d: _logs(d)[0].update(folders=["Ecp\\Server"]), id="folder-a-path"),
    pytest.param(lambda d: _logs(d)[0].update(folders=["E*"]), id="folder-a-wildcard"),
    pytest.param(lambda d: _logs(d)[0].update(folders=["Ecp", "ECP"]), id="folder-twice"),
    pytest.param(lambda d: _logs(d)[0].update(folders=[7]), id="folder-a-number"),
    pytest.param(lambda d: next(log for log in _logs(d) if log["log"] == "ecp_server").update(
        folders=["Server"]), id="folders-of-a-log-without-protocol-folders"),
    pytest.param(lambda d: _standard(d).pop("source"), id="standard-files-without-source"),
    pytest.param(lambda d: _standard(d).update(names=[]), id="standard-files-without-names"),
    pytest.param(lambda d: _standard(d).update(names=["auth\\logon.aspx"]),
                 id="standard-file-with-a-folder"),
    pytest.param(lambda d: _standard(d).update(names=["*.aspx"]), id="standard-file-wildcard"),
    pytest.param(lambda d: _standard(d).pop("folder"), id="standard-files-without-folder"),
    pytest.param(lambda d: d["triage"].update(standard_files={"folder": "x"}),
                 id="standard-files-not-a-list"),
]


@pytest.mark.parametrize("change", MALFORMED)
def test_a_malformed_triage_row_is_refused(raw: dict[str, Any], change: Any) -> None:
    data = copy.deepcopy(raw)
    change(data)
    with pytest.raises(AdvisoryError):
        parse_advisory(data)


def test_the_sections_are_optional(raw: dict[str, Any]) -> None:
    data = copy.deepcopy(raw)
    for key in ("exposure", "triage", "threat_families"):
        data.pop(key)
    advisory = parse_advisory(data)
    assert (advisory.exposure, advisory.threat_families, advisory.triage) == (None, (), None)


def test_a_toml_date_for_the_start_is_refused() -> None:
    text = MARCH.read_text(encoding="utf-8").replace(
        "start = 2021-01-06T00:00:00+14:00", "start = 2021-01-06", 1)
    assert "start = 2021-01-06\n" in text
    with pytest.raises(AdvisoryError, match="offset"):
        parse_advisory(tomllib.loads(text))
