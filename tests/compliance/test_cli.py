"""``python -m compliance classify`` as a user runs it, over every build in the catalogue.

Expectations come from builds.csv and the advisory TOML through the ``oracle`` fixture
(conftest.py), which reads the files with csv/tomllib and never calls compliance code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLAG_VALUES = {"unsupported_cu", "cu_update_required", "indicators_found", "not_in_catalog",
               "out_of_support",
               "disputed_build"}


def classify(*builds: str, stdin: str | None = None) -> tuple[int, list[dict[str, Any]], str]:
    result = subprocess.run(
        [sys.executable, "-m", "compliance", "classify", "--advisory", "2021-03-proxylogon", *builds],
        cwd=ROOT, input=stdin if stdin is not None else "", capture_output=True, text=True,
        timeout=60, check=False,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result.returncode, lines, result.stderr


@pytest.fixture(scope="module")
def every_build(csv_rows: list[dict[str, str]]) -> tuple[int, list[dict[str, Any]], str]:
    return classify(*(row["build"] for row in csv_rows))


def test_every_catalogue_build_in_one_call(
    every_build: tuple[int, list[dict[str, Any]], str], csv_rows: list[dict[str, str]],
    oracle: Any,
) -> None:
    code, lines, stderr = every_build
    assert code == 0, stderr
    assert len(lines) == len(csv_rows) == 373
    wrong = []
    for row, line in zip(csv_rows, lines, strict=True):
        expected = {
            "input": row["build"], "build": row["build"], "product": row["product"],
            "cu": row["cu"], "name": row["name"], "known": True,
            "status": oracle.expected_status(row),
        }
        got = {field: line.get(field) for field in expected}
        if got != expected:
            wrong.append((row["build"], {k: (got[k], v) for k, v in expected.items()
                                         if got[k] != v}))
    assert wrong == []


def test_every_catalogue_build_cves_flags_and_action(
    every_build: tuple[int, list[dict[str, Any]], str], csv_rows: list[dict[str, str]],
    oracle: Any,
) -> None:
    _code, lines, _stderr = every_build
    products = oracle.products()
    wrong = []
    for row, line in zip(csv_rows, lines, strict=True):
        product, status = row["product"], line["status"]
        problems = []
        if "error" in line:
            problems.append("error")
        # cves_open
        if status == "patched":
            expected_cves = []
        elif product == "2010":
            expected_cves = ["CVE-2021-26857"]
        else:
            expected_cves = products[product]["cves"]
        if line["cves_open"] != expected_cves:
            problems.append(("cves_open", line["cves_open"]))
        # flags
        flags = line["flags"]
        if not isinstance(flags, list) or not set(flags) <= FLAG_VALUES:
            problems.append(("flags", flags))
        fix = oracle.fix(product, row["cu"])
        first = oracle.fixed_from_base(product)
        cu_fixed = first is not None and tuple(
            int(p) for p in row["cu_base_build"].split(".")) >= first
        if "not_in_catalog" in flags:
            problems.append("not_in_catalog")
        # Microsoft Lifecycle: 2010 ended 2020-10-13, 2013 2023-04-11, 2016 and 2019
        # 2025-10-14; SE is under the Modern Lifecycle Policy. Classify judges as of now.
        if ("out_of_support" in flags) != (product != "SE"):
            problems.append(("out_of_support", flags))
        if ("disputed_build" in flags) != (status == "unknown"):
            problems.append(("disputed_build", flags))
        if fix is not None and product != "2010" and (
            ("unsupported_cu" in flags) == fix["supported_cu"]
        ):
            problems.append(("unsupported_cu", flags))
        if ("cu_update_required" in flags) != (fix is None and not cu_fixed):
            problems.append(("cu_update_required", flags))
        # action: a concrete sentence naming the way out
        action = line["action"]
        if not (isinstance(action, str) and action[:1].isupper() and len(action.split()) >= 3):
            problems.append(("action", action))
        elif status == "vulnerable" and fix is not None and not (
            fix["kb"] in action and fix["build"] in action
        ):
            problems.append(("action without fix", action))
        elif status == "vulnerable" and fix is None and (
            products[product]["upgrade_to"] not in action
        ):
            problems.append(("action without upgrade target", action))
        if problems:
            wrong.append((row["build"], status, problems))
    assert wrong == []


def test_oracle_covers_every_status(csv_rows: list[dict[str, str]], oracle: Any) -> None:
    # guard against an oracle that says the same thing for everything
    statuses = [oracle.expected_status(row) for row in csv_rows]
    assert {status: statuses.count(status) for status in set(statuses)}.keys() == {
        "patched", "vulnerable", "unknown"
    }
    assert statuses.count("unknown") == 16


def test_builds_from_stdin() -> None:
    code, lines, stderr = classify(stdin="15.01.2176.009\n\n  15.1.2176.2  \n14.3.513.0\n")
    assert code == 0, stderr
    assert [(line["build"], line["status"]) for line in lines] == [
        ("15.1.2176.9", "patched"), ("15.1.2176.2", "vulnerable"), ("14.3.513.0", "patched")
    ]
    assert lines[1]["cves_open"] == ["CVE-2021-26855", "CVE-2021-26857", "CVE-2021-26858",
                                     "CVE-2021-27065"]
    assert "KB5000871" in lines[1]["action"] and "15.1.2176.9" in lines[1]["action"]


def test_arguments_win_over_stdin() -> None:
    code, lines, _ = classify("15.2.858.5", stdin="15.1.2176.2\n")
    assert code == 0
    assert [line["build"] for line in lines] == ["15.2.858.5"]


def test_unparseable_input_is_reported_and_the_rest_still_graded() -> None:
    code, lines, stderr = classify("not-a-build", "15.1.2176.9", "15.1.2176")
    assert code == 0, stderr
    assert [line["status"] for line in lines] == ["unknown", "patched", "unknown"]
    for bad in (lines[0], lines[2]):
        assert bad["error"]
        assert bad["build"] is None and bad["known"] is False
        assert bad["action"]
    assert "error" not in lines[1]
    assert lines[0]["input"] == "not-a-build"


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        pytest.param(("nonsense",), None, id="one-bad-argument"),
        pytest.param(("abc", "15.1.2176"), None, id="several-bad-arguments"),
        pytest.param((), "garbage\n\n", id="bad-stdin"),
        pytest.param((), "", id="empty-stdin"),
    ],
)
def test_exit_code_is_non_zero_only_when_nothing_parsed(
    args: tuple[str, ...], stdin: str | None
) -> None:
    code, lines, _ = classify(*args, stdin=stdin)
    assert code != 0
    assert all(line["status"] == "unknown" and line["error"] for line in lines)


def test_a_parsed_but_unplaceable_build_still_counts_as_parsed() -> None:
    code, lines, _ = classify("16.0.1.1")
    assert code == 0
    assert lines[0]["status"] == "unknown"
    assert lines[0]["known"] is False
    assert "error" not in lines[0]


def test_usage_error_without_command() -> None:
    result = subprocess.run([sys.executable, "-m", "compliance"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stdout == ""
