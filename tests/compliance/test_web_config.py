"""Post-patch health (issue 18, part 4): an OWA/ECP web.config with an unresolved
%ExchangeInstallDir% is flagged ``web_config_broken`` with its fix; the status never changes;
the worklist and the deadlines take the host at the "unknown" urgency; the stored form
round-trips and observations stored before the field still read and encode the same."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from compliance.catalog import Catalog
from compliance.codec import (
    observation_from_dict,
    observation_to_dict,
    verdict_from_dict,
    verdict_to_dict,
)
from compliance.deadline import DeadlinePolicy, deadline, kinds
from compliance.evaluate import evaluate
from compliance.models import (
    EvidenceKind,
    Flag,
    Host,
    Observation,
    Status,
    WebConfigFile,
    WebConfigState,
)
from compliance.worklist import priority

AS_OF = datetime(2021, 3, 20, 12, 0, tzinfo=UTC)
SEEN = AS_OF - timedelta(hours=1)
ROOT = "C:\\Program Files\\Microsoft\\Exchange Server\\V15\\"
OWA = ROOT + "ClientAccess\\Owa\\web.config"
ECP = ROOT + "ClientAccess\\ecp\\web.config"
PROXY_OWA = ROOT + "FrontEnd\\HttpProxy\\owa\\web.config"
PROXY_ECP = ROOT + "FrontEnd\\HttpProxy\\ecp\\web.config"
UM = frozenset({"Mailbox", "UnifiedMessaging"})
NO_UM = frozenset({"Mailbox", "ClientAccess", "HubTransport"})

FINE = WebConfigState.FINE
UNRESOLVED = WebConfigState.UNRESOLVED
UNREADABLE = WebConfigState.UNREADABLE
MISSING = WebConfigState.MISSING


def files(*states: WebConfigState) -> tuple[WebConfigFile, ...]:
    return tuple(WebConfigFile(path, state)
                 for path, state in zip((OWA, ECP, PROXY_OWA, PROXY_ECP), states, strict=False))


def observe(exsetup: str, web: tuple[WebConfigFile, ...] | None, *,
            roles: frozenset[str] | None = UM, indicators: tuple[str, ...] = ()) -> Observation:
    return Observation(host=Host("EX01", fqdn="ex01.corp.example", roles=roles), observed_at=SEEN,
                       source="test", exsetup_version=exsetup, indicators=indicators,
                       web_configs=web)


def web_evidence(obs: Observation, catalog: Catalog) -> list[str]:
    return [e.value for e in evaluate(obs, catalog, AS_OF).evidence
            if e.kind == EvidenceKind.WEB_CONFIG]


# -- evaluate ---------------------------------------------------------------------------------


@pytest.mark.parametrize("exsetup", ["15.1.2176.9", "15.1.2176.2", "15.2.792.10", "15.0.1497.12"])
def test_the_flag_never_changes_the_status_nor_the_other_flags(exsetup: str,
                                                              catalog: Catalog) -> None:
    clean = evaluate(observe(exsetup, files(FINE, FINE, FINE, FINE)), catalog, AS_OF)
    broken = evaluate(observe(exsetup, files(FINE, FINE, FINE, UNRESOLVED)), catalog, AS_OF)
    assert broken.status is clean.status
    assert broken.cves_open == clean.cves_open and broken.build == clean.build
    assert set(broken.flags) - set(clean.flags) == {Flag.WEB_CONFIG_BROKEN}
    assert Flag.WEB_CONFIG_BROKEN not in clean.flags


def test_a_patched_server_with_a_broken_web_config_is_told_the_fix(catalog: Catalog) -> None:
    verdict = evaluate(observe("15.1.2176.9", files(FINE, FINE, FINE, UNRESOLVED)), catalog, AS_OF)
    assert verdict.status is Status.PATCHED
    assert verdict.flags == (Flag.WEB_CONFIG_BROKEN,)
    # The "nothing to do" sentence is gone: the repair takes its place.
    assert verdict.action == (
        "Repair OWA/ECP: %ExchangeInstallDir% is left unresolved in "
        "FrontEnd\\HttpProxy\\ecp\\web.config; rerun the Security Update from an elevated command "
        "prompt, or replace %ExchangeInstallDir% in each file with the Exchange install path "
        f"({ROOT}), then run iisreset and check that OWA and ECP sign in")
    assert "availability, not the CVE fix" in verdict.reason
    assert verdict.reason.startswith("ExSetup 15.1.2176.9 is at or above the fix")
    assert f"{PROXY_ECP}: %ExchangeInstallDir% left unresolved (OWA/ECP cannot load it)" in [
        e.value for e in verdict.evidence]


def test_a_vulnerable_server_is_told_to_patch_first(catalog: Catalog) -> None:
    verdict = evaluate(observe("15.1.2176.2", files(UNRESOLVED, FINE, UNRESOLVED, FINE)), catalog,
                       AS_OF)
    assert verdict.status is Status.VULNERABLE
    assert verdict.action.startswith("Install KB5000871")
    assert verdict.action.count("Repair OWA/ECP") == 1
    assert ("unresolved in ClientAccess\\Owa\\web.config, FrontEnd\\HttpProxy\\owa\\web.config;"
            in verdict.action)
    assert "2 OWA/ECP web.config file(s) hold an unresolved %ExchangeInstallDir%" in verdict.reason


def test_with_compromise_indicators_the_investigation_comes_first(catalog: Catalog) -> None:
    verdict = evaluate(observe("15.1.2176.9", files(UNRESOLVED), indicators=("hit",)), catalog,
                       AS_OF)
    assert verdict.status is Status.PATCHED
    assert verdict.action.startswith("Investigate for compromise first")
    assert "; then repair OWA/ECP: %ExchangeInstallDir%" in verdict.action


def test_a_server_the_advisory_spares_keeps_its_action(catalog: Catalog) -> None:
    verdict = evaluate(observe("14.3.509.0", files(UNRESOLVED, FINE), roles=NO_UM), catalog, AS_OF)
    assert verdict.status is Status.NOT_APPLICABLE
    assert Flag.WEB_CONFIG_BROKEN in verdict.flags
    assert verdict.action.startswith("None: this server is not affected")
    assert "OWA/ECP" not in verdict.action
    assert priority(verdict.status, verdict.flags) is None


def test_an_unreadable_file_is_unknown_not_fine_and_not_flagged(catalog: Catalog) -> None:
    obs = observe("15.1.2176.9", files(FINE, UNREADABLE, FINE, MISSING))
    verdict = evaluate(obs, catalog, AS_OF)
    assert Flag.WEB_CONFIG_BROKEN not in verdict.flags
    assert web_evidence(obs, catalog) == [
        f"{ECP}: could not be read, so whether %ExchangeInstallDir% is left in it is unknown",
        "2 OWA/ECP web.config file(s) read without %ExchangeInstallDir%, 1 not present",
    ]


def test_fine_files_are_evidence_and_not_checked_is_nothing(catalog: Catalog) -> None:
    assert web_evidence(observe("15.1.2176.9", files(FINE, FINE, FINE, FINE)), catalog) == [
        "4 OWA/ECP web.config file(s) read without %ExchangeInstallDir%"]
    assert web_evidence(observe("15.1.2176.9", None), catalog) == []  # an older probe
    verdict = evaluate(observe("15.1.2176.9", None), catalog, AS_OF)
    assert verdict.action == "None: the March 2021 fixes are installed"


def test_a_path_outside_the_install_folders_is_named_whole(catalog: Catalog) -> None:
    odd = (WebConfigFile("D:\\Sites\\owa\\web.config", UNRESOLVED),)
    verdict = evaluate(observe("15.1.2176.9", odd), catalog, AS_OF)
    assert "unresolved in D:\\Sites\\owa\\web.config;" in verdict.action
    assert "with the Exchange install path, then run iisreset" in verdict.action


# -- worklist and deadlines: one definition of "needs action" ---------------------------------


@pytest.mark.parametrize(("status", "flags", "expected"), [
    (Status.PATCHED, (Flag.WEB_CONFIG_BROKEN,), 2),
    (Status.PATCHED, (), None),
    (Status.VULNERABLE, (Flag.WEB_CONFIG_BROKEN,), 1),
    (Status.UNKNOWN, (Flag.WEB_CONFIG_BROKEN,), 2),
    (Status.MITIGATED, (Flag.WEB_CONFIG_BROKEN,), 2),
    (Status.PATCHED, (Flag.WEB_CONFIG_BROKEN, Flag.OUTSIDE_OLDER_THAN_INSIDE), 1),
    (Status.PATCHED, (Flag.WEB_CONFIG_BROKEN, Flag.INDICATORS_FOUND), 0),
    (Status.NOT_APPLICABLE, (Flag.WEB_CONFIG_BROKEN,), None),  # the advisory spares it
])
def test_the_flag_ranks_at_least_as_unknown(status: Status, flags: tuple[Flag, ...],
                                            expected: int | None) -> None:
    assert priority(status, flags) == expected
    assert priority(status, iter(flags)) == expected  # a one-shot iterable reads the same


def test_a_patched_host_with_the_flag_is_due_by_the_unknown_days() -> None:
    policy = DeadlinePolicy(days={"vulnerable": 2.0, "mitigated": 14.0, "unknown": 5.0,
                                  "indicators": 0.0})
    assert kinds(Status.PATCHED, (Flag.WEB_CONFIG_BROKEN,)) == ("unknown",)
    assert kinds(Status.UNKNOWN, (Flag.WEB_CONFIG_BROKEN,)) == ("unknown",)
    assert kinds(Status.MITIGATED, (Flag.WEB_CONFIG_BROKEN,)) == ("mitigated", "unknown")
    due = deadline(Status.PATCHED, (Flag.WEB_CONFIG_BROKEN,), policy, open_since=SEEN,
                   published=SEEN - timedelta(days=30))
    assert due is not None and due.due_at == SEEN + timedelta(days=5)
    assert due.rule.startswith("unknown: 5 days")
    # A mitigated host's 14 days shrink to the unknown 5, as its priority rises from 3 to 2.
    due = deadline(Status.MITIGATED, (Flag.WEB_CONFIG_BROKEN,), policy, open_since=SEEN,
                   published=SEEN)
    assert due is not None and due.due_at == SEEN + timedelta(days=5)


def test_needs_action_and_has_a_deadline_agree_for_every_status_and_flags() -> None:
    for status in Status:
        for size in range(3):
            for flags in itertools.combinations(Flag, size):
                needs = priority(status, flags) is not None
                due = deadline(status, flags, DeadlinePolicy(), open_since=SEEN, published=SEEN)
                assert needs is (due is not None), (status, flags)


# -- the stored form ----------------------------------------------------------------------------


def _dumps(data: object) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# An observation exactly as the store held it before the check existed (store/snapshots.py
# _dumps: sorted keys, no spaces). Digests cover this text.
STORED_BEFORE = (
    '{"admin_display_version":null,"exsetup_version":"15.1.2176.9","failure":null,'
    '"host":{"ad_build":null,"dag":null,"dn":null,"fqdn":"ex1.corp.example",'
    '"name":"EX1","problems":[],"roles":["Mailbox"],"site":null},'
    '"indicators":[],"indicators_truncated":false,"installed_updates":[],'
    '"log_window_days":null,"mitigations":null,"observed_at":"2021-03-20T11:00:00+00:00",'
    '"probe_errors":[],"source":"winrm","suspicious_files":[]}'
)


def test_an_observation_stored_before_the_check_reads_as_not_checked_and_encodes_the_same(
) -> None:
    observation = observation_from_dict(json.loads(STORED_BEFORE))
    assert observation.web_configs is None
    assert _dumps(observation_to_dict(observation)) == STORED_BEFORE


@pytest.mark.parametrize("web", [
    pytest.param(files(FINE, UNRESOLVED, UNREADABLE, MISSING), id="every-state"),
    pytest.param((), id="checked-no-file"),
    pytest.param(None, id="not-checked"),
])
def test_observations_and_verdicts_round_trip(web: tuple[WebConfigFile, ...] | None,
                                              catalog: Catalog) -> None:
    obs = observe("15.1.2176.9", web)
    stored = json.loads(_dumps(observation_to_dict(obs)))
    assert ("web_configs" in stored) is (web is not None)
    assert observation_from_dict(stored) == obs
    verdict = evaluate(obs, catalog, AS_OF)
    assert verdict_from_dict(json.loads(_dumps(verdict_to_dict(verdict)))) == verdict


def test_a_stored_state_no_writer_makes_reads_as_unreadable() -> None:
    stored = json.loads(STORED_BEFORE)
    stored["web_configs"] = [{"path": OWA, "state": "sideways"}, {"path": ECP, "state": "fine"},
                             "not an entry"]
    assert observation_from_dict(stored).web_configs == (
        WebConfigFile(OWA, UNREADABLE), WebConfigFile(ECP, FINE))
    assert observation_from_dict({**stored, "web_configs": "forged"}).web_configs is None


def test_replace_keeps_the_files() -> None:
    obs = observe("15.1.2176.9", files(UNRESOLVED))
    assert replace(obs, source="import").web_configs == obs.web_configs
