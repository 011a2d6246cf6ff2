"""Untrusted values in Markdown render as their own text (views/markdown.py).

Every character Markdown could act on must be escaped: checked character by character on the
hostile values below. The browser test (tests/browser/test_hostile.py) checks what Chromium
actually renders.
"""

from __future__ import annotations

import re
import string

import pytest

from views.markdown import literal, shown

HOSTILE = [
    "**PATCHED**",
    "[Click to fix](https://evil.example/fix)",
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    ":red[patched] :material/check:",
    "$\\frac{1}{0}$",
    "https://evil.example",
    "www.evil.example",
    "`code` ~~struck~~ # heading",
    "line one\n\n# injected heading\n- item",
    "EX1\\*",
    "mail admin@evil.example or HTTPS://EVIL.example",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_every_markdown_character_is_escaped(value):
    escaped = literal(value)
    i = 0
    while i < len(escaped):  # every punctuation character comes right after a backslash
        char = escaped[i]
        if char == "\\":
            assert escaped[i + 1] in string.punctuation
            i += 2
            continue
        assert char not in string.punctuation, (value, escaped, i)
        i += 1


@pytest.mark.parametrize("value", HOSTILE)
def test_removing_the_escapes_gives_the_text_back_on_one_line(value):
    assert shown(literal(value)) == " ".join(value.split())
    assert "\n" not in literal(value)


def test_ordinary_names_stay_readable():
    assert literal("EX01") == "EX01"
    assert literal("ex01.corp.example") == "ex01\\.corp\\.example"


@pytest.mark.parametrize("value", HOSTILE)
def test_no_url_www_name_or_address_survives_for_streamlit_to_link(value):
    """The patterns of mdast-util-gfm-autolink-literal, which Streamlit runs on parsed text."""
    text = re.sub(r"\\(.)", r"\1", literal(value))  # the parsed text, zero-width spaces kept
    assert not re.search(r"(?i)(https?://|www(?=\.))[-.\w]+", text)
    assert not re.search(r"[-.\w+]+@[-\w]+(?:\.[-\w]+)+", text)
