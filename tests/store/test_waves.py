"""Maintenance waves and the Excel worklist."""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from openpyxl import load_workbook

from compliance.models import Assessment, Host, Observation, Status, Verdict, server_roles
from compliance.summary import summarise
from compliance.worklist import Item, internet_facing, plan_waves
from store.export import WORKLIST_COLUMNS, to_xlsx

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _item(host: str, dag: str = "", roles: frozenset[str] = frozenset({"Mailbox"}),
          priority: int = 1) -> Item:
    verdict = Verdict(host=host, status=Status.VULNERABLE, reason="r", action="a", as_of=NOW)
    return Item(summarise(Assessment(Observation(Host(host, dag=dag or None,
                                                      roles=server_roles(roles)), NOW, "t"),
                                     verdict)), priority)


def test_no_wave_takes_two_members_of_one_dag_and_facing_roles_go_first():
    items = [_item(f"DB{i}", dag="DAG1") for i in range(4)]
    items += [_item(f"MB{i}", dag="DAG2") for i in range(3)]
    items += [_item("CAS1", roles=frozenset({"Cafe", "FrontendTransport"})),
              _item("EDGE1", roles=frozenset({"Edge"})), _item("LONE", priority=0)]
    waved = plan_waves(items, per_wave=3)
    members: dict[tuple[int, str], int] = defaultdict(int)
    for item in waved:
        if item.dag:
            members[(item.wave, item.dag)] += 1
    assert all(count == 1 for count in members.values())
    sizes = Counter(item.wave for item in waved)
    assert max(sizes.values()) <= 3
    assert {i.host for i in waved if i.wave == 1} >= {"CAS1", "EDGE1"}
    assert len({i.wave for i in waved if i.dag == "dag1"}) == 4  # 4 members, 4 waves


CAS = frozenset({"Cafe", "FrontendTransport"})


@pytest.mark.parametrize(
    ("roles", "internal", "external", "facing"),
    [
        # AD published an external name: internet-facing, whatever the roles say
        pytest.param({"Mailbox"}, (), ("mail.example.com",), True, id="external-name"),
        pytest.param({"Mailbox"}, ("mail.corp.example",), ("mail.example.com",), True,
                     id="both-names"),
        # AD knows the host's names, all internal: not internet-facing, whatever the roles say
        pytest.param(CAS, ("mail.corp.example",), (), False, id="internal-only-cas"),
        # nothing known from AD: the roles decide, as before
        pytest.param(CAS, (), (), True, id="no-names-cas"),
        pytest.param({"Edge"}, (), (), True, id="no-names-edge"),
        pytest.param({"Mailbox"}, (), (), False, id="no-names-mailbox"),
        pytest.param(set(), (), (), False, id="no-names-no-roles"),
    ],
)
def test_internet_facing_from_published_names_else_roles(roles, internal, external, facing):
    roles = server_roles(roles)
    assert internet_facing(roles, internal, external) is facing
    item = replace(_item("H", roles=roles), internal_names=internal, external_names=external)
    assert item.internet_facing is facing


def test_a_host_publishing_an_external_name_goes_first_and_an_internal_only_one_does_not():
    published = replace(_item("ZMB"), external_names=("mail.example.com",))
    internal = replace(_item("ACAS", roles=CAS), internal_names=("mail.corp.example",))
    guessed = _item("BCAS", roles=CAS)  # nothing known from AD: its roles put it first
    plain = _item("CMB")
    waved = plan_waves([plain, internal, guessed, published], per_wave=2)
    assert [(i.host, i.wave) for i in waved] == [("BCAS", 1), ("ZMB", 1), ("ACAS", 2),
                                                 ("CMB", 2)]


def test_a_wave_holds_at_least_one_host():
    with pytest.raises(ValueError, match="at least one host"):
        plan_waves([_item("A")], per_wave=0)


def test_excel_cells_are_inert_text():
    rows = [{"host": '=HYPERLINK("http://evil.example","x")', "action": "+cmd", "wave": 1}]
    book = load_workbook(io.BytesIO(to_xlsx(rows, [("snapshot", "7")])))
    sheet = book["Worklist"]
    assert [c.value for c in sheet[1]] == list(WORKLIST_COLUMNS)
    header = list(WORKLIST_COLUMNS)
    host = sheet.cell(row=2, column=header.index("host") + 1)
    assert host.value.startswith("'=HYPERLINK") and host.data_type == "s"
    assert sheet.cell(row=2, column=header.index("action") + 1).value == "'+cmd"
    assert book["About"]["B1"].value == "7"


