"""Fresh review of issue 21 after 3bfa617 (contract 1.5): documents that claim 1.5's candidate
folders only in part, and install dates the probe reads only in one exact form.

Literal probe documents judged as a snapshot judges them (``judge_observation`` with the shipped
March 2021 advisory), built on test_probe_1_4's clean 1.5 document: every other part of it covers
the window, so the state says only what the changed part does."""

from __future__ import annotations

import re

import pytest

from collectors.probe import compact
from collectors.traces import plain_folder
from compliance.catalog import load_catalog
from compliance.evaluate import evaluate
from compliance.investigation import InvestigationState, judge_observation
from tests.collectors.documents import EX, candidate_folders
from tests.collectors.test_probe_1_4 import NOW, _current, _judged, _observed
from tests.collectors.test_probe_script import PROBE, _part

State = InvestigationState


def test_the_premise_the_whole_1_5_document_is_clean():
    assert _judged(_current()).state is State.CLEAN


def test_a_folder_list_without_the_owa_and_ecp_auth_folders_is_never_clean():
    """On Exchange 2013+ the probe lists OWA's and ECP's auth folders (where the March 2021 web
    shells were put) after the IIS root and its aspnet_client. A list that names the IIS root but
    not them says those folders were never looked in; the judge only asks for an IIS root."""
    document = _current()
    document["investigation"]["candidate_folders"] = candidate_folders()[:2]  # root, aspnet_client
    assert _judged(document).state is State.INCOMPLETE
    document["investigation"]["candidate_folders"] = candidate_folders()[:1]  # the root alone
    assert _judged(document).state is State.INCOMPLETE


@pytest.mark.parametrize("path", ["   ", "\u0000", "wwwroot", "..\\..\\x"])
def test_an_iis_root_that_is_no_absolute_windows_path_is_never_clean(path: str):
    """The IIS root the search claims must be a folder the probe could have listed: a blank (or
    NUL-only, cleaned to empty) or relative path stands for no folder, yet it counts as the root."""
    document = _current()
    folders = candidate_folders()
    folders[0] = {"path": path, "present": True, "iis_root": True}
    document["investigation"]["candidate_folders"] = folders
    assert _judged(document).state is State.INCOMPLETE


@pytest.mark.parametrize("said", ["true", 1, None, "missing"])
def test_a_candidates_truncated_that_is_not_a_literal_false_is_not_whole(said: object):
    """As for Defender's ``truncated`` (anything but a literal false: cut short) and its
    ``available`` (3bfa617): a ``candidates_truncated`` that is not a boolean says nothing, so
    the list may have been cut; read as whole, the server is clean."""
    document = _current()
    if said == "missing":
        del document["investigation"]["candidates_truncated"]
    else:
        document["investigation"]["candidates_truncated"] = said
    assert _judged(document).state is State.INCOMPLETE


def test_the_probe_keeps_a_later_records_exact_install_date_for_a_kb_it_already_listed():
    """``Upd`` keeps the FIRST record of a KB. The Updates\\Exchange 20xx keys are read first, and
    their InstalledDate is a short date (KB 888535: 9/18/2003), which ``Day`` now reads as null;
    the Uninstall key's InstallDate (yyyyMMdd, read exactly) for the same KB is then dropped as a
    duplicate. So every Security Update's installed_on is null and the fix time falls back to
    the first snapshot that saw the server patched (earlier full scans never count)."""
    code = compact(PROBE.read_text(encoding="utf-8"))
    upd = _part(code, "function Upd($name, $date) {", "function ")
    updates_first = code.index("Updates\\Exchange 20*") < code.index("CurrentVersion\\Uninstall\\*")
    fills_later_date = re.search(r"\.installed_on\s*=", upd) is not None
    assert not updates_first or fills_later_date, upd


# -- beyond the review's tests -------------------------------------------------------------------

def test_auth_folders_are_matched_against_the_install_path_case_insensitively():
    document = _current()
    for folder in document["investigation"]["candidate_folders"][2:]:
        folder["path"] = folder["path"].upper()
    assert _judged(document).state is State.CLEAN
    # The same folders under another install path are not the install's.
    document = _current()
    for folder in document["investigation"]["candidate_folders"][2:]:
        folder["path"] = folder["path"].replace(EX, "D:\\Elsewhere\\")
    result = _judged(document)
    assert result.state is State.INCOMPLETE
    assert f"names no folder {EX}FrontEnd\\HttpProxy\\owa\\auth" in result.next_action


def test_auth_folders_under_an_install_path_not_trusted_are_never_clean():
    document = _current()
    document["install_path"] = "Exchange\\V15\\"  # relative: not trusted
    result = _judged(document)
    assert result.state is State.INCOMPLETE
    assert any("auth folders cannot be shown" in line for line in result.evidence)


def test_exchange_2010_keeps_its_rules_without_auth_folders():
    """2010's layout differs (no FrontEnd\\HttpProxy): no auth folder is asked of it."""
    from dataclasses import replace

    from compliance.catalog import load_catalog
    from compliance.traces import CandidateFolder
    from tests.compliance.test_investigation import CLEAN, run

    advisory = load_catalog().advisory
    root = replace(CLEAN, candidate_folders=(CandidateFolder("C:\\inetpub\\wwwroot", True, iis_root=True),))
    for product in ("2010", "2016", None):
        result = run(advisory, root, product=product, install_path=EX)
        named = any("names no folder" in line and "auth" in line for line in result.evidence)
        assert named is (product != "2010"), product
    assert run(advisory, root, product="2016", install_path=EX).state is State.INCOMPLETE


