"""Inventory files and their merge with AD discovery."""

from __future__ import annotations

import pytest

from collectors.inventory import InventoryError, merge, parse_inventory
from compliance.models import Host


def test_csv_with_overrides():
    entries = parse_inventory("name,fqdn,winrm_url\nEX1,,\nEDGE1,edge1.dmz.example,"
                              "https://10.9.9.9:5986/wsman\n", "csv")
    assert [e.name for e in entries] == ["EX1", "EDGE1"]
    assert entries[0].fqdn is None and entries[1].winrm_url == "https://10.9.9.9:5986/wsman"


def test_toml_hosts():
    entries = parse_inventory('[[hosts]]\nname = "EX1"\nfqdn = "ex1.test.example"\n'
                              '[[hosts]]\nname = "EX2"\nsite = "Lab"\n', "toml")
    assert [(e.name, e.fqdn, e.site) for e in entries] == [("EX1", "ex1.test.example", None),
                                                           ("EX2", None, "Lab")]


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [
        pytest.param("host,fqdn\nEX1,x\n", "csv", "header with a 'name'", id="no-name-column"),
        pytest.param("name,colour\nEX1,red\n", "csv", "unknown columns", id="unknown-column"),
        pytest.param("name\nEX1\nex1\n", "csv", "listed twice", id="duplicate-any-case"),
        pytest.param("name\n\n,\n", "csv", "without a name", id="empty-name"),
        pytest.param("name,winrm_url\nEX1,ftp://x\n", "csv", "https://", id="bad-url"),
        pytest.param("[[hosts]\n", "toml", "not valid TOML", id="bad-toml"),
    ],
)
def test_bad_inventories_say_where(text, kind, message):
    with pytest.raises(InventoryError, match=message):
        parse_inventory(text, kind, "inv.csv")


def test_merge_keeps_ad_facts_and_adds_file_hosts():
    ad = [Host("EX1", "ex1.ad.example", "S1", "D1", frozenset({"Mailbox"}), "Version 15.1 "
               "(Build 32176.2)", "CN=EX1"), Host("EX2", "ex2.ad.example")]
    entries = parse_inventory("name,fqdn,winrm_url\nex1,ex1.jump.example,https://127.0.0.1:1/"
                              "wsman/EX1\nEX3,,\n", "csv")
    hosts, overrides = merge(ad, entries)
    assert [h.name for h in hosts] == ["EX1", "EX2", "EX3"]
    assert hosts[0].fqdn == "ex1.jump.example" and hosts[0].ad_build is not None
    assert hosts[0].roles == frozenset({"Mailbox"}) and hosts[0].dag == "D1"
    assert overrides == {"ex1": "https://127.0.0.1:1/wsman/EX1"}
