"""Untrusted text in the card body: LLM answers, class names from a custom list, model ids, paths.

The card is Markdown that the Hub renders as HTML, so a string pasted verbatim can inject a script
(`<script>`, `<img onerror=...>`), a link (`[x](javascript:...)`), a heading, a table cell break or a
`---` line. Each kind of place gets its own treatment:

- `markdown_text`: inline prose, list items, table cells. Newlines collapse to spaces, `&`, `<` and `>`
  become entities (so no tag, comment or entity can form: `<script>` is shown as the text `<script>`,
  not removed, as a sanitizer like `nh3` would remove it with everything inside), and every ASCII
  punctuation character Markdown gives a meaning to is backslash-escaped (CommonMark allows that escape
  before any ASCII punctuation; list markers only where they would start a list), so the text renders as
  the literal characters it holds.
- `code_text`: text inside a code span or fenced block, where escapes are not interpreted: newlines and
  backticks are replaced, so it can neither end the fence nor start a line of its own.
- `fence`: the backtick fence for a multi-line block (CommonMark: one longer than any backtick run inside).
"""

from __future__ import annotations

import html
import re

MARKDOWN_PUNCTUATION = set("\\`*_{}[]()#!|<>~$^")  # meaningful anywhere in a line
_LINE_START = re.compile(r"^(\d+)([.)])|^([-+=])")  # list markers and setext underlines: only at the start
_BACKTICK_RUNS = re.compile(r"`+")


def markdown_text(value: object) -> str:
    """`value` as inline Markdown that renders as exactly its characters (no HTML, links or markup)."""
    text = html.escape(" ".join(str(value).split()), quote=False)  # `&`, `<`, `>` as entities: shown, inert
    text = "".join("\\" + c if c in MARKDOWN_PUNCTUATION else c for c in text)
    return _LINE_START.sub(lambda m: f"{m[1]}\\{m[2]}" if m[1] else f"\\{m[3]}", text)


def code_text(value: object) -> str:
    """`value` for a code span or a line of a fenced block: one line, no backticks."""
    return " ".join(str(value).split()).replace("`", "'")


def fence(block: str) -> str:
    """A backtick fence longer than any run of backticks in `block`."""
    longest = max((len(run) for run in _BACKTICK_RUNS.findall(block)), default=0)
    return "`" * max(3, longest + 1)