def _greedy(items, per_wave):
    """The rule as first written (quadratic): each host to the first wave with room and no
    member of its DAG, in the same order."""
    ordered = sorted(items, key=lambda i: (not i.internet_facing, i.priority, i.host.lower()))
    waves: list[tuple[int, set[str]]] = []
    chosen = {}
    for item in ordered:
        number = next((n for n, (size, dags) in enumerate(waves)
                       if size < per_wave and not (item.dag and item.dag in dags)), None)
        if number is None:
            waves.append((0, set()))
            number = len(waves) - 1
        size, dags = waves[number]
        if item.dag:
            dags.add(item.dag)
        waves[number] = (size + 1, dags)
        chosen[item.host] = number + 1
    return chosen


@pytest.mark.parametrize("seed", range(30))
def test_the_linear_plan_is_the_greedy_rule(seed):
    import random

    rng = random.Random(seed)
    facing = frozenset({"Cafe"})
    items = [_item(f"H{i:03d}", dag=rng.choice(["", "D1", "D2", "D3", f"D{i % 7}"]),
                   roles=facing if rng.random() < 0.3 else frozenset({"Mailbox"}),
                   priority=rng.randint(0, 3)) for i in range(rng.randint(0, 80))]
    per_wave = rng.randint(1, 6)
    assert {i.host: i.wave for i in plan_waves(items, per_wave)} == _greedy(items, per_wave)


def test_accepted_hosts_come_after_every_other_host_in_waves_of_their_own():
    from compliance.worklist import plan_with_acceptances

    items = [_item("CAS1", roles=frozenset({"Cafe"}), priority=0), _item("DB1", dag="DAG1"),
             _item("DB2", dag="DAG1"), _item("MB1"), _item("MB2")]
    waved = plan_with_acceptances(items, {"cas1", "db2"}, per_wave=2)
    open_waves = [i.wave for i in waved if i.host not in ("CAS1", "DB2")]
    accepted_waves = [i.wave for i in waved if i.host in ("CAS1", "DB2")]
    assert max(open_waves) < min(accepted_waves)  # even an internet-facing, urgent one
    assert [i.host for i in waved][-2:] == ["CAS1", "DB2"]
    assert sorted(i.host for i in waved) == sorted(i.host for i in items)  # nobody dropped
    assert plan_with_acceptances(items, set(), 2) == plan_waves(items, 2)


def test_the_triage_order_puts_indicators_first_whatever_their_wave_and_scans_last():
    """Review of issue 21: hosts with compromise indicators come first even when the patch
    work's waves put them later (isolating one and running MSERT needs no window); then the
    patch work by wave; then the hosts that need only their investigation, not investigated
    before incomplete, without a wave."""
    from compliance.worklist import INVESTIGATION_INCOMPLETE, NOT_INVESTIGATED, plan_triage

    facing = frozenset({"Cafe"})
    items = [_item("CAS1", roles=facing), _item("CAS2", roles=facing),
             _item("SHELL", dag="DAG1", priority=0), _item("DB1", dag="DAG1"),
             _item("HALF", roles=facing, priority=INVESTIGATION_INCOMPLETE),
             _item("NOSCAN", priority=NOT_INVESTIGATED),
             _item("ACCEPTED", priority=NOT_INVESTIGATED), _item("LATER", dag="DAG2"),
             _item("DEFERRED-SHELL", priority=0)]
    # Today's waves would list SHELL (not internet-facing) after CAS1 and CAS2, and HALF
    # (internet-facing) before the patch work of DB1.
    assert [i.host for i in plan_waves(items, per_wave=2)][:2] == ["CAS1", "CAS2"]
    # Under a risk acceptance: after every other host (issue 17), but a compromise first.
    planned = plan_triage(items, {"accepted", "later", "deferred-shell"}, per_wave=2)
    assert [(i.host, i.wave) for i in planned] == [
        ("SHELL", 2), ("DEFERRED-SHELL", 4), ("CAS1", 1), ("CAS2", 1), ("DB1", 3),
        ("NOSCAN", 0), ("HALF", 0), ("LATER", 4), ("ACCEPTED", 0)]