@pytest.mark.parametrize("said", ["true", 1, None])
def test_a_candidates_truncated_that_is_no_boolean_is_named(said: object):
    document = _current()
    document["investigation"]["candidates_truncated"] = said
    assert any("candidates_truncated left out" in error for error in _observed(document).probe_errors)


@pytest.mark.parametrize("said", ["false", 0, None, []])
def test_a_log_reach_truncated_that_is_no_boolean_cuts_the_reach(said: object):
    document = _current()
    document["investigation"]["log_reach_truncated"] = said
    obs = _observed(document)
    assert obs.traces is not None and obs.traces.reach_truncated
    assert any("log_reach_truncated left out" in error for error in obs.probe_errors)
    assert _judged(document).state is State.INCOMPLETE


@pytest.mark.parametrize("said", ["missing", False])
def test_a_log_reach_truncated_absent_or_false_is_whole(said: object):
    document = _current()
    if said == "missing":
        document["investigation"].pop("log_reach_truncated", None)
    else:
        document["investigation"]["log_reach_truncated"] = said
    obs = _observed(document)
    assert obs.traces is not None and not obs.traces.reach_truncated
    assert _judged(document).state is State.CLEAN


@pytest.mark.parametrize(("path", "plain"), [
    ("C:\\inetpub\\wwwroot", True), ("D:/inetpub/wwwroot/", True), ("C:\\", True),
    ("", False), ("   ", False), ("wwwroot", False), ("..\\..\\x", False), ("C:\\a\\..\\b", False),
    ("\\\\fs\\share", False), ("C:wwwroot", False), ("C:\\a\\b:stream", False), ("C:\\a\\\\b", False),
])
def test_plain_folder(path: str, plain: bool):
    assert plain_folder(path) is plain


# -- the final re-check (after a6d0504) ----------------------------------------------------
OWA_AUTH = EX + "FrontEnd\\HttpProxy\\owa\\auth"
ECP_AUTH = EX + "FrontEnd\\HttpProxy\\ecp\\auth"


def _folder(path, present):
    return {"path": path, "present": present, "iis_root": False}


def _with_auth(*entries):
    document = _current()
    document["investigation"]["candidate_folders"] = candidate_folders()[:2] + list(entries)
    return document


@pytest.mark.parametrize("present", [None, "true", "missing"])
def test_auth_folders_whose_present_is_no_boolean_are_never_clean(present):
    """Re-check finding: an unreadable ``present`` read as "not there", which for an auth
    folder was evidence only. Now such an entry is not read, and the list is not whole."""
    owa = {"path": OWA_AUTH, "present": present, "iis_root": False}
    ecp = {"path": ECP_AUTH, "present": present, "iis_root": False}
    if present == "missing":
        del owa["present"], ecp["present"]
    assert _judged(_with_auth(owa, ecp)).state is State.INCOMPLETE


def test_auth_folders_not_there_on_exchange_2016_are_never_clean():
    """On 2016 OWA's and ECP's auth folders are part of every install under the trusted install
    path; "not there" (the probe's ObjectNotFound, which with ErrorActionPreference=Stop any
    item of the recursive listing can raise) means nothing in them was looked at."""
    document = _with_auth(_folder(OWA_AUTH, False), _folder(ECP_AUTH, False))
    assert _judged(document).state is State.INCOMPLETE


def test_an_auth_folder_listed_both_there_and_not_there_is_never_clean():
    document = _with_auth(_folder(OWA_AUTH, False), _folder(OWA_AUTH, True),
                          _folder(ECP_AUTH, True))
    assert _judged(document).state is State.INCOMPLETE


@pytest.mark.parametrize(("roles", "state"), [
    (["Mailbox"], State.CLEAN),
    # A 2013 Mailbox server as AD records it (msExchCurrentServerRoles 54): the ClientAccess bit
    # is its back end, not the front end (final re-check: this read as a front end before).
    (["Mailbox", "ClientAccess", "UnifiedMessaging", "HubTransport"], State.CLEAN),
    (["Cafe", "FrontendTransport"], State.INCOMPLETE),  # a 2013 Client Access server (16385)
    (["Mailbox", "ClientAccess", "Cafe", "FrontendTransport"], State.INCOMPLETE),
])
def test_an_exchange_2013_mailbox_server_without_the_front_end_needs_no_auth_folders(roles, state):
    """Exchange 2013 installs the front end (FrontEnd\\HttpProxy) with the Client Access role
    only: on a Mailbox-only 2013 server the auth folders are not there, and need not be."""
    document = _with_auth(_folder(OWA_AUTH, False), _folder(ECP_AUTH, False))
    document["exsetup_version"] = "15.0.1497.12"  # Exchange 2013 CU23 with the March 2021 SU
    document["roles"] = roles
    obs = _observed(document)
    catalog = load_catalog()
    verdict = evaluate(obs, catalog, NOW)
    assert verdict.product == "2013"
    assert judge_observation(obs, verdict, catalog.advisory, NOW).state is state
