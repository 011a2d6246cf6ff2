"""``python -m compliance classify --advisory ID|all``: one line per build and advisory by
default, the current shape for one advisory, one error line for an unknown id."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from compliance.__main__ import main
from compliance.catalog import ADVISORY_IDS

ROOT = Path(__file__).resolve().parents[2]
SINGLE_KEYS = {"input", "build", "product", "cu", "name", "known", "status", "cves_open",
               "flags", "action", "reason"}


def run(*argv: str, stdin: str = "") -> tuple[int, list[dict[str, Any]], str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["classify", *argv], stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return code, [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def test_default_is_every_advisory_one_line_each_in_order() -> None:
    code, lines, _ = run("15.1.2176.9", "15.2.1118.15")
    assert code == 0
    assert [(line["advisory"], line["input"]) for line in lines] == [
        (advisory, build) for build in ("15.1.2176.9", "15.2.1118.15")
        for advisory in ADVISORY_IDS]
    assert all(set(line) == SINGLE_KEYS | {"advisory"} for line in lines)
    assert run("--advisory", "all", "15.1.2176.9", "15.2.1118.15")[1] == lines


def test_one_build_patched_for_march_2021_only() -> None:
    _, lines, _ = run("15.1.2176.9")  # 2016 CU19 Mar21SU
    status = {line["advisory"]: (line["status"], "cu_update_required" in line["flags"])
              for line in lines}
    assert status == {"2021-03-proxylogon": ("patched", False),
                      "2021-05-proxyshell": ("vulnerable", False),
                      "2022-11-proxynotshell": ("vulnerable", True)}


@pytest.mark.parametrize("advisory", ADVISORY_IDS)
def test_one_advisory_keeps_the_single_line_shape(advisory: str) -> None:
    code, lines, err = run("--advisory", advisory, "15.1.2176.9", "14.3.513.0")
    assert (code, err) == (0, "")
    assert [line["input"] for line in lines] == ["15.1.2176.9", "14.3.513.0"]
    assert all(set(line) == SINGLE_KEYS for line in lines)
    expected_2010 = "patched" if advisory == "2021-03-proxylogon" else "not_applicable"
    assert lines[1]["status"] == expected_2010


def test_stdin_and_the_advisory_together() -> None:
    code, lines, _ = run("--advisory", "2022-11-proxynotshell",
                         stdin="15.2.1118.15\n\n15.2.1118.20\n")
    assert code == 0
    assert [line["status"] for line in lines] == ["vulnerable", "patched"]


def test_an_unparseable_build_is_one_error_line_per_advisory() -> None:
    code, lines, _ = run("15.1.2176")
    assert code == 1
    assert [line["advisory"] for line in lines] == list(ADVISORY_IDS)
    assert all(line["status"] == "unknown" and "error" in line for line in lines)
    assert lines[1]["cves_open"] == ["CVE-2021-34473", "CVE-2021-34523", "CVE-2021-31207"]


def test_an_unknown_advisory_is_one_error_line_naming_the_known_ones() -> None:
    code, lines, err = run("--advisory", "2023-01-nosuch", "15.1.2176.9")
    assert (code, lines) == (2, [])
    assert len(err.splitlines()) == 1
    assert "unknown advisory '2023-01-nosuch'" in err
    assert all(advisory in err for advisory in ADVISORY_IDS) and "all" in err


def test_the_command_line_itself() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "compliance", "classify", "--advisory", "bogus", "15.1.2176.9"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stdout) == (2, "")
    assert len(result.stderr.splitlines()) == 1 and "2022-11-proxynotshell" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "compliance", "classify", "--advisory", "2021-05-proxyshell",
         "15.1.2176.14"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0
    (line,) = [json.loads(text) for text in result.stdout.splitlines()]
    assert (line["status"], line["name"]) == ("patched", "Exchange Server 2016 CU19 May21SU")
