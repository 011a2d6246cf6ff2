"""Untrusted text inside Streamlit Markdown, shown as itself.

Host names, AD attributes, probe output and error details reach pages that render Markdown
(``st.markdown``, ``st.error``, expander labels...). Streamlit never renders their raw HTML,
but Markdown itself would still turn ``[fix](https://…)`` into a link, ``**PATCHED**`` into
bold, ``:red[…]`` into colour, ``$…$`` into maths and a bare URL into a link. Every ASCII
punctuation character may be backslash-escaped in CommonMark, so escaping them all keeps the
text literal; line breaks are folded so a value cannot start a new block.

Escapes do not stop Streamlit from turning bare URLs, ``www.`` names and e-mail addresses into
links: that happens on the parsed text. An invisible zero-width space after ``https:/``,
``www`` and ``@`` breaks those patterns, so a hostile value cannot become a clickable link.
"""

from __future__ import annotations

import re

_PUNCTUATION = re.compile(r"""([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])""")
_AUTOLINK = re.compile(r"(?i)(?:https?:/|www|@)")
UNLINK = "\u200b"


# Bidirectional controls reorder what follows them ("EX\u202eDEHCTAP" reads "EXPATCHED"):
# shown as their escapes, as the terminal output does (store.export.inert).
BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """``text`` with each bidirectional control shown as its escape (``\\u202e``)."""
    return BIDI.sub(lambda match: f"\\u{ord(match.group(0)):04x}", text)


def literal(value: object) -> str:
    """``value`` as Markdown source that renders as its text: on one line, links unlinked,
    bidirectional controls shown as escapes."""
    text = _AUTOLINK.sub(lambda match: match.group(0) + UNLINK,
                         visible(" ".join(str(value).split())))
    return _PUNCTUATION.sub(r"\\\1", text)


def shown(source: str) -> str:
    """What a reader sees of Markdown built with ``literal``: the escapes removed."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", source).replace(UNLINK, "")
